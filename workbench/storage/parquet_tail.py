"""Tail files: the committed records of not-yet-converted raw segments, in Parquet within seconds.

The Parquet tier (`workbench.storage.parquet_tier`) converts a raw segment only once it is
sealed (16 MiB or ``segment.ms``), so a plain ``read_parquet('data/**/*.parquet')`` used to
miss everything produced since the last seal (issue 17). A *tail file* closes that gap: for
every raw segment that has no converted file yet, the broker periodically writes the
segment's records below the last stable offset (so never above the high watermark, and
never an undecided or aborted transaction) as ``<base_offset>.parquet``, marked
``workbench.tail=1`` in its key-value metadata.

Why the same name as the sealed file: the sealed conversion later renames its file over the
tail, one atomic ``rename(2)``, so a reader globbing the directory sees either the tail or
the sealed file, never both (no record counted twice) and never neither. Every tail is
written whole to ``<base>.parquet.tail.tmp`` (fsync'ed) and renamed under the log's lock,
only while no sealed file is installed for that base and the file there, if any, is the
tail this log put there (same inode, `TailFiles.is_tail`): a tail never replaces a sealed
file. A tail renamed a moment after the converter process renamed its sealed file is caught
by `PartitionLog.install_parquet`, which finds the tail's inode at the path and refuses the
install (the segment is converted again). Inodes, not the ``workbench.tail`` metadata, so
the broker never loads pyarrow for it.

Tail files are not part of the broker's Parquet tier: fetches keep reading the raw segment,
and on restart `LogLoader` deletes them (they are rewritten from the raw log within a
tick), so a crash leaves a directory of whole files, each a committed prefix.
"""

from __future__ import annotations

import os
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


def tail_path(directory: Path, base_offset: int) -> Path:
    return directory / f"{base_offset:020d}.parquet"


class TailFiles:
    """The tail files of one partition: ``base offset -> next offset`` each covers."""

    def __init__(self) -> None:
        self.covered: dict[int, int] = {}
        self._inodes: dict[int, tuple[int, int]] = {}

    def installed(self, path: Path, base: int, next_offset: int) -> None:
        st = os.stat(path)
        self.covered[base] = next_offset
        self._inodes[base] = (st.st_dev, st.st_ino)

    def is_tail(self, path: Path) -> bool:
        """Whether ``path`` (``<base>.parquet``) is still the tail file this log renamed there."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        try:
            base = int(path.name.split(".")[0])
        except ValueError:
            return False
        return self._inodes.get(base) == (st.st_dev, st.st_ino)

    def delete(self, directory: Path, base: int) -> None:
        """Delete the tail file of ``base`` (if the file there is still ours) and forget it."""
        if self.is_tail(tail_path(directory, base)):
            tail_path(directory, base).unlink(missing_ok=True)
        self._drop(base)

    def _drop(self, base: int) -> None:
        self.covered.pop(base, None)
        self._inodes.pop(base, None)

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

    def forget_from(self, directory: Path, cut: int) -> None:
        """A truncation to ``cut``: delete the tail files reaching past it."""
        for base, end in list(self.covered.items()):
            if end > cut:
                self.delete(directory, base)

    def sweep(self, directory: Path, raw_bases: set[int], converted: set[int]) -> None:
        """Forget tails now replaced by a sealed file; delete those whose raw segment is gone
        (retention, DeleteRecords) without one."""
        for base in list(self.covered):
            if base in converted:
                self._drop(base)
            elif base not in raw_bases:
                self.delete(directory, base)
