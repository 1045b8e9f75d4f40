"""Recovery of a partition log at open (Kafka's LogLoader).

What a crash, a torn write or a flipped byte may have left, and what loading does:

* ``*.tmp`` files (a checkpoint or Parquet file being replaced): removed;
* Parquet files a newer one supersedes (`parquet_tier.current_files`: per base offset the widest
  range, then the highest generation; none starting inside an earlier file's range), left by a
  crash or waiting for their grace period: handed to the log to unlink after the grace period
  (readers may still be reading them), never read;
* tail files (issue 17): handed to the grace period (readers keep reading them until the leader's
  next tail, a newer generation, supersedes them); one reaching past the recovered log end is
  unlinked at once (it holds records the log lost);
* a Parquet file that does not open or fails its page checksums or offset
  range: renamed ``*.corrupt`` and logged with the offsets that are lost
  unless a raw segment still holds them (a damaged file must not stop the broker);
* index files without their ``.log``: removed;
* sealed raw segments: indexes loaded (rebuilt if they do not match) and every
  batch CRC checked; the active (last) segment is scanned batch by batch, its
  torn or corrupt tail truncated, and its indexes rebuilt;
* the log start offset comes from its checkpoint, clamped to what the files hold;
  offset ranges no file holds any more are logged (reads skip them);
* the leader epoch cache is made to agree with the log; producer state is
  loaded from its snapshot and replayed from the raw segments after it;
* the high watermark is the log end (``hw_tracks_leo``) or its checkpoint,
  clamped to [log start, log end].

The result is a `LoadedLog`: the segment lists and offsets the façade
(`workbench.storage.log.PartitionLog`) starts from. A directory the façade has
just created is not read at all (``load(fresh=True)``), and a log without a raw
segment gets a lazy one whose file the first write creates (issue 19: creating
10,000 partitions cost about 2 ms of file work each, on the event loop).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench._lazy import lazy_module
from workbench.protocol.records import BatchHeader
from workbench.storage.checkpoint import HW_CHECKPOINT, LOG_START_CHECKPOINT, read_offset_checkpoint
from workbench.storage.config import LogConfig
from workbench.storage.leader_epoch import LeaderEpochCache
from workbench.storage.logical_segment import logical_segments
from workbench.storage.parquet_tier import ParquetSegment, current_files, parse_file_name
from workbench.storage.producer_state import ProducerStateManager
from workbench.storage.segment import LogSegment
from workbench.storage.transaction_index import marker_type_in

pa = lazy_module("pyarrow")

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _generation(p: ParquetSegment) -> int:
    parsed = parse_file_name(p.path.name)
    return parsed[1] if parsed else 0


@dataclass(slots=True)
class LoadedLog:
    """What recovery found: raw segments (never empty; the last is active), Parquet files, offsets."""

    segments: list[LogSegment]
    parquet: list[ParquetSegment]
    log_start_offset: int
    high_watermark: int
    #: Offset ranges [start, end) no file holds any more although the log should (a damaged
    #: segment cut, a damaged Parquet file moved aside): the replica must repair them from a
    #: healthy replica or report them lost (`ReplicaManager`), never serve the hole silently.
    missing: list[tuple[int, int]] = field(default_factory=list)
    #: Parquet files superseded by newer ones, and tail files (path, next offset): unlinked after
    #: the grace period, never read by the broker.
    superseded: list[tuple[Path, int]] = field(default_factory=list)
    #: The highest file generation on disk (`parquet_tier.file_name`): new files count on from it.
    max_generation: int = 0
    #: ``(first, next offset)`` of the tail files kept for their grace period: readers see them
    #: until the leader's first new tail of each segment reaches as far (`parquet_tail.TailFiles`).
    tails: list[tuple[int, int]] = field(default_factory=list)

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset


class LogLoader:
    """Recovers one partition directory; `load` runs once, at open."""

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        *,
        epochs: LeaderEpochCache,
        producers: ProducerStateManager,
        hw_tracks_leo: bool,
    ) -> None:
        self.directory = directory
        self.config = config
        self.epochs = epochs
        self.producers = producers
        self.hw_tracks_leo = hw_tracks_leo
        self._segments: list[LogSegment] = []
        self._parquet: list[ParquetSegment] = []
        self._log_start_offset = 0
        self._missing: list[tuple[int, int]] = []
        self._quarantined: list[int] = []  # base offsets of Parquet files moved aside by this load
        self._tails: list[ParquetSegment] = []
        self._kept_tails: list[tuple[int, int]] = []
        self._superseded: list[tuple[Path, int]] = []
        self._max_generation = 0

    @property
    def _log_end_offset(self) -> int:
        return self._segments[-1].next_offset

    def load(self, *, fresh: bool = False) -> LoadedLog:
        """Recover the directory. On failure, closes the segments it opened and re-raises.

        ``fresh``: the caller has just created the directory, so there is nothing to recover
        (no file is read): an empty log at offset 0 whose segment file waits for the first
        write. The result is what loading the empty directory would give.
        """
        if fresh:
            segment = LogSegment(self.directory, 0, self.config.index_interval_bytes, lazy=True)
            return LoadedLog([segment], [], 0, 0)
        try:
            return self._load()
        except BaseException:
            for s in self._segments:
                s.close()
            raise

    def _load(self) -> LoadedLog:
        d = self.directory
        for tmp in d.glob("*.tmp"):
            log.info("%s: removing leftover %s", d, tmp.name)
            tmp.unlink(missing_ok=True)
        self._parquet = self._drop_superseded(self._load_parquet())
        tails = self._tails
        logs = self._drop_merged_raw(sorted(d.glob("*.log"), key=lambda p: int(p.stem)))
        log_bases = {int(p.stem) for p in logs}
        for idx in [*d.glob("*.index"), *d.glob("*.timeindex")]:
            if idx.stem.isdigit() and int(idx.stem) not in log_bases:
                idx.unlink(missing_ok=True)
        have_epochs = self.epochs.load()
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
                # The active segment's indexes are rebuilt by this scan at every load and written
                # when it is sealed or closed: writing them here (two files per partition) only
                # slowed a restart of thousands of partitions (issue 19).
                seg.recover(verify_crc=True, on_batch=note_epoch)
                if seg.size:
                    seg.created_ms = _now_ms()  # a restart restarts the segment.ms clock
        checkpoint = read_offset_checkpoint(d / LOG_START_CHECKPOINT) or 0
        if not self._segments:
            # Without a raw segment the next load derives the same base again: the file can
            # wait for the first write (lazy).
            base = max(checkpoint, self._parquet[-1].next_offset if self._parquet else 0)
            self._segments.append(LogSegment(d, base, self.config.index_interval_bytes, lazy=True))
        self._retire_tails(tails)
        first = min([s.base_offset for s in self._segments] + [p.base_offset for p in self._parquet])
        self._log_start_offset = min(max(checkpoint, first), self._log_end_offset)
        if checkpoint < first and any(checkpoint <= b < first for b in self._quarantined):
            # The file the log started with was damaged and moved aside (a log start merely
            # raised by an interrupted truncation or retention is not a loss).
            log.error(
                "%s: offsets %d..%d are missing (the log starts at %d, its first file at %d)",
                d,
                checkpoint,
                first - 1,
                checkpoint,
                first,
            )
            self._missing.append((checkpoint, first))
        self._report_gaps()
        self._load_leader_epochs(have_epochs, tail_epochs)
        self._load_producer_state()
        if self.hw_tracks_leo:
            hw = self._log_end_offset
        else:
            saved = read_offset_checkpoint(d / HW_CHECKPOINT)
            hw = min(max(saved if saved is not None else 0, self._log_start_offset), self._log_end_offset)
        return LoadedLog(
            self._segments,
            self._parquet,
            self._log_start_offset,
            hw,
            self._missing,
            superseded=self._superseded,
            max_generation=self._max_generation,
            tails=self._kept_tails,
        )

    def _load_parquet(self) -> list[ParquetSegment]:
        """Open and verify every Parquet file; move damaged ones aside as ``*.corrupt``."""
        found: list[ParquetSegment] = []
        for path in sorted(self.directory.glob("*.parquet")):
            parsed = parse_file_name(path.name)
            if parsed is None:
                continue
            self._max_generation = max(self._max_generation, parsed[1])
            try:
                pseg = ParquetSegment.open(path)
            except (OSError, ValueError, pa.ArrowException) as exc:  # a damaged file must not stop the broker
                log.error("%s: unreadable Parquet file (%s); moved aside as %s.corrupt", path, exc, path.name)
                path.rename(path.with_name(path.name + ".corrupt"))
                self._quarantined.append(parsed[0])
                continue
            if pseg.tail:  # issue 17: sorted out once the raw segments are known (`_current_tails`)
                self._tails.append(pseg)
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
                self._quarantined.append(pseg.base_offset)
                continue
            found.append(pseg)
        found.sort(key=lambda p: p.base_offset)
        return found

    def _drop_superseded(self, found: list[ParquetSegment]) -> list[ParquetSegment]:
        """The sealed files `parquet_tier.current_files` keeps; the others (a cleaner's output
        supersedes the files it replaced, a merge its members: a crash, or the grace period, left
        them) go to ``superseded``, unlinked after the grace period. Readers skip them by the same rule.
        """
        keep, gone = current_files([(p.base_offset, p.next_offset, _generation(p), p) for p in found])
        for p in gone:
            log.info("%s: %s is superseded; unlinked after the grace period", self.directory, p.path.name)
            self._superseded.append((p.path, p.next_offset))
        return keep

    def _retire_tails(self, tails: list[ParquetSegment]) -> None:
        """Tail files found (a segment's chunks, and merges of them): each to the grace period (the
        leader writes a newer one, at least as wide, within a tick or two), except one reaching past
        the recovered log end, unlinked now (records the log lost)."""
        leo = self._log_end_offset
        for t in tails:
            if t.next_offset > leo:
                log.info("%s: tail %s reaches past the recovered log end; removed", self.directory, t.path.name)
                t.path.unlink(missing_ok=True)
            else:
                self._superseded.append((t.path, t.next_offset))
                self._kept_tails.append((t.base_offset, t.next_offset))

    def _drop_merged_raw(self, logs: list[Path]) -> list[Path]:
        """Delete raw segments a merged Parquet file covers (a crash before the merge removed them)."""
        merged = [(p.base_offset, p.next_offset) for p in self._parquet if p.merged]
        out = []
        for path in logs:
            base = int(path.stem)
            if any(lo <= base < hi for lo, hi in merged):
                log.info("%s: removing raw segment %d, covered by a merged Parquet file", self.directory, base)
                for suffix in (".log", ".index", ".timeindex"):
                    path.with_suffix(suffix).unlink(missing_ok=True)
                continue
            out.append(path)
        return out

    def _report_gaps(self) -> None:
        """Log every offset range no file holds any more (a deleted, cut or quarantined file).

        Reads skip a gap (the next batch starts later, as in a compacted topic); the log
        says exactly which offsets are gone.
        """
        expected = self._log_start_offset
        for seg in logical_segments(self._segments, self._parquet):
            if seg.next_offset <= expected:
                continue
            if seg.base_offset > expected:
                log.error(
                    "%s: offsets %d..%d are missing (no segment or Parquet file holds them)",
                    self.directory,
                    expected,
                    seg.base_offset - 1,
                )
                self._missing.append((expected, seg.base_offset))
            expected = max(expected, seg.next_offset)

    def _load_leader_epochs(self, have_checkpoint: bool, tail: list[tuple[int, int]]) -> None:
        """Make the epoch cache agree with the recovered log (Kafka does the same at load).

        With a checkpoint: drop entries past the log end (a torn tail), then add
        epochs the active segment shows beyond the cached ones (written just
        before a crash). Without one (or a malformed one): rebuild from every
        batch header, Parquet-only ranges included.
        """
        cache = self.epochs
        before = list(cache.entries) if have_checkpoint else None
        leo = self._log_end_offset
        if have_checkpoint:
            cache.truncate_from_end(leo, flush=False)
        else:
            if leo > self._log_start_offset or self._parquet:
                # Routine after a crash for a young partition (its first epoch is written by the
                # first flush after a record): only a rebuild that must read Parquet files is news.
                log.log(
                    logging.INFO if self._parquet else logging.DEBUG,
                    "%s: no usable leader epoch checkpoint; rebuilding it from the log",
                    self.directory,
                )
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
        cache.truncate_from_start(self._log_start_offset, flush=False)
        # Written once, and only when it says something: without a checkpoint, an empty cache
        # (an empty log) needs no file (the next load rebuilds the same nothing); a malformed
        # file is replaced.
        if cache.entries != before and (before is not None or cache.entries or cache.found):
            cache.flush()
        cache.dirty = False

    def _load_producer_state(self) -> None:
        """Load the producer snapshot and replay the raw batches after it (a stale snapshot is dropped)."""
        leo = self._log_end_offset
        snap = self.producers.load_snapshot()
        if snap > leo:
            log.warning("%s: producer snapshot at %d is beyond the log end %d; rebuilding", self.directory, snap, leo)
            self.producers.producers.clear()
            snap = 0
        self.producers.marker_reader = functools.partial(marker_type_in, self._segments)  # [txn]
        for seg in self._segments:
            if seg.next_offset <= snap:
                continue
            for h in seg.scan(seg.offset_index.lookup(snap) if seg.base_offset < snap else 0):
                if h.base_offset >= snap:
                    self.producers.replay(h)
        self.producers.truncate_head(self._log_start_offset)
