"""The Parquet tier: sealed segments as one-row-per-record Parquet files.

A file ``<base_offset:020d>.parquet`` holds the records of the segment with the
same base offset, all at or below the high watermark when it was written. It
is written to ``.parquet.tmp`` and renamed, so readers (DuckDB, the notebook)
never see half a file. Its key-value metadata records the offset range it
covers (``workbench.base_offset``, ``workbench.next_offset``) and its largest
timestamp, so the log can reopen without reading the data.

**Names are never reused for new content** (issue 17): DuckDB opens a file's footer and its pages
separately, so a file renamed over a listed name tore its reads. A later file for the same base
offset (a longer tail, the sealed file after a tail, a log cleaner's output) is
``<base_offset:020d>.g<generation>.parquet`` (`file_name`), the generation counting up per
partition; the file it supersedes is unlinked after a grace period (`workbench.storage.superseded`).
Every reader applies one rule (`current_files`): per base offset the file with the widest range
(of equal ranges the highest generation), and a file starting inside an earlier file's range is
superseded (a cleaner's merge). The one exception is a replica truncating a diverged log inside a
file (`truncate_segment`): that file is replaced under its name, as no reader may see the records cut.

Control batches (transaction markers) are not written; their offsets are gaps.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from workbench._lazy import lazy_module
from workbench.protocol.records import iter_batch_headers
from workbench.storage import record_tables
from workbench.storage.record_tables import iter_record_tables, schema

if TYPE_CHECKING:  # the real modules, for annotations (pyarrow ships no stubs: its names are Any)
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    # Imported on first use: a broker that has not touched Parquet yet does not carry pyarrow.
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")


_T = TypeVar("_T")
_NAME = re.compile(r"^(\d+)(?:\.g(\d+))?\.parquet$")


def file_name(base_offset: int, generation: int = 0) -> str:
    """The name of a tier file: ``<base>.parquet`` (generation 0, a segment's first sealed file) or
    ``<base>.g<generation>.parquet``."""
    return f"{base_offset:020d}.parquet" if generation == 0 else f"{base_offset:020d}.g{generation}.parquet"


def parse_file_name(name: str) -> tuple[int, int] | None:
    """``(base offset, generation)`` of a tier file's name; None for any other name."""
    m = _NAME.match(name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def current_files(files: list[tuple[int, int, int, _T]]) -> tuple[list[_T], list[_T]]:
    """``(current, superseded)`` of ``(base, next, generation, item)`` entries of one partition
    directory, current by base offset: per base the widest range (ties: highest generation), and
    none starting inside an earlier current file's range. Readers and recovery share this rule."""
    current: list[_T] = []
    superseded: list[_T] = []
    end = -1
    for base, nxt, _gen, item in sorted(files, key=lambda f: (f[0], -f[1], -f[2])):
        if base < end:
            superseded.append(item)
            continue
        current.append(item)
        end = nxt
    return current, superseded


#: DuckDB's own row-group size; also ~12 MB of 100-byte records, a good scan unit.
ROW_GROUP_ROWS = 122_880
#: Tail files (`parquet_tail`: a chunk of the new records every `parquet_tail_ms`, merges of
#: chunks up to a whole segment): smaller row groups, so the Iceberg commit reading the records
#: since an offset decodes only the groups above it (min/max statistics), and no dictionary (values
#: are mostly unique: a dictionary is built, then abandoned). Tail rewrite CPU 6.3-7.0 -> 2.5-2.8 us
#: per record for a tail growing to 130k rows (issue 17). A chunk (a second's records, ~1-2k rows
#: per partition at 10k records/s) is one row group.
TAIL_ROW_GROUP_ROWS = 16_384
TAIL_DICTIONARY = False
COMPRESSION = "zstd"
#: Sealed and merged files build a dictionary only for the columns whose values repeat (a key, a
#: header's name, the batch-level fields): offsets, timestamps, sequences, values and header values
#: are mostly unique, and a dictionary built for them is abandoned at its page limit. Writing a
#: 16 MiB segment of 100-byte records with a header each: 0.57 -> 0.43 us per record, and a
#: smaller file (8.2 -> 7.7 MB), a scratch run beside `benchmarks/record_decode.py` (issue 19).
DICTIONARY_COLUMNS = [
    "key",
    "headers.list.element.key",
    "producer_id",
    "producer_epoch",
    "batch_base_offset",
    "partition_leader_epoch",
    "timestamp_type",
]
#: Tail files live until the sealed file supersedes them, and a record is written into a few of
#: them (a chunk, then merges): snappy writes at about half zstd's CPU (0.16 against 0.34 us per
#: record for a 146k-row segment of 100-byte records, page checksums on), and every Parquet reader
#: reads it. The sealed file, the long-lived copy, keeps zstd (issue 19).
TAIL_COMPRESSION = "snappy"

# The converter's memory bound (issue 12, item 7): a segment is decoded and written in
# chunks, never as a whole. At most CONVERT_CHUNK_ROWS decoded rows (one row group) and
# about CONVERT_CHUNK_BYTES of decompressed batches, plus one batch, are in memory at a
# time; a batch decompresses to at most MAX_CONVERT_BATCH_BYTES or the conversion fails
# (MESSAGE_TOO_LARGE) and the segment stays raw. Produce refuses such batches since the
# decompression cap (32 x max.message.bytes), so only a log written before it, or with
# max.message.bytes above 8 MiB, can hold one. Peak: roughly 3 x MAX_CONVERT_BATCH_BYTES
# for a hostile segment, ~100-200 MB for a normal one (benchmarks/converter_memory.py).
CONVERT_CHUNK_ROWS = ROW_GROUP_ROWS
CONVERT_CHUNK_BYTES = 32 * 1024 * 1024
MAX_CONVERT_BATCH_BYTES = 256 * 1024 * 1024

_META_BASE = b"workbench.base_offset"
_META_NEXT = b"workbench.next_offset"
_META_MAX_TS = b"workbench.max_timestamp"
_META_TOPIC = b"workbench.topic"
_META_PARTITION = b"workbench.partition"
#: Set on a *tail* file: the committed prefix of a raw segment not yet sealed and converted
#: (`workbench.storage.parquet_tail`). The sealed conversion later supersedes it (under its own name).
_META_TAIL = b"workbench.tail"
#: Set on a file the log cleaner wrote from several adjacent segments (`MergedFileWriter`): its
#: range supersedes every file and raw segment inside it, which recovery removes if a crash left
#: them (`workbench.storage.log_loader`).
_META_MERGED = b"workbench.merged"
#: Set on every file the log cleaner wrote: it may hold fewer records than the segment had, so a
#: reader that copied the segment's records before (the notebook's SQL cache) must read it again.
_META_CLEANED = b"workbench.cleaned"


@dataclass(slots=True)
class ParquetSegment:
    """One Parquet file covering offsets [base_offset, next_offset)."""

    path: Path
    base_offset: int
    next_offset: int
    max_timestamp: int
    size: int
    tail: bool = False
    merged: bool = False

    @classmethod
    def open(cls, path: Path) -> ParquetSegment:
        meta = pq.read_metadata(path).metadata or {}
        base = int(path.name.split(".")[0])  # <base>.parquet or <base>.g<generation>.parquet
        return cls(
            path=path,
            base_offset=int(meta.get(_META_BASE, base)),
            next_offset=int(meta.get(_META_NEXT, base)),
            max_timestamp=int(meta.get(_META_MAX_TS, -1)),
            size=path.stat().st_size,
            tail=meta.get(_META_TAIL) == b"1",
            merged=meta.get(_META_MERGED) == b"1",
        )

    def read_table(self, columns: list[str] | None = None) -> pa.Table:
        # Page checksums (written since the hardening work) turn a flipped byte into an error
        # instead of silently different records.
        return pq.read_table(self.path, columns=columns, page_checksum_verification=True)

    def verify(self) -> None:
        """Read every page (checksums verified) and check the rows match the offset range.

        Raises OSError, ValueError or an ArrowException when the file is damaged.
        """
        table = self.read_table()  # every column: a damaged value page must be found too
        offsets = table.column("offset")
        if table.num_rows:
            lo = pc.min(offsets).as_py()
            hi = pc.max(offsets).as_py()
            if lo < self.base_offset or hi >= self.next_offset:
                raise ValueError(
                    f"rows hold offsets {lo}..{hi}, outside the file's range {self.base_offset}..{self.next_offset - 1}"
                )


def write_segment(
    directory: Path,
    base_offset: int,
    next_offset: int,
    batches: bytes | bytearray | memoryview,
    *,
    topic: str = "",
    partition: int = 0,
    aborted: list[tuple[int, int, int]] | None = None,
    name: str | None = None,
) -> ParquetSegment:
    """Decode ``batches`` and write them as ``name`` (default ``<base_offset>.parquet``), atomically:
    the broker names a file nobody used before (`file_name`), so the rename replaces nothing.

    In bounded chunks (`record_tables.iter_record_tables`): one row group at a time is decoded,
    turned into Arrow and written, so memory does not grow with the segment.
    Transaction markers (control batches) are never rows; the records of ``aborted``
    transactions ``(producer id, first offset, last offset)`` are left out too, so any
    Parquet reader sees only committed data (KIP-98's read_committed view).
    """
    path = directory / (name or file_name(base_offset))
    tmp = path.with_name(path.name + ".tmp")
    max_ts = _write_chunked(tmp, base_offset, next_offset, batches, topic, partition, aborted, tail=False)
    return _install(tmp, path, base_offset, next_offset, max_ts)


def write_segment_table(
    directory: Path,
    base_offset: int,
    next_offset: int,
    batches: bytes | bytearray | memoryview,
    table: pa.Table,
    *,
    topic: str = "",
    partition: int = 0,
    aborted: list[tuple[int, int, int]] | None = None,
    name: str | None = None,
) -> ParquetSegment:
    """`write_segment` from ``table``, every data record of ``batches`` already decoded (the
    converter's tail cache holds a growing segment decoded, so its seal decodes nothing again);
    the same file: rows, aborted records left out, row groups and metadata (the largest timestamp
    from the batch headers, as `write_segment` takes it)."""
    if aborted and table.num_rows:
        table = without_aborted(table, aborted)
    max_ts = _max_timestamp(batches)
    return write_table(directory, base_offset, next_offset, table, max_ts, topic=topic, partition=partition, name=name)


def write_tail_file(
    directory: Path,
    base_offset: int,
    next_offset: int,
    batches: bytes | bytearray | memoryview,
    *,
    topic: str = "",
    partition: int = 0,
    aborted: list[tuple[int, int, int]] | None = None,
) -> ParquetSegment:
    """Like `write_segment`, but marked as a tail file and left at ``<base>.parquet.tail.tmp``
    (fsync'ed): the broker renames it into place under the log's lock
    (`PartitionLog.install_tail`), so it never replaces a sealed segment's file."""
    path = directory / f"{base_offset:020d}.parquet.tail.tmp"
    max_ts = _write_chunked(path, base_offset, next_offset, batches, topic, partition, aborted, tail=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return ParquetSegment(path, base_offset, next_offset, max_ts, path.stat().st_size, tail=True)


def decode_table(batches: bytes | bytearray | memoryview) -> pa.Table:
    """Every data record of ``batches`` as one table in the tier's schema (aborted ones included)."""
    return record_tables.decode_table(
        batches, max_rows=CONVERT_CHUNK_ROWS, max_bytes=CONVERT_CHUNK_BYTES, max_batch_bytes=MAX_CONVERT_BATCH_BYTES
    )


def write_tail_table(
    directory: Path,
    base_offset: int,
    next_offset: int,
    table: pa.Table,
    *,
    topic: str = "",
    partition: int = 0,
    aborted: list[tuple[int, int, int]] | None = None,
) -> ParquetSegment:
    """`write_tail_file` from an already decoded ``table`` (the converter keeps the decoded prefix
    of a growing segment, so each tail rewrite decodes only the batches appended since)."""
    path = directory / f"{base_offset:020d}.parquet.tail.tmp"
    if aborted and table.num_rows:
        table = without_aborted(table, aborted)
    max_ts = pc.max(table.column("timestamp").cast(pa.int64())).as_py() if table.num_rows else None
    max_ts = -1 if max_ts is None else int(max_ts)
    write_table_file(path, base_offset, next_offset, table, max_ts, topic=topic, partition=partition, tail=True)
    return ParquetSegment(path, base_offset, next_offset, max_ts, path.stat().st_size, tail=True)


def _write_chunked(
    tmp: Path,
    base_offset: int,
    next_offset: int,
    batches: bytes | bytearray | memoryview,
    topic: str,
    partition: int,
    aborted: list[tuple[int, int, int]] | None,
    *,
    tail: bool,
) -> int:
    # From the batch headers, so the file's metadata is known before the first row is written.
    max_ts = _max_timestamp(batches)
    meta = _file_metadata(base_offset, next_offset, max_ts, topic, partition)
    if tail:
        meta[_META_TAIL] = b"1"
    writer = pq.ParquetWriter(
        tmp,
        schema().with_metadata(meta),
        compression=TAIL_COMPRESSION if tail else COMPRESSION,
        use_dictionary=TAIL_DICTIONARY if tail else DICTIONARY_COLUMNS,
        write_page_checksum=True,
    )
    try:
        for table in iter_record_tables(
            batches,
            max_rows=CONVERT_CHUNK_ROWS,
            max_bytes=CONVERT_CHUNK_BYTES,
            max_batch_bytes=MAX_CONVERT_BATCH_BYTES,
        ):
            if aborted and table.num_rows:
                table = without_aborted(table, aborted)
            table = table.replace_schema_metadata(meta)
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            del table
        writer.close()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return max_ts


def _max_timestamp(batches: bytes | bytearray | memoryview) -> int:
    """The largest timestamp of the data batches' headers (maxTimestamp, as Kafka's time index uses it)."""
    return max((h.max_timestamp for h in iter_batch_headers(batches) if not h.is_control), default=-1)


def _file_metadata(base_offset: int, next_offset: int, max_ts: int, topic: str, partition: int) -> dict[bytes, bytes]:
    return {
        _META_BASE: str(base_offset).encode(),
        _META_NEXT: str(next_offset).encode(),
        _META_MAX_TS: str(max_ts).encode(),
        _META_TOPIC: topic.encode(),
        _META_PARTITION: str(partition).encode(),
    }


def _install(tmp: Path, path: Path, base_offset: int, next_offset: int, max_ts: int) -> ParquetSegment:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)  # the Parquet file replaces the raw segment as the durable copy
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return ParquetSegment(path, base_offset, next_offset, max_ts, path.stat().st_size)


def without_aborted(table: pa.Table, aborted: list[tuple[int, int, int]]) -> pa.Table:
    """``table`` without the rows of the aborted transactions ``(producer id, first, last offset)``."""
    offsets, pids = table.column("offset"), table.column("producer_id")
    drop = None
    i64 = record_tables.int64_scalar
    for pid, first, last in aborted:
        mask = pc.and_(
            pc.equal(pids, i64(pid)), pc.and_(pc.greater_equal(offsets, i64(first)), pc.less_equal(offsets, i64(last)))
        )
        drop = mask if drop is None else pc.or_(drop, mask)
    return table if drop is None else table.filter(pc.invert(drop))


def write_table(
    directory: Path,
    base_offset: int,
    next_offset: int,
    table: pa.Table,
    max_ts: int,
    *,
    topic: str = "",
    partition: int = 0,
    name: str | None = None,
) -> ParquetSegment:
    """Write ``table`` (the tier's schema) as ``name`` (default ``<base_offset>.parquet``), atomically
    and fsync'ed."""
    path = directory / (name or file_name(base_offset))
    tmp = path.with_name(path.name + ".tmp")
    write_table_file(tmp, base_offset, next_offset, table, max_ts, topic=topic, partition=partition)
    os.replace(tmp, path)
    return ParquetSegment(path, base_offset, next_offset, max_ts, path.stat().st_size)


def write_table_file(
    path: Path,
    base_offset: int,
    next_offset: int,
    table: pa.Table,
    max_ts: int,
    *,
    topic: str = "",
    partition: int = 0,
    tail: bool = False,
) -> None:
    """Write ``table`` with the tier's metadata at ``path`` and fsync it (no rename: the caller installs it)."""
    meta = _file_metadata(base_offset, next_offset, max_ts, topic, partition)
    if tail:
        meta[_META_TAIL] = b"1"
    table = table.replace_schema_metadata(meta)
    pq.write_table(
        table,
        path,
        compression=TAIL_COMPRESSION if tail else COMPRESSION,
        row_group_size=TAIL_ROW_GROUP_ROWS if tail else ROW_GROUP_ROWS,
        use_dictionary=TAIL_DICTIONARY if tail else DICTIONARY_COLUMNS,
        write_page_checksum=True,
    )
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # the Parquet file replaces the raw segment as the durable copy
    finally:
        os.close(fd)


class MergedFileWriter:
    """One Parquet file written from the cleaned tables of adjacent segments, one at a time.

    The log cleaner groups adjacent cleaned segments up to ``segment.bytes`` into one file, as
    Kafka's cleaner groups segments (``groupSegmentsBySize``), so a compacted log does not end as
    many tiny files (a Parquet file costs about 1 KB of footer however few rows it holds). Only
    one segment's table is in memory at a time; the offset range and the ``merged`` flag go in
    the footer when the file is finished (`finish`), fsync'ed, at ``path`` (the caller renames it).
    """

    def __init__(self, path: Path, base_offset: int, *, topic: str = "", partition: int = 0) -> None:
        self.path = path
        self.base_offset = base_offset
        self.rows = 0
        meta = {
            _META_BASE: str(base_offset).encode(),
            _META_TOPIC: topic.encode(),
            _META_PARTITION: str(partition).encode(),
            _META_CLEANED: b"1",
        }
        self._writer = pq.ParquetWriter(
            path,
            schema().with_metadata(meta),
            compression=COMPRESSION,
            use_dictionary=DICTIONARY_COLUMNS,
            write_page_checksum=True,
        )

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table.cast(schema()), row_group_size=ROW_GROUP_ROWS)
            self.rows += table.num_rows

    def finish(self, next_offset: int, max_ts: int, *, merged: bool) -> int:
        """Close the file with its metadata, fsync it; return its size."""
        extra = {_META_NEXT: str(next_offset).encode(), _META_MAX_TS: str(max_ts).encode()}
        if merged:
            extra[_META_MERGED] = b"1"
        self._writer.add_key_value_metadata(extra)
        self._writer.close()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return self.path.stat().st_size

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self.path.unlink(missing_ok=True)


def truncate_segment(seg: ParquetSegment, end_offset: int, *, topic: str = "", partition: int = 0) -> ParquetSegment:
    """Rewrite ``seg`` keeping only the whole batches below ``end_offset`` (log truncation); atomic,
    under the same name: the one replacement of a file's content (the records cut must vanish for
    readers at once; a reader mid-query may fail, see the module docstring).

    A batch that starts below ``end_offset`` but reaches past it is dropped too,
    and the file then ends at that batch's base offset.
    """
    table = seg.read_table()
    bbo_col = table.column("batch_base_offset")
    bbo = bbo_col.to_numpy()
    after = bbo[table.column("offset").to_numpy() >= end_offset]
    cut = min(end_offset, int(after.min())) if len(after) else end_offset
    table = table.filter(pc.less(bbo_col, cut)).replace_schema_metadata(None)
    max_ts = pc.max(table.column("timestamp").cast(pa.int64())).as_py() if table.num_rows else None
    return write_table(
        seg.path.parent,
        seg.base_offset,
        cut,
        table,
        -1 if max_ts is None else int(max_ts),
        topic=topic,
        partition=partition,
        name=seg.path.name,
    )


class TableCache:
    """The last Parquet file read for fetches, as an Arrow table and its offset column."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.table: pa.Table | None = None
        self.offsets: Any = None
        self.batch_base_offsets: Any = None

    def get(self, seg: ParquetSegment) -> tuple[pa.Table, Any, Any]:
        """(table, offset column, batch_base_offset column) as numpy arrays."""
        if self.path != seg.path or self.table is None:
            table = seg.read_table()
            self.offsets = table.column("offset").to_numpy()
            self.batch_base_offsets = table.column("batch_base_offset").to_numpy()
            self.table, self.path = table, seg.path
        return self.table, self.offsets, self.batch_base_offsets

    def invalidate(self, path: Path | None = None) -> None:
        if path is None or path == self.path:
            self.path = self.table = self.offsets = self.batch_base_offsets = None
