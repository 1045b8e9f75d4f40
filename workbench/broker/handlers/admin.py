"""Topic administration: CreateTopics, DeleteTopics, CreatePartitions, and topic configs
(DescribeConfigs, AlterConfigs, IncrementalAlterConfigs).

Every change is a controller operation (`workbench.controller.ops`): the
active controller validates it against its up-to-date metadata image and
commits the resulting records through the quorum in one step.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from workbench.broker.handlers import share_groups
from workbench.controller.topics import TOPIC_CONFIG_DEFAULTS
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.topic_config import CATALOGUE

if TYPE_CHECKING:
    from workbench.broker.handlers.context import BrokerContext as Broker
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request

RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
RESOURCE_GROUP = 32  # ConfigResource.Type.GROUP: KIP-848/932 group configs, workbench/broker/group_configs.py
SOURCE_TOPIC, SOURCE_STATIC_BROKER, SOURCE_DEFAULT = 1, 4, 5


def _error(exc: KafkaProtocolError) -> tuple[int, str]:
    return exc.code, exc.message or exc.code.name


async def create_topics(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    results = []
    for t in body.topics:
        partitions = t.num_partitions if t.num_partitions != -1 else broker.config.num_partitions
        op = {
            "op": "create_topic",
            "name": t.name,
            "partitions": partitions,
            "replication_factor": t.replication_factor if t.replication_factor != -1 else None,
            "configs": {c.name: c.value for c in (t.configs or [])},
            "assignments": {a.partition_index: list(a.broker_ids) for a in (t.assignments or [])},
            "validate_only": bool(body.validate_only),
        }
        result = {
            "name": t.name,
            "topic_id": uuid.UUID(int=0),
            "error_code": 0,
            "error_message": None,
            "num_partitions": -1,
            "replication_factor": -1,
            "configs": None,
        }
        try:
            created = await broker.controller.submit(op)
            parts = [r for r in created if r["t"] == "partition"]
            topic_configs = created[0]["configs"]
            result.update(
                topic_id=uuid.UUID(hex=created[0]["id"]),
                num_partitions=len(parts),
                replication_factor=len(parts[0]["replicas"]) if parts else -1,
                configs=[
                    {
                        "name": k,
                        "value": v,
                        "read_only": False,
                        "config_source": SOURCE_TOPIC if k in topic_configs else SOURCE_DEFAULT,
                        "is_sensitive": False,
                    }
                    for k, v in sorted({**TOPIC_CONFIG_DEFAULTS, **topic_configs}.items())
                ],
            )
        except KafkaProtocolError as exc:
            result["error_code"], result["error_message"] = _error(exc)
        results.append(result)
    return {"throttle_time_ms": 0, "topics": results}


async def delete_topics(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    if req.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in body.topics]
    else:
        wanted = [(name, None) for name in body.topic_names]
    results = []
    for name, topic_id in wanted:
        op = {
            "op": "delete_topic",
            "name": name,
            "topic_id": topic_id.hex if topic_id is not None and topic_id.int else None,
        }
        result = {
            "name": name,
            "topic_id": topic_id or uuid.UUID(int=0),
            "error_code": 0,
            "error_message": None,
        }
        before = broker.image.topics.get(name) if name else None
        try:
            records = await broker.controller.submit(op)
            result["name"] = records[0]["name"]
            if before is not None:
                result["topic_id"] = uuid.UUID(hex=before.id)
        except KafkaProtocolError as exc:
            result["error_code"], result["error_message"] = _error(exc)
        results.append(result)
    return {"throttle_time_ms": 0, "responses": results}


async def create_partitions(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    results = []
    for t in body.topics:
        op = {
            "op": "create_partitions",
            "name": t.name,
            "count": t.count,
            "assignments": [list(a.broker_ids) for a in t.assignments] if t.assignments else None,
            "validate_only": bool(body.validate_only),
        }
        result = {"name": t.name, "error_code": 0, "error_message": None}
        try:
            await broker.controller.submit(op)
        except KafkaProtocolError as exc:
            result["error_code"], result["error_message"] = _error(exc)
        results.append(result)
    return {"throttle_time_ms": 0, "results": results}


async def describe_configs(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    broker.refresh_metadata()
    results = []
    for res in body.resources:
        entries = []
        error, message = 0, None
        if res.resource_type == RESOURCE_TOPIC:
            topic = broker.image.topics.get(res.resource_name)
            if topic is None:
                error, message = (
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    f"topic {res.resource_name} does not exist",
                )
            else:
                for key, default in sorted(TOPIC_CONFIG_DEFAULTS.items()):
                    if res.configuration_keys is not None and key not in res.configuration_keys:
                        continue
                    set_here = key in topic.configs
                    broker_default = broker.replicas.log_defaults.get(key, default)
                    entries.append(
                        {
                            "name": key,
                            "value": topic.configs.get(key, broker_default),
                            "read_only": False,
                            "config_source": SOURCE_TOPIC if set_here else SOURCE_DEFAULT,
                            "is_default": not set_here,
                            "is_sensitive": False,
                            "synonyms": [],
                            "config_type": CATALOGUE[key].config_type if key in CATALOGUE else 0,
                            "documentation": None,
                        }
                    )
        elif res.resource_type == RESOURCE_BROKER:
            settings = {
                "broker.id": str(broker.node_id),
                "node.id": str(broker.node_id),
                "auto.create.topics.enable": str(broker.config.auto_create_topics_enable).lower(),
                "num.partitions": str(broker.config.num_partitions),
                "default.replication.factor": str(broker.config.default_replication_factor),
                "offsets.topic.num.partitions": str(broker.config.offsets_topic_num_partitions),
                "group.initial.rebalance.delay.ms": str(broker.config.group_initial_rebalance_delay_ms),
                "socket.request.max.bytes": str(broker.config.socket_request_max_bytes),
                "group.consumer.session.timeout.ms": str(broker.config.group_consumer_session_timeout_ms),
                "group.consumer.heartbeat.interval.ms": str(broker.config.group_consumer_heartbeat_interval_ms),
                "group.consumer.min.session.timeout.ms": str(broker.config.group_consumer_min_session_timeout_ms),
                "group.consumer.max.session.timeout.ms": str(broker.config.group_consumer_max_session_timeout_ms),
                "group.consumer.assignors": ",".join(broker.config.group_consumer_assignors),
                "group.consumer.max.size": str(broker.config.group_consumer_max_size),
                "group.consumer.migration.policy": broker.config.group_consumer_migration_policy.upper(),
            }
            for key, value in sorted(settings.items()):
                if res.configuration_keys is None or key in res.configuration_keys:
                    entries.append(
                        {
                            "name": key,
                            "value": value,
                            "read_only": True,
                            "config_source": SOURCE_STATIC_BROKER,
                            "is_default": False,
                            "is_sensitive": False,
                            "synonyms": [],
                            "config_type": 0,
                            "documentation": None,
                        }
                    )
        elif res.resource_type == RESOURCE_GROUP:
            try:
                entries = await share_groups.describe_group_configs(broker, res.resource_name, res.configuration_keys)
            except KafkaProtocolError as exc:
                error, message = _error(exc)
        else:
            error, message = ErrorCode.INVALID_REQUEST, f"resource type {res.resource_type} is not supported"
        results.append(
            {
                "error_code": error,
                "error_message": message,
                "resource_type": res.resource_type,
                "resource_name": res.resource_name,
                "configs": entries,
            }
        )
    return {"throttle_time_ms": 0, "results": results}


async def _alter(broker: Broker, res: Any, validate_only: bool, op: dict) -> dict:
    error, message = 0, None
    if res.resource_type == RESOURCE_GROUP:
        changes = op.get("incremental") or [[k, 0, v] for k, v in op.get("configs", {}).items()]
        try:
            await share_groups.alter_group_configs(
                broker, res.resource_name, changes, replace="incremental" not in op, validate_only=validate_only
            )
        except KafkaProtocolError as exc:
            error, message = _error(exc)
    elif res.resource_type != RESOURCE_TOPIC:
        error, message = ErrorCode.INVALID_REQUEST, "only topic and group configs can be altered"
    else:
        try:
            await broker.controller.submit({**op, "name": res.resource_name, "validate_only": validate_only})
        except KafkaProtocolError as exc:
            error, message = _error(exc)
    return {
        "error_code": error,
        "error_message": message,
        "resource_type": res.resource_type,
        "resource_name": res.resource_name,
    }


async def alter_configs(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    responses = [
        await _alter(
            broker,
            res,
            body.validate_only,
            {"op": "alter_configs", "configs": {c.name: c.value for c in res.configs}},
        )
        for res in body.resources
    ]
    return {"throttle_time_ms": 0, "responses": responses}


async def incremental_alter_configs(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    responses = [
        await _alter(
            broker,
            res,
            body.validate_only,
            {
                "op": "alter_configs",
                "incremental": [[c.name, c.config_operation, c.value] for c in res.configs],
            },
        )
        for res in body.resources
    ]
    return {"throttle_time_ms": 0, "responses": responses}


async def elect_leaders(broker: Broker, req: Request, conn: Connection) -> dict:
    """ElectLeaders (KIP-460): preferred (0) or unclean (1) elections for some or all partitions."""
    body = req.body
    election_type = body.election_type if req.api_version >= 1 else 0
    wanted: list[tuple[str, int]] | None = None
    if body.topic_partitions is not None:
        wanted = [(t.topic, p) for t in body.topic_partitions for p in t.partitions]
    before = {(p.topic, p.index): p.leader for p in broker.image.all_partitions()}
    error: int = ErrorCode.NONE
    try:
        await broker.controller.submit(
            {
                "op": "elect_leaders",
                "type": election_type,
                "partitions": None if wanted is None else list(map(list, wanted)),
            }
        )
    except KafkaProtocolError as exc:
        error = exc.code
    image = broker.image
    by_topic: dict[str, list[dict]] = {}
    targets = (
        wanted
        if wanted is not None
        else [(p.topic, p.index) for p in image.all_partitions() if before.get((p.topic, p.index)) != p.leader]
    )
    for topic, index in targets:
        info = image.topics.get(topic)
        p = info.partitions.get(index) if info else None
        code: int
        if p is None:
            code, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no such partition"
        elif error:
            code, message = error, None
        elif election_type == 0 and p.leader != p.replicas[0]:
            code, message = ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, "the preferred replica is not in sync"
        elif before.get((topic, index)) == p.leader and election_type == 0:
            code, message = ErrorCode.ELECTION_NOT_NEEDED, None
        else:
            code, message = ErrorCode.NONE, None
        by_topic.setdefault(topic, []).append({"partition_id": index, "error_code": code, "error_message": message})
    return {
        "throttle_time_ms": 0,
        "error_code": 0,
        "replica_election_results": [{"topic": t, "partition_result": ps} for t, ps in by_topic.items()],
    }
