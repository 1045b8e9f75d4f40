"""Fetch (long poll), ListOffsets and DeleteRecords.

Fetch returns whole record batches as byte slices of the log (or batches
re-encoded from Parquet for offsets that only live there). Limits follow
KIP-74: `partition_max_bytes` and `max_bytes` are soft, in that the first
partition with data always returns at least one whole batch, so a batch
larger than the limits can never stall a consumer.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any

from workbench.broker import round_trace
from workbench.broker.fetch_session import FetchSessionCache
from workbench.broker.handlers.partitions import leader_log, leader_partition
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.message_format import downconvert_batches
from workbench.protocol.records import iter_batch_headers

if TYPE_CHECKING:
    from workbench.broker.handlers.context import BrokerContext as Broker
    from workbench.broker.partition import Partition
    from workbench.broker.server import Connection
    from workbench.protocol.codec import Request
    from workbench.storage.log import PartitionLog

LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3
READ_COMMITTED = 1  # isolation_level
DEBUGGING_REPLICA_ID = -2  # Kafka: ListOffsets "latest" from a debugging replica returns the log end offset
_TRACE = round_trace.ON


def _trace_fetch(event: str, replica_id: int, read: Any, responses: list[dict] | None = None) -> None:
    """round_trace: a fetch's partitions with their fetch offsets (and, answered, the end of what it returns)."""
    parts = []
    for i, topic in enumerate(read.topics):
        for j, fp in enumerate(topic.partitions):
            end = fp.fetch_offset
            if responses is not None:
                records = responses[i]["partitions"][j]["records"]
                for header in iter_batch_headers(records):
                    end = header.last_offset + 1
            parts.append((topic.topic, fp.partition, fp.fetch_offset, end))
    round_trace.mark(event, replica_id, parts)


def _read_all(broker: Broker, body: Any, replica_id: int) -> tuple[list[dict], int, list[tuple[str, int]]]:
    remaining = body.max_bytes if body.max_bytes and body.max_bytes > 0 else 0x7FFFFFFF
    responses, total, waiting = [], 0, []
    follower = replica_id >= 0
    read_committed = not follower and getattr(body, "isolation_level", 0) == READ_COMMITTED
    for topic in body.topics:
        parts = []
        for fp in topic.partitions:
            p, error = leader_partition(broker, topic.topic, fp.partition, fp.current_leader_epoch)
            records: bytes | memoryview = b""
            hw = lso = log_start = -1
            diverging = None
            aborted: list[dict] = []
            if p is not None:
                plog = p.log
                try:
                    if follower:
                        diverging = _diverging_epoch(plog, fp)
                        if diverging is None:
                            p.record_follower_fetch(replica_id, fp.fetch_offset, getattr(fp, "log_start_offset", -1))
                    hw = plog.high_watermark
                    lso, log_start = plog.last_stable_offset, plog.log_start_offset
                    limit = min(fp.partition_max_bytes, remaining)
                    if diverging is None and (limit > 0 or total == 0):
                        # KIP-98: read_committed never gets data at or above the last stable offset.
                        upper = plog.log_end_offset if follower else (lso if read_committed else hw)
                        records = plog.read(fp.fetch_offset, max(limit, 1), upper_bound=upper, fill_gaps=follower)
                        if read_committed and len(records):
                            aborted = [
                                {"producer_id": pid, "first_offset": first}
                                for pid, first in plog.aborted_transactions(fp.fetch_offset, upper)
                            ]
                except KafkaProtocolError as exc:
                    error = exc.code
                if len(records) == 0 and error == ErrorCode.NONE and diverging is None:
                    waiting.append((topic.topic, fp.partition))
                total += len(records)
                remaining = max(0, remaining - len(records))
            part = {
                "partition_index": fp.partition,
                "error_code": error,
                "high_watermark": hw,
                "last_stable_offset": lso,
                "log_start_offset": log_start,
                "aborted_transactions": None if error else aborted,
                "preferred_read_replica": -1,
                "records": bytes(records),
            }
            if diverging is not None:
                part["diverging_epoch"] = diverging
            parts.append(part)
        responses.append({"topic": topic.topic, "partitions": parts})
    return responses, total, waiting


def _diverging_epoch(plog: PartitionLog, fp: Any) -> dict | None:
    """KIP-595 divergence check for a follower's fetch: where its last epoch ends on the leader."""
    last_epoch = getattr(fp, "last_fetched_epoch", -1)
    if last_epoch is None or last_epoch < 0:
        return None
    epoch, end_offset = plog.end_offset_for_epoch(last_epoch)
    if epoch < 0 and last_epoch > plog.latest_epoch >= 0:
        # The follower's last batch claims an epoch newer than every one this leader knows: no
        # leader wrote it (a bit flipped in the batch's partitionLeaderEpoch, which its CRC does
        # not cover, and recovery took it in). Answer where our own history ends, so the follower
        # cuts that batch off; "undefined" made it ignore the answer and fetch nothing forever.
        epoch, end_offset = plog.latest_epoch, plog.log_end_offset
    if epoch != last_epoch or end_offset < fp.fetch_offset:
        return {"epoch": epoch, "end_offset": end_offset}
    return None


_SESSIONS: weakref.WeakKeyDictionary[Any, FetchSessionCache] = weakref.WeakKeyDictionary()


def fetch_sessions(broker: Broker) -> FetchSessionCache:
    """This broker's KIP-227 fetch session cache."""
    cache = _SESSIONS.get(broker)
    if cache is None:
        slots = getattr(broker.config, "max_incremental_fetch_session_cache_slots", 1000)
        cache = _SESSIONS[broker] = FetchSessionCache(slots)
    return cache


async def fetch(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    replica_id = body.replica_id if req.api_version <= 14 else -1
    deadline = time.monotonic() + max(0, body.max_wait_ms) / 1000.0
    min_bytes = max(1, body.min_bytes)
    read, session, incremental = body, None, False
    if req.api_version >= 7:
        # KIP-227: the partitions to read come from the fetch session when the request names one.
        try:
            read, session = fetch_sessions(broker).open(body, replica_id)
        except KafkaProtocolError as exc:
            return {"throttle_time_ms": 0, "error_code": exc.code, "session_id": 0, "responses": []}
        incremental = body.session_epoch > 0
    if _TRACE:
        _trace_fetch("fetch_in", replica_id, read)
    while True:
        responses, total, waiting = _read_all(broker, read, replica_id)
        left = deadline - time.monotonic()
        if (
            total >= min_bytes
            or left <= 0
            or not waiting
            or any(p["error_code"] for t in responses for p in t["partitions"])
        ):
            break
        await broker.replicas.wait_for_data(waiting, left, follower=replica_id >= 0)
        if broker.is_stopping():
            break
    if 4 <= req.api_version < 10:
        # KIP-110: a consumer older than Fetch v10 cannot read ZStandard; Kafka answers the partition
        # with UNSUPPORTED_COMPRESSION_TYPE rather than bytes it would fail on.
        for t in responses:
            for p in t["partitions"]:
                if p["records"] and any(h.compression == 4 for h in iter_batch_headers(p["records"])):
                    p["records"], p["error_code"] = b"", ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
    if req.api_version < 4:
        # Fetch v0-3 predate record batches: down-convert to message format v0 (Fetch v0-1) or
        # v1 (v2-3), as Kafka's RecordsUtil.downConvert does.
        magic = 0 if req.api_version < 2 else 1
        for topic, t in zip(body.topics, responses, strict=True):
            for fp, p in zip(topic.partitions, t["partitions"], strict=True):
                if p["records"]:
                    p["records"] = downconvert_batches(p["records"], magic, fp.fetch_offset)
    if _TRACE:
        _trace_fetch("fetch_out", replica_id, read, responses)
    responses = FetchSessionCache.answer(session, responses, incremental=incremental)
    return {"throttle_time_ms": 0, "error_code": 0, "session_id": session.id if session else 0, "responses": responses}


async def list_offsets(broker: Broker, req: Request, conn: Connection) -> dict:
    body = req.body
    topics = []
    for topic in body.topics:
        parts = []
        for lp in topic.partitions:
            plog, error = leader_log(broker, topic.name, lp.partition_index)
            offset, timestamp, epoch = -1, -1, -1
            if plog is not None:
                info = broker.image.topics[topic.name].partitions[lp.partition_index]
                epoch = info.leader_epoch
                try:
                    if lp.timestamp == LATEST:
                        if body.replica_id == DEBUGGING_REPLICA_ID:
                            offset = plog.log_end_offset
                        elif getattr(body, "isolation_level", 0) == READ_COMMITTED:
                            offset = plog.last_stable_offset
                        else:
                            offset = plog.high_watermark
                    elif lp.timestamp == EARLIEST:
                        offset = plog.log_start_offset
                    elif lp.timestamp == MAX_TIMESTAMP:  # KIP-734 (ListOffsets v7+)
                        debugging = body.replica_id == DEBUGGING_REPLICA_ID
                        found = plog.max_timestamp_offset(plog.log_end_offset if debugging else None)
                        if found is not None:
                            offset, timestamp = found
                    elif lp.timestamp < 0:
                        error = ErrorCode.INVALID_REQUEST
                    else:
                        found = plog.offset_for_timestamp(lp.timestamp)
                        if found is not None:
                            offset, timestamp = found
                except KafkaProtocolError as exc:
                    error = exc.code
            part = {
                "partition_index": lp.partition_index,
                "error_code": error,
                "timestamp": timestamp,
                "offset": offset,
                "leader_epoch": epoch,
            }
            if req.api_version == 0:
                part["old_style_offsets"] = _old_style_offsets(plog, lp, body.replica_id) if not error else []
            parts.append(part)
        topics.append({"name": topic.name, "partitions": parts})
    return {"throttle_time_ms": 0, "topics": topics}


def _old_style_offsets(plog: Any, lp: Any, replica_id: int) -> list[int]:
    """ListOffsets v0: up to `max_num_offsets` offsets, newest first (Burrow and sarama's default
    `Version` send it).

    Kafka's `legacyFetchOffsetsBefore` lists each segment's base offset and the log end offset,
    and a consumer never sees past the high watermark. We list the high watermark (latest) and
    the log start offset (earliest), the two offsets every v0 client asks for; a timestamp gives
    the first offset at or after it (v1's rule), or the high watermark when there is none.
    """
    end = plog.log_end_offset if replica_id == DEBUGGING_REPLICA_ID else plog.high_watermark
    if lp.timestamp == LATEST:
        offsets = [end, plog.log_start_offset]
    elif lp.timestamp == EARLIEST:
        offsets = [plog.log_start_offset]
    else:
        found = plog.offset_for_timestamp(lp.timestamp) if lp.timestamp >= 0 else None
        offsets = [found[0] if found is not None else end]
    unique = list(dict.fromkeys(offsets))
    return unique[: max(lp.max_num_offsets, 0)]


async def delete_records(broker: Broker, req: Request, conn: Connection) -> dict:
    """DeleteRecords: raise the leader's log start offset, then answer once every in-sync
    replica has applied it too (Kafka's DelayedDeleteRecords).

    Followers learn the log start offset from Fetch responses and report theirs in Fetch
    requests; each replica checkpoints it, so the deletion survives restarts and leader
    changes (issue 12, item 8). Not confirmed by the ISR within the request's timeout:
    REQUEST_TIMED_OUT (the deletion still reaches the followers with their next fetches).
    """
    body = req.body
    topics = []
    waits: list[tuple[dict, Partition, int]] = []
    for topic in body.topics:
        parts = []
        for dp in topic.partitions:
            partition, error = leader_partition(broker, topic.name, dp.partition_index)
            low = -1
            if partition is not None:
                plog = partition.log
                try:
                    before = plog.high_watermark if dp.offset == -1 else dp.offset
                    low = plog.delete_records(before)
                except KafkaProtocolError as exc:
                    error = exc.code
            part = {"partition_index": dp.partition_index, "low_watermark": low, "error_code": error}
            if partition is not None and error == ErrorCode.NONE and partition.replicated:
                waits.append((part, partition, low))
            parts.append(part)
        topics.append({"name": topic.name, "partitions": parts})
    deadline = time.monotonic() + max(0, body.timeout_ms) / 1000.0
    while waits:
        waits = [w for w in waits if w[1].is_leader and w[1].isr_low_watermark() < w[2]]
        if not waits or time.monotonic() >= deadline or broker.is_stopping():
            break
        await asyncio.sleep(0.02)
    for part, _partition, _low in waits:
        part["error_code"] = ErrorCode.REQUEST_TIMED_OUT
    return {"throttle_time_ms": 0, "topics": topics}
