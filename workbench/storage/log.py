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

Parts (Kafka's split of the log; the façade imports them, never the reverse):

* `workbench.storage.log_loader.LogLoader`: recovery at open (segment scan,
  CRC checks, torn-tail truncation, index rebuild, damaged Parquet files,
  leader epochs, producer state, checkpoints);
* `workbench.storage.local_log.LocalLog`: the raw segments (append target,
  roll, raw reads, truncation and deletion of segments);
* `workbench.storage.parquet_log.ParquetLog`: the Parquet tier's files (reads
  re-encoded from rows, timestamp lookups, truncation, conversion jobs);
  `workbench.storage.parquet_tier` is the file format;
* `PartitionLog` here (Kafka's UnifiedLog): offsets (log start, HW, LEO),
  validation, producer state and leader epochs, retention and DeleteRecords,
  and the one lock that makes the parts consistent.

Threads: appends and reads come from the broker's event loop; `flush` (fsync)
and `convert_sealed_segments` may run in worker threads. One re-entrant lock
guards the segment lists and file descriptors; fsync and a conversion's
decode/encode run outside it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench._lazy import lazy_module
from workbench.protocol.control_records import control_record
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import (
    assign_offsets,
    validate_fetched_batches,
    validate_produce_batches,
)
from workbench.storage.checkpoint import (
    HW_CHECKPOINT,
    LOG_START_CHECKPOINT,
    write_offset_checkpoint,
)
from workbench.storage.config import LogConfig
from workbench.storage.failpoints import failpoint
from workbench.storage.leader_epoch import LeaderEpochCache
from workbench.storage.local_log import LocalLog
from workbench.storage.log_loader import LogLoader
from workbench.storage.logical_segment import LogicalSegment, logical_segments
from workbench.storage.parquet_log import ConversionJob, ParquetLog
from workbench.storage.parquet_tail import TAIL_ROUNDS, TailFiles, TailJob
from workbench.storage.parquet_tier import ParquetSegment, file_name, parse_file_name
from workbench.storage.producer_state import ProducerStateManager
from workbench.storage.segment import LogSegment, segment_name, storage_error
from workbench.storage.superseded import SupersededFiles

if TYPE_CHECKING:
    from pyarrow import Table  # pyarrow has no stubs: an alias of Any for mypy

pa = lazy_module("pyarrow")

log = logging.getLogger(__name__)


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


class PartitionLog:
    """The log of one partition (Kafka's UnifiedLog): append, read, retention, Parquet conversion, recovery."""

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
        fresh = _create_directory(self.directory)  # new: nothing to recover, no file to read
        self.config = config
        self.topic = topic
        self.partition = partition
        self._lock = threading.RLock()
        self._convert_lock = threading.Lock()
        # One flush at a time: a second one running beside it would find no dirty segment (the
        # first took them) and report the log end as durable before the first fsync finished.
        self._flush_lock = threading.Lock()
        # What the HW checkpoint holds (-1: unknown). A new directory has none, which reads as 0.
        self._hw_checkpointed = 0 if fresh else -1
        self.producers = ProducerStateManager(self.directory, load=not fresh)
        self._epochs = LeaderEpochCache(self.directory)
        #: Bumped by every truncation: a conversion started before one is discarded.
        self._generation = 0
        self._closed = False
        loaded = LogLoader(
            self.directory, config, epochs=self._epochs, producers=self.producers, hw_tracks_leo=hw_tracks_leo
        ).load(fresh=fresh)
        self._hw_tracks_leo = hw_tracks_leo
        self._hw = loaded.high_watermark
        self.log_start_offset = loaded.log_start_offset
        #: What recovery found missing ([start, end) ranges): see LoadedLog.missing.
        self.missing_ranges: list[tuple[int, int]] = list(loaded.missing)
        self._local = LocalLog(self.directory, config, loaded.segments)
        self.producers.marker_reader = self._marker_type  # [txn] commit/abort of a written marker
        self._tier = ParquetLog(self.directory, loaded.parquet, topic=topic, partition=partition)
        # issue 17: committed records in Parquet before a seal
        self._tails = TailFiles(recovered=loaded.tails)
        #: Superseded Parquet files, unlinked after the grace period (`workbench.storage.superseded`).
        self._superseded = SupersededFiles()
        for path, nxt in loaded.superseded:
            self._superseded.bury(path, nxt)
        #: The last file generation used (`parquet_tier.file_name`): every new file's name is new.
        self._file_generation = loaded.max_generation
        #: Bases whose generation-0 name a refused conversion used (and unlinked): never reused.
        self._retired_names: set[int] = set()
        self._instance = uuid.uuid4().hex
        # Durability (flush.messages): offsets below `_flushed_offset` are fsynced. What recovery
        # found may still be only in the page cache (a killed process), so nothing counts as
        # flushed until the first flush, which covers the recovered active segment too.
        self._flushed_offset = self.log_start_offset
        self.active_segment.dirty = self.active_segment.on_disk  # a lazy segment has nothing to fsync
        #: Base offsets of the segment files the last flush found (a change fsyncs the directory).
        self._synced_segments: frozenset[int] = frozenset()
        self.last_flush_monotonic = time.monotonic()

    # -- offsets -------------------------------------------------------------------------

    @property
    def active_segment(self) -> LogSegment:
        return self._local.active_segment

    @property
    def log_end_offset(self) -> int:
        # LocalLog.log_end_offset inlined: read dozens of times per acks=all round (issue 19).
        return self._local.segments[-1].next_offset

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
        write_offset_checkpoint(self.directory / HW_CHECKPOINT, self._hw)
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
                # On an empty log the entry waits for the first flush after a record is in it
                # (`_write_deferred_epochs`); until then recovery rebuilds it from the batches'
                # own epochs. A new partition then costs no checkpoint write (issue 19).
                empty = self.log_end_offset == self.log_start_offset
                return self._epochs.assign(epoch, self.log_end_offset, flush=not empty)
            except OSError as exc:
                raise storage_error(exc, f"leader epoch checkpoint in {self.directory}") from exc

    # -- append ------------------------------------------------------------------------

    def append(
        self,
        records: bytes | bytearray | memoryview,
        *,
        leader_epoch: int | None = None,
        now_ms: int | None = None,
        origin: str = "client",
        coordinator_epoch: int | None = None,
    ) -> AppendInfo:
        """Append a Produce request's record set as leader: validate, assign offsets, write once.

        ``coordinator_epoch``: a transaction marker's coordinator epoch (fenced below the
        producer's last one here, `ProducerStateManager.check`).

        ``origin="coordinator"`` (Kafka's AppendOrigin.COORDINATOR) is for batches a
        coordinator writes: transaction markers (control batches) and transactional
        offset commits without a sequence; a client may send neither.

        A bytearray is patched in place (base offsets, leader epoch). No record is decoded.
        Each batch's partitionLeaderEpoch becomes ``leader_epoch`` (outside the
        CRC); an epoch newer than the cache's latest is recorded as starting at
        this append's base offset. ``None`` means the latest cached epoch (0 for
        a log without one). An epoch older than the latest cached one raises
        FENCED_LEADER_EPOCH: a deposed leader must not write.
        """
        now = _now_ms() if now_ms is None else now_ms
        limit = self.config.max_message_bytes
        headers = validate_produce_batches(records, coordinator=origin == "coordinator", max_message_bytes=limit)
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
            staged, dup = self.producers.check(headers, coordinator_epoch)
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
          (code OFFSET_OUT_OF_RANGE) and nothing is appended. Gaps are refused,
          except on a compacted log (the leader's cleaner removed records: a
          batch may start after the previous one's end, never before).
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
            gaps_allowed = self.config.compact
            for h in headers:
                if h.base_offset < expected or (h.base_offset > expected and not gaps_allowed):
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
                    j = self._local.batches_that_fit(seg, headers, i)
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
        if self._local.should_roll(size, last_offset, now):
            return self._roll()
        return self._local.active_segment

    def _roll(self) -> LogSegment:
        """Kafka's UnifiedLog.roll: a new segment, and a producer snapshot at its base offset."""
        new = self._local.roll()
        self.producers.write_snapshot(new.base_offset)
        return new

    def maybe_roll(self, now_ms: int | None = None) -> bool:
        """Roll the active segment when it is older than segment.ms (called periodically)."""
        now = _now_ms() if now_ms is None else now_ms
        if not self._closed and not self._local.is_past_segment_ms(now):
            return False  # the usual answer, without the lock (asked of every log every tick)
        with self._lock:
            self._check_open()
            if self._local.is_past_segment_ms(now):
                try:
                    self._roll()
                except OSError as exc:
                    raise storage_error(exc, f"roll {self.directory}") from exc
                return True
            return False

    def remove_expired_producers(self, expiration_ms: int, now_ms: int | None = None) -> list[int]:
        """Forget idempotent producers idle for ``expiration_ms`` with no open transaction here
        (Kafka's producer.id.expiration.ms); returns their producer ids."""
        now = _now_ms() if now_ms is None else now_ms
        with self._lock:
            self._check_open()
            return self.producers.remove_expired(now, expiration_ms)

    # -- transactions (KIP-98; state in storage/transaction_index.py) ------------------

    @property
    def last_stable_offset(self) -> int:
        """Below it, every transaction is decided: the bound of a read_committed fetch."""
        with self._lock:
            return self.producers.transactions.last_stable_offset(self.high_watermark, self.log_start_offset)

    def aborted_transactions(self, fetch_offset: int, upper: int) -> list[tuple[int, int]]:
        """``(producer id, first offset)`` of aborted transactions with data in [fetch_offset, upper)."""
        with self._lock:
            return [
                (a.producer_id, a.first_offset)
                for a in self.producers.transactions.aborted_between(fetch_offset, upper)
            ]

    def aborted_spans(self, fetch_offset: int, upper: int) -> list[tuple[int, int, int]]:
        """``(producer id, first offset, last offset)`` of aborted transactions with data in
        [fetch_offset, upper): the offsets a broker-side read_committed reader skips (KIP-932)."""
        with self._lock:
            return [
                (a.producer_id, a.first_offset, a.last_offset)
                for a in self.producers.transactions.aborted_between(fetch_offset, upper)
            ]

    def _marker_type(self, offset: int) -> tuple[int, int]:
        data = self._local.read(offset, 256, offset + 1)
        if data is None:
            raise ValueError(f"no batch at offset {offset}")
        return control_record(data)

    # -- read ----------------------------------------------------------------------------

    def read(
        self, offset: int, max_bytes: int, *, upper_bound: int | None = None, fill_gaps: bool = False
    ) -> bytes | memoryview:
        """Whole batches from the one holding ``offset``, all below ``upper_bound`` (default: HW).

        At least one batch when one is available, even beyond ``max_bytes`` (KIP-74);
        ``b""`` at the bound. Batches come from one segment, as in Kafka. ``fill_gaps`` (a
        follower's fetch): the offsets a Parquet-only range holds no row for (transaction
        markers, aborted records) come back as no-producer control batches
        (`ParquetLog.read`), so a follower copies the range without a hole.
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
                raw_start = self._local.base_offset
                if offset < raw_start:
                    data = self._tier.read(
                        offset, max_bytes, upper, raw_start, fill_gaps=fill_gaps, epoch_at=self._epochs.epoch_at
                    )
                    if data:
                        return data
                    offset = max(offset, raw_start)
                raw = self._local.read(offset, max_bytes, upper)
                if raw is not None:
                    return raw
            except OSError as exc:
                raise storage_error(exc, f"read {self.directory}") from exc
            except pa.ArrowException as exc:  # a Parquet page failed its checksum since start
                log.error("%s: reading Parquet at offset %d failed: %s", self.directory, offset, exc)
                raise KafkaProtocolError(
                    ErrorCode.KAFKA_STORAGE_ERROR, f"read {self.directory} at offset {offset}: {exc}"
                ) from exc
            return b""

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
                    found = self._tier.offset_for_timestamp(seg.parquet, timestamp_ms, lso, upper)
                if found is not None:
                    return found
            return None

    def max_timestamp_offset(self, upper: int | None = None) -> tuple[int, int] | None:
        """KIP-734 (ListOffsets MAX_TIMESTAMP): (offset, timestamp) of the record with the largest
        timestamp below ``upper`` (default: the high watermark), the first such record on ties;
        None when there is no record. Segments are visited from the largest maxTimestamp down and
        only those that could still beat the best found are read."""
        with self._lock:
            self._check_open()
            lso = self.log_start_offset
            bound = self.high_watermark if upper is None else upper
            best: tuple[int, int] | None = None
            for seg in sorted(self._logical(), key=lambda s: -s.max_timestamp):  # stable: by offset on ties
                if seg.next_offset <= lso or seg.base_offset >= bound:
                    continue
                if best is not None and (
                    seg.max_timestamp < best[1] or (seg.max_timestamp == best[1] and seg.base_offset > best[0])
                ):
                    continue
                if seg.raw is not None:
                    found = seg.raw.find_max_timestamp(lso, bound)
                else:
                    assert seg.parquet is not None
                    found = self._tier.max_timestamp(seg.parquet, lso, bound)
                if found is not None and (
                    best is None or found[1] > best[1] or (found[1] == best[1] and found[0] < best[0])
                ):
                    best = found
            return best

    # -- deletion ----------------------------------------------------------------------

    def _logical(self) -> list[LogicalSegment]:
        return logical_segments(self._local.segments, self._tier.segments)

    def _delete_logical(self, seg: LogicalSegment) -> None:
        """Retention or DeleteRecords: the raw segment goes now, its Parquet files after the grace
        period (a reader may have listed them)."""
        if seg.raw is not None and seg.parquet is None:
            for path, nxt in self._tails.drop(seg.raw.base_offset):
                self._superseded.bury(path, nxt)
        if seg.raw is not None:
            self._local.delete_segment(seg.raw)
        if seg.parquet is not None:
            self._tier.forget_segment(seg.parquet)
            self._superseded.bury(seg.parquet.path, seg.parquet.next_offset)

    def _delete_prefix(self, should_delete: Callable[[LogicalSegment], bool]) -> int:
        """Delete logical segments from the oldest while ``should_delete(seg)``; never the active one."""
        active = self._local.active_segment
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
            write_offset_checkpoint(self.directory / LOG_START_CHECKPOINT, value)
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
        if not self._closed and len(self._local.segments) == 1 and not self._tier.segments:
            return 0  # only the active segment, never deleted: the usual answer, without the lock
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

                def over(seg: LogicalSegment) -> bool:
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
        found = self._local.batch_boundary_at_or_below(offset)
        if found is None:
            found = self._tier.batch_boundary_at_or_below(offset)
        return offset if found is None else found

    def _truncate_locked(self, offset: int) -> None:
        cut = self._batch_boundary_at_or_below(offset)
        old_leo = self.log_end_offset
        self._generation += 1
        self._flushed_offset = min(self._flushed_offset, cut)
        # Raw segments: delete those from the cut on, cut the one holding it. Then Parquet files:
        # delete or rewrite those reaching past the cut. Only then, if no raw segment is left, start
        # one at the cut: a crash before that reopens with the log ending where the Parquet files end
        # (the truncation undone, done again by the next fetch), never an empty segment at the cut
        # beside Parquet files that still hold offsets past it.
        self._local.remove_from(cut)
        unlink, bury = self._tails.reaching_past(cut)
        for path in unlink:
            path.unlink(missing_ok=True)  # records the log no longer has: gone at once
        for path, nxt in bury:
            self._superseded.bury(path, nxt)
        self._superseded.unlink_reaching_past(cut)
        self._tails.waiting(
            [(parsed[0], nxt) for path, nxt in self._superseded.entries() if (parsed := parse_file_name(path.name))]
        )
        self._tier.truncate_to(cut, self._local.base_offsets())
        self._local.finish_truncation(cut)
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
            write_offset_checkpoint(self.directory / LOG_START_CHECKPOINT, new_leo)
        self._rebuild_producer_state()
        if not self._hw_tracks_leo and self._hw > new_leo:
            self._hw = new_leo
            self._checkpoint_hw()

    def _rebuild_producer_state(self) -> None:
        """After a truncation: drop producer metadata from the first raw segment on, replay the raw tail."""
        first_raw = self._local.base_offset
        self.producers.truncate_tail(min(first_raw, self.log_end_offset))
        for seg in self._local.segments:
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
        self._flushed_offset = offset
        # Parquet files first: a crash between the two leaves the old raw tail, a contiguous log
        # (its start rises to the first raw segment), never an empty segment at ``offset`` above
        # old Parquet files with a gap between them.
        for path in self._tails.reaching_past(-1)[0]:
            path.unlink(missing_ok=True)
        self._superseded.unlink_reaching_past(-1)
        self._tier.delete_all()
        self._local.truncate_fully(offset)
        self.log_start_offset = offset
        write_offset_checkpoint(self.directory / LOG_START_CHECKPOINT, offset)
        self._epochs.clear()
        self.producers.clear()
        self.producers.write_snapshot(offset)
        self._hw = offset
        if not self._hw_tracks_leo:
            self._checkpoint_hw()

    # -- Parquet tier ------------------------------------------------------------------

    def pending_conversions(self) -> list[ConversionJob]:
        """Sealed segments wholly below the last stable offset (so every transaction in them is
        decided) that have no Parquet file yet, oldest first."""
        with self._lock:
            if self._closed:
                return []
            return self._tier.pending(self._local.sealed_segments, self.last_stable_offset, self._generation)

    def conversion_request(self, job: ConversionJob) -> dict[str, Any]:
        """`job` as the converter process's request (`workbench.storage.converter`): the file's
        name is one never used in this directory (`parquet_tier.file_name`)."""
        return {
            **self._tier.conversion_request(job),
            "aborted": self._aborted_in(job),
            "name": self._sealed_name(job),
            # The key of the converter's decoded tail of this segment (`tail_request`): the seal
            # reuses it when the log has not changed since (a truncation moves the generation).
            "generation": f"{self._instance}:{job.generation}",
        }

    def _sealed_name(self, job: ConversionJob) -> str:
        base = job.segment.base_offset
        with self._lock:
            if base not in self._retired_names and not (self.directory / file_name(base)).exists():
                return file_name(base)
            return self._new_name(base)

    def _new_name(self, base: int) -> str:
        """A file name for ``base`` nobody used before (the next generation); under the lock."""
        self._file_generation += 1
        return file_name(base, self._file_generation)

    def unlink_superseded(self, now: float | None = None) -> int:
        """Unlink the superseded Parquet files whose grace period is over (the broker's
        maintenance loop); how many."""
        if not len(self._superseded):
            return 0
        with self._lock:
            return self._superseded.reap(now)

    def superseded_files(self) -> list[Path]:
        """Files waiting out their grace period (tests, tools)."""
        with self._lock:
            return self._superseded.pending()

    def _aborted_in(self, job: ConversionJob) -> list[tuple[int, int, int]]:
        """[txn] (producer id, first, last offset) of aborted transactions overlapping ``job``'s
        segment: the Parquet tier omits their records, so plain Parquet readers see committed data."""
        with self._lock:
            return [
                (a.producer_id, a.first_offset, a.last_offset)
                for a in self.producers.transactions.aborted_between(job.segment.base_offset, job.next_offset)
            ]

    def install_parquet(self, job: ConversionJob, pseg: ParquetSegment) -> bool:
        """Adopt the Parquet file written for `job`; drop raw segments beyond hot_segments.

        If the segment was deleted (retention) or the log truncated since the job
        was made, the file is deleted instead and False returned.
        """
        with self._lock:
            if (
                job.segment in self._local
                and not self._closed
                and self._generation == job.generation
                and self._tier.install(pseg)
            ):
                self._sweep_tails()
                self._drop_cold_raw_segments()
                return True
            # At once, not after a grace period: the log changed (a truncation may have cut these
            # records); its name is never used again.
            pseg.path.unlink(missing_ok=True)
            self._retired_names.add(job.segment.base_offset)
        return False

    def _sweep_tails(self) -> None:
        for path, nxt in self._tails.sweep(self._local.base_offsets(), self._tier.base_offsets()):
            self._superseded.bury(path, nxt)

    # -- tail files (workbench.storage.parquet_tail, issue 17) ----------------------------------

    def pending_tails(self) -> list[TailJob]:
        """Per raw segment without a converted file, the tail file to write next: a merge of its
        chunks, or a chunk of the records committed since its last one (below the LSO, so never
        above the HW nor an undecided transaction). See `workbench.storage.parquet_tail`."""
        with self._lock:
            if self._closed:
                return []
            lso = self.last_stable_offset
            # A sealed segment wholly below the LSO is the sealed conversion's (`pending_conversions`):
            # a tail of it would be the same write in another format, superseded moments later. In
            # a 2 M-record burst at RF=1, tails wrote 1.37 M rows, most of them whole sealed
            # segments waiting for their conversion, which then wrote them again (issue 19).
            active = self._local.active_segment
            raw = [seg for seg in self._local.segments if seg is active or seg.next_offset > lso]
            return self._tails.pending(raw, self._tier.base_offsets(), lso, self._generation)

    def tail_request(self, job: TailJob) -> dict[str, Any]:
        """``job`` as the converter process's request: a tail file left at ``.tail.tmp``."""
        with self._lock:
            aborted = [
                (a.producer_id, a.first_offset, a.last_offset)
                for a in self.producers.transactions.aborted_between(job.first, job.next_offset)
            ]
        return {
            "segment": str(job.segment.log_path),
            "start_position": job.start_pos,
            "size": job.size,
            "directory": str(self.directory),
            "base_offset": job.first,
            "next_offset": job.next_offset,
            "topic": self.topic,
            "partition": self.partition,
            "aborted": aborted,
            "tail": True,
            # The converter caches the decoded bytes under this: a new log instance (topic
            # recreated) or a truncation never reuses another's bytes.
            "generation": f"{self._instance}:{job.generation}",
        }

    def install_tail(self, job: TailJob, tmp: Path) -> Path | None:
        """Rename the tail file ``tmp`` into place under a new name (``<first>.g<generation>.parquet``)
        unless the log changed (truncation, segment deleted), a sealed file is installed for that
        segment or its chunks changed since the job was made; the chunks a merge supersedes are
        unlinked after the grace period. Its path, None if it was not installed."""
        with self._lock:
            if (
                not self._closed
                and job.segment in self._local
                and self._generation == job.generation
                and job.segment.base_offset not in self._tier.base_offsets()
                and self._tails.accepts(job)
            ):
                path = self.directory / self._new_name(job.first)
                os.rename(tmp, path)  # a name never used: nothing is replaced
                for old, nxt in self._tails.install(job, path):
                    self._superseded.bury(old, nxt)
                self._sweep_tails()
                return path
        tmp.unlink(missing_ok=True)
        return None

    def tail_files(self) -> list[Path]:
        """The current tail files of the raw segments, in offset order (tests, tools)."""
        with self._lock:
            return self._tails.paths()

    def write_tails(self, rounds: int = TAIL_ROUNDS) -> list[Path]:
        """Write the pending tail files in this process, merges included, up to ``rounds`` jobs
        per segment (tests, tools; the broker uses its converter process); the files installed."""
        from workbench.storage.parquet_tier import write_tail_file

        written = []
        with self._convert_lock:
            for _ in range(rounds):
                jobs = self.pending_tails()
                if not jobs:
                    break
                for job in jobs:
                    req = self.tail_request(job)
                    with self._lock:
                        if job.segment not in self._local:
                            continue
                        fd = os.dup(job.segment.fd)
                    try:
                        data = os.pread(fd, job.size - job.start_pos, job.start_pos)
                    finally:
                        os.close(fd)
                    pseg = write_tail_file(
                        self.directory,
                        job.first,
                        job.next_offset,
                        data,
                        topic=self.topic,
                        partition=self.partition,
                        aborted=[tuple(a) for a in req["aborted"]],
                    )
                    if (path := self.install_tail(job, pseg.path)) is not None:
                        written.append(path)
        return written

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
                    if job.segment not in self._local:
                        continue
                    fd = os.dup(job.segment.fd)
                try:
                    data = os.pread(fd, job.size, 0)
                finally:
                    os.close(fd)
                pseg = self._tier.write_for(job, data, aborted=self._aborted_in(job), name=self._sealed_name(job))
                if self.install_parquet(job, pseg):
                    written.append(pseg.path)
            with self._lock:
                if not self._closed:
                    self._drop_cold_raw_segments()
        return written

    def _drop_cold_raw_segments(self) -> None:
        """Delete sealed raw segments that have a Parquet copy, beyond the newest ``hot_segments``."""
        have = self._tier.base_offsets()
        sealed = self._local.sealed_segments
        for seg in sealed[: max(len(sealed) - self.config.hot_segments, 0)]:
            if seg.base_offset in have:
                self._local.delete_segment(seg)

    def parquet_files(self) -> list[Path]:
        """The Parquet files of this partition, oldest first."""
        with self._lock:
            return self._tier.files()

    # -- log cleaner (workbench.storage.log_cleaner) -----------------------------------------

    def cleanable_segments(self) -> tuple[int, list[LogicalSegment]]:
        """``(generation, segments)``: the logical segments wholly below both the active segment
        and the last stable offset and already converted to Parquet, oldest first, that the log
        cleaner may rewrite (Kafka never cleans the active segment, nothing a consumer cannot see
        yet, nor an undecided transaction; the converter owns a segment until its file exists)."""
        with self._lock:
            if self._closed:
                return self._generation, []
            bound = min(self._local.active_segment.base_offset, self.last_stable_offset)
            segs = []
            for s in self._logical():
                # Only segments the Parquet converter is done with: it writes `<base>.parquet` itself,
                # so a segment still waiting for conversion is left alone (the prefix stops there).
                if s.next_offset > bound or s.parquet is None:
                    break
                if s.next_offset > self.log_start_offset:
                    segs.append(s)
            return self._generation, segs

    def segment_table(self, seg: LogicalSegment) -> Table:
        """The records of ``seg`` as a table in the Parquet tier's schema (control batches and
        aborted transactions' records left out, as the Parquet tier does: the cleaner's offset map
        never lets an aborted record supersede a committed one).

        Reads the Parquet copy when there is one, else decodes the raw segment
        through a dup'ed descriptor: safe outside the log's lock (a worker thread).
        """
        if seg.parquet is not None:
            return seg.parquet.read_table()
        assert seg.raw is not None
        with self._lock:
            fd = os.dup(seg.raw.fd)
            size = seg.raw.size
        try:
            data = os.pread(fd, size, 0)
        finally:
            os.close(fd)
        from workbench.protocol.records import decode_records
        from workbench.storage.parquet_tier import without_aborted
        from workbench.storage.record_tables import columns_to_table

        with self._lock:
            aborted = [
                (a.producer_id, a.first_offset, a.last_offset)
                for a in self.producers.transactions.aborted_between(seg.base_offset, seg.next_offset)
            ]
        table = columns_to_table(decode_records(data))
        return without_aborted(table, aborted) if aborted and table.num_rows else table

    def install_cleaned(self, generation: int, seg: LogicalSegment, cleaned: Path, max_timestamp: int) -> bool:
        """Replace ``seg`` by the cleaned Parquet file ``cleaned`` (same offset range, fewer records)."""
        return self.install_merged(generation, [seg], cleaned, max_timestamp)

    def install_merged(self, generation: int, segs: list[LogicalSegment], cleaned: Path, max_timestamp: int) -> bool:
        """Replace the adjacent segments ``segs`` by the one cleaned Parquet file ``cleaned``
        covering their whole offset range (the log cleaner's output, `MergedFileWriter`).

        Steps, each a crash seam (failpoints ``cleaner.before_rename``, ``cleaner.after_rename``,
        ``cleaner.after_unlink``): the file is renamed to a new name for the first base
        (``<first base>.g<generation>.parquet``, never over an existing file); then the members'
        Parquet files are handed to the grace period (`workbench.storage.superseded`); then the raw
        copies go. A reader applies one rule, `parquet_tier.current_files` (per base the widest
        range, then the highest generation; a file starting inside an earlier file's range is
        superseded: `LogLoader` at recovery, `workbench.sql.cache.read_sealed` and the catalog's
        views on the notebook side), so before the rename it sees the old files, after it the new
        one, never both and never neither; recovery buries what a crash left superseded. A crash
        with raw copies left keeps them only until recovery sees
        the file's ``merged`` flag (a single-segment rewrite keeps its hot raw copy, correct: it
        holds every record, only less compact).

        Refused, and ``cleaned`` deleted, when the log was truncated since ``generation``, a
        segment changed or went (retention, conversion dropped its raw copy), the segments are
        not adjacent, or an older raw segment exists (raw segments stay a suffix of the log).
        """
        with self._lock:
            logical = {s.base_offset: s for s in self._logical()}
            raws = [s.raw for s in segs if s.raw is not None]
            ok = (
                not self._closed
                and bool(segs)
                and generation == self._generation
                and all(a.next_offset == b.base_offset for a, b in itertools.pairwise(segs))
                and self._local.segments[: len(raws)] == raws
                and self._local.active_segment not in raws
            )
            for seg in segs if ok else []:
                current = logical.get(seg.base_offset)
                if (
                    current is None
                    or current.next_offset != seg.next_offset
                    or current.raw is not seg.raw
                    or (seg.parquet is not None and current.parquet is not seg.parquet)
                ):
                    ok = False
                    break
            if not ok:
                cleaned.unlink(missing_ok=True)
                return False
            first, last = segs[0], segs[-1]
            path = self.directory / self._new_name(first.base_offset)
            try:
                failpoint("cleaner.before_rename")
                os.rename(cleaned, path)  # a name never used: nothing is replaced
                _fsync_directory(self.directory)
                failpoint("cleaner.after_rename")
                pseg = ParquetSegment(
                    path,
                    first.base_offset,
                    last.next_offset,
                    max_timestamp,
                    path.stat().st_size,
                    merged=len(segs) > 1,
                )
                for seg in segs:
                    if seg.parquet is not None:
                        self._tier.segments.remove(seg.parquet)
                        self._superseded.bury(seg.parquet.path, seg.parquet.next_offset)
                self._tier.invalidate_cache()
                self._tier.install(pseg)
                failpoint("cleaner.after_unlink")
                if raws:
                    # The raw copies are the only place recovery replays producer state from: a
                    # snapshot at the log end first, so an idempotent producer whose batches were
                    # cleaned away keeps its sequence and duplicate detection across a restart.
                    self.producers.write_snapshot(self.log_end_offset)
                for raw in raws:
                    self._local.delete_segment(raw)
            except OSError as exc:
                raise storage_error(exc, f"install cleaned segment in {self.directory}") from exc
            return True

    # -- durability and lifecycle -----------------------------------------------------------

    @property
    def flushed_offset(self) -> int:
        """Offsets below this are fsynced (survive a power loss); see `flush`."""
        return self._flushed_offset

    def needs_flush(self) -> bool:
        """True when flush.messages or more appended messages are not fsynced yet (Kafka's
        ``unflushedMessages >= flushInterval``): the append must not be acknowledged before
        a `flush`. With the default flush.messages (Long.MAX_VALUE) never."""
        return self.log_end_offset - self._flushed_offset >= self.config.flush_messages

    def flush_pending(self) -> bool:
        """Whether `flush` has work: a segment written, a snapshot or checkpoint behind, a segment
        file added or removed since the last flush.

        Read without the lock: the broker asks every log each maintenance tick and hands only
        these to its flush thread (10,000 idle partitions cost 10,000 locked flush calls a
        second otherwise, issue 19); a stale answer delays a flush by one tick.
        """
        if self._closed:
            return False
        hw_behind = not self._hw_tracks_leo and self._hw != self._hw_checkpointed
        epochs_due = self._epochs.dirty and self._local.segments[-1].next_offset > self.log_start_offset
        if hw_behind or self.producers.changed or epochs_due:
            return True
        segments = self._local.segments
        if any(seg.dirty for seg in segments):
            return True
        return frozenset(seg.base_offset for seg in segments if seg.on_disk) != self._synced_segments

    def _write_deferred_epochs(self) -> None:
        """Write the leader epoch an election recorded on an empty log (`assign_leader_epoch`),
        once the log holds a record: until then nothing depends on it (a restart as leader
        records its epoch again; as follower, an empty log fetches from its start), so a
        partition nobody writes to never writes the file (issue 19). Under the lock."""
        if self._epochs.dirty and self.log_end_offset > self.log_start_offset:
            self._epochs.flush()

    def flush(self) -> None:
        """fsync segments written since the last flush; checkpoint producer state and HW.

        Group commit: one call covers every batch appended before it took the lock,
        whoever appended it; `flushed_offset` then moves to the log end seen then. A new
        segment's directory entry is made durable too (the partition directory is fsynced
        when the set of segments changed). The sizes that are now durable are written to
        ``.flushed`` (JSON, not itself fsynced): what a power loss right now would leave,
        for tests that simulate one.
        """
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.last_flush_monotonic = time.monotonic()
            target = self.log_end_offset
            generation = self._generation
            sizes = {seg.log_path.name: seg.size for seg in self._local.segments if seg.on_disk}
            names = frozenset(seg.base_offset for seg in self._local.segments if seg.on_disk)
            fds = self._local.take_dirty_fds()
            try:
                if self.producers.changed:
                    self.producers.write_snapshot(self.log_end_offset)
                if not self._hw_tracks_leo and self._hw != self._hw_checkpointed:
                    self._checkpoint_hw()
                self._write_deferred_epochs()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                raise storage_error(exc, f"checkpoint {self.directory}") from exc
        try:
            for fd in fds:
                os.fsync(fd)
            if names != self._synced_segments:
                _fsync_directory(self.directory)
        except OSError as exc:
            with self._lock:  # not durable: the next flush must write these segments again
                for seg in self._local.segments:
                    seg.dirty = seg.on_disk
            raise storage_error(exc, f"fsync {self.directory}") from exc
        finally:
            for fd in fds:
                os.close(fd)
        with self._lock:
            self._synced_segments = names
            if target > self._flushed_offset and self._generation == generation:  # no truncation meanwhile
                self._flushed_offset = target
                _write_flushed(self.directory, target, sizes)

    def update_config(self, config: LogConfig) -> None:
        with self._lock:
            self.config = config
            self._local.set_config(config)

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
                # A log nothing was ever written to (no segment file, no producer) leaves no file.
                untouched = not self.active_segment.on_disk and self.log_end_offset == self.log_start_offset
                if self.active_segment.on_disk:
                    self.active_segment.write_indexes()
                if not (untouched and not self.producers.producers and not self.producers.changed):
                    self.producers.write_snapshot(self.log_end_offset)
                if not self._hw_tracks_leo and self._hw != self._hw_checkpointed:
                    write_offset_checkpoint(self.directory / HW_CHECKPOINT, self._hw)
                self._write_deferred_epochs()
                self._local.flush()
            finally:
                self._closed = True
                self._local.close()
                self._tier.invalidate_cache()

    def delete(self) -> None:
        """Remove the partition directory (topic deleted)."""
        with self._lock:
            self._closed = True
            self._local.close()
            self._tier.invalidate_cache()
            shutil.rmtree(self.directory, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaProtocolError(ErrorCode.KAFKA_STORAGE_ERROR, f"log {self.directory} is closed")

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.topic}-{self.partition}, start={self.log_start_offset}, "
            f"hw={self.high_watermark}, leo={self.log_end_offset})"
        )


def _create_directory(directory: Path) -> bool:
    """Create a partition directory (and its topic directory); False when it already existed."""
    try:
        os.mkdir(directory)
    except FileExistsError:
        return False
    except FileNotFoundError:
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(directory)
        except FileExistsError:
            return False
    return True


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_flushed(directory: Path, offset: int, sizes: dict[str, int]) -> None:
    """Record what the last flush made durable (see `PartitionLog.flush`); best effort."""
    tmp = directory / ".flushed.tmp"
    try:
        tmp.write_text(json.dumps({"offset": offset, "segments": sizes}))
        os.replace(tmp, directory / ".flushed")
    except OSError as exc:
        log.debug("%s: cannot write .flushed: %s", directory, exc)


__all__ = ["AppendInfo", "ConversionJob", "PartitionLog", "UnexpectedAppendOffsetError", "segment_name"]
