"""`TransactionStateManager`: the transactional ids this broker coordinates, kept in `__transaction_state`.

Kafka's ``TransactionStateManager``. As with groups, a transactional id belongs to
one partition of the internal topic, and that partition's leader is its
coordinator. For every partition it leads, this broker replays the partition's
log into a cache of `TransactionMetadata` (the last value per key wins), then
serves from the cache; every state change is appended (replicated, acks=all)
*before* the cache changes, so a new coordinator replaying the log after a
failover knows every transaction the old one answered for. The partition's leader
epoch is the coordinator epoch written into markers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from workbench.broker.coordinator_lookup import once_topic_known
from workbench.broker.groups_manager import LogOffsetStore
from workbench.broker.transaction_log import (
    TRANSACTION_STATE_TOPIC,
    TransactionMetadata,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    partition_for_transactional_id,
)
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.config import BrokerConfig
    from workbench.broker.controller_channel import ControllerChannel
    from workbench.broker.groups_manager import GroupCoordinatorManager
    from workbench.broker.replica_manager import ReplicaManager
    from workbench.controller.image import MetadataImage

log = logging.getLogger(__name__)


class TransactionBroker(Protocol):
    """The broker's parts the transaction coordinator and its marker channel use."""

    node_id: int
    config: BrokerConfig
    replicas: ReplicaManager  # the logs of __transaction_state and of the partitions markers go to
    groups: GroupCoordinatorManager  # the offsets topic (AddOffsetsToTxn) and TxnOffsetCommit results
    controller: ControllerChannel  # `submit`: create __transaction_state

    @property
    def image(self) -> MetadataImage: ...

    def refresh_metadata(self) -> None: ...

    def note_write(self) -> None: ...

    def is_stopping(self) -> bool: ...

    async def allocate_producer_id(self) -> int: ...


@dataclass
class TxnPartition:
    """One led `__transaction_state` partition: its store and its transactions."""

    index: int
    coordinator_epoch: int
    store: LogOffsetStore
    txns: dict[str, TransactionMetadata] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    closed: bool = False

    def lock(self, transactional_id: str) -> asyncio.Lock:
        lock = self.locks.get(transactional_id)
        if lock is None:
            lock = self.locks[transactional_id] = asyncio.Lock()
        return lock

    async def write(self, meta: TransactionMetadata) -> None:
        """Append the new metadata (durable on return), then make it current."""
        if self.closed:
            raise KafkaProtocolError(ErrorCode.NOT_COORDINATOR, "no longer the transaction coordinator")
        try:
            await self.store.append([(encode_key(meta.transactional_id), encode_value(meta))])
        except KafkaProtocolError as exc:
            # Kafka's mapping of a failed __transaction_state append: the client retries elsewhere.
            if exc.code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.NOT_COORDINATOR):
                raise KafkaProtocolError(ErrorCode.NOT_COORDINATOR, exc.message) from exc
            raise KafkaProtocolError(ErrorCode.COORDINATOR_NOT_AVAILABLE, exc.message) from exc
        if self.closed:
            raise KafkaProtocolError(ErrorCode.NOT_COORDINATOR, "no longer the transaction coordinator")
        self.txns[meta.transactional_id] = meta

    async def remove(self, transactional_id: str) -> None:
        """Write the id's tombstone (durable on return), then forget it (Kafka's expiry)."""
        if self.closed:
            raise KafkaProtocolError(ErrorCode.NOT_COORDINATOR, "no longer the transaction coordinator")
        await self.store.append([(encode_key(transactional_id), None)])
        if self.closed:
            raise KafkaProtocolError(ErrorCode.NOT_COORDINATOR, "no longer the transaction coordinator")
        self.txns.pop(transactional_id, None)


class TransactionStateManager:
    def __init__(self, broker: TransactionBroker, on_loaded: Callable[[TxnPartition], None]) -> None:
        self.broker = broker
        self.partitions: dict[int, TxnPartition] = {}
        self._on_loaded = on_loaded
        self._running = False

    @property
    def num_partitions(self) -> int:
        topic = self.broker.image.topics.get(TRANSACTION_STATE_TOPIC)
        return len(topic.partitions) if topic else self.broker.config.transaction_state_num_partitions

    async def ensure_topic(self) -> None:
        """Create `__transaction_state` on first use, as Kafka does on the first FindCoordinator."""
        if TRANSACTION_STATE_TOPIC in self.broker.image.topics:
            return
        cfg = self.broker.config
        await self.broker.controller.submit(
            {
                "op": "create_topic",
                "name": TRANSACTION_STATE_TOPIC,
                "if_not_exists": True,
                "min_insync_one_below_rf": True,
                "partitions": cfg.transaction_state_num_partitions,
                "replication_factor": None,
                "configs": {
                    "cleanup.policy": "compact",
                    "segment.bytes": str(4 * 1024 * 1024),
                },
            }
        )

    def coordinator_node(self, transactional_id: str) -> int:
        topic = self.broker.image.topics.get(TRANSACTION_STATE_TOPIC)
        if topic is None:
            return -1
        p = topic.partitions.get(partition_for_transactional_id(transactional_id, len(topic.partitions)))
        return p.leader if p is not None else -1

    def partition_for(self, transactional_id: str) -> TxnPartition:
        """The led partition holding ``transactional_id``, or NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE /
        COORDINATOR_LOAD_IN_PROGRESS."""
        topic = self.broker.image.topics.get(TRANSACTION_STATE_TOPIC)
        if topic is None:
            raise KafkaProtocolError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "transaction state topic not created yet")
        index = partition_for_transactional_id(transactional_id, len(topic.partitions))
        part = self.partitions.get(index)
        if part is None:
            led = topic.partitions.get(index)
            if led is not None and led.leader == self.broker.node_id:
                # The metadata names us but `reconcile` has not loaded the partition yet.
                raise KafkaProtocolError(
                    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, f"loading {TRANSACTION_STATE_TOPIC}-{index}"
                )
            raise KafkaProtocolError(ErrorCode.NOT_COORDINATOR, f"{transactional_id} is coordinated elsewhere")
        return part

    async def partition_for_soon(self, transactional_id: str) -> TxnPartition:
        """`partition_for`, once this broker's metadata knows `__transaction_state` (bounded; see
        `workbench.broker.coordinator_lookup`)."""
        return await once_topic_known(lambda: self.partition_for(transactional_id))

    def all_transactions(self) -> list[tuple[TxnPartition, TransactionMetadata]]:
        return [(p, m) for p in list(self.partitions.values()) for m in list(p.txns.values())]

    async def start(self) -> None:
        self._running = True
        self.reconcile()

    def reconcile(self) -> None:
        """Load partitions we now lead; drop those we no longer lead (Kafka's immigration/emigration)."""
        if not self._running:
            return
        topic = self.broker.image.topics.get(TRANSACTION_STATE_TOPIC)
        led: dict[int, int] = {}
        if topic is not None:
            led = {p.index: p.leader_epoch for p in topic.partitions.values() if p.leader == self.broker.node_id}
        for index in list(self.partitions):
            if index not in led or led[index] != self.partitions[index].coordinator_epoch:
                self.partitions.pop(index).closed = True
        for index, epoch in sorted(led.items()):
            if index in self.partitions:
                continue
            part = self.broker.replicas.partition(TRANSACTION_STATE_TOPIC, index)
            if part is None or not part.is_leader:
                continue
            store = LogOffsetStore(
                part,
                functools.partial(self.broker.replicas.notify, (TRANSACTION_STATE_TOPIC, index)),
                min_insync=functools.partial(self.broker.replicas.min_insync_replicas, TRANSACTION_STATE_TOPIC),
            )
            loaded = TxnPartition(index, epoch, store)
            try:
                for key, value in store.replay():
                    try:
                        tid = decode_key(key)
                        if value is None:
                            loaded.txns.pop(tid, None)
                        else:
                            loaded.txns[tid] = decode_value(tid, value)
                    except (ValueError, KeyError) as exc:
                        log.warning("skipping undecodable %s record: %s", TRANSACTION_STATE_TOPIC, exc)
            except Exception:
                log.exception("loading %s-%d failed", TRANSACTION_STATE_TOPIC, index)
                continue
            self.partitions[index] = loaded
            log.info(
                "broker %d: coordinating %d transactional ids of %s-%d (coordinator epoch %d)",
                self.broker.node_id,
                len(loaded.txns),
                TRANSACTION_STATE_TOPIC,
                index,
                epoch,
            )
            self._on_loaded(loaded)

    def close(self) -> None:
        self._running = False
        for part in self.partitions.values():
            part.closed = True
        self.partitions.clear()
