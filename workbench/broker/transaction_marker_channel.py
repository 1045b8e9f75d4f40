"""Transaction markers: how a decided transaction reaches every partition it wrote.

Kafka's ``TransactionMarkerChannelManager`` (coordinator side) and the
WriteTxnMarkers path of ``ReplicaManager`` (partition leader side):

* `TransactionMarkerChannel.send` groups the transaction's partitions by their
  current leader and sends each leader one WriteTxnMarkers request (this broker's
  own partitions are written directly), retrying what failed (leader moved, not
  enough replicas, timeout) with backoff until every partition has its marker, the
  partition is gone, or this broker stops being the coordinator (the next one
  resumes from `__transaction_state`);
* `append_markers` writes one control batch per partition as its leader, with
  acks=all semantics (it answers once the high watermark covers the marker, refusing with
  NOT_ENOUGH_REPLICAS while the ISR is below `min.insync.replicas`, before the append and
  after it, as for a client's acks=all batch: a marker acknowledged by a leader alone in
  its ISR lives in one page cache, and if a power loss there takes it back, the coordinator
  has already completed the transaction and never re-sends it; the partition's next marker
  for that producer, an abort, would then decide this transaction's records too), and
  for a `__consumer_offsets` partition makes the group coordinator apply or drop the
  transaction's offsets (TxnOffsetCommit).

A marker written twice (a retry after a lost answer) is harmless: the second one
closes nothing, because the coordinator lets no new transaction start until every marker is
acknowledged. A *deposed* coordinator's marker arriving after its successor's (a late request,
a retry) would end the producer's next transaction with the old decision: partition leaders
fence markers older than the producer's last coordinator epoch (TRANSACTION_COORDINATOR_FENCED,
`ProducerStateManager.check`), as Kafka does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from kafka.protocol.producer import WriteTxnMarkersRequest

from workbench.broker.groups_manager import OFFSETS_TOPIC
from workbench.broker.network_client import BrokerConnection
from workbench.broker.partition import NotLeaderError
from workbench.protocol.codec import build
from workbench.protocol.control_records import build_control_batch
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

if TYPE_CHECKING:
    from workbench.broker.transaction_state_manager import TransactionBroker

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
WRITE_TXN_MARKERS_VERSION = 1
#: How long a leader waits for its ISR to have a marker before answering (acks=all).
MARKER_REPLICATION_TIMEOUT_S = 5.0
#: Errors after which a partition needs no marker (any more). TRANSACTION_COORDINATOR_FENCED: a
#: newer coordinator wrote this producer's markers there (this one was deposed; its successor
#: finishes the transaction from `__transaction_state`). Not UNKNOWN_TOPIC_OR_PARTITION: a leader
#: that has just restarted answers it until its metadata image has the topic again, and taking it
#: for "deleted" lost the marker (the committed records stayed in an open transaction; issue 12).
#: Whether a topic is gone is this broker's own image's to say (`send`), as in Kafka's
#: TransactionMarkerRequestCompletionHandler, which retries UNKNOWN_TOPIC_OR_PARTITION.
_DONE = (
    ErrorCode.NONE,
    ErrorCode.INVALID_PRODUCER_EPOCH,
    ErrorCode.TRANSACTION_COORDINATOR_FENCED,
)


async def append_markers(
    broker: TransactionBroker,
    producer_id: int,
    producer_epoch: int,
    commit: bool,
    coordinator_epoch: int,
    partitions: Iterable[TopicPartition],
) -> dict[TopicPartition, ErrorCode]:
    """As the leader of each partition: write the marker, wait for the ISR, apply group offsets."""
    results: dict[TopicPartition, ErrorCode] = {}
    waits = []
    for topic, index in partitions:
        tp = (topic, index)
        partition = broker.replicas.partition(topic, index)
        if topic not in broker.image.topics or index not in broker.image.topics[topic].partitions:
            results[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            continue
        if partition is None or not partition.is_leader:
            results[tp] = ErrorCode.NOT_LEADER_OR_FOLLOWER
            continue
        batch = build_control_batch(
            producer_id,
            producer_epoch,
            commit=commit,
            coordinator_epoch=coordinator_epoch,
            timestamp_ms=int(time.time() * 1000),
        )
        min_isr = broker.replicas.min_insync_replicas(topic)
        if len(partition.info.isr) < min_isr:
            results[tp] = ErrorCode.NOT_ENOUGH_REPLICAS
            continue
        leader_epoch = partition.leader_epoch
        try:
            info = partition.log.append(
                batch, leader_epoch=leader_epoch, origin="coordinator", coordinator_epoch=coordinator_epoch
            )
        except KafkaProtocolError as exc:
            results[tp] = ErrorCode(exc.code)
            continue
        except OSError:
            results[tp] = ErrorCode.KAFKA_STORAGE_ERROR
            continue
        broker.note_write()
        broker.replicas.notify(tp)
        partition.maybe_advance_high_watermark()
        waits.append((tp, partition, info.last_offset + 1, leader_epoch))

    async def wait(tp: TopicPartition, partition, offset: int, leader_epoch: int) -> None:  # type: ignore[no-untyped-def]
        try:
            ok = await partition.wait_for_high_watermark(offset, MARKER_REPLICATION_TIMEOUT_S, leader_epoch)
        except NotLeaderError:
            results[tp] = ErrorCode.NOT_LEADER_OR_FOLLOWER
            return
        if not ok or len(partition.info.isr) < broker.replicas.min_insync_replicas(tp[0]):
            results[tp] = ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
            return
        results[tp] = ErrorCode.NONE
        if tp[0] == OFFSETS_TOPIC:
            broker.groups.complete_transaction(tp[1], producer_id, commit)

    await asyncio.gather(*(wait(*w) for w in waits))
    return results


class TransactionMarkerChannel:
    """Sends a decided transaction's markers to the leaders of its partitions."""

    def __init__(self, broker: TransactionBroker, sasl_login: tuple[str, str, str] | None = None) -> None:
        self.broker = broker
        self._sasl_login = sasl_login  # [security] inter-broker credentials
        self._conns: dict[int, BrokerConnection] = {}

    async def send(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        partitions: Iterable[TopicPartition],
        still_coordinator: Callable[[], bool],
    ) -> bool:
        """Write the markers everywhere; False if coordinatorship was lost before that."""
        remaining = set(partitions)
        delay = 0.05
        while remaining:
            if not still_coordinator() or self.broker.is_stopping():
                return False
            by_leader: dict[int, list[TopicPartition]] = {}
            for tp in list(remaining):
                topic = self.broker.image.topics.get(tp[0])
                info = topic.partitions.get(tp[1]) if topic else None
                if info is None:
                    remaining.discard(tp)  # deleted: nothing to mark
                    continue
                if info.leader >= 0:
                    by_leader.setdefault(info.leader, []).append(tp)
            answers = await asyncio.gather(
                *(
                    self._send_to(leader, producer_id, producer_epoch, commit, coordinator_epoch, tps)
                    for leader, tps in by_leader.items()
                )
            )
            for answer in answers:
                for tp, code in answer.items():
                    if code in _DONE:
                        remaining.discard(tp)
                    else:
                        log.debug("marker for %s-%d not written yet: %s", *tp, ErrorCode(code).name)
            if remaining:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                self.broker.refresh_metadata()
        return True

    async def _send_to(
        self,
        leader: int,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        tps: list[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        if leader == self.broker.node_id:
            return await append_markers(self.broker, producer_id, producer_epoch, commit, coordinator_epoch, tps)
        info = self.broker.image.brokers.get(leader)
        if info is None:
            return {tp: ErrorCode.NOT_LEADER_OR_FOLLOWER for tp in tps}
        conn = self._conns.get(leader)
        if conn is None or (conn.host, conn.port) != (info.host, info.port):
            if conn is not None:
                conn.close()
            conn = self._conns[leader] = BrokerConnection(
                info.host,
                info.port,
                client_id=f"txn-marker-channel-{self.broker.node_id}",
                sasl=self._sasl_login,
            )  # [security]
        topics: dict[str, list[int]] = {}
        for topic, index in tps:
            topics.setdefault(topic, []).append(index)
        request = build(
            WriteTxnMarkersRequest,
            {
                "markers": [
                    {
                        "producer_id": producer_id,
                        "producer_epoch": producer_epoch,
                        "transaction_result": commit,
                        "topics": [{"name": t, "partition_indexes": ps} for t, ps in topics.items()],
                        "coordinator_epoch": coordinator_epoch,
                    }
                ]
            },
        )
        try:
            response = await conn.request(request, WRITE_TXN_MARKERS_VERSION, timeout=MARKER_REPLICATION_TIMEOUT_S + 5)
        except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("WriteTxnMarkers to broker %d failed: %s", leader, exc)
            return {tp: ErrorCode.NOT_LEADER_OR_FOLLOWER for tp in tps}
        out: dict[TopicPartition, ErrorCode] = {}
        for marker in response.markers:
            for topic in marker.topics:
                for p in topic.partitions:
                    out[(topic.name, p.partition_index)] = ErrorCode(p.error_code)
        return out

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
