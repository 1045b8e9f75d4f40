"""A partition's log (Kafka's UnifiedLog): raw segments, the Parquet tier, offsets.

Directory layout (one partition)::

    00000000000000000000.log / .index / .timeindex   raw segments; the last one is active
    00000000000000000000.parquet                     sealed segment, one row per record
    log-start-offset.checkpoint                      raised by DeleteRecords and retention
    high-watermark.checkpoint                        only when the HW is set explicitly
    producer-state.json                              idempotent-producer snapshot
    leader-epoch-checkpoint                          leader epoch -> start offset (Kafka's format)

A logical segment is an offset range [base, next) held by a raw segment, a
Parquet file, or both ("hot" segments). Reads prefer raw bytes; offsets that
only Parquet still holds are served by re-encoding batches (uncompressed).

Replication (Kafka's model): a leader appends with `append` (offsets
assigned, its leader epoch stamped in each batch and recorded in the leader
epoch cache); a follower appends the leader's batches unchanged with
`append_as_follower`; `end_offset_for_epoch` answers OffsetForLeaderEpoch and
the Fetch divergence check; `truncate_to` / `truncate_fully_and_start_at` cut
a diverged or stale replica back. The high watermark either tracks the log end
(`hw_tracks_leo`: the leader of an unreplicated partition) or is set by
replication, never lower except by truncation, and bounds what consumers and
the Parquet tier see.

Parquet conversion: `pending_conversions` lists sealed segments below the HW
without a Parquet file; the broker hands each to its converter process
(`workbench.storage.converter`) and adopts the file with `install_parquet`,
which discards it if the segment was deleted or the log truncated meanwhile.
`convert_sealed_segments` does the same in-process (tests, tools).

Threads: appends and reads come from the broker's event loop; `flush` (fsync)
and `convert_sealed_segments` may run in worker threads. One re-entrant lock
guards the segment lists and file descriptors; fsync and a conversion's
decode/encode run outside it.
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

from workbench._lazy import lazy_module
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import (
    HEADER_SIZE,
    BatchHeader,
    assign_offsets,
    build_batches,
    iter_batch_headers,
    validate_fetched_batches,
    validate_produce_batches,
)
from workbench.storage.config import LogConfig
from workbench.storage.leader_epoch import LeaderEpochCache
from workbench.storage.parquet_tier import ParquetSegment, TableCache, truncate_segment, write_segment
from workbench.storage.producer_state import ProducerStateManager
from workbench.storage.segment import MAX_RELATIVE_OFFSET, LogSegment, segment_name, storage_error

np = lazy_module("numpy")
pa = lazy_module("pyarrow")
pc = lazy_module("pyarrow.compute")

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


class UnexpectedAppendOffsetError(KafkaProtocolError):
    """A follower append does not continue the log (Kafka's UnexpectedAppendOffsetException).

    Its code is OFFSET_OUT_OF_RANGE; ``expected`` is the offset the log needed
    (its end offset, or the next offset inside the record set) and ``actual``
    the base offset the batch had. Nothing was appended from the offending batch on.
    """

    def __init__(self, expected: int, actual: int, message: str) -> None:
        super().__init__(ErrorCode.OFFSET_OUT_OF_RANGE, message)
        self.expected = expected
        self.actual = actual


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


@dataclass(frozen=True, slots=True)
class ConversionJob:
    """A sealed segment to turn into Parquet, as it was when the job was made."""

    segment: LogSegment
    size: int
    next_offset: int
    generation: int


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
        self._epochs = LeaderEpochCache(self.directory)
        #: Bumped by every truncation: a conversion started before one is discarded.
        self._generation = 0
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
                pseg = ParquetSegment.open(path)
            except (OSError, ValueError, pa.ArrowException) as exc:  # a damaged file must not stop the broker
                log.error("%s: unreadable Parquet file (%s); moved aside as %s.corrupt", path, exc, path.name)
                path.rename(path.with_name(path.name + ".corrupt"))
                continue
            try:
                pseg.verify()
            except (OSError, ValueError, pa.ArrowException) as exc:
                log.error(
                    "%s: damaged Parquet file (%s); moved aside as %s.corrupt: offsets %d..%d are lost "
                    "unless a raw segment still holds them",
                    path,
                    exc,
                    path.name,
                    pseg.base_offset,
                    pseg.next_offset - 1,
                )
                path.rename(path.with_name(path.name + ".corrupt"))
                continue
            self._parquet.append(pseg)
        self._parquet.sort(key=lambda p: p.base_offset)
        logs = sorted(d.glob("*.log"), key=lambda p: int(p.stem))
        log_bases = {int(p.stem) for p in logs}
        for idx in [*d.glob("*.index"), *d.glob("*.timeindex")]:
            if idx.stem.isdigit() and int(idx.stem) not in log_bases:
                idx.unlink(missing_ok=True)
        have_epochs = self._epochs.load()
        tail_epochs: list[tuple[int, int]] = []  # (leader epoch, base offset) of the active segment's batches

        def note_epoch(h: BatchHeader) -> None:
            if h.partition_leader_epoch >= 0 and (not tail_epochs or h.partition_leader_epoch > tail_epochs[-1][0]):
                tail_epochs.append((h.partition_leader_epoch, h.base_offset))

        for i, path in enumerate(logs):
            seg = LogSegment(d, int(path.stem), self.config.index_interval_bytes)
            self._segments.append(seg)
            if i < len(logs) - 1:
                seg.load_sealed()
                seg.verify_crcs()
            else:
                seg.recover(verify_crc=True, on_batch=note_epoch)
                seg.write_indexes()
                if seg.size:
                    seg.created_ms = _now_ms()  # a restart restarts the segment.ms clock
        checkpoint = _read_int(d / LOG_START_CHECKPOINT) or 0
        if not self._segments:
            base = max(checkpoint, self._parquet[-1].next_offset if self._parquet else 0)
            self._segments.append(LogSegment(d, base, self.config.index_interval_bytes))
        first = min([s.base_offset for s in self._segments] + [p.base_offset for p in self._parquet])
        self.log_start_offset = min(max(checkpoint, first), self.log_end_offset)
        self._report_gaps()
        self._load_leader_epochs(have_epochs, tail_epochs)
        self._load_producer_state()
        if self._hw_tracks_leo:
            self._hw = self.log_end_offset
        else:
            hw = _read_int(d / HW_CHECKPOINT)
            self._hw = min(max(hw if hw is not None else 0, self.log_start_offset), self.log_end_offset)

    def _report_gaps(self) -> None:
        """Log every offset range no file holds any more (a deleted, cut or quarantined file).

        Reads skip a gap (the next batch starts later, as in a compacted topic); the log
        says exactly which offsets are gone.
        """
        expected = self.log_start_offset
        for seg in self._logical():
            if seg.next_offset <= expected:
                continue
            if seg.base_offset > expected:
                log.error(
                    "%s: offsets %d..%d are missing (no segment or Parquet file holds them)",
                    self.directory,
                    expected,
                    seg.base_offset - 1,
                )
            expected = max(expected, seg.next_offset)

    def _load_leader_epochs(self, have_checkpoint: bool, tail: list[tuple[int, int]]) -> None:
        """Make the epoch cache agree with the recovered log (Kafka does the same at load).

        With a checkpoint: drop entries past the log end (a torn tail), then add
        epochs the active segment shows beyond the cached ones (written just
        before a crash). Without one (or a malformed one): rebuild from every
        batch header, Parquet-only ranges included.
        """
        cache = self._epochs
        before = list(cache.entries) if have_checkpoint else None
        leo = self.log_end_offset
        if have_checkpoint:
            cache.truncate_from_end(leo, flush=False)
        else:
            if leo > self.log_start_offset or self._parquet:
                log.info("%s: no usable leader epoch checkpoint; rebuilding it from the log", self.directory)
            raw_bases = {s.base_offset for s in self._segments}
            for p in self._parquet:
                if p.base_offset in raw_bases or p.base_offset >= self._segments[0].base_offset:
                    continue
                t = p.read_table(["batch_base_offset", "partition_leader_epoch"])
                for base, epoch in zip(
                    t.column("batch_base_offset").to_pylist(),
                    t.column("partition_leader_epoch").to_pylist(),
                    strict=False,
                ):
                    if epoch > cache.latest_epoch:
                        cache.assign(epoch, base, flush=False)
            for seg in self._segments[:-1]:
                for h in seg.scan():
                    if h.partition_leader_epoch > cache.latest_epoch:
                        cache.assign(h.partition_leader_epoch, h.base_offset, flush=False)
        for epoch, base in tail:
            if epoch > cache.latest_epoch:
                cache.assign(epoch, base, flush=False)
        cache.truncate_from_start(self.log_start_offset, flush=False)
        if cache.entries != before:
            cache.flush()

    def _load_producer_state(self) -> None:
        leo = self.log_end_offset
        snap = self.producers.load_snapshot()
        if snap > leo:
            log.warning("%s: producer snapshot at %d is beyond the log end %d; rebuilding", self.directory, snap, leo)
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
        """Offsets below it are committed: consumers, ListOffsets and the Parquet tier see only those."""
        return self.log_end_offset if self._hw_tracks_leo else self._hw

    @high_watermark.setter
    def high_watermark(self, value: int) -> None:
        """Set explicitly (replication); from then on the HW no longer tracks the LEO.

        Monotonic: a value below the current HW raises ValueError (only
        `truncate_to` / `truncate_fully_and_start_at` lower it), as does one
        outside [log start, log end]. Use `maybe_update_high_watermark` to apply
        a leader's HW that may lag ours. Checkpointed by `flush` and `close`;
        restored at open (clamped to the log end) unless ``hw_tracks_leo``.
        """
        with self._lock:
            if not self.log_start_offset <= value <= self.log_end_offset:
                raise ValueError(f"high watermark {value} outside [{self.log_start_offset}, {self.log_end_offset}]")
            current = self.high_watermark
            if value < current:
                raise ValueError(f"high watermark cannot move back from {current} to {value}")
            self._hw_tracks_leo = False
            self._hw = value

    def maybe_update_high_watermark(self, value: int) -> bool:
        """Raise the HW to ``value`` clamped to [log start, log end]; ignore a lower one.

        Kafka's follower rule (the HW a leader sends may lag what we already
        know, e.g. just after an election). Returns True when the HW moved.
        Switches the log out of ``hw_tracks_leo`` mode like the setter.
        """
        with self._lock:
            value = min(max(value, self.log_start_offset), self.log_end_offset)
            current = self.high_watermark
            self._hw_tracks_leo = False
            self._hw = max(current, value)
            return value > current

    @property
    def hw_tracks_leo(self) -> bool:
        return self._hw_tracks_leo

    def set_hw_tracks_leo(self, flag: bool) -> None:
        """Switch between RF=1 leader mode (HW = LEO) and replicated mode (HW set explicitly).

        Leaving tracking mode freezes the HW at the current log end (all of it
        was committed) and checkpoints it; entering it makes the HW the log end
        from now on. Idempotent.
        """
        with self._lock:
            if flag == self._hw_tracks_leo:
                return
            if not flag:
                self._hw = self.log_end_offset
                self._hw_tracks_leo = False
                if not self._closed:
                    self._checkpoint_hw()
            else:
                self._hw_tracks_leo = True

    def _checkpoint_hw(self) -> None:
        _write_int(self.directory / HW_CHECKPOINT, self._hw)
        self._hw_checkpointed = self._hw

    # -- leader epochs -------------------------------------------------------------------

    @property
    def latest_epoch(self) -> int:
        """The newest leader epoch in the epoch cache, -1 when there is none."""
        return self._epochs.latest_epoch

    def epoch_entries(self) -> list[tuple[int, int]]:
        """The leader epoch cache: ``(epoch, start offset)`` pairs, oldest first."""
        with self._lock:
            return list(self._epochs.entries)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch (Kafka's ``LeaderEpochFileCache.endOffsetFor``).

        Returns ``(largest known epoch <= epoch, end offset of that epoch)``: the
        start offset of the next larger epoch, or the log end offset for the
        latest epoch. For an epoch below the earliest cached one, Kafka's answer
        ``(epoch, start offset of the earliest cached epoch)`` (that history is
        gone: the follower truncates to where this log's history begins). For
        -1, an epoch newer than every cached one, or an empty cache: ``(-1, -1)``.
        """
        with self._lock:
            return self._epochs.end_offset_for(epoch, self.log_end_offset)

    def assign_leader_epoch(self, epoch: int) -> bool:
        """Record that leader epoch ``epoch`` starts at the current log end (Kafka's
        ``maybeAssignEpochStartOffset`` when a replica becomes leader).

        Optional: `append` records the epoch with its first batch anyway. Doing
        it at election lets OffsetForLeaderEpoch answer correctly for the new
        epoch before anything is written in it. Returns True when the cache changed.
        """
        with self._lock:
            self._check_open()
            if epoch < self._epochs.latest_epoch:
                raise KafkaProtocolError(
                    ErrorCode.FENCED_LEADER_EPOCH,
                    f"leader epoch {epoch} is older than the log's {self._epochs.latest_epoch}",
                )
            try:
                return self._epochs.assign(epoch, self.log_end_offset)
            except OSError as exc:
                raise storage_error(exc, f"leader epoch checkpoint in {self.directory}") from exc

    # -- append ------------------------------------------------------------------------

    def append(
        self,
        records: bytes | bytearray | memoryview,
        *,
        leader_epoch: int | None = None,
        now_ms: int | None = None,
    ) -> AppendInfo:
        """Append a Produce request's record set as leader: validate, assign offsets, write once.

        A bytearray is patched in place (base offsets, leader epoch). No record is decoded.
        Each batch's partitionLeaderEpoch becomes ``leader_epoch`` (outside the
        CRC); an epoch newer than the cache's latest is recorded as starting at
        this append's base offset. ``None`` means the latest cached epoch (0 for
        a log without one). An epoch older than the latest cached one raises
        FENCED_LEADER_EPOCH: a deposed leader must not write.
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
            latest = self._epochs.latest_epoch
            if leader_epoch is None:
                leader_epoch = max(latest, 0)
            elif leader_epoch < latest:
                raise KafkaProtocolError(
                    ErrorCode.FENCED_LEADER_EPOCH,
                    f"append in leader epoch {leader_epoch}, but the log is at epoch {latest}",
                )
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
            self._note_epoch(leader_epoch, base)
            return AppendInfo(base, next_offset - 1, -1, self.log_start_offset, count)

    def _note_epoch(self, epoch: int, start_offset: int) -> None:
        """Record a batch's leader epoch in the cache (written data: a failed checkpoint only logs)."""
        try:
            self._epochs.assign(epoch, start_offset)
        except OSError as exc:  # recovery rebuilds the entry from the batch itself
            log.error("%s: cannot write the leader epoch checkpoint: %s", self.directory, exc)

    def append_as_follower(self, records: bytes | bytearray | memoryview, *, now_ms: int | None = None) -> AppendInfo:
        """Append batches fetched from the leader, keeping their offsets and leader epochs byte for byte.

        * Framing and CRC are checked (`validate_fetched_batches`): a corrupt batch
          raises CORRUPT_MESSAGE and nothing from it on is stored. A partial last
          batch (a Fetch response cut at max_bytes) is ignored: fetch again from
          the new log end.
        * The first batch must start at the log end offset and each next batch
          where the previous one ends; otherwise `UnexpectedAppendOffsetError`
          (code OFFSET_OUT_OF_RANGE) and nothing is appended. Gaps are refused
          too (no compaction yet: a leader's log is contiguous).
        * No size or sequence checks (the leader validated): producer state is
          replayed from the batch headers, so a follower that becomes leader
          detects duplicates and sequence gaps like the old leader.
        * The leader epoch cache learns each batch's partitionLeaderEpoch.
        * Segments roll by size and age as for the leader (a large fetch may be
          spread over several segments).

        Returns the offsets appended; for nothing (empty input, only a partial
        batch) ``AppendInfo(leo, leo - 1, record_count=0)``.
        """
        now = _now_ms() if now_ms is None else now_ms
        headers = validate_fetched_batches(records)
        with self._lock:
            self._check_open()
            leo = self.log_end_offset
            if not headers:
                return AppendInfo(leo, leo - 1, -1, self.log_start_offset, 0)
            expected = leo
            for h in headers:
                if h.base_offset != expected:
                    what = "the log end offset" if expected == leo else "the previous batch's end"
                    raise UnexpectedAppendOffsetError(
                        expected,
                        h.base_offset,
                        f"follower append at {h.base_offset} does not continue {what} {expected}",
                    )
                expected = h.next_offset
            view = memoryview(records)
            count = sum(h.records_count for h in headers)
            try:
                i = 0
                while i < len(headers):
                    # One write per segment: take the batches that fit before the next roll.
                    seg = self._maybe_roll_for(headers[i].size, headers[i].last_offset, now)
                    room = self.config.segment_bytes - seg.size
                    j, size = i + 1, headers[i].size
                    while (
                        j < len(headers)
                        and size + headers[j].size <= room
                        and headers[j].last_offset - seg.base_offset <= MAX_RELATIVE_OFFSET
                    ):
                        size += headers[j].size
                        j += 1
                    chunk = headers[i:j]
                    start = chunk[0].position
                    local = [h._replace(position=h.position - start) for h in chunk]
                    seg.append(view[start : chunk[-1].end], local, [h.base_offset for h in chunk], now)
                    for h in chunk:
                        self.producers.replay(h)
                        if h.partition_leader_epoch >= 0:  # as Kafka: the leader's history wins
                            self._note_epoch(h.partition_leader_epoch, h.base_offset)
                    i = j
            except OSError as exc:
                raise storage_error(exc, f"follower append to {self.directory}") from exc
            return AppendInfo(leo, headers[-1].last_offset, -1, self.log_start_offset, count)

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
            except pa.ArrowException as exc:  # a Parquet page failed its checksum since start
                log.error("%s: reading Parquet at offset %d failed: %s", self.directory, offset, exc)
                raise KafkaProtocolError(
                    ErrorCode.KAFKA_STORAGE_ERROR, f"read {self.directory} at offset {offset}: {exc}"
                ) from exc
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
                by_base[s.base_offset] = _Logical(s.base_offset, s.next_offset, s.max_timestamp, s.size, s, None)
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
            raised = value > self.log_start_offset
            self.log_start_offset = value
            _write_int(self.directory / LOG_START_CHECKPOINT, value)
            self.producers.truncate_head(value)
            if raised:
                self._epochs.truncate_from_start(value)

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

    # -- truncation (replication) ---------------------------------------------------------

    def truncate_to(self, offset: int) -> bool:
        """Remove every record at and after ``offset`` (a follower cutting a diverged tail).

        Kafka's UnifiedLog.truncateTo. Returns False (and changes nothing but the
        epoch cache) when ``offset`` >= the log end offset; the epoch cache is then
        still trimmed to the log end, dropping an epoch assigned at election whose
        leader never wrote. Otherwise, under the log's lock:

        * ``offset`` inside a batch (not a batch boundary): the whole batch goes,
          so the log ends at that batch's base offset (below ``offset``), as Kafka;
        * raw segments after it are deleted, the one holding it is cut and becomes
          the active segment (indexes rebuilt and rewritten);
        * Parquet files whose range starts at/after it are deleted; one that
          straddles it is deleted when a raw copy exists (it is converted again
          once that segment is sealed and below the HW), else rewritten to the
          batches below it;
        * the leader epoch cache drops entries starting at/after the new end;
        * producer state: metadata of batches at/after the first raw segment is
          dropped and replayed from the raw segments, a snapshot written at the new end;
        * the HW is clamped to the new log end (the only way it moves back), and
          checkpointed; the log start offset is lowered to the new end if above it;
        * an offset below the whole log (before its first segment) is
          `truncate_fully_and_start_at(offset)`.

        A conversion to Parquet running concurrently is discarded.
        """
        if offset < 0:
            raise ValueError(f"cannot truncate to negative offset {offset}")
        with self._lock:
            self._check_open()
            try:
                if offset >= self.log_end_offset:
                    self._epochs.truncate_from_end(self.log_end_offset)
                    return False
                logical = self._logical()
                if logical[0].base_offset > offset:
                    self._truncate_fully_locked(offset)
                    return True
                self._truncate_locked(offset)
            except OSError as exc:
                raise storage_error(exc, f"truncate {self.directory}") from exc
            return True

    def _batch_boundary_at_or_below(self, offset: int) -> int:
        """``offset`` itself, or the base offset of the batch holding it."""
        for seg in reversed(self._segments):
            if seg.base_offset <= offset:
                if offset < seg.next_offset:
                    h = seg.find_batch(offset)
                    if h is not None and h.base_offset < offset:
                        return h.base_offset
                return offset
        for p in reversed(self._parquet):
            if p.base_offset <= offset < p.next_offset:
                _table, offsets, bbo = self._table_cache.get(p)
                i = int(np.searchsorted(offsets, offset, "left"))
                if i < len(offsets) and int(bbo[i]) < offset:
                    return int(bbo[i])
                return offset
        return offset

    def _truncate_locked(self, offset: int) -> None:
        cut = self._batch_boundary_at_or_below(offset)
        old_leo = self.log_end_offset
        self._generation += 1
        # Raw segments: delete those from the cut on, cut the one holding it.
        while self._segments and self._segments[-1].base_offset >= cut:
            self._segments.pop().delete()
        if self._segments and self._segments[-1].next_offset > cut:
            self._segments[-1].truncate_to(cut)
        raw_bases = {s.base_offset for s in self._segments}
        # Parquet files: delete or rewrite those reaching past the cut.
        for p in [p for p in self._parquet if p.next_offset > cut]:
            self._parquet.remove(p)
            self._table_cache.invalidate(p.path)
            if p.base_offset >= cut or p.base_offset in raw_bases:
                p.path.unlink(missing_ok=True)
            else:
                pseg = truncate_segment(p, cut, topic=self.topic, partition=self.partition)
                bisect.insort(self._parquet, pseg, key=lambda x: x.base_offset)
        if not self._segments:
            self._segments.append(LogSegment(self.directory, cut, self.config.index_interval_bytes))
        active = self._segments[-1]
        active.write_indexes()
        new_leo = self.log_end_offset
        log.warning(
            "%s: truncated to %d (asked %d): offsets %d..%d removed",
            self.directory,
            new_leo,
            offset,
            new_leo,
            old_leo - 1,
        )
        self._epochs.truncate_from_end(new_leo)
        if self.log_start_offset > new_leo:
            self.log_start_offset = new_leo
            _write_int(self.directory / LOG_START_CHECKPOINT, new_leo)
        self._rebuild_producer_state()
        if not self._hw_tracks_leo and self._hw > new_leo:
            self._hw = new_leo
            self._checkpoint_hw()

    def _rebuild_producer_state(self) -> None:
        """After a truncation: drop producer metadata from the first raw segment on, replay the raw tail."""
        first_raw = self._segments[0].base_offset
        self.producers.truncate_tail(min(first_raw, self.log_end_offset))
        for seg in self._segments:
            for h in seg.scan():
                self.producers.replay(h)
        self.producers.truncate_head(self.log_start_offset)
        self.producers.write_snapshot(self.log_end_offset)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete everything and restart the log empty at ``offset`` (Kafka's name).

        For a replica whose log ends before the leader's log start offset (or is
        otherwise unusable): raw segments and Parquet files are deleted, a new
        empty active segment starts at ``offset``, the log start offset, log end
        offset and HW all become ``offset`` (checkpointed), and the leader epoch
        cache and producer state are cleared. A concurrent conversion is discarded.
        """
        if offset < 0:
            raise ValueError(f"cannot start a log at negative offset {offset}")
        with self._lock:
            self._check_open()
            try:
                self._truncate_fully_locked(offset)
            except OSError as exc:
                raise storage_error(exc, f"truncate {self.directory}") from exc

    def _truncate_fully_locked(self, offset: int) -> None:
        log.warning(
            "%s: truncating fully (was %d..%d) and starting at %d",
            self.directory,
            self.log_start_offset,
            self.log_end_offset,
            offset,
        )
        self._generation += 1
        for seg in self._segments:
            seg.delete()
        self._segments = []
        for p in self._parquet:
            p.path.unlink(missing_ok=True)
        self._parquet = []
        self._table_cache.invalidate()
        self._segments.append(LogSegment(self.directory, offset, self.config.index_interval_bytes))
        self.log_start_offset = offset
        _write_int(self.directory / LOG_START_CHECKPOINT, offset)
        self._epochs.clear()
        self.producers.clear()
        self.producers.write_snapshot(offset)
        self._hw = offset
        if not self._hw_tracks_leo:
            self._checkpoint_hw()

    # -- Parquet tier ------------------------------------------------------------------

    def pending_conversions(self) -> list[ConversionJob]:
        """Sealed segments wholly below the HW that have no Parquet file yet, oldest first."""
        with self._lock:
            if self._closed:
                return []
            hw = self.high_watermark
            have = {p.base_offset for p in self._parquet}
            return [
                ConversionJob(s, s.size, s.next_offset, self._generation)
                for s in self._segments[:-1]
                if s.base_offset not in have and s.next_offset <= hw and s.size
            ]

    def conversion_request(self, job: ConversionJob) -> dict:
        """`job` as the converter process's request (`workbench.storage.converter`)."""
        return {
            "segment": str(job.segment.log_path),
            "size": job.size,
            "directory": str(self.directory),
            "base_offset": job.segment.base_offset,
            "next_offset": job.next_offset,
            "topic": self.topic,
            "partition": self.partition,
        }

    def install_parquet(self, job: ConversionJob, pseg: ParquetSegment) -> bool:
        """Adopt the Parquet file written for `job`; drop raw segments beyond hot_segments.

        If the segment was deleted (retention) or the log truncated since the job
        was made, the file is deleted instead and False returned.
        """
        with self._lock:
            if (
                job.segment in self._segments
                and not self._closed
                and self._generation == job.generation
                and all(p.base_offset != pseg.base_offset for p in self._parquet)
            ):
                bisect.insort(self._parquet, pseg, key=lambda p: p.base_offset)
                self._drop_cold_raw_segments()
                return True
        pseg.path.unlink(missing_ok=True)
        return False

    def convert_sealed_segments(self) -> list[Path]:
        """Write Parquet for sealed segments wholly below the HW, in this process.

        The broker sends the same jobs to its converter process instead
        (`workbench.storage.converter`); this is the in-process path for tests and
        tools. Safe to call from a worker thread: segment bytes are read through a
        dup'ed descriptor and decoded/encoded without holding the log's lock.
        """
        written: list[Path] = []
        with self._convert_lock:
            for job in self.pending_conversions():
                with self._lock:
                    if job.segment not in self._segments:
                        continue
                    fd = os.dup(job.segment.fd)
                try:
                    data = os.pread(fd, job.size, 0)
                finally:
                    os.close(fd)
                pseg = write_segment(
                    self.directory,
                    job.segment.base_offset,
                    job.next_offset,
                    data,
                    topic=self.topic,
                    partition=self.partition,
                )
                if self.install_parquet(job, pseg):
                    written.append(pseg.path)
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
                    self._checkpoint_hw()
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


__all__ = ["AppendInfo", "PartitionLog", "UnexpectedAppendOffsetError", "segment_name"]
