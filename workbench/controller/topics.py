"""Topic changes as metadata records: validation, replica assignment, configs.

Pure functions of a `MetadataImage`; the caller commits the records they
return through the metadata log, so validation and the write are atomic.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from workbench.controller.image import MetadataImage
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.names import topic_name_problem

#: Partitions per topic. Each is a directory and open segment files on every replica; a request for
#: millions (a typo, a fuzzer) must be refused, not planned record by record for minutes.
MAX_PARTITIONS = 10_000

# Topic configs we understand, with Kafka's defaults. Values are strings, as on the wire.
TOPIC_CONFIG_DEFAULTS: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": str(7 * 24 * 3600 * 1000),
    "retention.bytes": "-1",
    "segment.bytes": str(16 * 1024 * 1024),
    "segment.ms": str(10 * 60 * 1000),
    "min.insync.replicas": "1",
    "max.message.bytes": "1048588",
    "index.interval.bytes": "4096",
    "message.timestamp.type": "CreateTime",
    "unclean.leader.election.enable": "false",
    "compression.type": "producer",
    "flush.ms": "1000",
    "workbench.hot.segments": "2",
    # Log compaction (workbench.storage.log_cleaner), Kafka's defaults.
    "min.cleanable.dirty.ratio": "0.5",
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": str(2**63 - 1),
    "delete.retention.ms": str(24 * 3600 * 1000),
}

_INT_CONFIGS = {
    "retention.ms": -1,
    "retention.bytes": -1,
    "segment.bytes": 14,
    "segment.ms": 1,
    "min.insync.replicas": 1,
    "max.message.bytes": 0,
    "index.interval.bytes": 0,
    "flush.ms": 0,
    "workbench.hot.segments": 0,
    "min.compaction.lag.ms": 0,
    "max.compaction.lag.ms": 1,
    "delete.retention.ms": 0,
}
#: Configs that are a fraction in [0, 1].
_RATIO_CONFIGS = {"min.cleanable.dirty.ratio"}
_ENUM_CONFIGS = {
    "cleanup.policy": {"delete", "compact", "compact,delete", "delete,compact"},
    "message.timestamp.type": {"CreateTime", "LogAppendTime"},
    "unclean.leader.election.enable": {"true", "false"},
    "compression.type": {"producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"},
}


def validate_topic_name(name: str | None) -> None:
    """Kafka's topic name rule (`workbench.protocol.names`): INVALID_TOPIC_EXCEPTION saying why."""
    problem = topic_name_problem(name)
    if problem is not None:
        raise KafkaProtocolError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)


def validate_configs(configs: dict[str, str | None]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in configs.items():
        if key not in TOPIC_CONFIG_DEFAULTS:
            raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"unknown topic config {key!r}")
        if value is None:
            raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"config {key!r} needs a value")
        if key in _INT_CONFIGS:
            try:
                number = int(value)
            except ValueError:
                raise KafkaProtocolError(
                    ErrorCode.INVALID_CONFIG, f"config {key}={value!r} is not an integer"
                ) from None
            if number < _INT_CONFIGS[key]:
                raise KafkaProtocolError(
                    ErrorCode.INVALID_CONFIG, f"config {key}={value} is below its minimum {_INT_CONFIGS[key]}"
                )
        elif key in _RATIO_CONFIGS:
            try:
                ratio = float(value)
            except ValueError:
                raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"config {key}={value!r} is not a number") from None
            if not 0.0 <= ratio <= 1.0:
                raise KafkaProtocolError(ErrorCode.INVALID_CONFIG, f"config {key}={value} must be between 0 and 1")
        elif key in _ENUM_CONFIGS and value not in _ENUM_CONFIGS[key]:
            raise KafkaProtocolError(
                ErrorCode.INVALID_CONFIG,
                f"config {key}={value!r} must be one of {sorted(_ENUM_CONFIGS[key])}",
            )
        clean[key] = value
    return clean


def assign_replicas(
    broker_ids: list[int],
    partitions: int,
    replication_factor: int,
    first_partition: int = 0,
    start: int | None = None,
) -> dict[int, list[int]]:
    """Kafka's rack-unaware assignment: leaders round-robin from a random start,
    followers shifted so that replicas of neighbouring partitions differ."""
    brokers = sorted(broker_ids)
    n = len(brokers)
    if start is None:
        start = random.randrange(n)
    shift = random.randrange(n) if n > 1 else 0
    out: dict[int, list[int]] = {}
    for i in range(partitions):
        p = first_partition + i
        if p > 0 and p % n == 0:
            shift += 1
        first = (start + p) % n
        replicas = [brokers[first]]
        for j in range(replication_factor - 1):
            replicas.append(brokers[(first + 1 + (shift + j) % (n - 1)) % n])
        out[p] = replicas
    return out


def create_topic_records(
    image: MetadataImage,
    name: str,
    partitions: int,
    replication_factor: int,
    configs: dict[str, str | None] | None = None,
    assignments: dict[int, list[int]] | None = None,
    brokers: list[int] | None = None,
) -> list[dict[str, Any]]:
    validate_topic_name(name)
    if name in image.topics:
        raise KafkaProtocolError(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
    clean = validate_configs(configs or {})
    brokers = sorted(brokers if brokers else image.brokers)
    if assignments:
        if len(assignments) > MAX_PARTITIONS:
            raise KafkaProtocolError(
                ErrorCode.INVALID_PARTITIONS, f"{len(assignments)} partitions; the limit is {MAX_PARTITIONS}"
            )
        if sorted(assignments) != list(range(len(assignments))):
            raise KafkaProtocolError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT, "manual assignment must name partitions 0..n-1"
            )
        for replicas in assignments.values():
            if not replicas or len(set(replicas)) != len(replicas) or any(b not in image.brokers for b in replicas):
                raise KafkaProtocolError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"replica list {replicas} names unknown or repeated brokers",
                )
    else:
        if partitions < 1 or partitions > MAX_PARTITIONS:
            raise KafkaProtocolError(
                ErrorCode.INVALID_PARTITIONS,
                f"number of partitions must be between 1 and {MAX_PARTITIONS}, not {partitions}",
            )
        if replication_factor < 1 or replication_factor > len(brokers):
            raise KafkaProtocolError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"replication factor {replication_factor} must be between 1 and the {len(brokers)} available broker(s)",
            )
        assignments = assign_replicas(brokers, partitions, replication_factor)
    records: list[dict[str, Any]] = [{"t": "topic", "name": name, "id": uuid.uuid4().hex, "configs": clean}]
    for p, replicas in sorted(assignments.items()):
        records.append(
            {
                "t": "partition",
                "topic": name,
                "p": p,
                "replicas": replicas,
                "isr": list(replicas),
                "leader": replicas[0],
                "leader_epoch": 0,
            }
        )
    return records


def create_partitions_records(
    image: MetadataImage,
    name: str,
    count: int,
    assignments: list[list[int]] | None = None,
    brokers: list[int] | None = None,
) -> list[dict[str, Any]]:
    topic = image.topics.get(name)
    if topic is None:
        raise KafkaProtocolError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist")
    current = len(topic.partitions)
    if count > MAX_PARTITIONS:
        raise KafkaProtocolError(
            ErrorCode.INVALID_PARTITIONS, f"a topic may have at most {MAX_PARTITIONS} partitions, not {count}"
        )
    if count <= current:
        raise KafkaProtocolError(
            ErrorCode.INVALID_PARTITIONS,
            f"topic {name!r} has {current} partitions; the new count must be larger",
        )
    rf = len(next(iter(topic.partitions.values())).replicas) if topic.partitions else 1
    new = count - current
    if assignments:
        if len(assignments) != new:
            raise KafkaProtocolError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"{len(assignments)} assignments given for {new} new partitions",
            )
        plan = {current + i: list(a) for i, a in enumerate(assignments)}
        for replicas in plan.values():
            if not replicas or any(b not in image.brokers for b in replicas):
                raise KafkaProtocolError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"bad replica list {replicas}")
    else:
        plan = assign_replicas(sorted(brokers if brokers else image.brokers), new, rf, first_partition=current)
    return [
        {
            "t": "partition",
            "topic": name,
            "p": p,
            "replicas": r,
            "isr": list(r),
            "leader": r[0],
            "leader_epoch": 0,
        }
        for p, r in sorted(plan.items())
    ]
