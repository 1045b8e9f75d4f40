"""Topic administration: CreateTopics, DeleteTopics, CreatePartitions, and topic configs
(DescribeConfigs, AlterConfigs, IncrementalAlterConfigs).

Every change is validated against the up-to-date metadata image and
committed as metadata records in one step (`FileMetadataLog.commit`).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from workbench.controller.image import MetadataImage
from workbench.controller.topics import (
    TOPIC_CONFIG_DEFAULTS,
    create_partitions_records,
    create_topic_records,
    validate_configs,
)
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.broker import Broker
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request

RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
SOURCE_TOPIC, SOURCE_STATIC_BROKER, SOURCE_DEFAULT = 1, 4, 5
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3
_LIST_CONFIGS = {"cleanup.policy"}


def _error(exc: KafkaProtocolError) -> tuple[int, str]:
    return exc.code, exc.message or exc.code.name


async def create_topics(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    results = []
    for t in body.topics:
        partitions = t.num_partitions if t.num_partitions != -1 else broker.config.num_partitions
        rf = t.replication_factor if t.replication_factor != -1 else None
        configs = {c.name: c.value for c in (t.configs or [])}
        assignments = {a.partition_index: list(a.broker_ids) for a in (t.assignments or [])}
        created: list[dict] = []

        def change(image: MetadataImage, t=t, partitions=partitions, rf=rf, configs=configs,
                   assignments=assignments) -> list[dict]:
            factor = rf if rf is not None else min(broker.config.default_replication_factor,
                                                   max(1, len(image.brokers)))
            records = create_topic_records(image, t.name, partitions, factor, configs, assignments or None)
            created[:] = records
            return [] if body.validate_only else records

        result = {"name": t.name, "topic_id": uuid.UUID(int=0), "error_code": 0, "error_message": None,
                  "num_partitions": -1, "replication_factor": -1, "configs": None}
        try:
            broker.metadata.commit(change)
            parts = [r for r in created if r["t"] == "partition"]
            result.update(topic_id=uuid.UUID(hex=created[0]["id"]), num_partitions=len(parts),
                          replication_factor=len(parts[0]["replicas"]) if parts else -1,
                          configs=[{"name": k, "value": v, "read_only": False,
                                    "config_source": SOURCE_TOPIC if k in created[0]["configs"] else SOURCE_DEFAULT,
                                    "is_sensitive": False}
                                   for k, v in sorted({**TOPIC_CONFIG_DEFAULTS, **created[0]["configs"]}.items())])
        except KafkaProtocolError as exc:
            result["error_code"], result["error_message"] = _error(exc)
        results.append(result)
    broker.refresh_metadata()
    return {"throttle_time_ms": 0, "topics": results}


async def delete_topics(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    if req.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in body.topics]
    else:
        wanted = [(name, None) for name in body.topic_names]
    results = []
    for name, topic_id in wanted:
        found: list[str] = []

        def change(image: MetadataImage, name=name, topic_id=topic_id) -> list[dict]:
            target = name
            if target is None and topic_id is not None:
                target = next((t.name for t in image.topics.values() if t.id == topic_id.hex), None)
            if target is None or target not in image.topics:
                raise KafkaProtocolError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {name or topic_id} does not exist")
            if target.startswith("__"):
                raise KafkaProtocolError(ErrorCode.TOPIC_DELETION_DISABLED, f"internal topic {target} cannot be deleted")
            found.append(target)
            return [{"t": "remove_topic", "name": target}]

        result = {"name": name, "topic_id": topic_id or uuid.UUID(int=0), "error_code": 0, "error_message": None}
        try:
            before = broker.image.topics.get(name) if name else None
            broker.metadata.commit(change)
            result["name"] = found[0]
            if before is not None:
                result["topic_id"] = uuid.UUID(hex=before.id)
        except KafkaProtocolError as exc:
            result["error_code"], result["error_message"] = _error(exc)
        results.append(result)
    broker.refresh_metadata()
    return {"throttle_time_ms": 0, "responses": results}


async def create_partitions(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    results = []
    for t in body.topics:
        assignments = [list(a.broker_ids) for a in t.assignments] if t.assignments else None

        def change(image: MetadataImage, t=t, assignments=assignments) -> list[dict]:
            records = create_partitions_records(image, t.name, t.count, assignments)
            return [] if body.validate_only else records

        result = {"name": t.name, "error_code": 0, "error_message": None}
        try:
            broker.metadata.commit(change)
        except KafkaProtocolError as exc:
            result["error_code"], result["error_message"] = _error(exc)
        results.append(result)
    broker.refresh_metadata()
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
                error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {res.resource_name} does not exist"
            else:
                for key, default in sorted(TOPIC_CONFIG_DEFAULTS.items()):
                    if res.configuration_keys is not None and key not in res.configuration_keys:
                        continue
                    set_here = key in topic.configs
                    broker_default = broker.replicas.log_defaults.get(key, default)
                    entries.append({
                        "name": key, "value": topic.configs.get(key, broker_default), "read_only": False,
                        "config_source": SOURCE_TOPIC if set_here else SOURCE_DEFAULT,
                        "is_default": not set_here, "is_sensitive": False, "synonyms": [],
                        "config_type": 0, "documentation": None})
        elif res.resource_type == RESOURCE_BROKER:
            settings = {
                "broker.id": str(broker.node_id), "node.id": str(broker.node_id),
                "auto.create.topics.enable": str(broker.config.auto_create_topics_enable).lower(),
                "num.partitions": str(broker.config.num_partitions),
                "default.replication.factor": str(broker.config.default_replication_factor),
                "offsets.topic.num.partitions": str(broker.config.offsets_topic_num_partitions),
                "group.initial.rebalance.delay.ms": str(broker.config.group_initial_rebalance_delay_ms),
                "socket.request.max.bytes": str(broker.config.socket_request_max_bytes),
            }
            for key, value in sorted(settings.items()):
                if res.configuration_keys is None or key in res.configuration_keys:
                    entries.append({"name": key, "value": value, "read_only": True,
                                    "config_source": SOURCE_STATIC_BROKER, "is_default": False,
                                    "is_sensitive": False, "synonyms": [], "config_type": 0,
                                    "documentation": None})
        else:
            error, message = ErrorCode.INVALID_REQUEST, f"resource type {res.resource_type} is not supported"
        results.append({"error_code": error, "error_message": message, "resource_type": res.resource_type,
                        "resource_name": res.resource_name, "configs": entries})
    return {"throttle_time_ms": 0, "results": results}


def _alter(broker: Broker, res, validate_only: bool, compute) -> dict:
    error, message = 0, None
    if res.resource_type != RESOURCE_TOPIC:
        error, message = ErrorCode.INVALID_REQUEST, "only topic configs can be altered"
    else:
        def change(image: MetadataImage) -> list[dict]:
            topic = image.topics.get(res.resource_name)
            if topic is None:
                raise KafkaProtocolError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                         f"topic {res.resource_name} does not exist")
            configs = validate_configs(compute(dict(topic.configs)))
            if validate_only:
                return []
            return [{"t": "config", "topic": res.resource_name, "configs": configs}]
        try:
            broker.metadata.commit(change)
        except KafkaProtocolError as exc:
            error, message = _error(exc)
    return {"error_code": error, "error_message": message, "resource_type": res.resource_type,
            "resource_name": res.resource_name}


async def alter_configs(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    responses = [_alter(broker, res, body.validate_only,
                        lambda _old, res=res: {c.name: c.value for c in res.configs})
                 for res in body.resources]
    broker.refresh_metadata()
    return {"throttle_time_ms": 0, "responses": responses}


async def incremental_alter_configs(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body

    def compute(configs: dict[str, str], res) -> dict[str, str]:
        for c in res.configs:
            op = c.config_operation
            if op == OP_SET:
                configs[c.name] = c.value
            elif op == OP_DELETE:
                configs.pop(c.name, None)
            elif op in (OP_APPEND, OP_SUBTRACT):
                if c.name not in _LIST_CONFIGS:
                    raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"{c.name} is not a list config")
                items = [x for x in configs.get(c.name, TOPIC_CONFIG_DEFAULTS[c.name]).split(",") if x]
                for value in (c.value or "").split(","):
                    if op == OP_APPEND and value not in items:
                        items.append(value)
                    elif op == OP_SUBTRACT and value in items:
                        items.remove(value)
                configs[c.name] = ",".join(items)
            else:
                raise KafkaProtocolError(ErrorCode.INVALID_REQUEST, f"unknown config operation {op}")
        return configs

    responses = [_alter(broker, res, body.validate_only, lambda old, res=res: compute(old, res))
                 for res in body.resources]
    broker.refresh_metadata()
    return {"throttle_time_ms": 0, "responses": responses}
