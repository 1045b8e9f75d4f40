"""`GroupCoordinatorManager`: which groups this broker coordinates, and where their offsets live.

As in Kafka, a group belongs to one partition of the internal
`__consumer_offsets` topic (Java's `abs(groupId.hashCode()) % partitions`,
`workbench.broker.group_offsets.partition_for`),
and the leader of that partition is the group's coordinator. This broker runs
one `GroupCoordinator` per offsets partition it leads, each persisting commits
as key/value records in that partition's log (`LogOffsetStore`), so committed
offsets survive restarts and move with the partition's leadership.

The manager gets what it uses, not the broker: this node's id and config, the
metadata log (who leads which offsets partition), the replica manager (the
partitions' logs) and the controller channel's `submit` (to create the topic).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from workbench.broker.coordinator_lookup import once_topic_known
from workbench.broker.group_coordinator import GroupConfig, GroupCoordinator
from workbench.broker.group_offsets import OffsetKey, decode_key, partition_for
from workbench.broker.partition import NotLeaderError, Partition
from workbench.controller.image import MetadataImage
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.config import BrokerConfig
    from workbench.broker.replica_manager import ReplicaManager
    from workbench.controller.quorum import QuorumMetadataLog

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"


class LogOffsetStore:
    """An `OffsetStore` over one `__consumer_offsets` partition.

    An append is durable when it returns: written as leader and acknowledged by the whole ISR
    (acks=all), which held at least ``min_insync()`` replicas before the append and still does
    after it (the topic's `min.insync.replicas`, as for a client's acks=all produce). Without
    that, an offset commit or a transaction's PrepareCommit acknowledged by a leader alone in its
    ISR lives in one page cache only: a power loss there (a torn tail) would take back what the
    client was told (issue 12)."""

    def __init__(
        self,
        partition: Partition,
        on_append: Callable[[], None] | None = None,
        timeout_s: float = 5.0,
        min_insync: Callable[[], int] | None = None,
    ) -> None:
        self.partition = partition
        self.plog = partition.log
        self._on_append = on_append
        self._timeout_s = timeout_s
        self._min_insync = min_insync or (lambda: 1)
        #: [txn] producer id -> records of its open transaction (TxnOffsetCommit, KIP-98):
        #: applied when its commit marker is written, dropped at an abort marker.
        self.pending_transactional: dict[int, list[tuple[bytes, bytes | None]]] = {}

    async def append(
        self,
        entries: list[tuple[bytes, bytes | None]],
        *,
        producer_id: int = -1,
        producer_epoch: int = -1,
    ) -> None:
        """Append atomically; with a producer id, as a transactional batch of that producer
        (a TxnOffsetCommit: it counts only once the transaction's commit marker follows)."""
        if not entries:
            return
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=int(producer_id >= 0),
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=-1,
            batch_size=1 << 30,
        )
        now = int(time.time() * 1000)
        for i, (key, value) in enumerate(entries):
            builder.append(i, timestamp=now, key=key, value=value, headers=[])
        if not self.partition.is_leader:
            raise KafkaProtocolError(ErrorCode.NOT_COORDINATOR, "this broker no longer leads the offsets partition")
        self._check_in_sync(ErrorCode.NOT_ENOUGH_REPLICAS)
        leader_epoch = self.partition.leader_epoch
        try:
            info = self.plog.append(
                bytes(builder.build()),
                leader_epoch=leader_epoch,
                origin="coordinator" if producer_id >= 0 else "client",
            )
        except KafkaProtocolError:
            raise
        except OSError as exc:
            raise KafkaProtocolError(ErrorCode.KAFKA_STORAGE_ERROR, str(exc)) from exc
        self.partition.maybe_advance_high_watermark()
        if self._on_append is not None:
            self._on_append()
        try:
            ok = await self.partition.wait_for_high_watermark(info.last_offset + 1, self._timeout_s, leader_epoch)
        except NotLeaderError:
            raise KafkaProtocolError(ErrorCode.NOT_COORDINATOR, "offsets partition leadership moved") from None
        if not ok:
            raise KafkaProtocolError(ErrorCode.REQUEST_TIMED_OUT, "offset commit was not replicated in time")
        # The HW may have advanced on fewer copies than promised if the ISR shrank meanwhile
        # (Kafka's checkEnoughReplicasReachOffset).
        self._check_in_sync(ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)

    def _check_in_sync(self, code: ErrorCode) -> None:
        isr, needed = self.partition.info.isr, self._min_insync()
        if len(isr) < needed:
            raise KafkaProtocolError(
                code, f"the in-sync replicas {list(isr)} are fewer than min.insync.replicas={needed}"
            )

    def replay(self) -> Iterator[tuple[bytes, bytes | None]]:
        """Committed records in log order. A transaction's records come out where its commit
        marker is (an aborted one's never); those still open end in `pending_transactional`."""
        offset = self.plog.log_start_offset
        end = self.plog.log_end_offset
        pending: dict[int, list[tuple[bytes, bytes | None]]] = {}
        while offset < end:
            data = self.plog.read(offset, 1 << 20, upper_bound=end)
            if not data:
                break
            records = MemoryRecords(bytes(data))
            while records.has_next():
                batch = records.next_batch()
                if batch is None:
                    break
                if batch.is_control_batch:
                    for record in batch:
                        offset = max(offset, record.offset + 1)
                        kept = pending.pop(batch.producer_id, [])
                        if record.key is not None and bytes(record.key)[2:4] == b"\x00\x01":  # COMMIT
                            yield from kept
                    continue
                transactional = batch.is_transactional
                for record in batch:
                    if record.offset >= offset and record.key is not None:
                        entry = (bytes(record.key), (bytes(record.value) if record.value is not None else None))
                        if transactional:
                            pending.setdefault(batch.producer_id, []).append(entry)
                        else:
                            yield entry
                    offset = max(offset, record.offset + 1)
        self.pending_transactional = pending


class SubmitOp(Protocol):
    """`ControllerChannel.submit`: have the active controller carry out an operation."""

    async def __call__(self, op: dict[str, Any], timeout: float = ...) -> list[dict[str, Any]]: ...


class GroupCoordinatorManager:
    """Starts a `GroupCoordinator` for each `__consumer_offsets` partition this broker leads."""

    def __init__(
        self,
        node_id: int,
        config: BrokerConfig,
        metadata: QuorumMetadataLog,
        replicas: ReplicaManager,
        submit: SubmitOp,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.metadata = metadata
        self.replicas = replicas
        self._submit = submit
        cfg = config
        self.group_config = GroupConfig(
            initial_rebalance_delay_ms=cfg.group_initial_rebalance_delay_ms,
            min_session_timeout_ms=cfg.group_min_session_timeout_ms,
            max_session_timeout_ms=cfg.group_max_session_timeout_ms,
            consumer_session_timeout_ms=cfg.group_consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms=cfg.group_consumer_heartbeat_interval_ms,
            consumer_assignors=tuple(cfg.group_consumer_assignors),
            consumer_max_size=cfg.group_consumer_max_size,
            share_session_timeout_ms=cfg.group_share_session_timeout_ms,
            share_heartbeat_interval_ms=cfg.group_share_heartbeat_interval_ms,
        )
        self.coordinators: dict[int, GroupCoordinator] = {}
        # Offsets partitions the metadata says we lead whose coordinator is not serving yet (the
        # local replica has not become leader, or loading failed): COORDINATOR_LOAD_IN_PROGRESS,
        # as Kafka answers while it loads a partition's groups, not NOT_COORDINATOR.
        self._loading: set[int] = set()
        self.stores: dict[int, LogOffsetStore] = {}  # [txn] TxnOffsetCommit writes and markers
        self._running = False
        # Background tasks (coordinator start/close): referenced until done, errors logged.
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def num_partitions(self) -> int:
        topic = self.metadata.image.topics.get(OFFSETS_TOPIC)
        return len(topic.partitions) if topic else self.config.offsets_topic_num_partitions

    async def ensure_offsets_topic(self) -> None:
        """Create `__consumer_offsets` on first use, as Kafka does on the first FindCoordinator."""
        if OFFSETS_TOPIC in self.metadata.image.topics:
            return
        cfg = self.config
        await self._submit(
            {
                "op": "create_topic",
                "name": OFFSETS_TOPIC,
                "if_not_exists": True,
                "min_insync_one_below_rf": True,
                "partitions": cfg.offsets_topic_num_partitions,
                "replication_factor": None,
                "configs": {
                    "cleanup.policy": "compact",
                    "segment.bytes": str(4 * 1024 * 1024),
                },
            }
        )

    def coordinator_node(self, group_id: str) -> int:
        topic = self.metadata.image.topics.get(OFFSETS_TOPIC)
        if topic is None:
            return -1
        p = topic.partitions.get(partition_for(group_id, len(topic.partitions)))
        return p.leader if p is not None else -1

    def coordinator_for(self, group_id: str) -> GroupCoordinator:
        """The local coordinator of `group_id`, or raise NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS."""
        topic = self.metadata.image.topics.get(OFFSETS_TOPIC)
        if topic is None:
            raise KafkaProtocolError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "offsets topic not created yet")
        partition = partition_for(group_id, len(topic.partitions))
        coordinator = self.coordinators.get(partition)
        if coordinator is not None:
            return coordinator
        led = topic.partitions.get(partition)
        if partition in self._loading or (led is not None and led.leader == self.node_id):
            # Loading, or named leader by the metadata and not reconciled yet: about to serve.
            raise KafkaProtocolError(
                ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, f"loading the groups of {OFFSETS_TOPIC}-{partition}"
            )
        raise KafkaProtocolError(ErrorCode.NOT_COORDINATOR, f"group {group_id} is coordinated elsewhere")

    async def coordinator_for_soon(self, group_id: str) -> GroupCoordinator:
        """`coordinator_for`, once this broker's metadata knows `__consumer_offsets` (bounded; see
        `workbench.broker.coordinator_lookup`)."""
        return await once_topic_known(lambda: self.coordinator_for(group_id))

    def _topics(self) -> Any:
        """The metadata image's topics, for the KIP-848 groups' timers."""
        return self.metadata.image.topics

    def _group_configs(self, group_id: str) -> dict[str, str]:
        """A group's config overrides in the metadata image (KIP-848/932 GROUP configs)."""
        return self.metadata.image.group_configs.get(group_id, {})

    def all_coordinators(self) -> Iterable[GroupCoordinator]:
        return list(self.coordinators.values())

    async def start(self) -> None:
        self._running = True
        self.reconcile(self.metadata.image)

    def reconcile(self, image: MetadataImage) -> None:
        """Start coordinators for offsets partitions we now lead; stop those we no longer lead."""
        if not self._running:
            return
        topic = image.topics.get(OFFSETS_TOPIC)
        led = set()
        if topic is not None:
            led = {p.index for p in topic.partitions.values() if p.leader == self.node_id}
        for partition in list(self.coordinators):
            if partition not in led:
                coordinator = self.coordinators.pop(partition)
                self.stores.pop(partition, None)
                self._spawn(coordinator.close(), f"closing the coordinator of {OFFSETS_TOPIC}-{partition}")
        for partition in sorted(led):
            if partition in self.coordinators:
                continue
            part = self.replicas.partition(OFFSETS_TOPIC, partition)
            if part is None or not part.is_leader:
                continue
            try:
                store = LogOffsetStore(
                    part,
                    functools.partial(self.replicas.notify, (OFFSETS_TOPIC, partition)),
                    min_insync=functools.partial(self.replicas.min_insync_replicas, OFFSETS_TOPIC),
                )
                coordinator = GroupCoordinator(store, self.group_config)
                coordinator.load()
                coordinator.consumer.finish_load(self.metadata.image.topics)
                coordinator.share.finish_load(self.metadata.image.topics, int(time.monotonic() * 1000))
                coordinator.consumer.topics = self._topics
                coordinator.consumer.group_configs = coordinator.share.group_configs = self._group_configs
            except Exception:
                log.exception("loading groups of %s-%d failed", OFFSETS_TOPIC, partition)
                continue
            self.coordinators[partition] = coordinator
            self.stores[partition] = store
            self._spawn(coordinator.start(), f"starting the coordinator of {OFFSETS_TOPIC}-{partition}")
        self._loading = led - self.coordinators.keys()

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run `coro` in the background, keeping a reference until it is done and logging its error."""
        task = asyncio.get_event_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", what, exc_info=t.exception())

        task.add_done_callback(done)

    def complete_transaction(self, partition: int, producer_id: int, commit: bool) -> None:
        """[txn] A marker was written to offsets partition ``partition``: apply (commit) or drop
        (abort) the offsets ``producer_id`` committed in its transaction (TxnOffsetCommit)."""
        store = self.stores.get(partition)
        if store is None:
            return
        records = store.pending_transactional.pop(producer_id, [])
        coordinator = self.coordinators.get(partition)
        if commit and records and coordinator is not None:
            coordinator.apply_committed_records(records)

    def pending_transactional_offsets(self, group_id: str) -> set[tuple[str, int]]:
        """[txn] Partitions of ``group_id`` with an offset an open transaction is committing."""
        store = self.stores.get(partition_for(group_id, self.num_partitions))
        if store is None or not store.pending_transactional:
            return set()
        out = set()
        for records in store.pending_transactional.values():
            for key, _value in records:
                k = decode_key(key)
                if isinstance(k, OffsetKey) and k.group == group_id:
                    out.add((k.topic, k.partition))
        return out

    async def close(self, grace: float | None = None) -> None:
        """Close every coordinator at once (each may wait `grace` seconds for in-flight appends)."""
        self._running = False
        results = await asyncio.gather(
            *(coordinator.close(grace) for coordinator in list(self.coordinators.values())), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("closing group coordinator failed: %r", result)
        self.coordinators.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
