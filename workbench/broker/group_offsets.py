"""Durable group state: the `__consumer_offsets` record format and the store interface.

Records use Apache Kafka's own key/value schemas, so the internal topic is
readable by Kafka tooling (``kafka-console-consumer --formatter
...GroupMetadataMessageFormatter``) and by our own replay on startup:

* OffsetCommitKey   version 1: ``group string, topic string, partition int32``
* OffsetCommitValue version 3: ``offset int64, leader_epoch int32, metadata string,
  commit_timestamp int64`` (versions 0-3 are decoded)
* GroupMetadataKey  version 2: ``group string``
* GroupMetadataValue version 3 (versions 0-3 are decoded), see `GroupRecord`.

A key's leading int16 says which kind of record it is (0/1 offset, 2 group).
A ``None`` value is a tombstone (offset deleted / group deleted).  Version 4
(flexible, KIP-915) values are not written or read.

Placement: Kafka puts a group on partition
``abs(java_string_hash(group_id)) % offsets.topic.num.partitions``
(`partition_for`, the one definition of that rule). The broker runs one
`GroupCoordinator` per `__consumer_offsets` partition it leads, each with an
`OffsetStore` over that one partition: Kafka's unit of coordinator failover
(leadership loss = ``close()`` that coordinator).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
GROUP_VALUE_VERSION = 3

Record = tuple[bytes, "bytes | None"]


class OffsetStore(Protocol):
    """An append-only key/value log: one partition of ``__consumer_offsets``."""

    async def append(self, entries: list[tuple[bytes, bytes | None]]) -> None:
        """Append records atomically; durable (replicated) once it returns.

        Raise `KafkaProtocolError` (for example NOT_LEADER_OR_FOLLOWER) on failure;
        the coordinator maps the code to what Kafka sends for failed commits.
        """
        ...

    def replay(self) -> Iterable[tuple[bytes, bytes | None]]:
        """All records in log order (compaction may have dropped superseded ones)."""
        ...


class InMemoryOffsetStore:
    """A list of records; for tests and for a broker without durable groups."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    async def append(self, entries: list[tuple[bytes, bytes | None]]) -> None:
        self.records.extend(entries)

    def replay(self) -> Iterable[tuple[bytes, bytes | None]]:
        return list(self.records)


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (UTF-16 code units, 32-bit signed)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, num_partitions: int) -> int:
    """The ``__consumer_offsets`` partition of a group, as Kafka computes it.

    Kafka's ``Utils.abs`` maps Integer.MIN_VALUE to 0 (``x & 0x7fffffff``).
    """
    return (java_string_hash(group_id) & 0x7FFFFFFF) % num_partitions


# --- primitive encoders (Kafka's classic, non-flexible types) --------------


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack(">h", len(b)) + b


def _nstr(s: str | None) -> bytes:
    return struct.pack(">h", -1) if s is None else _str(s)


def _bytes(b: bytes | None) -> bytes:
    b = b or b""
    return struct.pack(">i", len(b)) + b


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated __consumer_offsets record")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i16(self) -> int:
        return int(struct.unpack(">h", self._take(2))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self._take(4))[0])

    def i64(self) -> int:
        return int(struct.unpack(">q", self._take(8))[0])

    def nstr(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self._take(n).decode("utf-8")

    def string(self) -> str:
        return self.nstr() or ""

    def blob(self) -> bytes:
        n = self.i32()
        return b"" if n < 0 else self._take(n)


# --- keys ------------------------------------------------------------------


@dataclass(frozen=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True)
class GroupKey:
    group: str


def encode_offset_key(group: str, topic: str, partition: int) -> bytes:
    return struct.pack(">h", OFFSET_KEY_VERSION) + _str(group) + _str(topic) + struct.pack(">i", partition)


def encode_group_key(group: str) -> bytes:
    return struct.pack(">h", GROUP_KEY_VERSION) + _str(group)


def decode_key(data: bytes) -> OffsetKey | GroupKey:
    """Decode either key kind; raises ValueError on anything else."""
    r = _Reader(data)
    version = r.i16()
    if version in (0, 1):
        return OffsetKey(r.string(), r.string(), r.i32())
    if version == 2:
        return GroupKey(r.string())
    raise ValueError(f"unknown __consumer_offsets key version {version}")


# --- offset values ---------------------------------------------------------


@dataclass(frozen=True)
class OffsetValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int


def encode_offset_value(offset: int, leader_epoch: int, metadata: str | None, commit_ts_ms: int) -> bytes:
    """OffsetCommitValue v3.  A ``None`` metadata is stored as ``""`` (Kafka's NO_METADATA)."""
    return (
        struct.pack(">hqi", OFFSET_VALUE_VERSION, offset, leader_epoch)
        + _str(metadata or "")
        + struct.pack(">q", commit_ts_ms)
    )


def decode_offset_value(data: bytes) -> OffsetValue:
    r = _Reader(data)
    version = r.i16()
    if version not in (0, 1, 2, 3):
        raise ValueError(f"unsupported OffsetCommitValue version {version}")
    offset = r.i64()
    epoch = r.i32() if version >= 3 else -1
    metadata = r.string()
    ts = r.i64()
    return OffsetValue(offset, epoch, metadata, ts)


# --- group metadata values -------------------------------------------------


@dataclass
class MemberRecord:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes  # metadata of the selected protocol
    assignment: bytes


@dataclass
class GroupRecord:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp_ms: int
    members: list[MemberRecord] = field(default_factory=list)


def encode_group_value(g: GroupRecord) -> bytes:
    """GroupMetadataValue v3."""
    out = [
        struct.pack(">h", GROUP_VALUE_VERSION),
        _str(g.protocol_type),
        struct.pack(">i", g.generation),
        _nstr(g.protocol),
        _nstr(g.leader),
        struct.pack(">q", g.current_state_timestamp_ms),
        struct.pack(">i", len(g.members)),
    ]
    for m in g.members:
        out += [
            _str(m.member_id),
            _nstr(m.group_instance_id),
            _str(m.client_id),
            _str(m.client_host),
            struct.pack(">ii", m.rebalance_timeout_ms, m.session_timeout_ms),
            _bytes(m.subscription),
            _bytes(m.assignment),
        ]
    return b"".join(out)


def decode_group_value(data: bytes) -> GroupRecord:
    r = _Reader(data)
    version = r.i16()
    if version not in (0, 1, 2, 3):
        raise ValueError(f"unsupported GroupMetadataValue version {version}")
    protocol_type = r.string()
    generation = r.i32()
    protocol = r.nstr()
    leader = r.nstr()
    ts = r.i64() if version >= 2 else -1
    members = []
    for _ in range(r.i32()):
        member_id = r.string()
        instance_id = r.nstr() if version >= 3 else None
        client_id = r.string()
        client_host = r.string()
        session_timeout = r.i32()
        rebalance_timeout = session_timeout
        if version >= 1:
            # v1+ puts rebalanceTimeout before sessionTimeout
            rebalance_timeout, session_timeout = session_timeout, r.i32()
        members.append(
            MemberRecord(
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                r.blob(),
                r.blob(),
            )
        )
    return GroupRecord(protocol_type, generation, protocol, leader, ts, members)
