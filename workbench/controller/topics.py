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
from workbench.protocol.topic_config import DEFAULTS, validate_topic_config

#: Partitions per topic. Each is a directory and open segment files on every replica; a request for
#: millions (a typo, a fuzzer) must be refused, not planned record by record for minutes.
MAX_PARTITIONS = 10_000

# Every topic config Kafka accepts, with Kafka's defaults (workbench/protocol/topic_config.py).
# Values are strings, as on the wire.
TOPIC_CONFIG_DEFAULTS: dict[str, str] = dict(DEFAULTS)


def validate_topic_name(name: str | None) -> None:
    """Kafka's topic name rule (`workbench.protocol.names`): INVALID_TOPIC_EXCEPTION saying why."""
    problem = topic_name_problem(name)
    if problem is not None:
        raise KafkaProtocolError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)


def validate_configs(configs: dict[str, str | None]) -> dict[str, str]:
    """Validate topic configs as Kafka's ConfigDef does (type, range, allowed values): INVALID_CONFIG
    naming the config otherwise. Returns the values to store."""
    return {key: validate_topic_config(key, value) for key, value in configs.items()}


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
