"""`TransactionCoordinator`: transactional producers' state machine (KIP-98, Kafka's
``TransactionCoordinator``), over `TransactionStateManager` and `TransactionMarkerChannel`.

The life of a transaction, each step durable in `__transaction_state` before it is
answered::

    InitProducerId ─▶ Empty ─AddPartitions/AddOffsets─▶ Ongoing ─EndTxn─▶ PrepareCommit/PrepareAbort
                                                                     markers to every partition
                                    CompleteCommit/CompleteAbort ◀───┘

* **InitProducerId** with a transactional id gives the id a producer id and a new
  epoch (a bump each time; a fresh producer id when the epoch is exhausted). An
  open transaction of the previous incarnation is aborted first with the bumped
  epoch (the answer is CONCURRENT_TRANSACTIONS until that is done): the zombie is
  fenced, its data never becomes visible. ``transaction.timeout.ms`` must be at
  most ``transaction.max.timeout.ms`` (INVALID_TRANSACTION_TIMEOUT).
* **EndTxn**: PrepareCommit/PrepareAbort made durable is the decision; the markers
  follow, then Complete*. Until then new requests for the id get
  CONCURRENT_TRANSACTIONS, which clients retry. The answer waits for the markers (at
  most `END_TXN_MARKER_WAIT_S`; Kafka answers right after Prepare*), so a read_committed
  reader sees a transaction as soon as ``commit_transaction()`` has returned.
* **Failover**: a broker that becomes leader of a `__transaction_state` partition
  replays it and resumes every Prepare* transaction (markers again, then Complete*):
  a decided transaction is finished by whoever coordinates it next, never torn.
* **Expiry**: an Ongoing transaction older than its timeout is aborted with a bumped
  epoch, so the producer's next EndTxn or AddPartitions gets PRODUCER_FENCED (Kafka's
  abortTimedOutTransactions). A transactional id with no transaction open (Empty,
  CompleteCommit, CompleteAbort) and no state change for ``transactional.id.expiration.ms``
  (7 days) is removed: a tombstone in `__transaction_state`, then out of the cache (Kafka's
  removeExpiredTransactionalIds, every
  ``transaction.remove.expired.transaction.cleanup.interval.ms``); its next InitProducerId
  starts afresh with a new producer id.

Errors are Kafka's: a different producer id is INVALID_PRODUCER_ID_MAPPING, an older
epoch PRODUCER_FENCED, a request that does not fit the state INVALID_TXN_STATE.
KIP-890 part 1: partition leaders ask `verify_partitions` (AddPartitionsToTxn v4
``VerifyOnly``, `workbench.broker.txn_verification`) before a producer's first
transactional write to a partition. Transaction version 2 (KIP-890 part 2: epoch bump
per transaction, implicit partition add) is not implemented: no client we test uses it
(EndTxn v5+, Produce v12 and the ``transaction.version`` feature are not advertised).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from workbench.broker.group_offsets import partition_for
from workbench.broker.groups_manager import OFFSETS_TOPIC
from workbench.broker.shutdown import cancel_and_wait
from workbench.broker.transaction_log import MAX_PRODUCER_EPOCH, TransactionMetadata, TxnState
from workbench.broker.transaction_marker_channel import TransactionMarkerChannel
from workbench.broker.transaction_state_manager import TransactionStateManager, TxnPartition
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.transaction_state_manager import TransactionBroker

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
_PREPARE = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT, TxnState.PREPARE_EPOCH_FENCE)
#: States in which a transactional id may expire (Kafka: no transaction in flight).
_IDLE = (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
#: How long EndTxn waits for the markers before answering (the decision is durable already).
END_TXN_MARKER_WAIT_S = 5.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class TransactionCoordinator:
    def __init__(self, broker: TransactionBroker, sasl_login: tuple[str, str, str] | None = None) -> None:
        self.broker = broker
        self.state = TransactionStateManager(broker, self._resume_partition)
        self.markers = TransactionMarkerChannel(broker, sasl_login)
        self._tasks: set[asyncio.Task] = set()
        self._expiry: asyncio.Task | None = None
        self._id_expiry: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.state.start()
        self._expiry = asyncio.get_running_loop().create_task(self._expiry_loop())
        self._id_expiry = asyncio.get_running_loop().create_task(self._id_expiry_loop())

    def reconcile(self) -> None:
        self.state.reconcile()

    async def close(self) -> None:
        self.state.close()
        await cancel_and_wait([*self._tasks, *(t for t in (self._expiry, self._id_expiry) if t is not None)])
        self.markers.close()

    def _spawn(self, coro) -> asyncio.Task:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- InitProducerId --------------------------------------------------------------------------

    async def init_producer_id(
        self, transactional_id: str, timeout_ms: int, producer_id: int = -1, producer_epoch: int = -1
    ) -> tuple[ErrorCode, int, int]:
        """(error, producer id, epoch) for a transactional producer starting up."""
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST, -1, -1
        max_ms = self.broker.config.transaction_max_timeout_ms
        if timeout_ms <= 0 or timeout_ms > max_ms:
            return ErrorCode.INVALID_TRANSACTION_TIMEOUT, -1, -1
        try:
            part = await self.state.partition_for_soon(transactional_id)
            async with part.lock(transactional_id):
                meta = part.txns.get(transactional_id)
                now = _now_ms()
                if meta is None:
                    pid = await self.broker.allocate_producer_id()
                    new = TransactionMetadata(transactional_id, pid, 0, timeout_ms, TxnState.EMPTY, set(), -1, now)
                    await part.write(new)
                    return ErrorCode.NONE, pid, 0
                if meta.state in _PREPARE:
                    return ErrorCode.CONCURRENT_TRANSACTIONS, -1, -1
                if producer_id >= 0 and (
                    producer_id != meta.producer_id
                    or producer_epoch not in (meta.producer_epoch, meta.last_producer_epoch)
                ):
                    return ErrorCode.PRODUCER_FENCED, -1, -1
                if meta.state == TxnState.ONGOING:
                    # Fence the previous incarnation: abort its transaction with a bumped epoch.
                    await self._prepare_end(part, meta, commit=False, bump_epoch=True)
                    return ErrorCode.CONCURRENT_TRANSACTIONS, -1, -1
                if meta.producer_epoch + 1 > MAX_PRODUCER_EPOCH:
                    pid, epoch = await self.broker.allocate_producer_id(), 0
                else:
                    pid, epoch = meta.producer_id, meta.producer_epoch + 1
                new = meta.copy(
                    producer_id=pid,
                    producer_epoch=epoch,
                    last_producer_epoch=meta.producer_epoch,
                    timeout_ms=timeout_ms,
                    state=TxnState.EMPTY,
                    partitions=set(),
                    start_ms=-1,
                    update_ms=now,
                )
                await part.write(new)
                return ErrorCode.NONE, pid, epoch
        except KafkaProtocolError as exc:
            return ErrorCode(exc.code), -1, -1

    # -- AddPartitionsToTxn / AddOffsetsToTxn ---------------------------------------------------

    def _check_producer(
        self, meta: TransactionMetadata | None, producer_id: int, producer_epoch: int
    ) -> ErrorCode | None:
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if producer_epoch != meta.producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        return None

    async def add_partitions(
        self, transactional_id: str, producer_id: int, producer_epoch: int, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, ErrorCode]:
        """Per-partition errors; unknown partitions fail and the rest are not attempted, as Kafka."""
        unknown = [tp for tp in partitions if not self._exists(tp)]
        if unknown:
            return {
                tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if tp in unknown else ErrorCode.OPERATION_NOT_ATTEMPTED
                for tp in partitions
            }
        code = await self._add(transactional_id, producer_id, producer_epoch, set(partitions))
        return dict.fromkeys(partitions, code)

    async def add_offsets(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str
    ) -> ErrorCode:
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        await self.broker.groups.ensure_offsets_topic()
        tp = (OFFSETS_TOPIC, partition_for(group_id, self.broker.groups.num_partitions))
        return await self._add(transactional_id, producer_id, producer_epoch, {tp})

    def verify_partitions(
        self, transactional_id: str, producer_id: int, producer_epoch: int, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, ErrorCode]:
        """KIP-890 part 1 (AddPartitionsToTxn v4 ``VerifyOnly``, Kafka's
        handleVerifyPartitionsInTransaction): is each partition in the producer's ongoing
        transaction? Nothing is written. A partition that is not gets INVALID_TXN_STATE (v4's
        code; v5+ would say TRANSACTION_ABORTABLE); an unknown id INVALID_PRODUCER_ID_MAPPING, an
        older epoch PRODUCER_FENCED, a transaction being decided CONCURRENT_TRANSACTIONS. No lock:
        partitions join the metadata once their add is durable and leave at Complete*, so a read
        is enough (the leader checks its guard again when it appends)."""
        if not transactional_id:
            return dict.fromkeys(partitions, ErrorCode.INVALID_REQUEST)
        try:
            meta = self.state.partition_for(transactional_id).txns.get(transactional_id)
        except KafkaProtocolError as exc:
            return dict.fromkeys(partitions, ErrorCode(exc.code))
        if meta is None or meta.producer_id != producer_id:
            return dict.fromkeys(partitions, ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        if meta.producer_epoch != producer_epoch:
            return dict.fromkeys(partitions, ErrorCode.PRODUCER_FENCED)
        if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
            return dict.fromkeys(partitions, ErrorCode.CONCURRENT_TRANSACTIONS)
        ongoing = meta.state == TxnState.ONGOING
        return {
            tp: ErrorCode.NONE if ongoing and tp in meta.partitions else ErrorCode.INVALID_TXN_STATE
            for tp in partitions
        }

    def _exists(self, tp: TopicPartition) -> bool:
        topic = self.broker.image.topics.get(tp[0])
        return topic is not None and tp[1] in topic.partitions

    async def _add(
        self, transactional_id: str, producer_id: int, producer_epoch: int, partitions: set[TopicPartition]
    ) -> ErrorCode:
        try:
            part = await self.state.partition_for_soon(transactional_id)
            async with part.lock(transactional_id):
                meta = part.txns.get(transactional_id)
                err = self._check_producer(meta, producer_id, producer_epoch)
                if err is not None:
                    return err
                assert meta is not None
                if meta.state in _PREPARE:
                    return ErrorCode.CONCURRENT_TRANSACTIONS
                if meta.state == TxnState.DEAD:
                    return ErrorCode.INVALID_TXN_STATE
                if meta.state == TxnState.ONGOING and partitions <= meta.partitions:
                    return ErrorCode.NONE
                now = _now_ms()
                new = meta.copy(
                    state=TxnState.ONGOING,
                    partitions=meta.partitions | partitions if meta.state == TxnState.ONGOING else set(partitions),
                    start_ms=meta.start_ms if meta.state == TxnState.ONGOING else now,
                    update_ms=now,
                )
                await part.write(new)
                return ErrorCode.NONE
        except KafkaProtocolError as exc:
            return ErrorCode(exc.code)

    # -- EndTxn ----------------------------------------------------------------------------------

    async def end_transaction(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> ErrorCode:
        try:
            part = await self.state.partition_for_soon(transactional_id)
            async with part.lock(transactional_id):
                meta = part.txns.get(transactional_id)
                err = self._check_producer(meta, producer_id, producer_epoch)
                if err is not None:
                    return err
                assert meta is not None
                state = meta.state
                if state == TxnState.ONGOING:
                    completion = await self._prepare_end(part, meta, commit=commit, bump_epoch=False)
                else:
                    completion = None
            if completion is not None:
                # The decision is durable: the answer is NONE whatever happens next. Waiting (a
                # bounded while) for the markers gives read-your-writes: a read_committed query
                # right after commit_transaction() returns sees the transaction. Kafka answers
                # before the markers; clients cannot tell the difference but for that.
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(completion), END_TXN_MARKER_WAIT_S)
                return ErrorCode.NONE
            if (state, commit) in ((TxnState.COMPLETE_COMMIT, True), (TxnState.COMPLETE_ABORT, False)):
                return ErrorCode.NONE  # a retry of what already happened
            if (state, commit) in ((TxnState.PREPARE_COMMIT, True), (TxnState.PREPARE_ABORT, False)):
                return ErrorCode.CONCURRENT_TRANSACTIONS
            return ErrorCode.INVALID_TXN_STATE
        except KafkaProtocolError as exc:
            return ErrorCode(exc.code)

    async def _prepare_end(
        self, part: TxnPartition, meta: TransactionMetadata, *, commit: bool, bump_epoch: bool
    ) -> asyncio.Task:
        """Make the decision durable (Prepare*), then finish it in the background. Caller holds the lock."""
        epoch = meta.producer_epoch + 1 if bump_epoch else meta.producer_epoch
        prepared = meta.copy(
            state=TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT,
            producer_epoch=epoch,
            last_producer_epoch=meta.producer_epoch if bump_epoch else meta.last_producer_epoch,
            update_ms=_now_ms(),
        )
        await part.write(prepared)
        return self._spawn(self._complete(part, prepared))

    async def _complete(self, part: TxnPartition, prepared: TransactionMetadata) -> None:
        """Markers to every partition, then Complete* (retried until done or no longer coordinator)."""
        commit = prepared.state == TxnState.PREPARE_COMMIT
        tid = prepared.transactional_id
        try:
            done = await self.markers.send(
                prepared.producer_id,
                prepared.producer_epoch,
                commit,
                part.coordinator_epoch,
                sorted(prepared.partitions),
                lambda: not part.closed,
            )
            if not done:
                return
            delay = 0.05
            while not part.closed:
                try:
                    async with part.lock(tid):
                        if part.txns.get(tid) is not prepared:
                            return
                        await part.write(
                            prepared.copy(
                                state=TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT,
                                partitions=set(),
                                update_ms=_now_ms(),
                            )
                        )
                    return
                except KafkaProtocolError as exc:
                    log.info("completing transaction %s failed (%s); retrying", tid, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("completing transaction %s failed", tid)

    def _resume_partition(self, part: TxnPartition) -> None:
        """A partition just loaded (failover): finish the transactions its old coordinator had decided."""
        for meta in list(part.txns.values()):
            if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
                log.info("resuming %s of transaction %s", meta.state.kafka_name, meta.transactional_id)
                self._spawn(self._complete(part, meta))

    # -- expiry ----------------------------------------------------------------------------------

    async def _expiry_loop(self) -> None:
        interval = self.broker.config.transaction_abort_timed_out_transaction_cleanup_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.abort_timed_out_transactions()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("aborting timed-out transactions failed")

    async def _id_expiry_loop(self) -> None:
        interval = self.broker.config.transaction_remove_expired_transaction_cleanup_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.remove_expired_transactional_ids()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("removing expired transactional ids failed")

    async def remove_expired_transactional_ids(self) -> int:
        """Remove every id idle (no open transaction, no change) for transactional.id.expiration.ms."""
        expire_ms = self.broker.config.transactional_id_expiration_ms
        now = _now_ms()
        removed = 0
        for part, meta in self.state.all_transactions():
            if meta.state not in _IDLE or now - meta.update_ms <= expire_ms:
                continue
            async with part.lock(meta.transactional_id):
                if part.txns.get(meta.transactional_id) is not meta or part.closed:
                    continue  # changed (or moved) meanwhile
                try:
                    await part.remove(meta.transactional_id)
                except KafkaProtocolError as exc:
                    log.info("expiring transactional id %s failed: %s", meta.transactional_id, exc)
                    continue
                removed += 1
                log.info(
                    "transactional id %s (producer %d) idle for %d ms: expired",
                    meta.transactional_id,
                    meta.producer_id,
                    now - meta.update_ms,
                )
        return removed

    async def abort_timed_out_transactions(self) -> int:
        now = _now_ms()
        aborted = 0
        for part, meta in self.state.all_transactions():
            if meta.state != TxnState.ONGOING or now - meta.start_ms <= meta.timeout_ms:
                continue
            async with part.lock(meta.transactional_id):
                current = part.txns.get(meta.transactional_id)
                if current is not meta or part.closed:
                    continue
                log.info(
                    "transaction %s (producer %d) timed out after %d ms: aborting and fencing the producer",
                    meta.transactional_id,
                    meta.producer_id,
                    now - meta.start_ms,
                )
                try:
                    await self._prepare_end(part, meta, commit=False, bump_epoch=True)
                    aborted += 1
                except KafkaProtocolError as exc:
                    log.info("aborting timed-out transaction %s failed: %s", meta.transactional_id, exc)
        return aborted
