"""Kafka record batches, magic v2, without I/O.

Implements the "Record Batch" layout of the Kafka protocol guide
(https://kafka.apache.org/documentation/#recordbatch)::

    baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 |
    crc uint32 | attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 |
    maxTimestamp int64 | producerId int64 | producerEpoch int16 | baseSequence int32 |
    records count int32 | records...

The CRC (CRC-32C) covers attributes to the end of the batch, so the broker can
patch ``baseOffset`` and ``partitionLeaderEpoch`` in place without touching it.

Two speeds live here:

* the produce/fetch hot path (`iter_batch_headers`, `validate_produce_batches`,
  `validate_fetched_batches`, `assign_offsets`) reads only the 61-byte batch
  headers with ``struct`` and the CRC with the C ``crc32c`` package: no
  per-record Python work;
* the Parquet tier path (`decode_records`, `build_batches`) goes record by
  record through aiokafka's Cython record reader/builder (all four codecs via
  cramjam).

Not supported, deliberately: magic 0/1 message sets (rejected with
UNSUPPORTED_FOR_MESSAGE_FORMAT, as Kafka does when down-conversion is off), and
per-record validation on produce (Kafka's LogValidator also checks record-level
timestamps and keys for compacted topics; we trust the batch CRC).
"""

from __future__ import annotations

import gc
import importlib
import itertools
import operator
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from crc32c import crc32c

from workbench.protocol.compression import DecompressedTooLarge, decompress_bounded
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
assert HEADER_SIZE == 61

#: Bytes before ``batchLength`` counts from: baseOffset + batchLength.
LOG_OVERHEAD = 12
#: Smallest legal batchLength: the header after the length field, no records.
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
PARTITION_LEADER_EPOCH_OFFSET = 12

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20

COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD = range(5)
TIMESTAMP_CREATE_TIME = 0
TIMESTAMP_LOG_APPEND_TIME = 1

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")
_INT64_INT32 = struct.Struct(">qi")

# Bounded work per produced batch (issue 12, item 7). The compressed size is bounded by
# max.message.bytes; what it decompresses to and how many records it holds are bounded
# here, *before* the work is done, so one small hostile batch can neither allocate
# gigabytes nor hold the event loop for seconds:
#
#: A batch may decompress to at most this multiple of the topic's max.message.bytes (32 MiB
#: by default). Real producers compress JSON or logs 3-10x; librdkafka caps a batch at
#: 1 MB *before* compression. Over it: MESSAGE_TOO_LARGE (Kafka's RecordTooLargeException).
MAX_DECOMPRESSION_MULTIPLE = 32
#: Records one batch may hold. librdkafka's batch.num.messages is at most 1,000,000
#: (default 10,000). Validating a zstd batch of this many empty records (9 MB raw) takes
#: 0.35-0.45 s here, the worst a single batch can cost the event loop. Over it: INVALID_RECORD.
MAX_RECORDS_PER_BATCH = 1_000_000
#: Kafka's default max.message.bytes, used when the caller gives none.
DEFAULT_MAX_MESSAGE_BYTES = 1048588

#: Columns of `decode_records` (and of the Parquet tier, minus ``is_transactional``).
COLUMNS = (
    "offset",
    "timestamp",
    "key",
    "value",
    "headers",
    "producer_id",
    "producer_epoch",
    "sequence",
    "batch_base_offset",
    "partition_leader_epoch",
    "timestamp_type",
    "is_transactional",
)


class BatchHeader(NamedTuple):
    """The fixed 61-byte header of one v2 record batch, and where it sits in its buffer."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int
    position: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies (header included)."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def end(self) -> int:
        """Position just past this batch in its buffer."""
        return self.position + self.batch_length + LOG_OVERHEAD

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        return (self.attributes & TIMESTAMP_TYPE_MASK) >> 3

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def record_count(self) -> int:
        return self.records_count

    @property
    def last_sequence(self) -> int:
        """Sequence of the batch's last record (wraps at 2^31-1), or -1 without a producer."""
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return increment_sequence(self.base_sequence, self.last_offset_delta)


def increment_sequence(sequence: int, increment: int) -> int:
    """Kafka's DefaultRecordBatch.incrementSequence: sequences wrap from 2^31-1 to 0."""
    if sequence > 0x7FFFFFFF - increment:
        return increment - (0x7FFFFFFF - sequence) - 1
    return sequence + increment


def iter_batch_headers(buf: bytes | bytearray | memoryview, start: int = 0) -> Iterator[BatchHeader]:
    """Yield the header of every complete v2 batch from ``start``, without reading records.

    Stops silently at the first position that does not hold a whole, plausible v2
    batch (truncated tail, magic other than 2, impossible length): the caller
    learns how far the walk got from the last header's ``end`` (or ``start``).
    CRCs are not checked here; see `batch_crc_ok`.
    """
    unpack_from = HEADER.unpack_from
    make = BatchHeader._make
    end = len(buf)
    pos = start
    while pos + HEADER_SIZE <= end:
        fields = unpack_from(buf, pos)
        length = fields[1]
        if fields[3] != 2 or length < MIN_BATCH_LENGTH or pos + LOG_OVERHEAD + length > end:
            return
        yield make((*fields, pos))
        pos += LOG_OVERHEAD + length


def batch_crc_ok(buf: bytes | bytearray | memoryview, header: BatchHeader) -> bool:
    """True when the batch's stored CRC-32C matches its bytes (attributes to end)."""
    view = memoryview(buf)
    return crc32c(view[header.position + ATTRIBUTES_OFFSET : header.end]) == header.crc


def validate_produce_batches(
    buf: bytes | bytearray | memoryview,
    *,
    coordinator: bool = False,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[BatchHeader]:
    """Check a Produce request's record set and return its batch headers.

    Raises `KafkaProtocolError` with the code Apache Kafka answers with:
    CORRUPT_MESSAGE for a truncated/garbled batch or a CRC mismatch;
    UNSUPPORTED_FOR_MESSAGE_FORMAT for magic 0/1; INVALID_RECORD for an empty
    record set, a control batch sent by a client, a count that disagrees with
    lastOffsetDelta, or a producer id with a negative base sequence
    (LogValidator.validateBatch) or more than MAX_RECORDS_PER_BATCH records;
    MESSAGE_TOO_LARGE for a batch that decompresses to more than
    MAX_DECOMPRESSION_MULTIPLE x ``max_message_bytes`` (refused while decompressing);
    UNSUPPORTED_COMPRESSION_TYPE for codec ids 5-7. One batch per partition (Produce
    v3+) is the request handler's rule; several batches are accepted here. ``coordinator``
    (a broker's own transaction marker or transactional offset commit) allows control
    batches and batches without a sequence.
    """
    view = memoryview(buf)
    end = len(view)
    if end == 0:
        raise KafkaProtocolError(ErrorCode.INVALID_RECORD, "empty record set")
    unpack_from = HEADER.unpack_from
    headers: list[BatchHeader] = []
    pos = 0
    while pos < end:
        if pos + MAGIC_OFFSET + 1 <= end and view[pos + MAGIC_OFFSET] in (0, 1):
            raise KafkaProtocolError(
                ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT,
                f"message set with magic {view[pos + MAGIC_OFFSET]} at byte {pos}; only magic 2 is supported",
            )
        if pos + HEADER_SIZE > end:
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"truncated batch header at byte {pos}")
        h = BatchHeader._make((*unpack_from(view, pos), pos))
        if h.magic != 2:
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"unknown magic {h.magic} at byte {pos}")
        if h.batch_length < MIN_BATCH_LENGTH or h.end > end:
            raise KafkaProtocolError(
                ErrorCode.CORRUPT_MESSAGE,
                f"batch at byte {pos} claims {h.batch_length} bytes, {end - pos} left",
            )
        if crc32c(view[pos + ATTRIBUTES_OFFSET : h.end]) != h.crc:
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"CRC mismatch in batch at byte {pos}")
        if h.compression > COMPRESSION_ZSTD:
            raise KafkaProtocolError(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"compression id {h.compression}")
        if h.is_control and not coordinator:
            raise KafkaProtocolError(ErrorCode.INVALID_RECORD, "clients may not send control batches")
        if h.records_count <= 0 or h.last_offset_delta < 0 or h.records_count != h.last_offset_delta + 1:
            raise KafkaProtocolError(
                ErrorCode.INVALID_RECORD,
                f"batch at byte {pos}: count {h.records_count} vs lastOffsetDelta {h.last_offset_delta}",
            )
        if h.producer_id >= 0 and h.base_sequence < 0 and not coordinator:
            raise KafkaProtocolError(ErrorCode.INVALID_RECORD, f"producer id {h.producer_id} without a sequence")
        if h.records_count > MAX_RECORDS_PER_BATCH:
            raise KafkaProtocolError(
                ErrorCode.INVALID_RECORD,
                f"batch at byte {pos} holds {h.records_count} records; at most {MAX_RECORDS_PER_BATCH} are accepted",
            )
        check_records(view, h, max_decompressed_bytes=MAX_DECOMPRESSION_MULTIPLE * max(max_message_bytes, 1))
        headers.append(h)
        pos = h.end
    return headers


def check_records(
    buf: bytes | bytearray | memoryview, h: BatchHeader, *, max_decompressed_bytes: int | None = None
) -> None:
    """Walk the records of one batch (decompressing it) and check they are what the header says.

    A CRC only proves the bytes arrived as the client sent them, not that they parse: a
    producer bug or a hostile client can send a batch with a correct CRC whose record
    lengths or varints are garbage, or whose record count disagrees with the records.
    Stored, such a batch breaks every consumer and the Parquet conversion of its segment,
    so it is refused with CORRUPT_MESSAGE, as Kafka's LogValidator does (it iterates the
    records of every batch it accepts). Offset deltas must be 0, 1, ... in order
    (INVALID_RECORD otherwise): consumers compute offsets from them.

    An uncompressed batch is walked by the optional C extension `workbench.protocol._record_walk`
    when it was built (issue 19: 0.02-0.03 µs per record, nothing allocated); it only *accepts*
    here: a batch it refuses is walked again by the pure-Python path, so every refusal carries the
    pure-Python path's code and message. Without the extension, or with the environment variable
    ``WORKBENCH_PURE_PYTHON=1`` set when this module is imported, every batch takes the pure-Python
    path: one pass of aiokafka's record reader (0.26-0.31 µs per record, a Python object per
    record). A compressed batch is first decompressed there with the output capped at
    ``max_decompressed_bytes`` (MESSAGE_TOO_LARGE past it, found while decompressing; see
    `workbench.protocol.compression`), then walked as the equivalent uncompressed batch.
    """
    if (
        _WALK is not None
        and not h.compression
        and h.records_count > 0
        # aiokafka computes offsets in int64: past 2^63-1 they wrap and the pure-Python path
        # refuses the batch (INVALID_RECORD), which the C walk does not see (it reads deltas).
        and h.base_offset + h.records_count <= _OFFSET_LIMIT
    ):
        try:
            if _WALK(buf, h.position + HEADER_SIZE, h.end, h.records_count) < 0:
                return
        except ValueError:
            pass  # refused: the pure-Python walk says why, with its own code and message
    _check_records_python(buf, h, max_decompressed_bytes)


def _check_records_python(
    buf: bytes | bytearray | memoryview, h: BatchHeader, max_decompressed_bytes: int | None
) -> None:
    """`check_records` with aiokafka's reader: the path every refusal and every compressed batch takes."""
    reader = _reader()
    try:
        # The walk and the comparison both run in C: no Python bytecode per record.
        with memoryview(buf) as view:  # the reader takes a buffer: no copy of the batch
            batch: memoryview | bytearray = view[h.position : h.end]
            if h.compression and max_decompressed_bytes is not None:
                batch = uncompressed_batch(batch, h.compression, max_decompressed_bytes)
            offsets = list(map(_OFFSET, reader(batch)))
        n = len(offsets)
        if offsets != list(range(h.base_offset, h.base_offset + n)):
            i = next(i for i, o in enumerate(offsets) if o != h.base_offset + i)
            raise KafkaProtocolError(
                ErrorCode.INVALID_RECORD,
                f"batch at byte {h.position}: record {i} has offset delta {offsets[i] - h.base_offset}",
            )
    except KafkaProtocolError:
        raise
    except DecompressedTooLarge as exc:
        raise KafkaProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"batch at byte {h.position} {exc} ({MAX_DECOMPRESSION_MULTIPLE} x max.message.bytes)",
        ) from exc
    except Exception as exc:  # CorruptRecordException, a codec's own error on a bad compressed payload
        raise KafkaProtocolError(
            ErrorCode.CORRUPT_MESSAGE, f"batch at byte {h.position}: records do not parse ({exc})"
        ) from exc
    if n != h.records_count:
        raise KafkaProtocolError(
            ErrorCode.CORRUPT_MESSAGE,
            f"batch at byte {h.position}: {n} records, header says {h.records_count}",
        )


def uncompressed_batch(batch: bytes | bytearray | memoryview, codec: int, limit: int) -> bytearray:
    """The same batch with its records decompressed (at most ``limit`` bytes, else
    `DecompressedTooLarge`) and the codec bits cleared, for the record reader to walk.
    The CRC no longer matches: check it on the original first."""
    records = decompress_bounded(codec, memoryview(batch)[HEADER_SIZE:], limit)
    out = bytearray(HEADER_SIZE + len(records))
    out[:HEADER_SIZE] = batch[:HEADER_SIZE]
    out[HEADER_SIZE:] = records
    attributes = _INT16.unpack_from(out, ATTRIBUTES_OFFSET)[0] & ~COMPRESSION_MASK
    _INT16.pack_into(out, ATTRIBUTES_OFFSET, attributes)
    _INT32.pack_into(out, 8, len(out) - LOG_OVERHEAD)
    return out


def decompressed_for_decoding(batch: bytes | bytearray | memoryview, h: BatchHeader, limit: int) -> bytearray:
    """`uncompressed_batch` of a stored batch being decoded (Parquet conversion), its failures as
    the decode's errors: MESSAGE_TOO_LARGE past ``limit``, CORRUPT_MESSAGE for codec errors."""
    try:
        return uncompressed_batch(batch, h.compression, limit)
    except DecompressedTooLarge as exc:
        raise KafkaProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"batch at offset {h.base_offset} {exc}") from exc
    except Exception as exc:  # codec errors
        raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"batch at offset {h.base_offset}: {exc!r}") from exc


def validate_fetched_batches(buf: bytes | bytearray | memoryview) -> list[BatchHeader]:
    """Check the record set of a Fetch response (a follower's append) and return its whole batches.

    Unlike `validate_produce_batches`, offsets and epochs are already assigned and
    the leader has validated the producer fields, so this checks framing and CRC
    only; control batches and batches whose record count is below
    ``lastOffsetDelta + 1`` (compacted) are accepted. A fetch response may end
    with a partial batch (the leader cuts at ``max_bytes``): a tail too short for
    the 17 bytes up to the magic, or shorter than its own ``batchLength`` says,
    is ignored, as Kafka's ``ByteBufferLogInputStream`` does.

    Raises `KafkaProtocolError`: CORRUPT_MESSAGE for an impossible length, an
    unknown magic, a CRC mismatch or a negative ``lastOffsetDelta``;
    UNSUPPORTED_FOR_MESSAGE_FORMAT for magic 0/1; UNSUPPORTED_COMPRESSION_TYPE
    for codec ids 5-7. Nothing is ever returned past a bad batch.
    """
    view = memoryview(buf)
    end = len(view)
    unpack_from = HEADER.unpack_from
    headers: list[BatchHeader] = []
    pos = 0
    while end - pos >= MAGIC_OFFSET + 1:
        length = _INT32.unpack_from(view, pos + 8)[0]
        magic = view[pos + MAGIC_OFFSET]
        if length < MIN_BATCH_LENGTH:
            raise KafkaProtocolError(
                ErrorCode.CORRUPT_MESSAGE, f"batch at byte {pos} has an impossible length {length}"
            )
        if magic in (0, 1):
            raise KafkaProtocolError(
                ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT, f"message set with magic {magic} at byte {pos}"
            )
        if magic != 2:
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"unknown magic {magic} at byte {pos}")
        if pos + LOG_OVERHEAD + length > end:
            break  # partial last batch: the response was cut at max_bytes
        h = BatchHeader._make((*unpack_from(view, pos), pos))
        if crc32c(view[pos + ATTRIBUTES_OFFSET : h.end]) != h.crc:
            raise KafkaProtocolError(
                ErrorCode.CORRUPT_MESSAGE, f"CRC mismatch in batch at byte {pos} (offset {h.base_offset})"
            )
        if h.last_offset_delta < 0 or h.records_count < 0 or h.base_offset < 0:
            raise KafkaProtocolError(
                ErrorCode.CORRUPT_MESSAGE,
                f"batch at byte {pos}: base offset {h.base_offset}, lastOffsetDelta {h.last_offset_delta}, "
                f"count {h.records_count}",
            )
        if h.compression > COMPRESSION_ZSTD:
            raise KafkaProtocolError(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"compression id {h.compression}")
        headers.append(h)
        pos = h.end
    return headers


def assign_offsets(
    buf: bytearray | memoryview,
    headers: Iterable[BatchHeader],
    base_offset: int,
    partition_leader_epoch: int | None = None,
) -> int:
    """Patch each batch's baseOffset (and leader epoch) in place; return the next offset.

    Both fields lie before the CRC'd region, so the CRC stays valid.
    """
    offset = base_offset
    pack_into = _INT64.pack_into
    for h in headers:
        pack_into(buf, h.position, offset)
        if partition_leader_epoch is not None:
            _INT32.pack_into(buf, h.position + PARTITION_LEADER_EPOCH_OFFSET, partition_leader_epoch)
        offset += h.last_offset_delta + 1
    return offset


_OFFSET = operator.attrgetter("offset")
#: One past the largest offset aiokafka's reader computes without wrapping (int64).
_OFFSET_LIMIT = 1 << 63


def load_compiled(module: str, name: str) -> Any:
    """``name`` from the optional C extension ``module``, or None: not built (no C compiler at
    install) or ``WORKBENCH_PURE_PYTHON=1`` (the pure-Python path forced, as tests and comparisons do)."""
    if os.environ.get("WORKBENCH_PURE_PYTHON") == "1":
        return None
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        return None


def _load_walk() -> Callable[[bytes | bytearray | memoryview, int, int, int], int] | None:
    """The compiled record walk (`load_compiled`)."""
    return load_compiled("workbench.protocol._record_walk", "walk")


#: What `check_records` walks uncompressed batches with when not None (see `_load_walk`).
_WALK = _load_walk()


def _reader() -> Any:
    global _READER
    if _READER is None:
        from aiokafka.record.default_records import DefaultRecordBatch

        _READER = DefaultRecordBatch
    return _READER


_READER: Any = None


def _builder() -> Any:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    return DefaultRecordBatchBuilder


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic GC while building millions of small acyclic objects.

    The generational collector otherwise re-scans the growing column lists over
    and over; pausing it more than doubles decode speed (0.8 -> 2 M records/s).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def decode_records(
    buf: bytes | bytearray | memoryview, *, include_control: bool = False, verify_crc: bool = False
) -> dict[str, list]:
    """Decode every record of every batch in ``buf`` into columns (see `COLUMNS`).

    ``timestamp`` is ms since the epoch (for LogAppendTime batches, the batch's
    maxTimestamp, as consumers see it); ``sequence`` is the record's own
    sequence (batch base sequence + offset delta, wrapping) or -1. Control
    batches (transaction markers) are skipped unless ``include_control``.
    A truncated tail is ignored; a record that cannot be parsed raises
    CORRUPT_MESSAGE.
    """
    with paused_gc():
        return _decode_records(buf, include_control, verify_crc)


def _decode_records(buf: bytes | bytearray | memoryview, include_control: bool, verify_crc: bool) -> dict:
    cols = _empty_columns()
    reader = _reader()
    view = memoryview(buf)
    for h in iter_batch_headers(view):
        if h.is_control and not include_control:
            continue
        if verify_crc and crc32c(view[h.position + ATTRIBUTES_OFFSET : h.end]) != h.crc:
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"CRC mismatch at offset {h.base_offset}")
        try:
            recs = list(reader(bytes(view[h.position : h.end])))
        except Exception as exc:  # aiokafka raises CorruptRecordException, codec errors, ValueError
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"batch at offset {h.base_offset}: {exc!r}") from exc
        _extend_columns(cols, h, recs)
    return cols


def _empty_columns() -> dict[str, list]:
    return {name: [] for name in COLUMNS}


def _extend_columns(cols: dict[str, list], h: BatchHeader, recs: list[Any]) -> None:
    n = len(recs)
    cols["offset"] += [r.offset for r in recs]
    cols["timestamp"] += [r.timestamp for r in recs]
    cols["key"] += [r.key for r in recs]
    cols["value"] += [r.value for r in recs]
    cols["headers"] += [r.headers for r in recs]
    if h.base_sequence >= 0:
        base, bo = h.base_sequence, h.base_offset
        cols["sequence"] += [increment_sequence(base, r.offset - bo) for r in recs]
    else:
        cols["sequence"] += [NO_SEQUENCE] * n
    cols["producer_id"] += [h.producer_id] * n
    cols["producer_epoch"] += [h.producer_epoch] * n
    cols["batch_base_offset"] += [h.base_offset] * n
    cols["partition_leader_epoch"] += [h.partition_leader_epoch] * n
    cols["timestamp_type"] += [h.timestamp_type] * n
    cols["is_transactional"] += [h.is_transactional] * n


def iter_record_chunks(
    buf: bytes | bytearray | memoryview,
    *,
    max_rows: int,
    max_bytes: int,
    max_batch_bytes: int,
    include_control: bool = False,
) -> Iterator[dict[str, list]]:
    """`decode_records`, in pieces of bounded size, for work on whole segments (Parquet conversion).

    Yields column dicts (see `COLUMNS`) of at most ``max_rows`` rows, holding the records
    of at most about ``max_bytes`` of (decompressed) batches plus one more batch. A
    compressed batch is decompressed with its output capped at ``max_batch_bytes``
    (MESSAGE_TOO_LARGE past it, found while decompressing), and even one batch is
    split across chunks by rows. So at most one batch's bytes and ``max_rows`` decoded
    rows are in memory at a time, whatever the buffer holds.
    """
    with paused_gc():
        reader = _reader()
        view = memoryview(buf)
        cols = _empty_columns()
        rows = size = 0
        for h in iter_batch_headers(view):
            if h.is_control and not include_control:
                continue
            try:
                batch: bytes | bytearray = bytes(view[h.position : h.end])
                if h.compression:
                    batch = decompressed_for_decoding(batch, h, max_batch_bytes)
                # The C reader's __iter__ may run only once; islice would call it again.
                records = iter(iter(reader(batch)).__next__, None)
                size += len(batch)
                while True:
                    recs = list(itertools.islice(records, max_rows - rows))
                    if recs:
                        _extend_columns(cols, h, recs)
                        rows += len(recs)
                    if rows >= max_rows or size >= max_bytes:
                        yield cols
                        cols, rows, size = _empty_columns(), 0, 0
                    if len(recs) == 0 or rows > 0:
                        break
            except KafkaProtocolError:
                raise
            except Exception as exc:  # CorruptRecordException, ValueError
                raise KafkaProtocolError(
                    ErrorCode.CORRUPT_MESSAGE, f"batch at offset {h.base_offset}: {exc!r}"
                ) from exc
            del batch, records
        if rows:
            yield cols


def _table_to_columns(table: Any) -> dict[str, list]:
    """pyarrow.Table -> plain column lists (timestamps as int ms)."""
    import pyarrow as pa

    out: dict[str, list] = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("ms")).cast(pa.int64())
        values = col.to_pylist()
        if name == "headers":
            values = [[(d["key"], d["value"]) for d in hs] if hs else [] for hs in values]
        out[name] = values
    return out


def build_batches(rows: Mapping[str, Sequence] | Any) -> bytes:
    """Re-encode records (columns as from `decode_records`, or a pyarrow Table) into v2 batches.

    Consecutive rows sharing ``batch_base_offset`` become one uncompressed batch
    that keeps that base offset, the producer id/epoch, the first row's
    sequence minus its offset delta as base sequence, the partition leader epoch, timestamps, keys,
    values and headers; offset deltas keep any gaps. The CRC is correct.
    """
    with paused_gc():
        if not isinstance(rows, Mapping):
            rows = _table_to_columns(rows)
        return _build_batches(rows)


def _build_batches(rows: Mapping[str, Sequence]) -> bytes:
    offsets = rows["offset"]
    n = len(offsets)
    if n == 0:
        return b""
    builder_cls = _builder()
    timestamps = rows["timestamp"]
    keys = rows["key"]
    values = rows["value"]
    headers = rows.get("headers") or [[]] * n
    base_offsets = rows["batch_base_offset"]
    pids = rows.get("producer_id") or [NO_PRODUCER_ID] * n
    epochs = rows.get("producer_epoch") or [NO_PRODUCER_EPOCH] * n
    seqs = rows.get("sequence") or [NO_SEQUENCE] * n
    ples = rows.get("partition_leader_epoch") or [NO_PARTITION_LEADER_EPOCH] * n
    ts_types = rows.get("timestamp_type") or [TIMESTAMP_CREATE_TIME] * n
    txns = rows.get("is_transactional") or [False] * n
    out = bytearray()
    i = 0
    while i < n:
        base = base_offsets[i]
        j = i + 1
        while j < n and base_offsets[j] == base:
            j += 1
        seq = seqs[i]
        if seq >= 0 and offsets[i] != base:
            # The batch's first records were compacted away: its base sequence is the first row's
            # sequence minus its offset delta (wrapping), so every record keeps its own sequence
            # and the batch's last sequence stays the producer's (Kafka's cleaner keeps the header).
            seq -= offsets[i] - base
            if seq < 0:
                seq += 0x80000000
        builder = builder_cls(2, COMPRESSION_NONE, int(bool(txns[i])), pids[i], epochs[i], seq, 1 << 62)
        append = builder.append
        for k in range(i, j):
            append(offsets[k] - base, timestamps[k], keys[k], values[k], headers[k] or [])
        batch = builder.build()
        _INT64.pack_into(batch, 0, base)
        _INT32.pack_into(batch, PARTITION_LEADER_EPOCH_OFFSET, ples[i])
        if ts_types[i] == TIMESTAMP_LOG_APPEND_TIME:
            # Consumers read every record's time from maxTimestamp in LogAppendTime batches.
            attrs = _INT16.unpack_from(batch, ATTRIBUTES_OFFSET)[0] | TIMESTAMP_TYPE_MASK
            _INT16.pack_into(batch, ATTRIBUTES_OFFSET, attrs)
            _INT64.pack_into(batch, 35, max(timestamps[i:j]))
            _UINT32.pack_into(batch, CRC_OFFSET, crc32c(memoryview(batch)[ATTRIBUTES_OFFSET:]))
        out += batch
        i = j
    return bytes(out)
