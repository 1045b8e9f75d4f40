"""ApiVersions, Metadata and DescribeCluster: what a client learns first."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING

from workbench.broker.apis import SUPPORTED_APIS
from workbench.controller.image import MetadataImage
from workbench.controller.topics import validate_topic_name
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.handlers.context import BrokerContext as Broker
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request


async def api_versions(broker: Broker, req: Request, conn: Connection) -> dict:
    return {
        "error_code": 0,
        "api_keys": [
            {"api_key": k, "min_version": lo, "max_version": hi} for k, (lo, hi) in sorted(SUPPORTED_APIS.items())
        ],
        "throttle_time_ms": 0,
    }


def controller_id(image: MetadataImage, broker: Broker | None = None) -> int:
    """The broker clients should send controller requests to: the active controller (the quorum's
    Raft leader) when it is a listed broker, else any listed broker, which forwards (KIP-590).
    Naming a broker the response does not list would leave clients waiting for it."""
    live = image.live_brokers()
    if broker is not None and broker.metadata.leader_id in live:
        return broker.metadata.leader_id
    return live[0] if live else -1


def _uuid(hex_id: str) -> uuid.UUID:
    return uuid.UUID(hex=hex_id)


def describe_topic(image: MetadataImage, name: str, not_ready: Collection[int] = ()) -> dict:
    """The Metadata response's entry for ``name``. ``not_ready``: partitions this broker leads
    whose log it has not opened yet (a large CreateTopics is applied a slice at a time,
    `replica_manager.OPEN_SLICE_S`): answered LEADER_NOT_AVAILABLE with no leader, so clients
    wait for them instead of sending produce requests this broker must refuse (Kafka's broker
    publishes a partition in its metadata only once it has created the log)."""
    topic = image.topics[name]
    partitions = []
    brokers = image.brokers
    # Kafka's offline replicas: on a dead (fenced) broker or an offline log directory (KIP-112).
    down = {i for i, b in brokers.items() if b.fenced or b.log_dir_offline}
    for p in sorted(topic.partitions.values(), key=lambda p: p.index):
        if p.index in not_ready:
            partitions.append(
                {
                    "error_code": ErrorCode.LEADER_NOT_AVAILABLE,
                    "partition_index": p.index,
                    "leader_id": -1,
                    "leader_epoch": p.leader_epoch,
                    "replica_nodes": list(p.replicas),
                    "isr_nodes": list(p.isr),
                    "offline_replicas": [],
                }
            )
            continue
        offline = [r for r in p.replicas if r in down or r not in brokers]
        partitions.append(
            {
                "error_code": ErrorCode.LEADER_NOT_AVAILABLE if p.leader < 0 else 0,
                "partition_index": p.index,
                "leader_id": p.leader,
                "leader_epoch": p.leader_epoch,
                "replica_nodes": list(p.replicas),
                "isr_nodes": list(p.isr),
                "offline_replicas": offline,
            }
        )
    return {
        "error_code": 0,
        "name": name,
        "topic_id": _uuid(topic.id),
        "is_internal": topic.internal,
        "partitions": partitions,
    }


async def auto_create(broker: Broker, name: str, partitions: int | None = None) -> None:
    """Create a topic on first use (auto.create.topics.enable), with the broker's defaults."""
    await broker.controller.submit(
        {
            "op": "create_topic",
            "name": name,
            "if_not_exists": True,
            "partitions": partitions or broker.config.num_partitions,
            "replication_factor": None,
            "configs": {},
        }
    )


async def metadata(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    broker.refresh_metadata()
    image = broker.image
    if body.topics is None or (req.api_version == 0 and not body.topics):
        names = sorted(image.topics)
    else:
        names = [t.name for t in body.topics if t.name is not None]
    topics = []
    if req.api_version >= 12 and body.topics:
        # Metadata v12 (KIP-516) may name topics by id only; librdkafka does so for KIP-848 assignments.
        by_id = {_uuid(t.id): n for n, t in image.topics.items()}
        for t in body.topics:
            if t.name is None and t.topic_id is not None and t.topic_id.int:
                name = by_id.get(t.topic_id)
                if name is None:
                    topics.append(
                        {
                            "error_code": ErrorCode.UNKNOWN_TOPIC_ID,
                            "name": None,
                            "topic_id": t.topic_id,
                            "is_internal": False,
                            "partitions": [],
                        }
                    )
                else:
                    names.append(name)
    allow_auto = broker.config.auto_create_topics_enable and (req.api_version < 4 or body.allow_auto_topic_creation)
    for name in names:
        if name not in image.topics:
            error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            try:
                validate_topic_name(name)
                if allow_auto and not name.startswith("__"):
                    await auto_create(broker, name)
                    image = broker.image
            except KafkaProtocolError as exc:
                error = exc.code
            if name not in image.topics:
                topics.append(
                    {
                        "error_code": error,
                        "name": name,
                        "topic_id": uuid.UUID(int=0),
                        "is_internal": False,
                        "partitions": [],
                    }
                )
                continue
        parts = image.topics[name].partitions
        not_ready = {i for i in broker.replicas.not_open(name) if i in parts and parts[i].leader == broker.node_id}
        topics.append(describe_topic(image, name, not_ready))
    brokers = [
        {"node_id": b.id, "host": b.host, "port": b.port, "rack": b.rack}
        for b in sorted(image.brokers.values(), key=lambda b: b.id)
        if not b.fenced
    ]
    return {
        "throttle_time_ms": 0,
        "brokers": brokers,
        "cluster_id": image.cluster_id,
        "controller_id": controller_id(image, broker),
        "topics": topics,
    }


async def describe_cluster(broker: Broker, req: Request, conn: Connection) -> dict:
    broker.refresh_metadata()
    image = broker.image
    return {
        "throttle_time_ms": 0,
        "error_code": 0,
        "error_message": None,
        "endpoint_type": 1,
        "cluster_id": image.cluster_id or "",
        "controller_id": controller_id(image, broker),
        "brokers": [
            {"broker_id": b.id, "host": b.host, "port": b.port, "rack": b.rack}
            for b in sorted(image.brokers.values(), key=lambda b: b.id)
            if not b.fenced
        ],
    }
