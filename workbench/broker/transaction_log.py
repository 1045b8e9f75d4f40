"""The `__transaction_state` record format and a transaction's metadata (Kafka's
``TransactionLog`` and ``TransactionMetadata``, KIP-98).

Records use Apache Kafka's own schemas (``TransactionLogKey.json`` and
``TransactionLogValue.json`` in ``transaction-coordinator/src/main/resources``),
version 0, so Kafka tooling reads the topic:

* key:   ``version int16 = 0, transactional_id string``
* value: ``version int16 = 0, producer_id int64, producer_epoch int16,
  transaction_timeout_ms int32, transaction_status int8,
  transaction_partitions nullable [topic string, partition_ids [int32]],
  transaction_last_update_timestamp_ms int64, transaction_start_timestamp_ms int64``

Version 1 (flexible, KIP-890's previous/next producer id and client transaction
version as tagged fields) is not written; its tagged fields are what we do not
have. A ``None`` value is a tombstone (an expired transactional id).

A transactional id belongs to partition ``abs(java hash) % partitions`` of the
topic, as a group does in ``__consumer_offsets``; that partition's leader is its
coordinator.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from workbench.broker.group_offsets import partition_for

TRANSACTION_STATE_TOPIC = "__transaction_state"
KEY_VERSION = 0
VALUE_VERSION = 0
#: The largest epoch before a producer id is exhausted (Kafka's Short.MaxValue - 1 rule).
MAX_PRODUCER_EPOCH = 32766


class TxnState(IntEnum):
    """Kafka's TransactionState ids (the ``transaction_status`` byte)."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        """The name DescribeTransactions / ListTransactions report (Kafka's ``TransactionState.name``)."""
        return "".join(w.capitalize() for w in self.name.split("_"))


@dataclass(slots=True)
class TransactionMetadata:
    """What the coordinator knows of one transactional id."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: set[tuple[str, int]] = field(default_factory=set)
    start_ms: int = -1
    update_ms: int = -1
    #: The epoch the previous incarnation had (KIP-360 retries of InitProducerId).
    last_producer_epoch: int = -1

    def copy(self, **changes: Any) -> TransactionMetadata:
        """A new metadata with ``changes`` (the cache's value is replaced, never mutated)."""
        changes.setdefault("partitions", set(self.partitions))
        return dataclasses.replace(self, **changes)


def partition_for_transactional_id(transactional_id: str, partitions: int) -> int:
    return partition_for(transactional_id, partitions)


# -- codec -------------------------------------------------------------------------------------


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack(">h", len(b)) + b


def encode_key(transactional_id: str) -> bytes:
    return struct.pack(">h", KEY_VERSION) + _str(transactional_id)


def decode_key(data: bytes) -> str:
    (version, n) = struct.unpack_from(">hh", data, 0)
    if version not in (0, 1) or n < 0 or 4 + n > len(data):
        raise ValueError(f"not a TransactionLogKey (version {version})")
    return data[4 : 4 + n].decode("utf-8")


def encode_value(m: TransactionMetadata) -> bytes:
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(m.partitions):
        by_topic.setdefault(topic, []).append(p)
    parts = [struct.pack(">i", len(by_topic))]
    for topic, ps in by_topic.items():
        parts.append(_str(topic) + struct.pack(">i", len(ps)) + b"".join(struct.pack(">i", p) for p in ps))
    return (
        struct.pack(">hqhib", VALUE_VERSION, m.producer_id, m.producer_epoch, m.timeout_ms, int(m.state))
        + b"".join(parts)
        + struct.pack(">qq", m.update_ms, m.start_ms)
    )


def decode_value(transactional_id: str, data: bytes) -> TransactionMetadata:
    """Decode a version-0 value (the fields version 1 shares with it; tagged fields ignored)."""
    view = memoryview(data)
    version, pid, epoch, timeout, status = struct.unpack_from(">hqhib", view, 0)
    if version not in (0, 1):
        raise ValueError(f"TransactionLogValue version {version} is not supported")
    if version == 1:
        raise ValueError("flexible TransactionLogValue (version 1) is not supported")
    pos = 17
    (n,) = struct.unpack_from(">i", view, pos)
    pos += 4
    partitions: set[tuple[str, int]] = set()
    for _ in range(max(n, 0)):
        (ln,) = struct.unpack_from(">h", view, pos)
        topic = bytes(view[pos + 2 : pos + 2 + ln]).decode("utf-8")
        pos += 2 + ln
        (count,) = struct.unpack_from(">i", view, pos)
        pos += 4
        for p in struct.unpack_from(f">{count}i", view, pos):
            partitions.add((topic, p))
        pos += 4 * count
    update_ms, start_ms = struct.unpack_from(">qq", view, pos)
    return TransactionMetadata(transactional_id, pid, epoch, timeout, TxnState(status), partitions, start_ms, update_ms)
