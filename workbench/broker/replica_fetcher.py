"""Followers replicate by fetching from the leader, as in Kafka (`ReplicaFetcherThread`).

One task per leader broker sends ordinary Fetch requests (v12, with this
broker's id as `replica_id`, hand-encoded: `encode_fetch_request_v12`) for every partition this broker follows on that
leader. The leader learns each follower's log end offset from its fetch
offset; the follower appends the returned batches with the leader's offsets
and epochs untouched and takes the high watermark from the response.

Divergence (KIP-595's fetch-based truncation, as Kafka 2.7+ does for
followers): each fetch carries the epoch of the follower's last batch; if the
leader's log ended that epoch earlier, it answers with `diverging_epoch` and
the follower truncates to that boundary before fetching again. A restarted
replica with an uncommitted tail from an old epoch thus never keeps history
the leader does not have.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kafka.protocol.consumer import FetchResponse as _FetchResponse

from workbench.broker import round_trace
from workbench.broker.fetch_session import FetchSessionHandler
from workbench.broker.network_client import BrokerConnection, SaslLogin
from workbench.broker.shutdown import cancel_and_wait
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.fast_encode import encode_fetch_request_v12

if TYPE_CHECKING:
    from workbench.broker.partition import Partition
    from workbench.broker.replica_manager import ReplicaManager
    from workbench.controller.quorum import QuorumMetadataLog


def _encode_follower_fetch(
    cid: int,
    *,
    client_id: str,
    node_id: int,
    topics: list,
    session_id: int = 0,
    session_epoch: int = -1,
    forgotten: list | None = None,
) -> bytes:
    return encode_fetch_request_v12(
        cid,
        client_id,
        replica_id=node_id,
        max_wait_ms=FETCH_MAX_WAIT_MS,
        min_bytes=1,
        max_bytes=RESPONSE_MAX_BYTES,
        topics=topics,
        session_id=session_id,
        session_epoch=session_epoch,
        forgotten=forgotten,
    )


log = logging.getLogger(__name__)
_TRACE = round_trace.ON

FETCH_VERSION = 12
FETCH_MAX_WAIT_MS = 250
PARTITION_MAX_BYTES = 1 << 20
RESPONSE_MAX_BYTES = 16 << 20
BACKOFF_S = 0.1


class ReplicaFetcherManager:
    """One fetcher task per leader this broker follows partitions on.

    Gets what it uses, not the broker: the replica manager (whose partitions it follows), the
    metadata log (where leaders listen), the inter-broker SASL login, and two callbacks: refresh
    metadata after an error, and note a replicated write."""

    def __init__(
        self,
        node_id: int,
        replicas: ReplicaManager,
        metadata: QuorumMetadataLog,
        *,
        sasl_login: SaslLogin | None = None,
        refresh_metadata: Callable[[], None] = lambda: None,
        on_write: Callable[[], None] = lambda: None,
    ) -> None:
        self.node_id = node_id
        self.replicas = replicas
        self.metadata = metadata
        self._sasl_login = sasl_login
        self._refresh_metadata = refresh_metadata
        self._on_write = on_write
        self._tasks: dict[int, asyncio.Task] = {}
        self._closed = False

    def following(self, leader_id: int) -> list[Partition]:
        if self.replicas.log_dir_offline is not None:
            return []  # KIP-112: nothing on an offline log directory is replicated to
        return [p for p in self.replicas.partitions.values() if not p.is_leader and p.info.leader == leader_id]

    def update(self) -> None:
        """Start a fetcher for every leader we follow some partition on."""
        if self._closed:
            return
        leaders = {p.info.leader for p in self.replicas.partitions.values() if not p.is_leader and p.info.leader >= 0}
        loop = asyncio.get_event_loop()
        for leader in leaders:
            task = self._tasks.get(leader)
            if task is None or task.done():
                self._tasks[leader] = loop.create_task(self._run(leader))

    async def close(self) -> None:
        self._closed = True
        await cancel_and_wait(self._tasks.values())
        self._tasks.clear()

    async def _run(self, leader_id: int) -> None:
        conn: BrokerConnection | None = None
        session = FetchSessionHandler()
        try:
            while not self._closed:
                partitions = self.following(leader_id)
                if not partitions:
                    return
                info = self.metadata.image.brokers.get(leader_id)
                if info is None:
                    await asyncio.sleep(BACKOFF_S)
                    continue
                if conn is None or (conn.host, conn.port) != (info.host, info.port):
                    if conn is not None:
                        conn.close()
                    conn = BrokerConnection(
                        info.host,
                        info.port,
                        client_id=f"replica-fetcher-{self.node_id}-{leader_id}",
                        sasl=self._sasl_login,
                    )  # [security]
                    session.reset()  # a new connection (or leader address) starts a new session
                topics, sent = self._build_request(partitions)
                # KIP-227: name only the partitions whose position changed since the last fetch.
                wanted = {(t, p[0]): p for t, parts in topics for p in parts}
                session_id, epoch, changed, forgotten = session.build(wanted)
                by_topic: dict[str, list[Any]] = {}
                for (t, _), fields in changed.items():
                    by_topic.setdefault(t, []).append(fields)
                node_id, client_id = self.node_id, conn.client_id
                if _TRACE:
                    round_trace.mark("f_send", leader_id, [(t, p[0], p[2]) for t, parts in topics for p in parts])
                try:
                    response = await conn.request_frame(
                        functools.partial(
                            _encode_follower_fetch,
                            client_id=client_id,
                            node_id=node_id,
                            topics=list(by_topic.items()),
                            session_id=session_id,
                            session_epoch=epoch,
                            forgotten=forgotten,
                        ),
                        _FetchResponse,
                        FETCH_VERSION,
                        timeout=10.0,
                    )
                except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
                    log.debug("fetch from broker %d failed: %s", leader_id, exc)
                    conn.close()
                    session.reset()
                    await asyncio.sleep(BACKOFF_S)
                    continue
                session.handle_response(response.error_code, response.session_id)
                if response.error_code in (ErrorCode.FETCH_SESSION_ID_NOT_FOUND, ErrorCode.INVALID_FETCH_SESSION_EPOCH):
                    continue  # the session was evicted or lost (leader restart): a full fetch next
                if _TRACE:
                    round_trace.mark("f_received", leader_id)
                backoff = self._handle_response(response, sent)
                if _TRACE:
                    ends = [(p.topic, p.index, p.log.log_end_offset) for p in partitions]
                    round_trace.mark("f_appended", leader_id, ends)
                # flush.messages: fsync what we appended before the next Fetch reports our log
                # end to the leader, so the high watermark only counts durable copies.
                flushes = [self.replicas.flusher.flush(p.log) for p in partitions if p.log.needs_flush()]
                if flushes:
                    results = await asyncio.gather(*flushes, return_exceptions=True)
                    backoff |= any(isinstance(r, BaseException) for r in results)
                if backoff:
                    self._refresh_metadata()
                    await asyncio.sleep(BACKOFF_S)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("replica fetcher for leader %d failed", leader_id)
        finally:
            if conn is not None:
                conn.close()
            self._tasks.pop(leader_id, None)
            # Metadata may have changed while we stopped: restart if still needed.
            if not self._closed and self.following(leader_id):
                asyncio.get_event_loop().call_later(BACKOFF_S, self.update)

    def _build_request(
        self, partitions: list[Partition]
    ) -> tuple[list[tuple[str, list[Any]]], dict[tuple[str, int], tuple[Partition, int, int]]]:
        """The Fetch request's topics (`encode_fetch_request_v12`'s shape) and what was asked per partition."""
        by_topic: dict[str, list[Any]] = {}
        sent: dict[tuple[str, int], tuple[Partition, int, int]] = {}
        for p in partitions:
            plog = p.log
            fetch_offset = plog.log_end_offset
            by_topic.setdefault(p.topic, []).append(
                (
                    p.index,
                    p.leader_epoch,
                    fetch_offset,
                    plog.latest_epoch,
                    plog.log_start_offset,
                    PARTITION_MAX_BYTES,
                )
            )
            sent[(p.topic, p.index)] = (p, p.leader_epoch, fetch_offset)
        return list(by_topic.items()), sent

    def _handle_response(self, response: Any, sent: dict[tuple[str, int], tuple[Partition, int, int]]) -> bool:
        backoff = response.error_code != 0
        for topic in response.responses:
            for pr in topic.partitions:
                entry = sent.get((topic.topic, pr.partition_index))
                if entry is None:
                    continue
                partition, epoch, fetch_offset = entry
                current = self.replicas.partition(topic.topic, pr.partition_index)
                if current is not partition or partition.is_leader or partition.leader_epoch != epoch:
                    continue  # metadata moved on while the fetch was in flight
                try:
                    backoff |= self._apply(partition, pr, fetch_offset)
                except KafkaProtocolError as exc:
                    log.warning("replicating %s-%d: %s", partition.topic, partition.index, exc)
                    if exc.code == ErrorCode.KAFKA_STORAGE_ERROR:
                        self.replicas.mark_log_dir_offline(exc.message)
                    backoff = True
        return backoff

    @staticmethod
    def _follow_log_start(partition: Partition, leader_log_start: int) -> None:
        """Apply the leader's log start offset (DeleteRecords, retention), as Kafka's followers do
        with the Fetch response's `log_start_offset`: never past our own high watermark (Kafka's
        maybeIncrementLogStartOffset rule); the rest follows with later fetches. The log
        checkpoints it, so the deleted records stay deleted after a restart or a leader change."""
        plog = partition.log
        target = min(leader_log_start, plog.high_watermark)
        if target > plog.log_start_offset:
            plog.delete_records(target)
            log.info(
                "%s-%d: log start offset raised to %d, following the leader",
                partition.topic,
                partition.index,
                plog.log_start_offset,
            )

    def _apply(self, partition: Partition, pr: Any, fetch_offset: int) -> bool:
        plog = partition.log
        error = pr.error_code
        if error == ErrorCode.NONE:
            diverging = getattr(pr, "diverging_epoch", None)
            if diverging is not None and getattr(diverging, "end_offset", -1) >= 0:
                local_epoch, local_end = plog.end_offset_for_epoch(diverging.epoch)
                target = diverging.end_offset if local_epoch < 0 else min(diverging.end_offset, local_end)
                target = max(target, plog.log_start_offset)
                log.info(
                    "%s-%d: truncating to %d (diverged from the leader at epoch %d)",
                    partition.topic,
                    partition.index,
                    target,
                    diverging.epoch,
                )
                plog.truncate_to(min(target, plog.log_end_offset))
                return False
            records = pr.records
            if records:
                if plog.log_end_offset != fetch_offset:
                    return False  # raced with a truncation; refetch
                plog.append_as_follower(records)
                self._on_write()
            plog.maybe_update_high_watermark(min(pr.high_watermark, plog.log_end_offset))
            self._follow_log_start(partition, pr.log_start_offset)
            return False
        if error == ErrorCode.OFFSET_OUT_OF_RANGE:
            if pr.log_start_offset > plog.log_end_offset:
                log.info(
                    "%s-%d: leader's log starts at %d, after our end; restarting there",
                    partition.topic,
                    partition.index,
                    pr.log_start_offset,
                )
                plog.truncate_fully_and_start_at(pr.log_start_offset)
            elif pr.high_watermark >= 0 and plog.log_end_offset > pr.high_watermark:
                plog.truncate_to(max(pr.high_watermark, plog.log_start_offset))
            return False
        return True  # NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC...: refresh, back off
