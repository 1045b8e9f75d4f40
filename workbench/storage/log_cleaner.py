"""Log compaction (Kafka's LogCleaner): keep the latest record per key of ``compact`` logs.

One cleaner per broker runs in a background thread, never on the request path.
A pass over one log works like Kafka's (``kafka.log.LogCleaner``):

1. **Cleanable range.** Only whole segments below both the active segment and
   the high watermark (`PartitionLog.cleanable_segments`), and only those whose
   newest record is older than ``min.compaction.lag.ms``. The log's
   ``cleaner-offset-checkpoint`` file holds the *first dirty offset*: below it
   the log was cleaned before (the "clean" part), from it on it is "dirty".
2. **When.** The dirty ratio is dirty bytes / (clean + dirty bytes). A log is
   cleaned when the ratio reaches ``min.cleanable.dirty.ratio``, when its oldest
   dirty segment is older than ``max.compaction.lag.ms``, or when a tombstone it
   kept has outlived ``delete.retention.ms``.
3. **Offset map.** The dirty segments' keys go into an `OffsetMap` (key ->
   latest offset) of bounded size, ``log.cleaner.dedupe.buffer.size``. When it
   is full, the pass stops at the last whole segment it holds; the rest is
   cleaned by the next pass.
4. **Copy.** Every segment from the log start to the end of the mapped range
   is rewritten keeping a record when no later record has its key. Offsets are
   kept: a compacted log has gaps, and every read path skips them. A tombstone
   (null value) is kept until it is in the clean part *and* older than
   ``delete.retention.ms``, so a consumer reading from the beginning within
   that time sees the delete. Records without a key (refused on produce with
   INVALID_RECORD, but present in a log whose policy changed) are kept.
5. **Output, merged.** Adjacent cleaned segments are grouped, as Kafka's cleaner
   groups them (``groupSegmentsBySize``), up to ``segment.bytes`` (estimated from
   each segment's size and the share of records kept) into one compacted Parquet
   file (`MergedFileWriter`, one segment's table in memory at a time), installed
   by `PartitionLog.install_merged`: renamed to a new name for the first base
   (``<base>.g<generation>.parquet``, never over a listed file), then the members'
   files are unlinked after the grace period and the raw copies go. Every reader
   takes per base the widest file and skips a file whose range starts inside an
   earlier one (`parquet_tier.current_files`; recovery buries it), so a crash at
   any step leaves the old files or the new one visible, never both, never
   neither (failpoints ``cleaner.*``, tests/unit/test_log_cleaner.py). A merge
   removing nothing whose file would not be smaller than what it replaces is
   discarded; a rewrite that removes records is always installed (a superseded
   value left behind could outlive its key's tombstone). Tiny segments merge
   until their footers are amortised, so bytes reclaimed stay positive. So the Parquet
   tier, and SQL over it, sees exactly what a consumer from the beginning sees,
   in few files. Fetches of cleaned ranges are re-encoded from Parquet; a batch
   whose first records went keeps its base offset and base sequence.
6. **Checkpoint.** The new first dirty offset is written last. A crash before
   it only means the next pass cleans the same range again (cleaning is idempotent).

I/O is throttled to ``log.cleaner.io.max.bytes.per.second`` (bytes read plus
bytes written), as Kafka's Throttler does.

Replicas clean independently: each broker's cleaner decides on its own log,
and since a pass only removes records some later record of the same key
supersedes, every replica serves "at least the latest value per key, in offset
order" at any moment; once each has cleaned, they serve the same records.

Transactions hook: records of transactional batches are decoded like any
other; control batches are not in the Parquet tier (their offsets are gaps
there already). When aborted-transaction indexes exist, `retain_hook` is the
place to keep markers and drop aborted records: it receives each segment's
table and the keep mask and may change the mask.

Producer state (Kafka keeps the last batch of each producer): recovery replays
producer state from the snapshot and the raw segments after it, and a snapshot at
the log end is written before a pass deletes raw copies, so an idempotent producer
whose batches were cleaned away keeps its sequence and duplicate detection across
a restart. Not done: a replica rebuilt from nothing by fetching a cleaned log
learns only the surviving batches (Kafka retains an empty batch header for a
producer's last batch; the Parquet tier has one row per record and no place for
one), so a producer whose last batch was wholly removed is unknown there, and is
accepted at any sequence (KIP-360), not refused.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench._lazy import lazy_module
from workbench.storage.checkpoint import read_offset_checkpoint, write_offset_checkpoint
from workbench.storage.logical_segment import LogicalSegment
from workbench.storage.parquet_tier import MergedFileWriter
from workbench.storage.segment import segment_name

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc

    from workbench.storage.log import PartitionLog
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

log = logging.getLogger(__name__)

CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"
#: The broker publishes every compact log's `CleanerState` here, in its broker directory (JSON list).
CLEANER_STATE_FILE = "cleaner-state.json"

#: Kafka's ``log.cleaner.dedupe.buffer.size`` default is 128 MiB shared by its cleaner threads
#: (24 bytes per entry: an MD5 and an offset). A Python dict entry costs far more (see
#: `OffsetMap.ENTRY_OVERHEAD`), so the same budget holds fewer keys; 32 MiB is ~250 k keys of up
#: to 16 bytes per pass, plenty for a notebook's topics, and the budget is a broker setting.
DEFAULT_DEDUPE_BUFFER_BYTES = 32 * 1024 * 1024
#: Kafka's ``log.cleaner.io.max.bytes.per.second`` default is unlimited; on a shared 2-core machine
#: 50 MB/s keeps a pass from starving the brokers' page cache and cores.
DEFAULT_IO_MAX_BYTES_PER_SECOND = 50 * 1024 * 1024
#: Kafka's ``log.cleaner.backoff.ms`` (15 s); how long the thread sleeps when nothing was cleanable.
DEFAULT_BACKOFF_MS = 15_000
#: Keys longer than this are replaced by a 16-byte BLAKE2b digest in the map (Kafka hashes every
#: key with MD5): the per-entry memory stays bounded whatever the key size.
_DIGEST_BYTES = 16


class OffsetMap:
    """Key -> latest offset, within a memory budget (Kafka's SkimpyOffsetMap).

    Memory is accounted per entry as CPython really spends it: the key bytes
    object, the offset int and the dict slot (``ENTRY_OVERHEAD`` measured with
    tracemalloc on CPython 3.12: about 100 bytes plus the key). `put` returns
    False, and stores nothing, once the budget would be exceeded.
    """

    ENTRY_OVERHEAD = 104

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self._map: dict[bytes, int] = {}
        #: Largest offset put (the end of the mapped range is just after it).
        self.latest_offset = -1

    @staticmethod
    def map_key(key: bytes) -> bytes:
        return key if len(key) <= _DIGEST_BYTES else hashlib.blake2b(key, digest_size=_DIGEST_BYTES).digest()

    def put(self, key: bytes, offset: int) -> bool:
        k = self.map_key(key)
        if k not in self._map:
            cost = self.ENTRY_OVERHEAD + len(k)
            if self.used_bytes + cost > self.capacity_bytes:
                return False
            self.used_bytes += cost
        self._map[k] = offset
        self.latest_offset = max(self.latest_offset, offset)
        return True

    def get(self, key: bytes) -> int:
        """The latest offset of ``key``, -1 when the map does not hold it."""
        return self._map.get(self.map_key(key), -1)

    def __len__(self) -> int:
        return len(self._map)

    def clear(self) -> None:
        self._map.clear()
        self.used_bytes = 0
        self.latest_offset = -1


class Throttler:
    """Sleep so that the bytes reported stay under ``bytes_per_second`` (Kafka's Throttler)."""

    def __init__(self, bytes_per_second: float, sleep: Callable[[float], Any] = time.sleep) -> None:
        self.bytes_per_second = bytes_per_second
        self._sleep = sleep
        self._start = time.monotonic()
        self._bytes = 0

    def maybe_throttle(self, nbytes: int) -> None:
        if self.bytes_per_second <= 0:
            return
        self._bytes += nbytes
        elapsed = time.monotonic() - self._start
        due = self._bytes / self.bytes_per_second
        if due > elapsed:
            self._sleep(due - elapsed)
        if elapsed > 1.0:  # a sliding window of about a second
            self._start, self._bytes = time.monotonic(), 0


@dataclass
class CleanerState:
    """What the cleaner knows of one log (shown by ``describe()`` and the topic browser)."""

    first_dirty_offset: int = 0
    dirty_ratio: float = 0.0
    passes: int = 0
    records_removed: int = 0
    #: Key and value bytes of the records removed (what compaction saved, whatever the file format).
    record_bytes_removed: int = 0
    #: Disk bytes before minus after the rewritten segments (raw + Parquet copies -> one compacted
    #: Parquet file). Can be negative for tiny segments: a Parquet file has ~1 KB of footer.
    bytes_reclaimed: int = 0
    last_pass_ms: int = -1
    last_pass_duration_ms: float = 0.0
    #: When a tombstone kept by the last pass may be removed (``delete.retention.ms`` after it), -1 for none.
    tombstone_expiry_ms: int = -1
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CleanResult:
    """The outcome of one pass over one log."""

    cleaned: bool
    reason: str
    segments_rewritten: int = 0
    records_read: int = 0
    records_removed: int = 0
    record_bytes_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    first_dirty_offset: int = 0
    map_entries: int = 0
    map_bytes: int = 0
    #: Parquet files written (a group of adjacent segments becomes one file).
    files_written: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Group:
    """Adjacent segments of one pass that become one file."""

    segs: list[LogicalSegment] = field(default_factory=list)
    estimate: int = 0
    removed: int = 0
    max_ts: int = -1
    writer: MergedFileWriter | None = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


RetainHook = Callable[[LogicalSegment, "pa.Table", list[bool]], list[bool]]


class LogCleaner:
    """The broker's log cleaner: one background thread cleaning ``compact`` logs one at a time.

    ``logs`` returns the broker's partition logs (each call, so new partitions are
    seen). `clean_log` is the pass itself, usable from tests and benchmarks
    without the thread.
    """

    def __init__(
        self,
        logs: Callable[[], Iterable[PartitionLog]],
        *,
        dedupe_buffer_bytes: int = DEFAULT_DEDUPE_BUFFER_BYTES,
        io_max_bytes_per_second: float = DEFAULT_IO_MAX_BYTES_PER_SECOND,
        backoff_ms: int = DEFAULT_BACKOFF_MS,
        retain_hook: RetainHook | None = None,
        on_pass: Callable[[], Any] | None = None,
        merge: bool = True,
    ) -> None:
        if dedupe_buffer_bytes <= 0:
            raise ValueError(f"dedupe_buffer_bytes must be positive, got {dedupe_buffer_bytes}")
        self._logs = logs
        self.dedupe_buffer_bytes = dedupe_buffer_bytes
        self.io_max_bytes_per_second = io_max_bytes_per_second
        self.backoff_ms = backoff_ms
        self.retain_hook = retain_hook
        #: Group adjacent cleaned segments into one file up to segment.bytes (off: one file per
        #: segment, as before the merge existed; the small-files benchmark compares both).
        self.merge = merge
        self.on_pass = on_pass  # called by the thread after each round (the broker publishes the state)
        self._states: dict[Path, CleanerState] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time (thread, tests, tools)

    # -- thread ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="log-cleaner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                cleaned = self.clean_once()
            except Exception:  # never let the cleaner thread die
                log.exception("log cleaner pass failed")
                cleaned = 0
            if self.on_pass is not None:
                try:
                    self.on_pass()
                except Exception:
                    log.exception("publishing the cleaner state failed")
            if not cleaned:
                self._stop.wait(self.backoff_ms / 1000)

    def clean_once(self, now_ms: int | None = None) -> int:
        """Clean every compact log that is due, dirtiest first; return how many were cleaned."""
        now = _now_ms() if now_ms is None else now_ms
        candidates = []
        for plog in list(self._logs()):
            if not plog.config.compact or self._stop.is_set():
                continue
            candidates.append((self.dirty_ratio(plog, now), plog))
        candidates.sort(key=lambda c: -c[0])
        cleaned = 0
        for _, plog in candidates:
            if self._stop.is_set():
                break
            try:
                if self.clean_log(plog, now_ms=now).cleaned:
                    cleaned += 1
            except Exception as exc:
                self.state(plog).last_error = f"{type(exc).__name__}: {exc}"
                log.exception("cleaning %s failed", plog)
        return cleaned

    # -- state ------------------------------------------------------------------------------

    def state(self, plog: PartitionLog) -> CleanerState:
        st = self._states.get(plog.directory)
        if st is None:
            st = self._states[plog.directory] = CleanerState(first_dirty_offset=self._first_dirty(plog))
        return st

    def states(self) -> dict[tuple[str, int], dict[str, Any]]:
        """(topic, partition) -> cleaner state of every compact log, for describe()."""
        out = {}
        now = _now_ms()
        for plog in list(self._logs()):
            if plog.config.compact:
                st = self.state(plog)
                st.dirty_ratio = self.dirty_ratio(plog, now)
                out[(plog.topic, plog.partition)] = st.as_dict()
        return out

    @staticmethod
    def _first_dirty(plog: PartitionLog) -> int:
        saved = read_offset_checkpoint(plog.directory / CLEANER_CHECKPOINT)
        start = plog.log_start_offset
        if saved is None or saved < start or saved > plog.log_end_offset:  # truncated meanwhile: all dirty
            return start
        return saved

    def _ranges(
        self, plog: PartitionLog, now: int
    ) -> tuple[int, list[LogicalSegment], list[LogicalSegment], list[LogicalSegment], int]:
        """(generation, clean segments, dirty cleanable segments, every cleanable one, first dirty offset)."""
        generation, segs = plog.cleanable_segments()
        lag = plog.config.min_compaction_lag_ms
        cut = len(segs)
        for i, s in enumerate(segs):  # KIP-354: nothing newer than min.compaction.lag.ms is compacted
            if lag > 0 and s.max_timestamp > now - lag:
                cut = i
                break
        segs = segs[:cut]
        first_dirty = self._first_dirty(plog)
        clean = [s for s in segs if s.next_offset <= first_dirty]
        dirty = [s for s in segs if s.base_offset >= first_dirty]
        return generation, clean, dirty, segs, first_dirty

    def dirty_ratio(self, plog: PartitionLog, now_ms: int | None = None) -> float:
        now = _now_ms() if now_ms is None else now_ms
        _, clean, dirty, _, _ = self._ranges(plog, now)
        dirty_bytes = sum(s.size for s in dirty)
        total = dirty_bytes + sum(s.size for s in clean)
        return dirty_bytes / total if total else 0.0

    # -- one pass ----------------------------------------------------------------------------

    def clean_log(self, plog: PartitionLog, *, now_ms: int | None = None, force: bool = False) -> CleanResult:
        """One cleaning pass over ``plog`` if it is due (or ``force``); see the module docstring."""
        with self._lock:
            return self._clean_log(plog, _now_ms() if now_ms is None else now_ms, force)

    def _clean_log(self, plog: PartitionLog, now: int, force: bool) -> CleanResult:
        started = time.monotonic()
        cfg = plog.config
        st = self.state(plog)
        generation, clean, dirty, segs, first_dirty = self._ranges(plog, now)
        dirty_bytes = sum(s.size for s in dirty)
        total = dirty_bytes + sum(s.size for s in clean)
        ratio = dirty_bytes / total if total else 0.0
        st.dirty_ratio = ratio
        st.first_dirty_offset = first_dirty
        tombstones_due = 0 <= st.tombstone_expiry_ms <= now and bool(clean)
        lag_due = bool(dirty) and dirty[0].max_timestamp <= now - cfg.max_compaction_lag_ms
        if not segs:
            return CleanResult(False, "nothing cleanable", first_dirty_offset=first_dirty)
        if not (force or (dirty and ratio >= cfg.min_cleanable_dirty_ratio) or lag_due or tombstones_due):
            return CleanResult(False, f"dirty ratio {ratio:.2f} below {cfg.min_cleanable_dirty_ratio}")
        throttler = Throttler(self.io_max_bytes_per_second)
        self._remove_leftovers(plog)

        # 3. The offset map over the dirty segments, whole segments only.
        omap = OffsetMap(self.dedupe_buffer_bytes)
        end = first_dirty
        # Decoded dirty segments kept for the copy phase while they fit in a second budget of the
        # same size (decoding a raw segment is most of a pass's cost); the others are read again.
        kept_tables: dict[int, pa.Table] = {}
        kept_bytes = 0
        for s in dirty:
            table = plog.segment_table(s)
            throttler.maybe_throttle(s.size)
            if kept_bytes + table.nbytes <= self.dedupe_buffer_bytes:
                kept_tables[s.base_offset] = table
                kept_bytes += table.nbytes
            keys = table.column("key").to_pylist()
            offsets = table.column("offset").to_pylist()
            full = False
            for k, o in zip(keys, offsets, strict=True):
                if k is not None and not omap.put(k, o):
                    full = True
                    break
            if full:
                # Entries already put from this segment stay: each points at a record that stays in
                # the log (this segment is not cleaned now), so what they make the copy drop is
                # superseded for real (Kafka's map works the same way).
                if end == first_dirty:
                    st.last_error = (
                        f"offset map of {self.dedupe_buffer_bytes} bytes cannot hold segment {s.base_offset}'s keys: "
                        "raise log.cleaner.dedupe.buffer.size"
                    )
                    log.error("%s: %s", plog, st.last_error)
                    return CleanResult(False, st.last_error, first_dirty_offset=first_dirty)
                break
            end = s.next_offset
        if not dirty:
            end = first_dirty  # a tombstone pass: rewrite the clean part only

        # 4./5. Copy every segment below the end of the mapped range, adjacent ones grouped into
        # one file of at most segment.bytes (estimated from the input sizes and what is kept).
        result = CleanResult(True, "cleaned", first_dirty_offset=end, map_entries=len(omap), map_bytes=omap.used_bytes)
        horizon = now - cfg.delete_retention_ms
        tombstone_expiry = -1
        group = _Group()
        stopped = False

        def flush() -> bool:
            """Install the current group; False when the log changed under the pass (stop)."""
            nonlocal group, end
            g, group = group, _Group()
            if not g.segs:
                return True
            if g.writer is None:
                return True  # one segment, already a compacted Parquet file, nothing to remove
            old_size = sum(_disk_bytes(s) for s in g.segs)
            new_size = g.writer.finish(g.segs[-1].next_offset, g.max_ts, merged=len(g.segs) > 1)
            throttler.maybe_throttle(new_size)
            if new_size >= old_size and not g.removed and not any(s.raw is not None for s in g.segs):
                # A merge that would not save bytes (a Parquet file has a footer of its own) is
                # dropped. A rewrite that removes records is always installed: keeping a superseded
                # value could let it outlive the tombstone that deletes its key (a resurrection
                # once delete.retention.ms removes the tombstone).
                g.writer.path.unlink(missing_ok=True)
                result.extra["groups_skipped"] = result.extra.get("groups_skipped", 0) + 1
                return True
            if not plog.install_merged(generation, g.segs, g.writer.path, g.max_ts):
                # The log changed under us (truncation, retention, conversion): stop here, keep order.
                base = g.segs[0].base_offset
                result.reason = f"segment {base} changed during the pass; stopped there"
                result.first_dirty_offset = min(result.first_dirty_offset, max(first_dirty, base))
                end = min(end, base)
                return False
            result.segments_rewritten += len(g.segs)
            result.files_written += 1
            result.records_removed += g.removed
            result.bytes_before += old_size
            result.bytes_after += new_size
            return True

        try:
            for s in segs:
                if s.base_offset >= end:
                    break
                cached = kept_tables.pop(s.base_offset, None)
                table = cached if cached is not None else plog.segment_table(s)
                if cached is None:
                    throttler.maybe_throttle(s.size)
                in_clean_part = s.next_offset <= first_dirty
                keys = table.column("key").to_pylist()
                offsets = table.column("offset").to_pylist()
                null_values = table.column("value").is_null().to_pylist()
                timestamps = table.column("timestamp").cast(pa.int64()).to_pylist()
                keep = []
                for k, o, tomb, ts in zip(keys, offsets, null_values, timestamps, strict=True):
                    if k is None:
                        keep.append(True)
                        continue
                    if omap.get(k) > o:
                        keep.append(False)  # a later record has this key
                        continue
                    if tomb:
                        if in_clean_part and ts <= horizon:
                            keep.append(False)  # delete.retention.ms is over: the delete itself goes
                            continue
                        expiry = ts + cfg.delete_retention_ms
                        tombstone_expiry = expiry if tombstone_expiry < 0 else min(tombstone_expiry, expiry)
                    keep.append(True)
                if self.retain_hook is not None:
                    keep = self.retain_hook(s, table, keep)
                removed = keep.count(False)
                result.records_read += len(keep)
                if removed:
                    dropped = table.filter(pa.array([not k for k in keep], type=pa.bool_()))
                    result.record_bytes_removed += int(
                        pc.sum(pc.binary_length(dropped.column("key"))).as_py() or 0
                    ) + int(pc.sum(pc.binary_length(dropped.column("value"))).as_py() or 0)
                kept = table.filter(pa.array(keep, type=pa.bool_())) if removed else table
                estimate = (s.size * len(kept) // len(keep)) if keep else 0
                full = bool(group.segs) and (
                    not self.merge
                    or group.segs[-1].next_offset != s.base_offset
                    or group.estimate + estimate > cfg.segment_bytes
                )
                if full and not flush():
                    stopped = True
                    break
                # A lone segment that is already a compacted Parquet file with nothing to remove is
                # rewritten only when a neighbour joins it (that is the merge).
                alone = not removed and s.raw is None
                group.segs.append(s)
                group.estimate += estimate
                group.removed += removed
                group.max_ts = max(group.max_ts, s.max_timestamp)
                if group.writer is None and (not alone or len(group.segs) > 1):
                    tmp = plog.directory / segment_name(group.segs[0].base_offset, ".parquet.cleaned.tmp")
                    group.writer = MergedFileWriter(
                        tmp, group.segs[0].base_offset, topic=plog.topic, partition=plog.partition
                    )
                    for earlier in group.segs[:-1]:  # the lone file it joins: copied as it is
                        group.writer.add(plog.segment_table(earlier).replace_schema_metadata(None))
                if group.writer is not None:
                    group.writer.add(kept.replace_schema_metadata(None))
            if not stopped:
                flush()
        finally:
            if group.writer is not None:
                group.writer.abort()
        if end > first_dirty:
            write_offset_checkpoint(plog.directory / CLEANER_CHECKPOINT, max(end, first_dirty))
        st.first_dirty_offset = max(first_dirty, end)
        st.passes += 1
        st.records_removed += result.records_removed
        st.record_bytes_removed += result.record_bytes_removed
        st.bytes_reclaimed += result.bytes_before - result.bytes_after
        st.last_pass_ms = now
        st.last_pass_duration_ms = (time.monotonic() - started) * 1000
        st.tombstone_expiry_ms = tombstone_expiry
        st.dirty_ratio = self.dirty_ratio(plog, now)
        st.last_error = ""
        log.info(
            "%s: cleaned up to %d: %d of %d records removed, %d segments rewritten (%d -> %d bytes)",
            plog,
            st.first_dirty_offset,
            result.records_removed,
            result.records_read,
            result.segments_rewritten,
            result.bytes_before,
            result.bytes_after,
        )
        return result

    @staticmethod
    def _remove_leftovers(plog: PartitionLog) -> None:
        for tmp in plog.directory.glob("*.cleaned.tmp"):
            tmp.unlink(missing_ok=True)


def _disk_bytes(s: LogicalSegment) -> int:
    """Bytes ``s`` holds on disk: its raw copy and its Parquet file (``size`` is the raw size when
    there is one)."""
    return s.size + (s.parquet.size if s.parquet is not None and s.raw is not None else 0)


def offset_map_entry_bytes() -> int:
    """Measured bytes per `OffsetMap` entry of a 16-byte key (for the benchmark's table)."""
    import tracemalloc

    tracemalloc.start()
    m = OffsetMap(1 << 40)
    before = tracemalloc.get_traced_memory()[0]
    for i in range(100_000):
        m.put(i.to_bytes(16, "big"), i + 1_000_000)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del m
    return (after - before) // 100_000


__all__ = [
    "CLEANER_CHECKPOINT",
    "CLEANER_STATE_FILE",
    "CleanResult",
    "CleanerState",
    "LogCleaner",
    "OffsetMap",
    "Throttler",
]
