"""Segment files: the brokers' sealed Parquet (read, never modified) and the notebook's own cache.

*Sealed files* are raw, one row per record, as the brokers' Parquet tier writes them
(``<base_offset:020d>.parquet`` or, for a later file of the same base, ``<base_offset:020d>.g<generation>.parquet``;
key-value metadata ``workbench.next_offset``; the brokers never reuse a name and unlink a
superseded file only after a grace period, so a listing stays readable). Per partition we
read exactly one directory: the leader's, or any replica's when the leader has none (replicas
hold copies of the same offsets, so they are never unioned). For `workbench.connect` the sealed
files are the ones `materialize` wrote locally, in the same layout.

The *cache* is the notebook side's compacted, flattened copy: per partition, non-overlapping
files ``<base>-<next>.parquet`` covering offsets [base, next) with the JSON fields already typed,
so queries scan few, large files and never re-parse JSON. The key is stored decoded too (``key``
beside ``key_bytes``), so a filter on it uses the files' statistics; a file without that column is
from an older version and is deleted on load (rebuilt from the brokers' files). Files are written to a ``.tmp`` name
and renamed; a directory left by a crash is repaired on load (overlaps and temporaries removed).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

_NEXT_KEY = b"workbench.next_offset"
_TAIL_KEY = b"workbench.tail"
_CLEANED_KEY = b"workbench.cleaned"
_CACHE_NAME = re.compile(r"^(\d{20})-(\d{20})\.parquet$")
#: A broker's Parquet file: ``<base>.parquet`` or ``<base>.g<generation>.parquet``
#: (`workbench.storage.parquet_tier.file_name`, which the notebook side does not import).
_BROKER_NAME = re.compile(r"^(\d+)(?:\.g(\d+))?\.parquet$")
ANCHOR = "_anchor.parquet"


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """A Parquet file covering offsets [base, next); `rows` may be below next - base (gaps)."""

    path: Path
    base: int
    next: int
    rows: int
    #: Written by the broker's log cleaner (`workbench.cleaned`): fewer records than the log had.
    cleaned: bool = False
    #: A broker's tail file (`workbench.tail`): the committed prefix of a segment not sealed yet,
    #: superseded by a longer one (or the sealed file) under a newer name; never a cache source.
    tail: bool = False
    #: The file's generation (0 for ``<base>.parquet``): of two with the same range, the newer wins.
    generation: int = 0

    @property
    def signature(self) -> tuple[int, int]:
        """What changes when the log cleaner rewrites the file (its range or its record count)."""
        return (self.next, self.rows)


_meta_cache: dict[tuple[str, int, int, int], SegmentFile] = {}


def read_sealed(directory: Path, *, tails: bool = False) -> list[SegmentFile]:
    """Sealed raw segment files of one partition directory, by base offset (metadata cached);
    with ``tails``, the brokers' tail files too (``SegmentFile.tail``)."""
    out = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return out
    for entry in entries:
        m = _BROKER_NAME.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat()
            key = (entry.path, st.st_ino, st.st_size, st.st_mtime_ns)  # an inode is one file: its footer never changes
            seg = _meta_cache.get(key)
            if seg is None:
                md = pq.read_metadata(entry.path)
                base = int(m.group(1))
                # A broker's tail file (issue 17) is a growing prefix of an unsealed segment,
                # superseded by a newer name when it grows or seals.
                tail = (md.metadata or {}).get(_TAIL_KEY) == b"1"
                nxt = (md.metadata or {}).get(_NEXT_KEY)
                if nxt is None:  # not ours: the offset column's statistics say where it ends
                    col = md.schema.to_arrow_schema().get_field_index("offset")
                    stats = [md.row_group(i).column(col).statistics for i in range(md.num_row_groups)]
                    nxt = max((s.max for s in stats if s is not None and s.has_min_max), default=base - 1) + 1
                cleaned = (md.metadata or {}).get(_CLEANED_KEY) == b"1"
                seg = SegmentFile(Path(entry.path), base, int(nxt), md.num_rows, cleaned, tail, int(m.group(2) or 0))
                if len(_meta_cache) > 100_000:
                    _meta_cache.clear()
                _meta_cache[key] = seg
        except (FileNotFoundError, OSError, ValueError):
            continue  # removed by retention while we looked, or not a Parquet file
        if seg.tail and not tails:
            continue
        out.append(seg)
    # The brokers' rule (`workbench.storage.parquet_tier.current_files`): per base offset the file
    # with the widest range (a longer tail, the sealed file over its tails, a cleaner's merge over
    # its first member), of equal ranges the newest generation (a cleaned file over the one it
    # rewrote); a file starting inside an earlier file's range is superseded (a merge's other
    # members). Superseded files stay on disk for a grace period: each offset is still read once.
    keep, end = [], -1
    for seg in sorted(out, key=lambda s: (s.base, -s.next, -s.generation)):
        if seg.base >= end:
            keep.append(seg)
            end = seg.next
    return keep


def partition_dir(root: Path, topic: str, partition: int) -> Path:
    return root / "topics" / topic / f"partition={partition}"


class PartitionCache:
    """The cache files of one partition: contiguous, non-overlapping, in offset order."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[SegmentFile] = []
        self.load()

    def load(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        found = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".tmp"):
                os.unlink(entry.path)
                continue
            m = _CACHE_NAME.match(entry.name)
            if m:
                try:
                    md = pq.read_metadata(entry.path)
                except (OSError, ValueError):
                    os.unlink(entry.path)
                    continue
                if "key" not in md.schema.to_arrow_schema().names:  # written before the stored text key: rebuild
                    os.unlink(entry.path)
                    continue
                rows = md.num_rows
                found.append(SegmentFile(Path(entry.path), int(m.group(1)), int(m.group(2)), rows))
        # Prefer the widest file where a crash left a merge and its inputs side by side.
        found.sort(key=lambda f: (f.base, -f.next))
        keep, end = [], -1
        for f in found:
            if f.base >= end:
                keep.append(f)
                end = f.next
            else:
                os.unlink(f.path)
        self.files = keep

    @property
    def next(self) -> int | None:
        return self.files[-1].next if self.files else None

    @property
    def start(self) -> int | None:
        return self.files[0].base if self.files else None

    def path_for(self, base: int, nxt: int) -> Path:
        return self.directory / f"{base:020d}-{nxt:020d}.parquet"
