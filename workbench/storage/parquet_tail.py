"""Tail files: the committed records of not-yet-converted raw segments, in Parquet within seconds.

The Parquet tier (`workbench.storage.parquet_tier`) converts a raw segment only once it is
sealed (16 MiB or ``segment.ms``), so a plain ``read_parquet('data/**/*.parquet')`` used to
miss everything produced since the last seal (issue 17). *Tail files* close that gap: for the
active segment (and a sealed one an undecided transaction keeps above the last stable offset), the
broker periodically writes the segment's records below the last stable offset (so never above the
high watermark, and never an undecided or aborted transaction) as Parquet, marked
``workbench.tail=1`` in its key-value metadata. A sealed segment wholly below the last stable offset
is converted at once instead (`PartitionLog.pending_tails`): a tail of it was the same write again.

**Chunks, size-tiered** (so the work is O(new records), not O(whole tail)): each tick writes
only the records committed since the last one, ``[covered end, LSO)``, as a *chunk*
``<first offset>.g<generation>.parquet``. Rewriting the whole committed prefix each second (the
first design) converted ~half a segment per partition per second, 40-50x the ingest at 10k
records/s. Chunks alone would leave hundreds of small files per segment, so `plan_merge` merges
trailing chunks of similar size into one file written from the raw segment (an LSM's
size-tiered compaction): a record is rewritten about log4(chunks) times, a segment has at most a
few files per size tier (`MAX_CHUNKS` in all), and the sealed conversion finally replaces them.

Every reader's rule composes with this unchanged (`parquet_tier.current_files`: per base offset
the widest range, ties the highest generation, and a file starting inside an earlier current
file's range is superseded): chunks ``[base, a)``, ``[a, b)`` are both current; a merge ``[c, d)``
of chunks starting at ``c`` shares its first member's base and is wider, and the others start
inside it; the sealed file ``[base, next)`` is wider than any chunk of its base and every other
chunk starts inside it. So a reader sees each offset once at any moment, whatever subset of these
files is on disk. Each new file gets a name never used before (the partition's next generation,
`PartitionLog`): DuckDB reads a file's footer and its pages in separate opens, so a file renamed
over a listed name tore the reads of a query in flight. Superseded files are unlinked after the
grace period (`workbench.storage.superseded`). Every file is written whole to
``<first offset>.parquet.tail.tmp`` (fsync'ed) and renamed to its fresh name under the log's lock,
only while no sealed file is installed for that segment and the chunks it builds on are unchanged.

Tail files are not part of the broker's Parquet tier: fetches keep reading the raw segment. On
restart `LogLoader` hands every tail file to the grace period (no file written before the crash is
trusted beyond it) and remembers how far they reached (``recovered``); the leader then writes one
file ``[base, LSO)`` per segment, but only once its LSO is at least that far, so that the new file
supersedes every old chunk and readers' view never shrinks (a narrower one would be current beside
the old chunks past its end, leaving a hole). A tail reaching past the recovered log end is
unlinked at once (records the log lost must not stay visible). A truncation (a follower cutting a
diverged log, or a leader after an unclean failover) unlinks at once every chunk reaching past its
cut and otherwise does what a restart does: the rest wait out the grace period, and the first new
file of each segment reaches at least as far as they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.storage.segment import LogSegment

#: Trailing chunks merge when the oldest of them is at most the sum of the newer ones / (FAN_IN-1):
#: FAN_IN chunks of one size become one (a record is rewritten ~log_FAN_IN(chunks) times).
FAN_IN = 4
#: Chunks smaller than this (raw segment bytes) count as this big in `plan_merge`: a trickle of
#: tiny chunks merges every FAN_IN ticks (each merge rewrites at most a few times this), which
#: bounds the tiers to log4(16 MiB / 128 KiB) ~ 4.
MIN_CHUNK_BYTES = 128 * 1024
#: Files per unsealed segment never exceed this: past it the two adjacent chunks of the smallest
#: combined size merge (only reached when sizes vary wildly).
MAX_CHUNKS = 10
#: Jobs per segment and tick (a chunk, then the merges it calls for): merges are planned before
#: new chunks, so a busy segment's chunks cannot pile up past a tick's worth.
TAIL_ROUNDS = 3


def plan_merge(
    sizes: list[int], *, fan_in: int = FAN_IN, min_bytes: int = MIN_CHUNK_BYTES, max_chunks: int = MAX_CHUNKS
) -> tuple[int, int] | None:
    """Which chunks of a segment (``sizes`` oldest first) to merge now: ``(i, j)``, the chunks
    ``i..j-1`` as one file; None when none need to be.

    The longest trailing run whose first chunk is at most ``sum(newer ones) / (fan_in - 1)``
    (sizes below ``min_bytes`` counted as ``min_bytes``): equal chunks merge ``fan_in`` at a time,
    and ``fan_in`` merged ones again, like a counter in base ``fan_in``. Past ``max_chunks``, the
    adjacent pair of the smallest combined size."""
    eff = [max(s, min_bytes) for s in sizes]
    n = len(eff)
    after = 0
    best = None
    for i in range(n - 1, -1, -1):
        if i < n - 1 and eff[i] * (fan_in - 1) <= after:
            best = i
        after += eff[i]
    if best is not None:
        return best, n
    if n > max_chunks:
        k = min(range(n - 1), key=lambda i: sizes[i] + sizes[i + 1])
        return k, k + 2
    return None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One installed tail file: offsets ``[start, end)``, bytes ``[start_pos, end_pos)`` of its
    raw segment."""

    start: int
    end: int
    start_pos: int
    end_pos: int
    path: Path


@dataclass(frozen=True, slots=True)
class TailJob:
    """Write offsets ``[start, next_offset)`` (bytes ``[start_pos, size)``) of a raw segment as one
    tail file, as the log was at ``generation``: new records (a chunk), or ``merges`` > 0
    installed chunks rewritten as one."""

    segment: LogSegment
    size: int
    next_offset: int
    generation: int
    start: int = -1
    start_pos: int = 0
    merges: int = 0

    @property
    def first(self) -> int:
        """The file's first offset (its name's base)."""
        return self.segment.base_offset if self.start < 0 else self.start


class TailFiles:
    """The tail files of one partition: per raw segment (by base offset) its chunks, in order."""

    def __init__(self, recovered: list[tuple[int, int]] | None = None) -> None:
        self.chunks: dict[int, list[Chunk]] = {}
        #: ``(first, next offset)`` of the tail files recovery found (waiting out their grace).
        self.recovered: list[tuple[int, int]] = list(recovered or [])

    def covered(self, base: int) -> int:
        """Where the tail files of segment ``base`` end (``base``: none yet)."""
        chunks = self.chunks.get(base)
        return chunks[-1].end if chunks else base

    def paths(self) -> list[Path]:
        return [c.path for base in sorted(self.chunks) for c in self.chunks[base]]

    def _floor(self, seg: LogSegment) -> int:
        """How far recovered tail files of ``seg`` reach: its first file must reach as far."""
        return max(
            (end for start, end in self.recovered if seg.base_offset <= start < seg.next_offset),
            default=seg.base_offset,
        )

    def accepts(self, job: TailJob) -> bool:
        """Does ``job`` still fit the installed chunks (nothing installed or dropped since)?"""
        chunks = self.chunks.get(job.segment.base_offset, [])
        if not job.merges:
            return job.first == self.covered(job.segment.base_offset) and job.next_offset > job.first
        starts = [i for i, c in enumerate(chunks) if c.start == job.first]
        if not starts:
            return False
        j = starts[0] + job.merges - 1
        return j < len(chunks) and chunks[j].end == job.next_offset

    def install(self, job: TailJob, path: Path) -> list[tuple[Path, int]]:
        """``path`` now holds ``job``'s range (`accepts` was checked); the files it supersedes and
        where each ended (to bury)."""
        base = job.segment.base_offset
        chunks = self.chunks.setdefault(base, [])
        new = Chunk(job.first, job.next_offset, job.start_pos, job.size, path)
        if not job.merges:
            chunks.append(new)
            return []
        i = next(i for i, c in enumerate(chunks) if c.start == job.first)
        gone = chunks[i : i + job.merges]
        chunks[i : i + job.merges] = [new]
        return [(c.path, c.end) for c in gone]

    def drop(self, base: int) -> list[tuple[Path, int]]:
        """Forget the tail files of segment ``base``; their paths and ends (to bury or unlink)."""
        return [(c.path, c.end) for c in self.chunks.pop(base, [])]

    def pending(self, raw: list[LogSegment], converted: set[int], bound: int, generation: int) -> list[TailJob]:
        """At most one job per raw segment without a converted file: a merge its chunks need
        (`plan_merge`), else a chunk of the records committed (below ``bound``, the LSO) since its
        last one."""
        jobs = []
        for seg in raw:
            base = seg.base_offset
            if base in converted or base >= bound:
                continue
            chunks = self.chunks.get(base, [])
            plan = plan_merge([c.end_pos - c.start_pos for c in chunks])
            if plan is not None:
                i, j = plan
                first, last = chunks[i], chunks[j - 1]
                jobs.append(TailJob(seg, last.end_pos, last.end, generation, first.start, first.start_pos, j - i))
                continue
            if seg.next_offset <= bound:
                end, size = seg.next_offset, seg.size
            else:
                h = seg.find_batch(bound)
                if h is None:
                    continue
                # bound is a batch boundary (HW and LSO are); a batch reaching past it is left out.
                end, size = (bound, h.position) if h.base_offset >= bound else (h.base_offset, h.position)
            start = self.covered(base)
            start_pos = chunks[-1].end_pos if chunks else 0
            if not chunks and end < self._floor(seg):
                continue  # recovered files reach further: readers keep those until this one does
            if size > start_pos and end > start:
                jobs.append(TailJob(seg, size, end, generation, start, start_pos))
        return jobs

    def reaching_past(self, cut: int) -> tuple[list[Path], list[tuple[Path, int]]]:
        """A truncation to ``cut``: forget every tail file, as a restart does; those reaching past
        the cut to unlink now (they hold records the log no longer has), the others (paths and
        ends) to bury. The log then names every file still on disk (`waiting`): a merge's members
        may outlive the merge a truncation cut, and a chunk continuing the kept ones could start
        inside such a member and be superseded by it (a hole for readers until it is unlinked)."""
        unlink: list[Path] = []
        bury: list[tuple[Path, int]] = []
        for base in list(self.chunks):
            for c in self.chunks.pop(base):
                if c.end > cut:
                    unlink.append(c.path)
                else:
                    bury.append((c.path, c.end))
        self.recovered = [(s, e) for s, e in self.recovered if e <= cut]
        return unlink, bury

    def waiting(self, files: list[tuple[int, int]]) -> None:
        """``(first, next offset)`` of the files on disk waiting out their grace period: the first
        new tail file of a segment reaches at least as far as those of it (see `pending`)."""
        self.recovered = list(files)

    def sweep(self, raw_bases: set[int], converted: set[int]) -> list[tuple[Path, int]]:
        """Forget tail files now superseded by a sealed file, or whose raw segment is gone
        (retention, DeleteRecords) without one; their paths and ends (to bury)."""
        out = []
        for base in list(self.chunks):
            if base in converted or base not in raw_bases:
                out += self.drop(base)
        return out
