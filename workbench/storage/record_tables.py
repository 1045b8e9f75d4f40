"""Record batches as Arrow tables in the Parquet tier's schema: one row per record.

The converter's decode (issue 19). `iter_record_tables` reads a segment's batches into tables of at
most ``max_rows`` rows, about ``max_bytes`` of decompressed batches at a time. Where the compiled
decoder (`workbench.protocol._record_columns`) is built, it reads the records straight into the
buffers of the Arrow arrays: no Python object per record (about 0.1 us per record against 1-1.5 us
for aiokafka's reader, a Python list per column and `pa.array`). Without it, or with
``WORKBENCH_PURE_PYTHON=1``, or for any batches it refuses, the pure-Python path decodes
(`records.iter_record_chunks`, `columns_to_table`), so a refusal is always that path's error and
the rows are always that path's rows; the tests hold the two paths to the same tables.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from workbench._lazy import lazy_module
from workbench.protocol.records import decompressed_for_decoding, iter_batch_headers, iter_record_chunks, load_compiled

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


@cache
def schema() -> pa.Schema:
    """The tier's Arrow schema: one row per record."""
    return pa.schema(
        [
            pa.field("offset", pa.int64(), nullable=False),
            pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field("key", pa.binary()),
            pa.field("value", pa.binary()),
            pa.field("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
            pa.field("producer_id", pa.int64(), nullable=False),
            pa.field("producer_epoch", pa.int16(), nullable=False),
            pa.field("sequence", pa.int32(), nullable=False),
            pa.field("batch_base_offset", pa.int64(), nullable=False),
            pa.field("partition_leader_epoch", pa.int32(), nullable=False),
            pa.field("timestamp_type", pa.int8(), nullable=False),
        ]
    )


def columns_to_table(cols: dict[str, list[Any]]) -> pa.Table:
    """`records.decode_records` columns -> an Arrow table in the tier's schema."""
    arrays = []
    for f in schema():
        values = cols[f.name]
        if f.name == "timestamp":
            arrays.append(pa.array(values, type=pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema())


def int64_scalar(value: int) -> pa.Scalar:
    """An int64 Arrow scalar made from its bytes. A Python int passed to `pyarrow.compute` (or to
    `pa.scalar`) makes pyarrow import pandas to see whether it is a pandas object: in the converter
    child that was 0.7-1.3 s of CPU and ~40 MB of memory per start, for nothing (issue 19)."""
    return pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(struct.pack("<q", value))])[0]


def first_row_at(offsets: Any, offset: int) -> int:
    """The index of the first row of the increasing ``offsets`` column at or above ``offset``
    (a binary search: a segment's rows are in offset order)."""
    lo, hi = 0, len(offsets)
    while lo < hi:
        mid = (lo + hi) // 2
        if offsets[mid].as_py() < offset:
            lo = mid + 1
        else:
            hi = mid
    return lo


ColumnsFn = Callable[[list[Any]], tuple[Any, ...]]


def _load_columns() -> ColumnsFn | None:
    """The compiled decoder (`records.load_compiled`)."""
    return load_compiled("workbench.protocol._record_columns", "columns")


_COLUMNS: ColumnsFn | None = _load_columns()


def _table_from_buffers(parts: tuple[Any, ...]) -> pa.Table:
    """The compiled decoder's buffers (`_record_columns.columns`) as a table, without a copy."""
    (n, offset, ts, kvalid, koff, kdata, vvalid, voff, vdata, hoff, nh, hkoff, hkdata, hvvalid, hvoff, hvdata) = parts[
        :16
    ]
    pid, epoch, seq, bbo, ple, tst = parts[16:]
    buf = pa.py_buffer
    fields = schema()
    header_type = fields.field("headers").type
    entry = pa.StructArray.from_arrays(
        [
            pa.Array.from_buffers(pa.string(), nh, [None, buf(hkoff), buf(hkdata)]),
            pa.Array.from_buffers(pa.binary(), nh, [buf(hvvalid), buf(hvoff), buf(hvdata)]),
        ],
        fields=list(header_type.value_type),
    )
    arrays = [
        pa.Array.from_buffers(pa.int64(), n, [None, buf(offset)]),
        pa.Array.from_buffers(fields.field("timestamp").type, n, [None, buf(ts)]),
        pa.Array.from_buffers(pa.binary(), n, [buf(kvalid), buf(koff), buf(kdata)]),
        pa.Array.from_buffers(pa.binary(), n, [buf(vvalid), buf(voff), buf(vdata)]),
        pa.ListArray.from_arrays(pa.Array.from_buffers(pa.int32(), n + 1, [None, buf(hoff)]), entry, type=header_type),
        pa.Array.from_buffers(pa.int64(), n, [None, buf(pid)]),
        pa.Array.from_buffers(pa.int16(), n, [None, buf(epoch)]),
        pa.Array.from_buffers(pa.int32(), n, [None, buf(seq)]),
        pa.Array.from_buffers(pa.int64(), n, [None, buf(bbo)]),
        pa.Array.from_buffers(pa.int32(), n, [None, buf(ple)]),
        pa.Array.from_buffers(pa.int8(), n, [None, buf(tst)]),
    ]
    return pa.Table.from_arrays(arrays, schema=fields)


def _decode_group(
    batches: list[Any], columns: ColumnsFn, max_rows: int, max_bytes: int, max_batch_bytes: int
) -> pa.Table:
    """Uncompressed data batches as one table: compiled, or on the pure-Python path if refused."""
    try:
        return _table_from_buffers(columns(batches))
    except ValueError:
        pass  # the pure-Python path decides: its rows, or its error
    joined = b"".join(bytes(b) for b in batches)
    tables = [
        columns_to_table(cols)
        for cols in iter_record_chunks(joined, max_rows=max_rows, max_bytes=max_bytes, max_batch_bytes=max_batch_bytes)
    ]
    return pa.concat_tables(tables) if tables else schema().empty_table()


def iter_record_tables(
    buf: bytes | bytearray | memoryview, *, max_rows: int, max_bytes: int, max_batch_bytes: int
) -> Iterator[pa.Table]:
    """Every data record of ``buf`` (control batches left out, aborted records kept), as tables of
    at most ``max_rows`` rows (together, in log order), decoding about ``max_bytes`` of
    (decompressed) batches at a time; a compressed batch decompresses to at most
    ``max_batch_bytes`` (MESSAGE_TOO_LARGE past it). Raises `KafkaProtocolError` (CORRUPT_MESSAGE)
    for a batch whose records do not parse, as `records.iter_record_chunks` does."""
    columns = _COLUMNS
    if columns is None:
        for cols in iter_record_chunks(buf, max_rows=max_rows, max_bytes=max_bytes, max_batch_bytes=max_batch_bytes):
            yield columns_to_table(cols)
        return
    view = memoryview(buf)
    carry: pa.Table | None = None
    group: list[Any] = []
    size = rows = 0

    def cut(table: pa.Table, final: bool) -> Iterator[pa.Table]:
        nonlocal carry
        if carry is not None:
            table = pa.concat_tables([carry, table])
            carry = None
        while table.num_rows >= max_rows:
            yield table.slice(0, max_rows)
            table = table.slice(max_rows)
        if table.num_rows and final:
            yield table
        elif table.num_rows:
            carry = table

    for h in iter_batch_headers(view):
        if h.is_control:
            continue
        batch: Any = view[h.position : h.end]
        if h.compression:
            batch = decompressed_for_decoding(batch, h, max_batch_bytes)
        group.append(batch)
        size += len(batch)
        rows += max(h.records_count, 0)
        if size >= max_bytes or rows >= max_rows:
            table = _decode_group(group, columns, max_rows, max_bytes, max_batch_bytes)
            group, size, rows = [], 0, 0
            yield from cut(table, final=False)
    if group:
        yield from cut(_decode_group(group, columns, max_rows, max_bytes, max_batch_bytes), final=True)
    elif carry is not None:
        yield carry


def decode_table(
    batches: bytes | bytearray | memoryview, *, max_rows: int, max_bytes: int, max_batch_bytes: int
) -> pa.Table:
    """Every data record of ``batches`` as one table (`iter_record_tables`, concatenated)."""
    chunks = iter_record_tables(batches, max_rows=max_rows, max_bytes=max_bytes, max_batch_bytes=max_batch_bytes)
    tables = list(chunks)
    return pa.concat_tables(tables) if tables else schema().empty_table()
