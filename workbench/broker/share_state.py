"""The share-partition leader's side of KIP-932: share partitions, share sessions, durable state.

`SharePartitionManager` (Kafka's ``SharePartitionManager``) holds this broker's
`SharePartition`s, one per (share group, topic, partition) it leads and a member has fetched,
and the share sessions (group, member) -> the partitions in the session.

Durability. Kafka's share-partition leader writes each state change through the share
coordinator to the ``__share_group_state`` topic (WriteShareGroupState). Here the leader writes
the partition's `SharePartition.snapshot()` itself, as one JSON record keyed
``group:topic:partition``, to a compacted internal topic of that name, with Produce
``acks=all`` over the Kafka protocol to whichever broker leads the state partition (itself
included), and answers the client only after that write. A new leader (a leader change or a
restart) reads the state partition with Fetch up to its high watermark and takes the last
record of the key, so the SPSO, the acknowledged/archived records above it and every delivery
count survive; acquisition locks do not (an ACQUIRED record comes back AVAILABLE, as in Kafka).
The simplification against Kafka: no share coordinator, no ReadShareGroupState/
WriteShareGroupState RPCs, and one whole snapshot per write instead of Kafka's deltas.

A group's configs (lock duration, delivery count limit, auto offset reset, isolation level) are
its overrides in the metadata image, else the broker's defaults (`workbench.broker.group_configs`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.broker import group_configs
from workbench.broker.group_offsets import partition_for
from workbench.broker.share_partition import SharePartition
from workbench.protocol.codec import build
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.handlers.context import BrokerContext as Broker

__all__ = ["SHARE_STATE_TOPIC", "SharePartitionManager", "ShareSession"]

log = logging.getLogger(__name__)

SHARE_STATE_TOPIC = "__share_group_state"
#: What the leader publishes in its broker directory for `wb.share_groups` (Kafka has no API for
#: in-flight record states; like cleaner-state.json, only an embedded cluster shows it).
SHARE_PARTITIONS_FILE = "share-partitions.json"
SHARE_STATE_PARTITIONS = 10  # share.coordinator.state.topic.num.partitions (Kafka: 50)

Key = tuple[str, str, int]  # (group, topic, partition)


@dataclass
class ShareSession:
    """Kafka's ShareSession: the partitions a member fetches, and the epoch it is at."""

    group_id: str
    member_id: str
    epoch: int = 0
    partitions: set[tuple[str, int]] = field(default_factory=set)


@dataclass
class _Led:
    leader_epoch: int
    sp: SharePartition
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stale: bool = False  # reload from __share_group_state at the next use (see mark_stale)


def state_key(group: str, topic: str, partition: int) -> str:
    return f"{group}:{topic}:{partition}"


class SharePartitionManager:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.partitions: dict[Key, _Led] = {}
        self.sessions: dict[tuple[str, str], ShareSession] = {}
        self.changed = asyncio.Event()  # set when records are released (long polls re-check)
        self._loading: dict[Key, asyncio.Lock] = {}
        self._store = ShareStateStore(broker)

    @staticmethod
    def now_ms() -> int:
        return int(time.monotonic() * 1000)

    def group_config(self, group: str | None = None) -> tuple[int, int, str, str]:
        """(lock duration ms, delivery count limit, auto offset reset, isolation level) of ``group``:
        its overrides in the metadata image (`workbench.broker.group_configs`), else the broker's defaults."""
        own = self.broker.image.group_configs.get(group, {}) if group is not None else {}
        values = group_configs.effective(self.broker.config, own)
        return (
            int(values["share.record.lock.duration.ms"]),
            int(values["share.delivery.count.limit"]),
            values["share.auto.offset.reset"],
            values["share.isolation.level"],
        )

    def apply_group_config(self, group: str, sp: SharePartition) -> None:
        sp.lock_duration_ms, sp.delivery_count_limit, _, _ = self.group_config(group)

    async def get(self, group: str, topic: str, partition: int) -> _Led:
        """The share partition of ``group`` on a partition this broker leads (loaded on first use).

        One `_Led` per key and leader epoch: loads are serialized per key, and a reload (after
        `mark_stale`) happens in place under the partition's lock, so two requests never hand out
        the same records from two copies of the state."""
        part = self.broker.replicas.partition(topic, partition)
        if part is None or not part.is_leader:
            raise KafkaProtocolError(ErrorCode.NOT_LEADER_OR_FOLLOWER, f"not the leader of {topic}-{partition}")
        key = (group, topic, partition)
        led = self.partitions.get(key)
        if led is None or led.leader_epoch != part.leader_epoch:
            loading = self._loading.setdefault(key, asyncio.Lock())
            async with loading:
                led = self.partitions.get(key)
                if led is None or led.leader_epoch != part.leader_epoch:
                    sp = SharePartition(0)
                    await self._load(key, sp, part.log)
                    led = self.partitions[key] = _Led(part.leader_epoch, sp)
            self._loading.pop(key, None)
        elif led.stale:
            async with led.lock:
                if led.stale and not led.sp.counts()["acquired"]:
                    await self._load(key, led.sp, part.log)
                led.stale = False
        self.apply_group_config(group, led.sp)
        return led

    async def _load(self, key: Key, sp: SharePartition, plog: Any) -> None:
        """Fill ``sp`` from the persisted state, or start it by share.auto.offset.reset (and persist that)."""
        snap = await self._store.read(state_key(*key))
        if snap is not None:
            sp.restore(snap)
            return
        reset = self.group_config(key[0])[2]
        sp.reset(plog.high_watermark if reset == "latest" else plog.log_start_offset)
        await self._store.write(state_key(*key), sp.snapshot())  # the SPSO chosen now is fixed

    async def persist(self, key: Key, led: _Led) -> None:
        await self._store.write(state_key(*key), led.sp.snapshot())

    async def group_state(self, group: str) -> dict[tuple[str, int], dict[str, Any]]:
        """(topic, partition) -> persisted snapshot of every share partition of ``group``
        (DescribeShareGroupOffsets; any broker can read it)."""
        out = {}
        for key, snap in (await self._store.scan(f"{group}:")).items():
            topic, _, partition = key[len(group) + 1 :].rpartition(":")
            if topic and ":" not in topic and partition.isdigit():  # not a group named "<group>:..."
                out[(topic, int(partition))] = snap
        return out

    async def write_state(self, group: str, topic: str, partition: int, snap: dict[str, Any] | None) -> None:
        """Replace (None: delete) the persisted state: Alter/DeleteShareGroupOffsets, on an empty group."""
        await self._store.write(state_key(group, topic, partition), snap)
        self.mark_stale(group, topic, partition)

    def mark_stale(self, group: str, topic: str, partition: int) -> None:
        """Have the next use re-read the persisted state if no record is acquired then (a share
        session opening after Alter/DeleteShareGroupOffsets, which another broker, the group's
        coordinator, may have written)."""
        led = self.partitions.get((group, topic, partition))
        if led is not None:
            led.stale = True

    def published(self) -> list[dict[str, Any]]:
        """One row per share partition this broker leads: SPSO, next offset, records per state."""
        now = self.now_ms()
        rows = []
        for (group, topic, partition), led in sorted(self.partitions.items()):
            part = self.broker.replicas.partition(topic, partition)
            if part is None or not part.is_leader or part.leader_epoch != led.leader_epoch:
                continue
            sp = led.sp
            if not led.lock.locked():
                sp.expire_locks(now)  # what a fetch would see now; locks are not durable anyway
            counts = sp.counts()
            deliveries = [r.delivery_count for r in sp.records.values()]
            rows.append(
                {
                    "group_id": group,
                    "topic": topic,
                    "partition": partition,
                    "leader": self.broker.node_id,
                    "start_offset": sp.start_offset,
                    "next_offset": sp.next_offset,
                    "in_flight": len(sp.records),
                    **counts,
                    "redelivered": sum(1 for d in deliveries if d > 1),
                    "max_delivery_count": max(deliveries, default=0),
                    "delivery_count_limit": sp.delivery_count_limit,
                    "lock_duration_ms": sp.lock_duration_ms,
                }
            )
        return rows

    def close(self) -> None:
        self._store.close()


class ShareStateStore:
    """``__share_group_state`` over the Kafka protocol: Produce acks=all, Fetch to the HW."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._conns: dict[int, Any] = {}

    async def _ensure_topic(self) -> None:
        if SHARE_STATE_TOPIC in self.broker.image.topics:
            return
        await self.broker.controller.submit(
            {
                "op": "create_topic",
                "name": SHARE_STATE_TOPIC,
                "if_not_exists": True,
                "min_insync_one_below_rf": True,  # share.coordinator.state.topic.min.isr=2 at RF 3
                "partitions": SHARE_STATE_PARTITIONS,
                "replication_factor": None,
                "configs": {"cleanup.policy": "compact", "segment.bytes": str(4 * 1024 * 1024)},
            }
        )

    async def _leader(self, key: str) -> tuple[int, Any]:
        """(state partition, connection to its leader), waiting a little for a leader to exist."""
        await self._ensure_topic()
        deadline = time.monotonic() + 10
        while True:
            self.broker.refresh_metadata()
            topic = self.broker.image.topics.get(SHARE_STATE_TOPIC)
            if topic is not None:
                index = partition_for(key, len(topic.partitions))
                leader = topic.partitions[index].leader
                broker_info = self.broker.image.brokers.get(leader) if leader >= 0 else None
                if broker_info is not None:
                    return index, await self._conn(leader, broker_info.host, broker_info.port)
            if time.monotonic() > deadline:
                raise KafkaProtocolError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "no leader for the share state topic")
            await asyncio.sleep(0.05)

    async def _conn(self, node: int, host: str, port: int) -> Any:
        from workbench.broker.network_client import BrokerConnection

        conn = self._conns.get(node)
        if conn is None or not conn.connected or (conn.host, conn.port) != (host, port):
            if conn is not None:
                conn.close()
            security = getattr(self.broker, "security", None)  # [security] the brokers' own login
            sasl = security.inter_broker_login() if security is not None else None
            conn = BrokerConnection(host, port, client_id=f"share-state-{self.broker.node_id}", sasl=sasl)
            await conn.connect()
            self._conns[node] = conn
        return conn

    async def write(self, key: str, snap: dict[str, Any] | None) -> None:
        from kafka.protocol.producer import ProduceRequest
        from kafka.record.default_records import DefaultRecordBatchBuilder

        value = None if snap is None else json.dumps(snap, separators=(",", ":")).encode()
        builder = DefaultRecordBatchBuilder(
            magic=2, compression_type=0, is_transactional=0, producer_id=-1, producer_epoch=-1,
            base_sequence=-1, batch_size=1 << 30,
        )  # fmt: skip
        builder.append(0, timestamp=int(time.time() * 1000), key=key.encode(), value=value, headers=[])
        records = bytes(builder.build())
        for attempt in range(20):
            index, conn = await self._leader(key)
            try:
                resp = await conn.request(
                    build(
                        ProduceRequest,
                        {
                            "transactional_id": None,
                            "acks": -1,
                            "timeout_ms": 5000,
                            "topic_data": [
                                {"name": SHARE_STATE_TOPIC, "partition_data": [{"index": index, "records": records}]}
                            ],
                        },
                    ),
                    version=9,
                )
            except (TimeoutError, OSError, EOFError) as exc:
                log.info("share state write to %s failed (%s); retrying", SHARE_STATE_TOPIC, exc)
                self._drop(conn)
                await asyncio.sleep(0.1)
                continue
            code = resp.responses[0].partition_responses[0].error_code
            if code == 0:
                return
            if attempt == 19 or code not in _RETRIABLE:
                raise KafkaProtocolError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"share state write failed: {code}")
            await asyncio.sleep(0.1)

    async def read(self, key: str) -> dict[str, Any] | None:
        """The last value of ``key`` in its state partition (None: never written, or deleted)."""
        index, _conn = await self._leader(key)
        return (await self._read_partition(index, key)).get(key)

    async def scan(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every live key starting with ``prefix``, over all state partitions, and its value."""
        await self._ensure_topic()
        self.broker.refresh_metadata()
        topic = self.broker.image.topics.get(SHARE_STATE_TOPIC)
        out: dict[str, dict[str, Any]] = {}
        for index in sorted(topic.partitions) if topic is not None else []:
            for key, value in (await self._read_partition(index, None)).items():
                if key.startswith(prefix) and value is not None:
                    out[key] = value
        return out

    async def _partition_leader(self, index: int) -> Any:
        deadline = time.monotonic() + 10
        while True:
            self.broker.refresh_metadata()
            topic = self.broker.image.topics.get(SHARE_STATE_TOPIC)
            p = topic.partitions.get(index) if topic is not None else None
            info = self.broker.image.brokers.get(p.leader) if p is not None and p.leader >= 0 else None
            if info is not None and p is not None:
                return await self._conn(p.leader, info.host, info.port)
            if time.monotonic() > deadline:
                raise KafkaProtocolError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "no leader for the share state topic")
            await asyncio.sleep(0.05)

    async def _read_partition(self, index: int, only: str | None) -> dict[str, dict[str, Any] | None]:
        """The last value per key (of ``only``, when given) of one state partition, up to its HW."""
        from kafka.protocol.consumer import FetchRequest
        from kafka.record import MemoryRecords

        for attempt in range(20):
            conn = await self._partition_leader(index)
            offset, found, failed = 0, {}, False
            while True:
                request = build(
                    FetchRequest,
                    {
                        "replica_id": -1,
                        "max_wait_ms": 0,
                        "min_bytes": 0,
                        "max_bytes": 16 * 1024 * 1024,
                        "isolation_level": 0,
                        "topics": [
                            {
                                "topic": SHARE_STATE_TOPIC,
                                "partitions": [
                                    {"partition": index, "fetch_offset": offset, "partition_max_bytes": 8 << 20}
                                ],
                            }
                        ],
                    },
                )
                try:
                    resp = await conn.request(request, version=5)
                except (TimeoutError, OSError, EOFError):
                    self._drop(conn)
                    failed = True
                    break
                p = resp.responses[0].partitions[0]
                if p.error_code == ErrorCode.OFFSET_OUT_OF_RANGE and offset == 0:
                    offset = max(p.log_start_offset, 0)
                    continue
                if p.error_code:
                    failed = p.error_code in _RETRIABLE
                    if not failed:
                        raise KafkaProtocolError(
                            ErrorCode.COORDINATOR_NOT_AVAILABLE, f"share state read: {p.error_code}"
                        )
                    break
                progressed = False
                records = MemoryRecords(bytes(p.records or b""))
                while records.has_next():
                    batch = records.next_batch()
                    for rec in batch:
                        if rec.offset < offset:
                            continue
                        offset = rec.offset + 1
                        progressed = True
                        key = rec.key.decode() if rec.key is not None else None
                        if key is not None and (only is None or key == only):
                            found[key] = None if rec.value is None else json.loads(rec.value)
                if not progressed or offset >= p.high_watermark:
                    return found
            if not failed or attempt == 19:
                break
            await asyncio.sleep(0.1)
        raise KafkaProtocolError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "share state read failed")

    def _drop(self, conn: Any) -> None:
        for node, c in list(self._conns.items()):
            if c is conn:
                c.close()
                del self._conns[node]

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()


_RETRIABLE = {
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.NOT_ENOUGH_REPLICAS,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ErrorCode.REQUEST_TIMED_OUT,
    ErrorCode.LEADER_NOT_AVAILABLE,
}
