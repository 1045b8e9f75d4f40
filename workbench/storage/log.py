"""A partition's log (Kafka's UnifiedLog): raw segments, the Parquet tier, offsets.

Directory layout (one partition)::

    00000000000000000000.log / .index / .timeindex   raw segments; the last one is active
    00000000000000000000.parquet                     sealed segment, one row per record
    log-start-offset.checkpoint                      raised by DeleteRecords and retention
    high-watermark.checkpoint                        only when the HW is set explicitly
    producer-state.json                              idempotent-producer snapshot

A logical segment is an offset range [base, next) held by a raw segment, a
Parquet file, or both ("hot" segments). Reads prefer raw bytes; offsets that
only Parquet still holds are served by re-encoding batches (uncompressed).

Threads: appends and reads come from the broker's event loop, while
`convert_sealed_segments` runs in a worker thread. One re-entrant lock guards
the segment lists and file descriptors; the slow decode/encode of a
conversion runs outside it.
"""

from __future__ import annotations

import bisect
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import (
    HEADER_SIZE,
    assign_offsets,
    build_batches,
    iter_batch_headers,
    validate_produce_batches,
)
from workbench.storage.config import LogConfig
from workbench.storage.parquet_tier import ParquetSegment, TableCache, write_segment
from workbench.storage.producer_state import ProducerStateManager
from workbench.storage.segment import MAX_RELATIVE_OFFSET, LogSegment, segment_name, storage_error

log = logging.getLogger(__name__)

LOG_START_CHECKPOINT = "log-start-offset.checkpoint"
HW_CHECKPOINT = "high-watermark.checkpoint"
#: Estimated encoding overhead per record when sizing fetches served from Parquet.
_RECORD_OVERHEAD_ESTIMATE = 24


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class AppendInfo:
    """Where an append landed (the Produce response's per-partition fields)."""

    base_offset: int
    last_offset: int
    log_append_time_ms: int = -1
    log_start_offset: int = 0
    record_count: int = 0
    duplicate: bool = False


@dataclass(slots=True)
class _Logical:
    base_offset: int
    next_offset: int
    max_timestamp: int
    size: int
    raw: LogSegment | None
    parquet: ParquetSegment | None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _write_int(path: Path, value: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


class PartitionLog:
    """The log of one partition: append, read, retention, Parquet conversion, recovery."""

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        *,
        topic: str = "",
        partition: int = 0,
        hw_tracks_leo: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.topic = topic
        self.partition = partition
        self._lock = threading.RLock()
        self._convert_lock = threading.Lock()
        self._segments: list[LogSegment] = []
        self._parquet: list[ParquetSegment] = []
        self._table_cache = TableCache()
        self._hw_tracks_leo = hw_tracks_leo
        self._hw = 0
        self._hw_checkpointed = -1
        self.producers = ProducerStateManager(self.directory)
        self.log_start_offset = 0
        self._closed = False
        try:
            self._load()
        except BaseException:
            for s in self._segments:
                s.close()
            raise

    # -- recovery ----------------------------------------------------------------------

    def _load(self) -> None:
        d = self.directory
        for tmp in d.glob("*.tmp"):
            log.info("%s: removing leftover %s", d, tmp.name)
            tmp.unlink(missing_ok=True)
        for path in sorted(d.glob("*.parquet")):
            try:
                self._parquet.append(ParquetSegment.open(path))
            except (OSError, ValueError, pa.ArrowException) as exc:  # a damaged file must not stop the broker
                log.warning("%s: unreadable Parquet file (%s); moved aside", path, exc)
                path.rename(path.with_name(path.name + ".corrupt"))
        self._parquet.sort(key=lambda p: p.base_offset)
        logs = sorted(d.glob("*.log"), key=lambda p: int(p.stem))
        log_bases = {int(p.stem) for p in logs}
        for idx in [*d.glob("*.index"), *d.glob("*.timeindex")]:
            if idx.stem.isdigit() and int(idx.stem) not in log_bases:
                idx.unlink(missing_ok=True)
        for i, path in enumerate(logs):
            seg = LogSegment(d, int(path.stem), self.config.index_interval_bytes)
            self._segments.append(seg)
            if i < len(logs) - 1:
                seg.load_sealed()
            else:
                seg.recover(verify_crc=True)
                seg.write_indexes()
                if seg.size:
                    seg.created_ms = _now_ms()  # a restart restarts the segment.ms clock
        checkpoint = _read_int(d / LOG_START_CHECKPOINT) or 0
        if not self._segments:
            base = max(checkpoint, self._parquet[-1].next_offset if self._parquet else 0)
            self._segments.append(LogSegment(d, base, self.config.index_interval_bytes))
        first = min([s.base_offset for s in self._segments] + [p.base_offset for p in self._parquet])
        self.log_start_offset = min(max(checkpoint, first), self.log_end_offset)
        self._load_producer_state()
        if self._hw_tracks_leo:
            self._hw = self.log_end_offset
        else:
            hw = _read_int(d / HW_CHECKPOINT)
            self._hw = min(max(hw if hw is not None else 0, self.log_start_offset), self.log_end_offset)

    def _load_producer_state(self) -> None:
        leo = self.log_end_offset
        snap = self.producers.load_snapshot()
        if snap > leo:
            log.warning(
                "%s: producer snapshot at %d is beyond the log end %d; rebuilding", self.directory, snap, leo
            )
            self.producers.producers.clear()
            snap = 0
        for seg in self._segments:
            if seg.next_offset <= snap:
                continue
            for h in seg.scan(seg.offset_index.lookup(snap) if seg.base_offset < snap else 0):
                if h.base_offset >= snap:
                    self.producers.replay(h)
        self.producers.truncate_head(self.log_start_offset)

    # -- offsets -------------------------------------------------------------------------

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self._segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        return self.log_end_offset if self._hw_tracks_leo else self._hw

    @high_watermark.setter
    def high_watermark(self, value: int) -> None:
        """Set explicitly (replication); from then on the HW no longer tracks the LEO."""
        with self._lock:
            if not self.log_start_offset <= value <= self.log_end_offset:
                raise ValueError(
                    f"high watermark {value} outside [{self.log_start_offset}, {self.log_end_offset}]"
                )
            self._hw_tracks_leo = False
            self._hw = value

    # -- append ------------------------------------------------------------------------

    def append(
        self, records: bytes | bytearray | memoryview, *, leader_epoch: int = 0, now_ms: int | None = None
    ) -> AppendInfo:
        """Append a Produce request's record set as leader: validate, assign offsets, write once.

        A bytearray is patched in place (base offsets, leader epoch). No record is decoded.
        """
        now = _now_ms() if now_ms is None else now_ms
        headers = validate_produce_batches(records)
        limit = self.config.max_message_bytes
        for h in headers:
            if h.size > limit:
                raise KafkaProtocolError(
                    ErrorCode.MESSAGE_TOO_LARGE, f"batch of {h.size} bytes exceeds max.message.bytes={limit}"
                )
        total = len(records)
        if total > self.config.segment_bytes:
            raise KafkaProtocolError(
                ErrorCode.RECORD_LIST_TOO_LARGE,
                f"{total} bytes exceed segment.bytes={self.config.segment_bytes}",
            )
        buf = records if isinstance(records, bytearray) else bytearray(records)
        with self._lock:
            self._check_open()
            staged, dup = self.producers.check(headers)
            if dup is not None:
                return AppendInfo(
                    dup.first_offset,
                    dup.last_offset,
                    -1,
                    self.log_start_offset,
                    dup.last_offset - dup.first_offset + 1,
                    duplicate=True,
                )
            base = self.log_end_offset
            bases = []
            next_offset = base
            count = 0
            for h in headers:
                bases.append(next_offset)
                next_offset += h.last_offset_delta + 1
                count += h.records_count
            try:
                seg = self._maybe_roll_for(total, next_offset - 1, now)
                assign_offsets(buf, headers, base, leader_epoch)
                seg.append(buf, headers, bases, now)
            except OSError as exc:
                raise storage_error(exc, f"append to {self.directory}") from exc
            self.producers.commit(staged, headers, bases)
            return AppendInfo(base, next_offset - 1, -1, self.log_start_offset, count)

    def _maybe_roll_for(self, size: int, last_offset: int, now: int) -> LogSegment:
        seg = self._segments[-1]
        if seg.size and (
            seg.size + size > self.config.segment_bytes
            or (seg.created_ms is not None and now - seg.created_ms >= self.config.segment_ms)
            or last_offset - seg.base_offset > MAX_RELATIVE_OFFSET
        ):
            seg = self._roll()
        return seg

    def _roll(self) -> LogSegment:
        old = self._segments[-1]
        old.write_indexes()
        new = LogSegment(self.directory, old.next_offset, self.config.index_interval_bytes)
        self._segments.append(new)
        self.producers.write_snapshot(new.base_offset)
        log.debug("%s: rolled to segment %d", self.directory, new.base_offset)
        return new

    def maybe_roll(self, now_ms: int | None = None) -> bool:
        """Roll the active segment when it is older than segment.ms (called periodically)."""
        now = _now_ms() if now_ms is None else now_ms
        with self._lock:
            self._check_open()
            seg = self._segments[-1]
            if seg.size and seg.created_ms is not None and now - seg.created_ms >= self.config.segment_ms:
                try:
                    self._roll()
                except OSError as exc:
                    raise storage_error(exc, f"roll {self.directory}") from exc
                return True
            return False

    # -- read ----------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, upper_bound: int | None = None) -> bytes | memoryview:
        """Whole batches from the one holding ``offset``, all below ``upper_bound`` (default: HW).

        At least one batch when one is available, even beyond ``max_bytes`` (KIP-74);
        ``b""`` at the bound. Batches come from one segment, as in Kafka.
        """
        with self._lock:
            self._check_open()
            if offset < self.log_start_offset or offset > self.log_end_offset:
                raise KafkaProtocolError(
                    ErrorCode.OFFSET_OUT_OF_RANGE,
                    f"offset {offset} not in [{self.log_start_offset}, {self.log_end_offset}]",
                )
            upper = self.high_watermark if upper_bound is None else min(upper_bound, self.log_end_offset)
            if offset >= upper:
                return b""
            try:
                raw_start = self._segments[0].base_offset
                if offset < raw_start:
                    i = bisect.bisect_right([p.next_offset for p in self._parquet], offset)
                    for p in self._parquet[i:]:
                        if p.base_offset >= raw_start or p.base_offset >= upper:
                            break
                        data = self._read_parquet(p, max(offset, p.base_offset), max_bytes, upper)
                        if data:
                            return data
                    offset = max(offset, raw_start)
                i = max(bisect.bisect_right([s.base_offset for s in self._segments], offset) - 1, 0)
                for seg in self._segments[i:]:
                    if seg.base_offset >= upper:
                        break
                    data = seg.read(max(offset, seg.base_offset), max_bytes, upper)
                    if data is not None:
                        return data
            except OSError as exc:
                raise storage_error(exc, f"read {self.directory}") from exc
            return b""

    def _read_parquet(self, p: ParquetSegment, offset: int, max_bytes: int, upper: int) -> bytes:
        table, offsets, bbo = self._table_cache.get(p)
        n = len(offsets)
        i = int(np.searchsorted(offsets, offset, "left"))
        if i >= n:
            return b""
        start = int(np.searchsorted(bbo, bbo[i], "left"))
        stop = int(np.searchsorted(offsets, upper, "left"))
        if start < stop < n and bbo[stop] == bbo[stop - 1]:  # the last batch must end below the bound
            stop = int(np.searchsorted(bbo, bbo[stop - 1], "left"))
        if stop <= start:
            return b""
        first_end = int(np.searchsorted(bbo, bbo[start], "right"))
        # Encode only about as many rows as max_bytes can hold, cut at a batch boundary.
        window = min(stop, max(first_end, start + max_bytes // _RECORD_OVERHEAD_ESTIMATE + 1))
        part = table.slice(start, window - start)
        sizes = (
            pc.fill_null(pc.binary_length(part.column("key")), 0).to_numpy()
            + pc.fill_null(pc.binary_length(part.column("value")), 0).to_numpy()
            + _RECORD_OVERHEAD_ESTIMATE
        )
        end = start + int(np.searchsorted(np.cumsum(sizes), max_bytes - HEADER_SIZE, "right"))
        end = min(window, end)
        if end < n and end > start and bbo[end] == bbo[end - 1]:
            end = int(np.searchsorted(bbo, bbo[end - 1], "left"))
        end = max(end, first_end)  # KIP-74: at least one whole batch
        data = build_batches(table.slice(start, end - start))
        if len(data) > max_bytes:  # the estimate was low: trim to whole batches (keep one)
            cut = 0
            for h in iter_batch_headers(data):
                if cut and h.end > max_bytes:
                    break
                cut = h.end
            data = data[:cut]
        return data

    # -- ListOffsets ----------------------------------------------------------------------

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp_ms`` below the HW."""
        with self._lock:
            self._check_open()
            lso, upper = self.log_start_offset, self.high_watermark
            for seg in self._logical():
                if seg.next_offset <= lso or seg.max_timestamp < timestamp_ms:
                    continue
                if seg.base_offset >= upper:
                    return None
                if seg.raw is not None:
                    found = seg.raw.find_offset_by_timestamp(timestamp_ms, lso, upper)
                else:
                    assert seg.parquet is not None
                    found = self._parquet_offset_for_timestamp(seg.parquet, timestamp_ms, lso, upper)
                if found is not None:
                    return found
            return None

    def _parquet_offset_for_timestamp(
        self, p: ParquetSegment, timestamp_ms: int, lso: int, upper: int
    ) -> tuple[int, int] | None:
        table, offsets, _ = self._table_cache.get(p)
        ts = table.column("timestamp").cast("int64").to_numpy()
        hits = np.flatnonzero((ts >= timestamp_ms) & (offsets >= lso) & (offsets < upper))
        if not len(hits):
            return None
        return int(offsets[hits[0]]), int(ts[hits[0]])

    # -- deletion ----------------------------------------------------------------------

    def _logical(self) -> list[_Logical]:
        by_base: dict[int, _Logical] = {}
        for p in self._parquet:
            by_base[p.base_offset] = _Logical(p.base_offset, p.next_offset, p.max_timestamp, p.size, None, p)
        for s in self._segments:
            entry = by_base.get(s.base_offset)
            if entry is None:
                by_base[s.base_offset] = _Logical(
                    s.base_offset, s.next_offset, s.max_timestamp, s.size, s, None
                )
            else:
                entry.raw, entry.size, entry.next_offset = s, s.size, s.next_offset
                entry.max_timestamp = max(entry.max_timestamp, s.max_timestamp)
        return sorted(by_base.values(), key=lambda x: x.base_offset)

    def _delete_logical(self, seg: _Logical) -> None:
        if seg.raw is not None:
            self._segments.remove(seg.raw)
            seg.raw.delete()
        if seg.parquet is not None:
            self._parquet.remove(seg.parquet)
            self._table_cache.invalidate(seg.parquet.path)
            seg.parquet.path.unlink(missing_ok=True)

    def _delete_prefix(self, should_delete) -> int:  # type: ignore[no-untyped-def]
        """Delete logical segments from the oldest while ``should_delete(seg)``; never the active one."""
        active = self._segments[-1]
        deleted = 0
        for seg in self._logical():
            if seg.raw is active or seg.base_offset >= active.base_offset or not should_delete(seg):
                break
            self._delete_logical(seg)
            deleted += 1
        if deleted:
            remaining = self._logical()
            self._set_log_start_offset(max(self.log_start_offset, remaining[0].base_offset))
        return deleted

    def _set_log_start_offset(self, value: int) -> None:
        if value != self.log_start_offset:
            self.log_start_offset = value
            _write_int(self.directory / LOG_START_CHECKPOINT, value)
            self.producers.truncate_head(value)

    def delete_records(self, before_offset: int) -> int:
        """DeleteRecords: raise the log start offset to ``before_offset`` (-1 = the HW)."""
        with self._lock:
            self._check_open()
            hw = self.high_watermark
            if before_offset == -1:
                before_offset = hw
            if before_offset < 0 or before_offset > hw:
                raise KafkaProtocolError(
                    ErrorCode.OFFSET_OUT_OF_RANGE,
                    f"cannot delete before {before_offset}: high watermark is {hw}",
                )
            try:
                if before_offset > self.log_start_offset:
                    self._set_log_start_offset(before_offset)
                lso = self.log_start_offset
                self._delete_prefix(lambda s: s.next_offset <= lso)
            except OSError as exc:
                raise storage_error(exc, f"delete records in {self.directory}") from exc
            return self.log_start_offset

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete whole sealed segments past retention.ms or beyond retention.bytes; return how many.

        Applies only with ``delete`` in cleanup.policy (a compact-only topic keeps everything).
        """
        now = _now_ms() if now_ms is None else now_ms
        with self._lock:
            self._check_open()
            lso = self.log_start_offset
            deleted = self._delete_prefix(lambda s: s.next_offset <= lso)
            if "delete" not in self.config.cleanup_policy:
                return deleted
            retention_ms = self.config.retention_ms
            if retention_ms >= 0:
                deleted += self._delete_prefix(lambda s: now - s.max_timestamp > retention_ms)
            retention_bytes = self.config.retention_bytes
            if retention_bytes >= 0:
                excess = [self.size_bytes() - retention_bytes]

                def over(seg: _Logical) -> bool:
                    if excess[0] - seg.size >= 0:
                        excess[0] -= seg.size
                        return True
                    return False

                deleted += self._delete_prefix(over)
            return deleted

    # -- Parquet tier ------------------------------------------------------------------

    def convert_sealed_segments(self) -> list[Path]:
        """Write Parquet for sealed segments wholly below the HW; drop raw ones beyond hot_segments.

        Safe to call from a worker thread: file bytes are read through a dup'ed
        descriptor and decoded/encoded without holding the log's lock.
        """
        written: list[Path] = []
        with self._convert_lock:
            with self._lock:
                self._check_open()
                hw = self.high_watermark
                have = {p.base_offset for p in self._parquet}
                todo = [
                    (s, os.dup(s.fd), s.size, s.next_offset)
                    for s in self._segments[:-1]
                    if s.base_offset not in have and s.next_offset <= hw and s.size
                ]
            for seg, fd, size, next_offset in todo:
                try:
                    data = os.pread(fd, size, 0)
                finally:
                    os.close(fd)
                pseg = write_segment(
                    self.directory,
                    seg.base_offset,
                    next_offset,
                    data,
                    topic=self.topic,
                    partition=self.partition,
                )
                with self._lock:
                    if seg in self._segments and not self._closed:
                        bisect.insort(self._parquet, pseg, key=lambda p: p.base_offset)
                        written.append(pseg.path)
                    else:  # deleted by retention meanwhile
                        pseg.path.unlink(missing_ok=True)
            with self._lock:
                if not self._closed:
                    self._drop_cold_raw_segments()
        return written

    def _drop_cold_raw_segments(self) -> None:
        have = {p.base_offset for p in self._parquet}
        sealed = self._segments[:-1]
        for seg in sealed[: max(len(sealed) - self.config.hot_segments, 0)]:
            if seg.base_offset in have:
                self._segments.remove(seg)
                seg.delete()

    def parquet_files(self) -> list[Path]:
        """The Parquet files of this partition, oldest first."""
        with self._lock:
            return [p.path for p in self._parquet]

    # -- durability and lifecycle -----------------------------------------------------------

    def flush(self) -> None:
        """fsync segments written since the last flush; checkpoint producer state and HW."""
        with self._lock:
            if self._closed:
                return
            fds = []
            for seg in self._segments:
                if seg.dirty:
                    seg.dirty = False
                    fds.append(os.dup(seg.fd))
            try:
                if self.producers.changed:
                    self.producers.write_snapshot(self.log_end_offset)
                if not self._hw_tracks_leo and self._hw != self._hw_checkpointed:
                    _write_int(self.directory / HW_CHECKPOINT, self._hw)
                    self._hw_checkpointed = self._hw
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                raise storage_error(exc, f"checkpoint {self.directory}") from exc
        try:
            for fd in fds:
                os.fsync(fd)
        except OSError as exc:
            raise storage_error(exc, f"fsync {self.directory}") from exc
        finally:
            for fd in fds:
                os.close(fd)

    def update_config(self, config: LogConfig) -> None:
        with self._lock:
            self.config = config
            for seg in self._segments:
                seg.index_interval_bytes = config.index_interval_bytes

    def size_bytes(self) -> int:
        """Bytes of the log: raw segment sizes, and Parquet file sizes for ranges held only in Parquet."""
        with self._lock:
            return sum(s.size for s in self._logical())

    def producer_state(self) -> dict[int, tuple[int, int, int]]:
        """producer id -> (epoch, last sequence, last offset)."""
        with self._lock:
            return self.producers.summary()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self.active_segment.write_indexes()
                self.producers.write_snapshot(self.log_end_offset)
                if not self._hw_tracks_leo:
                    _write_int(self.directory / HW_CHECKPOINT, self._hw)
                for seg in self._segments:
                    seg.flush()
            finally:
                self._closed = True
                for seg in self._segments:
                    seg.close()
                self._table_cache.invalidate()

    def delete(self) -> None:
        """Remove the partition directory (topic deleted)."""
        with self._lock:
            self._closed = True
            for seg in self._segments:
                seg.close()
            self._table_cache.invalidate()
            shutil.rmtree(self.directory, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaProtocolError(ErrorCode.KAFKA_STORAGE_ERROR, f"log {self.directory} is closed")

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.topic}-{self.partition}, start={self.log_start_offset}, "
            f"hw={self.high_watermark}, leo={self.log_end_offset})"
        )


__all__ = ["AppendInfo", "PartitionLog", "segment_name"]
