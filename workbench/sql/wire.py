"""Everything the SQL side asks the brokers, over the Kafka protocol only (confluent-kafka).

Metadata (leaders, replicas, ISR), watermarks (ListOffsets), offsets for
timestamps, fetching a range of records, and the consumer-group admin calls.
Nothing here imports broker internals, so the same code serves an embedded
`Cluster` and a real Kafka or Redpanda reached with `workbench.connect`.

Records are fetched with `assign()` at explicit offsets and never committed:
the consumer's group id is a random one that never joins or commits.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from workbench.kafka_logging import KAFKA_LOGGER
from workbench.protocol.records import paused_gc

#: The raw record schema shared with the brokers' Parquet tier (plus `partition`).
HEADER_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
RAW_SCHEMA = pa.schema(
    [
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", HEADER_TYPE),
    ]
)
#: Raw columns as the brokers write them (the rest of their columns are producer bookkeeping).
RAW_COLUMNS = ["offset", "timestamp", "key", "value", "headers"]

REQUEST_TIMEOUT_S = 10.0
#: What SQL, the topic browser and `watch()` read (KIP-98): committed records only, never past the
#: last stable offset. "read_uncommitted" also shows open and aborted transactions' records.
ISOLATION_LEVELS = ("read_committed", "read_uncommitted")


@dataclass(frozen=True)
class PartitionInfo:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error: str | None


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    is_controller: bool


@dataclass(frozen=True)
class ClusterMetadata:
    brokers: list[BrokerInfo]
    partitions: dict[str, list[PartitionInfo]]  # topic -> partitions, internal topics included


class Wire:
    """One admin client and one never-committing consumer, shared by the SQL engine's threads.

    ``isolation_level`` applies to both: "latest" is the last stable offset under
    read_committed (the high watermark otherwise) and the fetch drops aborted records."""

    def __init__(self, bootstrap_servers: str, isolation_level: str = "read_committed") -> None:
        if isolation_level not in ISOLATION_LEVELS:
            raise ValueError(f"isolation_level must be one of {ISOLATION_LEVELS}, not {isolation_level!r}")
        self.isolation_level = isolation_level
        self.bootstrap_servers = bootstrap_servers
        self._admin = AdminClient(
            {"bootstrap.servers": bootstrap_servers, "log.connection.close": False, "logger": KAFKA_LOGGER}
        )
        self._consumer_lock = threading.Lock()
        self._consumer: Consumer | None = None
        #: Records `fetch` has returned so far (what the SQL engine read over the wire, not from files).
        self.records_fetched = 0

    # ---------------------------------------------------------------- metadata
    def metadata(self) -> ClusterMetadata:
        md = self._admin.list_topics(timeout=REQUEST_TIMEOUT_S)
        brokers = [
            BrokerInfo(b.id, b.host, b.port, b.id == md.controller_id)
            for b in sorted(md.brokers.values(), key=lambda b: b.id)
        ]
        partitions: dict[str, list[PartitionInfo]] = {}
        for name, tm in md.topics.items():
            if tm.error is not None and tm.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            partitions[name] = [
                PartitionInfo(
                    name,
                    pm.id,
                    pm.leader,
                    tuple(pm.replicas),
                    tuple(pm.isrs),
                    pm.error.str() if pm.error is not None else None,
                )
                for pm in sorted(tm.partitions.values(), key=lambda p: p.id)
            ]
        return ClusterMetadata(brokers, partitions)

    # ---------------------------------------------------------------- offsets
    def list_offsets(self, tps: list[tuple[str, int]], spec: str | int) -> dict[tuple[str, int], int]:
        """ListOffsets for many partitions at once: spec "earliest", "latest" (the last stable
        offset under read_committed, else the high watermark) or a timestamp in ms (the first
        offset whose timestamp is >= it; -1 when none)."""
        if not tps:
            return {}
        if spec == "earliest":
            offset_spec = OffsetSpec.earliest()
        elif spec == "latest":
            offset_spec = OffsetSpec.latest()
        else:
            offset_spec = OffsetSpec.for_timestamp(int(spec))
        level = (
            IsolationLevel.READ_COMMITTED
            if self.isolation_level == "read_committed"
            else IsolationLevel.READ_UNCOMMITTED
        )
        futures = self._admin.list_offsets(
            {TopicPartition(t, p): offset_spec for t, p in tps},
            request_timeout=REQUEST_TIMEOUT_S,
            isolation_level=level,
        )
        out = {}
        for tp, fut in futures.items():
            out[(tp.topic, tp.partition)] = fut.result().offset
        return out

    # ---------------------------------------------------------------- records
    def _fetcher(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap_servers,
                    "log.connection.close": False,
                    "logger": KAFKA_LOGGER,
                    # Required by the client; this consumer only assign()s and never joins or commits.
                    "group.id": f"workbench-sql-{uuid.uuid4().hex[:12]}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    # Retention moved the log start past a fetch position: continue from the new start.
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 5,  # the end of a partition is found quickly
                    "fetch.error.backoff.ms": 10,
                    "isolation.level": self.isolation_level,
                    "queued.max.messages.kbytes": 262144,
                    "fetch.max.bytes": 52428800,
                    "max.partition.fetch.bytes": 8388608,
                }
            )
        return self._consumer

    def fetch(
        self, ranges: dict[tuple[str, int], tuple[int, int]], timeout: float = 30.0
    ) -> dict[tuple[str, int], pa.Table]:
        """Records [start, end) for each (topic, partition), as Arrow tables in RAW_SCHEMA.

        `end` is a high watermark read just before, so every offset below it is committed; gaps
        (control records) are allowed. `timeout` bounds a stall (no record for that long), not the
        whole fetch: millions of records take as long as they take on a loaded machine (issue 19).
        Python work per record is a few list appends, with the
        cyclic GC paused (each consumed message is a GC-tracked object: collections that re-scan
        the growing lists doubled the CPU per record).
        """
        todo = {tp: r for tp, r in ranges.items() if r[0] < r[1]}
        if not todo:
            return {}
        cols: dict[tuple[str, int], tuple[list, list, list, list, list]] = {tp: ([], [], [], [], []) for tp in todo}
        with self._consumer_lock, paused_gc():
            consumer = self._fetcher()
            consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _) in todo.items()])
            pending = set(todo)
            deadline = time.monotonic() + timeout
            try:
                while pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(
                            f"fetching {sorted(pending)} did not reach the high watermark: "
                            f"nothing arrived for {timeout}s"
                        )
                    first = consumer.poll(min(remaining, 0.5))
                    if first is None:
                        continue
                    deadline = time.monotonic() + timeout
                    for m in [first, *consumer.consume(100_000, 0)]:
                        tp = (m.topic(), m.partition())
                        err = m.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                if tp in pending and m.offset() >= todo[tp][1]:
                                    pending.discard(tp)
                                continue
                            raise KafkaException(err)
                        if tp not in pending:
                            continue
                        offset = m.offset()
                        end = todo[tp][1]
                        if offset >= end:
                            pending.discard(tp)
                            continue
                        o, ts, k, v, h = cols[tp]
                        o.append(offset)
                        ts.append(m.timestamp()[1])
                        k.append(m.key())
                        v.append(m.value())
                        hd = m.headers()
                        h.append([{"key": hk, "value": hv} for hk, hv in hd] if hd else None)
                        if offset >= end - 1:
                            pending.discard(tp)
            finally:
                consumer.unassign()
        out = {}
        for (topic, p), (o, ts, k, v, h) in cols.items():
            self.records_fetched += len(o)
            out[(topic, p)] = pa.table(
                [
                    pa.array([p] * len(o), pa.int32()),
                    pa.array(o, pa.int64()),
                    pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                    pa.array(k, pa.binary()),
                    pa.array(v, pa.binary()),
                    pa.array(h, HEADER_TYPE),
                ],
                schema=RAW_SCHEMA,
            )
        return out

    def first_timestamps(
        self, positions: dict[tuple[str, int], tuple[int, int]], timeout: float = 5.0
    ) -> dict[tuple[str, int], int]:
        """Timestamp (ms) of the first record at or after `start` for each (topic, partition) with
        [start, high watermark) non-empty; for lag in seconds. Fetches at most one batch each."""
        todo = {tp: r for tp, r in positions.items() if r[0] < r[1]}
        out: dict[tuple[str, int], int] = {}
        if not todo:
            return out
        with self._consumer_lock:
            consumer = self._fetcher()
            consumer.assign([TopicPartition(t, p, s) for (t, p), (s, _) in todo.items()])
            deadline = time.monotonic() + timeout
            try:
                while len(out) < len(todo) and time.monotonic() < deadline:
                    m = consumer.poll(0.2)
                    if m is None or m.error() is not None:
                        continue
                    tp = (m.topic(), m.partition())
                    if tp in todo and tp not in out:
                        out[tp] = m.timestamp()[1]
            finally:
                consumer.unassign()
        return out

    # ---------------------------------------------------------------- groups
    def consumer_groups(self) -> list[dict]:
        """Every group with its state, coordinator, members and their assignments."""
        listing = self._admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result()
        ids = sorted(g.group_id for g in listing.valid)
        if not ids:
            return []
        listed_types = {g.group_id: getattr(g, "type", None) for g in listing.valid}  # ListGroups v5
        out = []
        for gid, fut in self._admin.describe_consumer_groups(ids, request_timeout=REQUEST_TIMEOUT_S).items():
            try:
                d = fut.result()
            except KafkaException:
                continue
            members = []
            for m in d.members:
                tps = m.assignment.topic_partitions if m.assignment is not None else []
                members.append(
                    {
                        "member_id": m.member_id,
                        "client_id": m.client_id,
                        "host": m.host,
                        "assignment": [(tp.topic, tp.partition) for tp in tps],
                    }
                )
            out.append(
                {
                    "group_id": gid,
                    "state": _enum_name(d.state),
                    "type": "consumer" if d.is_simple_consumer_group is False else "simple",
                    # KIP-848: "consumer" (ConsumerGroupDescribe answered) or "classic" (DescribeGroups).
                    "protocol": _group_protocol(getattr(d, "type", None), listed_types.get(gid)),
                    "assignor": d.partition_assignor or None,
                    "coordinator": d.coordinator.id if d.coordinator is not None else None,
                    "members": members,
                }
            )
        return sorted(out, key=lambda g: g["group_id"])

    def committed_offsets(self, group_ids: list[str]) -> dict[str, dict[tuple[str, int], int]]:
        """Committed offsets per group (only partitions with a commit)."""
        from confluent_kafka import ConsumerGroupTopicPartitions

        out: dict[str, dict[tuple[str, int], int]] = {}
        futures = {}
        for gid in group_ids:  # the client accepts one group per request
            futures.update(
                self._admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(gid)], request_timeout=REQUEST_TIMEOUT_S
                )
            )
        for gid, fut in futures.items():
            try:
                res = fut.result()
            except KafkaException:
                continue
            out[gid] = {
                (tp.topic, tp.partition): tp.offset
                for tp in res.topic_partitions
                if tp.error is None and tp.offset >= 0
            }
        return out

    def close(self) -> None:
        with self._consumer_lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def _group_protocol(*types) -> str | None:
    """ "classic" or "consumer" from confluent-kafka's ConsumerGroupType (the first one known)."""
    for t in types:
        name = _enum_name(t).lower() if t is not None else ""
        if name in ("classic", "consumer"):
            return name
    return None


def _enum_name(value) -> str:
    name = getattr(value, "name", None)
    return name if name is not None else str(value)
