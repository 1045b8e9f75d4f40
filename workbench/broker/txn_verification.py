"""KIP-890 part 1: a partition leader verifies a transactional write with the coordinator.

Without it a transactional batch is appended on the producer's word alone, and one that
arrives late (a retry after the producer aborted, a zombie of the same epoch, a bug) opens
a transaction at this partition that no coordinator knows of: a *hanging transaction* that
no marker will ever close, pinning the partition's last stable offset so every
read_committed reader stops there. Kafka 3.6 closed that hole (``ReplicaManager``'s
verification with ``AddPartitionsToTxnManager``, ``transaction.partition.verification.enable``,
default true), and so does this module:

* `verify_produce`, before a Produce with a transactional id is appended: for each partition
  whose batch is transactional and whose producer has no transaction open here, take the
  partition's verification guard (`ProducerStateManager.maybe_create_verification_state_entry`,
  Kafka's VerificationStateEntry) and ask the transaction coordinator whether the partition is
  in the producer's ongoing transaction: AddPartitionsToTxn v4 with ``VerifyOnly``, one request
  per coordinator for every produce waiting meanwhile (`TransactionVerifier`), or a direct
  look-up when this broker is the coordinator. The produce awaits the answer; the event loop
  does not.
* `Verification.check`, right before the append (no await in between): a partition the
  coordinator did not confirm fails; so does one whose guard was spent by a marker written
  meanwhile (the transaction ended while we asked). Either way nothing is appended and no
  open transaction starts here.

Errors as Kafka gives them to Produce v<11 (ReplicaManager's postVerificationCallback and
AddPartitionsToTxnManager): a partition not in the transaction INVALID_TXN_STATE;
PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH; a coordinator that cannot answer now
(CONCURRENT_TRANSACTIONS, NETWORK_EXCEPTION, COORDINATOR_LOAD_IN_PROGRESS,
COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) NOT_ENOUGH_REPLICAS, which every client retries
without a metadata refresh. A batch of an epoch older than the producer's epoch at this
partition is refused before any question (INVALID_PRODUCER_EPOCH, KAFKA-18042).

`verify_offsets` does the same for TxnOffsetCommit (Kafka 3.6 verifies the group's
`__consumer_offsets` partition too), its errors as Kafka's maybeConvertOffsetCommitError gives them.

Non-transactional produce never gets here (`produce` calls in only when the request has a
transactional id), and a producer whose transaction is already open at the partition needs
no question: the cost is one round trip per (transaction, partition), like AddPartitionsToTxn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kafka.protocol.producer import AddPartitionsToTxnRequest

from workbench.broker.network_client import BrokerConnection
from workbench.broker.shutdown import cancel_and_wait
from workbench.protocol.codec import build
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import HEADER, HEADER_SIZE, TRANSACTIONAL_MASK
from workbench.storage.producer_state import VerificationGuard

if TYPE_CHECKING:
    from workbench.broker.partition import Partition
    from workbench.broker.replica_manager import ReplicaManager
    from workbench.broker.transaction_coordinator import TransactionCoordinator
    from workbench.controller.image import MetadataImage

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
#: AddPartitionsToTxn's first broker-to-broker version (batched, VerifyOnly).
VERIFY_VERSION = 4
#: How long a leader waits for the coordinator's answer (Kafka: request.timeout.ms of its
#: AddPartitionsToTxnManager, 30 s; shorter here so a producer retries sooner).
VERIFY_TIMEOUT_S = 10.0
#: Coordinator errors that mean "ask again later": a Produce v<11 client retries NOT_ENOUGH_REPLICAS.
_RETRIABLE = frozenset(
    {
        ErrorCode.CONCURRENT_TRANSACTIONS,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
    }
)


class Broker(Protocol):
    """The parts of the broker verification uses."""

    node_id: int
    replicas: ReplicaManager
    txn: TransactionCoordinator
    txn_verifier: TransactionVerifier

    @property
    def image(self) -> MetadataImage: ...


_MAGIC_AT = 16  # base offset (8), batch length (4), partition leader epoch (4), then magic


def _code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:  # a code this broker does not name (a newer coordinator's)
        return ErrorCode.UNKNOWN_SERVER_ERROR


def produce_error(code: ErrorCode) -> tuple[ErrorCode, str] | None:
    """The Produce error for a coordinator's verification answer (None: verified)."""
    if code == ErrorCode.NONE:
        return None
    if code == ErrorCode.INVALID_TXN_STATE:
        return code, "Partition was not added to the transaction"
    if code == ErrorCode.PRODUCER_FENCED:
        return ErrorCode.INVALID_PRODUCER_EPOCH, "the transaction coordinator fenced this producer epoch"
    if code in _RETRIABLE:
        return (
            ErrorCode.NOT_ENOUGH_REPLICAS,
            f"Unable to verify the partition has been added to the transaction. Underlying error: {code.name}",
        )
    return code, f"transaction verification failed: {code.name}"


@dataclass(slots=True)
class _Pending:
    """One partition's verification: its producer, its guard (None: a transaction is open here
    already), and the refusal if there is one."""

    producer_id: int
    guard: VerificationGuard | None
    error: tuple[ErrorCode, str] | None = None


@dataclass(slots=True)
class Verification:
    """The outcome of `verify_produce` for one Produce request, checked per partition at append."""

    partitions: dict[TopicPartition, _Pending] = field(default_factory=dict)

    def check(self, partition: Partition, topic: str, index: int) -> None:
        """Raise the partition's refusal, or INVALID_TXN_STATE if its guard is no longer current.

        Called right before `partition.log.append` with no await in between, so a marker cannot
        slip between this check and the write."""
        pending = self.partitions.get((topic, index))
        if pending is None:
            return
        if pending.error is not None:
            raise KafkaProtocolError(*pending.error)
        producers = partition.log.producers
        pid = pending.producer_id
        if pid in producers.transactions.ongoing:
            return  # open here (this producer's earlier batch, maybe of a request beside this one)
        if pending.guard is None or producers.verification_guard(pid) is not pending.guard:
            raise KafkaProtocolError(
                ErrorCode.INVALID_TXN_STATE,
                "Record was not part of an ongoing transaction (it ended while the partition was verified)",
            )


def _first_batch(records: Any) -> tuple[int, int, int, int] | None:
    """(producer id, epoch, base sequence, attributes) of a v2 batch's header; None for an older format."""
    if records is None or len(records) < HEADER_SIZE or records[_MAGIC_AT] != 2:
        return None
    fields = HEADER.unpack_from(records, 0)
    return fields[9], fields[10], fields[11], fields[5]


async def verify_produce(broker: Broker, transactional_id: str, topic_data: Iterable[Any]) -> Verification | None:
    """Verify every partition of a transactional Produce whose producer has no transaction open
    there; None if verification is off (``transaction.partition.verification.enable``)."""
    verifier = broker.txn_verifier
    if not verifier.enabled:
        return None
    result = Verification()
    asks: dict[tuple[int, int], list[TopicPartition]] = {}
    for topic in topic_data:
        for pd in topic.partition_data:
            first = _first_batch(pd.records)
            if first is None or not first[3] & TRANSACTIONAL_MASK or first[0] < 0:
                continue
            partition = broker.replicas.partition(topic.name, pd.index)
            if partition is None or not partition.is_leader:
                continue  # the produce loop answers the partition's own error
            pid, epoch, sequence, _attributes = first
            _prepare(result, asks, partition, (topic.name, pd.index), pid, epoch, sequence)
    await _ask(verifier, transactional_id, result, asks, produce_error)
    return result


def _prepare(
    result: Verification,
    asks: dict[tuple[int, int], list[TopicPartition]],
    partition: Partition,
    tp: TopicPartition,
    pid: int,
    epoch: int,
    sequence: int,
) -> None:
    """Decide whether ``tp`` needs the coordinator's word, and take its guard if so."""
    producers = partition.log.producers
    if pid in producers.transactions.ongoing:
        result.partitions[tp] = _Pending(pid, None)
        return
    known = producers.producers.get(pid)
    if known is not None and epoch < known.epoch:
        error = (
            ErrorCode.INVALID_PRODUCER_EPOCH,
            f"producer {pid}: epoch {epoch} is older than the current {known.epoch}",
        )
        result.partitions[tp] = _Pending(pid, None, error)
        return
    guard = producers.maybe_create_verification_state_entry(pid, sequence, epoch)
    result.partitions[tp] = _Pending(pid, guard)
    asks.setdefault((pid, epoch), []).append(tp)


async def _ask(
    verifier: TransactionVerifier,
    transactional_id: str,
    result: Verification,
    asks: dict[tuple[int, int], list[TopicPartition]],
    mapping: Callable[[ErrorCode], tuple[ErrorCode, str] | None],
) -> None:
    for (pid, epoch), tps in asks.items():
        answers = await verifier.verify(transactional_id, pid, epoch, tps)
        for tp in tps:
            error = mapping(answers.get(tp, ErrorCode.UNKNOWN_SERVER_ERROR))
            if error is not None:
                result.partitions[tp].error = error
                log.info(
                    "%s-%d: transactional write of producer %d epoch %d (%s) refused: %s",
                    *tp,
                    pid,
                    epoch,
                    transactional_id,
                    error[1],
                )


def offset_commit_error(code: ErrorCode) -> tuple[ErrorCode, str] | None:
    """TxnOffsetCommit's error for a verification answer (Kafka's maybeConvertOffsetCommitError,
    and PRODUCER_FENCED as this broker answers an old epoch in TxnOffsetCommit)."""
    if code == ErrorCode.NONE:
        return None
    if code == ErrorCode.INVALID_TXN_STATE:
        return code, "the offsets partition was not added to the transaction (AddOffsetsToTxn)"
    if code in (ErrorCode.PRODUCER_FENCED, ErrorCode.INVALID_PRODUCER_EPOCH):
        return ErrorCode.PRODUCER_FENCED, "the transaction coordinator fenced this producer epoch"
    if code == ErrorCode.NETWORK_EXCEPTION:
        return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, "the transaction coordinator did not answer; retry"
    return code, f"transaction verification failed: {code.name}"


async def verify_offsets(
    broker: Broker,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    partition: Partition,
    tp: TopicPartition,
) -> Verification | None:
    """Kafka 3.6's verification of a TxnOffsetCommit: the group's `__consumer_offsets` partition
    must be in the producer's transaction (AddOffsetsToTxn) before its offsets are written there,
    else they would open a transaction there that nothing ends. None if verification is off."""
    verifier = broker.txn_verifier
    if not verifier.enabled or producer_id < 0:
        return None
    result = Verification()
    asks: dict[tuple[int, int], list[TopicPartition]] = {}
    _prepare(result, asks, partition, tp, producer_id, producer_epoch, -1)
    await _ask(verifier, transactional_id, result, asks, offset_commit_error)
    return result


@dataclass(slots=True)
class _Ask:
    producer_id: int
    producer_epoch: int
    partitions: list[TopicPartition]
    future: asyncio.Future


class TransactionVerifier:
    """Kafka's ``AddPartitionsToTxnManager``: verification questions, batched per coordinator.

    One AddPartitionsToTxn v4 request at a time per coordinator; the questions that arrive while
    it is in flight go together in the next one (one transaction entry per transactional id; a
    second question for an id already in the round waits for the next round)."""

    def __init__(self, broker: Broker, sasl_login: tuple[str, str, str] | None = None, *, enabled: bool = True) -> None:
        self.broker = broker
        self.enabled = enabled
        self._sasl_login = sasl_login  # [security] inter-broker credentials
        self._queues: dict[int, dict[str, list[_Ask]]] = {}
        self._senders: dict[int, asyncio.Task] = {}
        self._conns: dict[int, BrokerConnection] = {}
        #: verification requests sent to other brokers (for tests and the curious)
        self.requests_sent = 0

    async def verify(
        self, transactional_id: str, producer_id: int, producer_epoch: int, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, ErrorCode]:
        """The coordinator's answer per partition (NONE: in the ongoing transaction)."""
        node = self.broker.txn.state.coordinator_node(transactional_id)
        if node == self.broker.node_id:
            return self.broker.txn.verify_partitions(transactional_id, producer_id, producer_epoch, partitions)
        if node < 0 or node not in self.broker.image.brokers:
            return dict.fromkeys(partitions, ErrorCode.COORDINATOR_NOT_AVAILABLE)
        future = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(node, {})
        queue.setdefault(transactional_id, []).append(_Ask(producer_id, producer_epoch, partitions, future))
        sender = self._senders.get(node)
        if sender is None or sender.done():
            self._senders[node] = asyncio.get_running_loop().create_task(self._send_loop(node))
        return await future

    async def _send_loop(self, node: int) -> None:
        queue = self._queues.setdefault(node, {})
        while queue:
            round_: dict[str, list[_Ask]] = {}
            for tid in list(queue):
                asks = queue[tid]
                head = asks[0]
                same = [a for a in asks if (a.producer_id, a.producer_epoch) == (head.producer_id, head.producer_epoch)]
                round_[tid] = same
                rest = [a for a in asks if a not in same]
                if rest:
                    queue[tid] = rest
                else:
                    del queue[tid]
            try:
                answers = await self._send(node, round_)
            except asyncio.CancelledError:
                for asks in round_.values():
                    for a in asks:
                        if not a.future.done():
                            a.future.cancel()
                raise
            except Exception:  # an answer we cannot read: the produces retry (NETWORK_EXCEPTION)
                log.exception("AddPartitionsToTxn (verify) to broker %d failed", node)
                answers = {}
            for tid, asks in round_.items():
                for a in asks:
                    if not a.future.done():
                        got = answers.get(tid, {})
                        a.future.set_result({tp: got.get(tp, ErrorCode.NETWORK_EXCEPTION) for tp in a.partitions})

    async def _send(self, node: int, round_: dict[str, list[_Ask]]) -> dict[str, dict[TopicPartition, ErrorCode]]:
        info = self.broker.image.brokers.get(node)

        def all_failed(code: ErrorCode) -> dict[str, dict[TopicPartition, ErrorCode]]:
            return {tid: {tp: code for a in asks for tp in a.partitions} for tid, asks in round_.items()}

        if info is None:
            return all_failed(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        conn = self._conns.get(node)
        if conn is None or (conn.host, conn.port) != (info.host, info.port):
            if conn is not None:
                conn.close()
            conn = self._conns[node] = BrokerConnection(
                info.host, info.port, client_id=f"txn-verifier-{self.broker.node_id}", sasl=self._sasl_login
            )  # [security]
        transactions = []
        for tid, asks in round_.items():
            topics: dict[str, set[int]] = {}
            for a in asks:
                for topic, index in a.partitions:
                    topics.setdefault(topic, set()).add(index)
            transactions.append(
                {
                    "transactional_id": tid,
                    "producer_id": asks[0].producer_id,
                    "producer_epoch": asks[0].producer_epoch,
                    "verify_only": True,
                    "topics": [{"name": t, "partitions": sorted(ps)} for t, ps in topics.items()],
                }
            )
        request = build(AddPartitionsToTxnRequest, {"transactions": transactions})
        self.requests_sent += 1
        try:
            response = await conn.request(request, VERIFY_VERSION, timeout=VERIFY_TIMEOUT_S)
        except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("AddPartitionsToTxn (verify) to broker %d failed: %s", node, exc)
            return all_failed(ErrorCode.NETWORK_EXCEPTION)
        if response.error_code:
            return all_failed(_code(response.error_code))
        out: dict[str, dict[TopicPartition, ErrorCode]] = {}
        for txn in response.results_by_transaction:
            got = out.setdefault(txn.transactional_id, {})
            for topic in txn.topic_results:
                for p in topic.results_by_partition:
                    got[(topic.name, p.partition_index)] = _code(p.partition_error_code)
        return out

    async def close(self) -> None:
        await cancel_and_wait(self._senders.values())
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
