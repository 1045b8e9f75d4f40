"""Tail files: the committed records of not-yet-converted raw segments, in Parquet within seconds.

The Parquet tier (`workbench.storage.parquet_tier`) converts a raw segment only once it is
sealed (16 MiB or ``segment.ms``), so a plain ``read_parquet('data/**/*.parquet')`` used to
miss everything produced since the last seal (issue 17). A *tail file* closes that gap: for
every raw segment that has no converted file yet, the broker periodically writes the
segment's records below the last stable offset (so never above the high watermark, and
never an undecided or aborted transaction) as ``<base_offset>.g<generation>.parquet``, marked
``workbench.tail=1`` in its key-value metadata.

Each rewrite gets a new name (the partition's next generation, `PartitionLog`): DuckDB reads a
file's footer and its pages in separate opens, so a tail renamed over a listed name tore the
reads of a query in flight. Readers take, per base offset, the file with the widest range (ties:
the highest generation, `parquet_tier.current_files`), so the newest tail, and later the sealed
file (which covers the whole segment), win without a rename over anything; the superseded tail
is unlinked after the grace period (`workbench.storage.superseded`). Every tail is written whole
to ``<base>.parquet.tail.tmp`` (fsync'ed) and renamed to its fresh name under the log's lock,
only while no sealed file is installed for that base.

Tail files are not part of the broker's Parquet tier: fetches keep reading the raw segment. On
restart `LogLoader` hands every tail to the grace period and the leader writes new ones (a newer
generation, as wide or wider) within a tick: until then the old tail stays current for readers, so
their view never shrinks across a restart, and no file written before the crash is trusted beyond
its grace period. A tail reaching past the recovered log end is unlinked at once (records the log
lost must not stay visible).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.storage.segment import LogSegment


@dataclass(frozen=True, slots=True)
class TailJob:
    """The committed prefix ``[segment.base_offset, next_offset)`` (``size`` bytes) of a raw
    segment to write as a tail file, as the log was at ``generation``."""

    segment: LogSegment
    size: int
    next_offset: int
    generation: int


class TailFiles:
    """The tail files of one partition: ``base offset -> next offset`` each covers, and its path."""

    def __init__(self) -> None:
        self.covered: dict[int, int] = {}
        self.paths: dict[int, Path] = {}

    def installed(self, path: Path, base: int, next_offset: int) -> tuple[Path, int] | None:
        """``path`` is now the tail of ``base``; the tail it supersedes and where that one ended,
        if any (to bury)."""
        old = self.paths.get(base)
        old_end = self.covered.get(base, base)
        self.covered[base] = next_offset
        self.paths[base] = path
        return (old, old_end) if old is not None and old != path else None

    def drop(self, base: int) -> Path | None:
        """Forget the tail of ``base``; its path, if any (to bury or unlink)."""
        self.covered.pop(base, None)
        return self.paths.pop(base, None)

    def pending(self, raw: list[LogSegment], converted: set[int], bound: int, generation: int) -> list[TailJob]:
        """Jobs for raw segments without a converted file whose committed prefix (below
        ``bound``, the LSO) grew past what their tail file covers."""
        jobs = []
        for seg in raw:
            if seg.base_offset in converted or seg.base_offset >= bound:
                continue
            if seg.next_offset <= bound:
                end, size = seg.next_offset, seg.size
            else:
                h = seg.find_batch(bound)
                if h is None:
                    continue
                # bound is a batch boundary (HW and LSO are); a batch reaching past it is left out.
                end, size = (bound, h.position) if h.base_offset >= bound else (h.base_offset, h.position)
            if size and end > self.covered.get(seg.base_offset, seg.base_offset):
                jobs.append(TailJob(seg, size, end, generation))
        return jobs

    def reaching_past(self, cut: int) -> list[Path]:
        """A truncation to ``cut``: forget the tails reaching past it; their paths (to unlink now:
        they hold records the log no longer has)."""
        out = []
        for base, end in list(self.covered.items()):
            if end > cut and (path := self.drop(base)) is not None:
                out.append(path)
        return out

    def sweep(self, raw_bases: set[int], converted: set[int]) -> list[tuple[Path, int]]:
        """Forget tails now superseded by a sealed file, or whose raw segment is gone (retention,
        DeleteRecords) without one; their paths and ends (to bury)."""
        out = []
        for base in list(self.covered):
            end = self.covered[base]
            if (base in converted or base not in raw_bases) and (path := self.drop(base)) is not None:
                out.append((path, end))
        return out
