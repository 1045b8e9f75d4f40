"""Message formats v0 and v1 (KIP-32), converted to and from v2 record batches.

The log stores only v2 batches (magic 2, KIP-98). Clients from before Kafka
0.11 speak the older "message set" formats, and Kafka 3.x still serves them:

* **Up-conversion** (Produce v0-2): Kafka's `LogValidator` converts a message
  set to the log's format on append. `upconvert_message_set` does the same:
  every message (the inner messages of a compressed wrapper included) becomes a
  record of one v2 batch with offset deltas 0..n-1 (the log assigns the base
  offset, as for any batch), the message's key and value, its CreateTime
  timestamp (magic 1) or no timestamp (-1, magic 0), and the wrapper's
  compression codec (`compression.type=producer` keeps the producer's codec).
  Each message's CRC is checked first; a bad one is CORRUPT_MESSAGE.
* **Down-conversion** (Fetch v0-3): Kafka's `RecordsUtil.downConvert` rewrites
  fetched batches in the format the request version can read (magic 0 for
  Fetch v0-1, magic 1 for v2-3). `downconvert_batches` writes each v2 batch as
  uncompressed messages with their absolute offsets, dropping record headers
  (v0/v1 have none) and skipping control batches (transaction markers), which
  old consumers would take for data.

kafka-python's `kafka.record.legacy_records` parses the messages (down-converted
ones are written here with `struct`, four times faster than its builder); this
module adds the conversion rules and the bound on decompression.

Not supported: ZStandard in a v0/v1 message (Kafka refuses it too, KIP-110);
down-conversion keeps no compression, so an old consumer gets bigger
responses than a new one.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatch

from workbench.protocol.errors import ErrorCode, KafkaProtocolError

# A wrapper message may expand to at most this many bytes. Bounded *while* decompressing
# (for gzip, the codec old clients use most), so a small hostile message cannot make the
# broker allocate gigabytes: Kafka bounds the same work by `max.message.bytes`-sized buffers.
MAX_UNCOMPRESSED_BYTES = 64 * 1024 * 1024

_LOG_OVERHEAD = 12  # offset (int64) + message size (int32)
_MAGIC_OFFSET = 16  # offset, size, crc (int32), then magic
_CODEC_ZSTD = 4


class _BoundedLegacyBatch(LegacyRecordBatch):
    """kafka-python's legacy message reader, with gzip decompression bounded."""

    __slots__ = ()

    def _decompress(self, key_offset: int) -> bytes:
        if self.compression_type != self.CODEC_GZIP:
            out = super()._decompress(key_offset)
        else:
            pos = key_offset
            (key_size,) = struct.unpack_from(">i", self._buffer, pos)
            pos += 4 + max(key_size, 0)
            (value_size,) = struct.unpack_from(">i", self._buffer, pos)
            pos += 4
            if value_size < 0:
                raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, "compressed message has no value")
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(bytes(self._buffer[pos : pos + value_size]), MAX_UNCOMPRESSED_BYTES + 1)
        if len(out) > MAX_UNCOMPRESSED_BYTES:
            raise KafkaProtocolError(
                ErrorCode.RECORD_LIST_TOO_LARGE,
                f"a compressed message expands past {MAX_UNCOMPRESSED_BYTES} bytes",
            )
        return out


def _messages(buf: bytes | memoryview) -> Iterator[LegacyRecordBatch]:
    view = memoryview(buf)
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < _LOG_OVERHEAD + 5:
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"truncated message at byte {pos}")
        (size,) = struct.unpack_from(">i", view, pos + 8)
        if size < 14 or pos + _LOG_OVERHEAD + size > end:
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"message at byte {pos} has impossible size {size}")
        magic = view[pos + _MAGIC_OFFSET]
        if magic not in (0, 1):
            raise KafkaProtocolError(
                ErrorCode.INVALID_RECORD, f"message at byte {pos} has magic {magic} (a v0-2 produce carries 0 or 1)"
            )
        msg = _BoundedLegacyBatch(view[pos : pos + _LOG_OVERHEAD + size], magic)
        if not msg.validate_crc():
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"message at byte {pos} fails its CRC")
        yield msg
        pos += _LOG_OVERHEAD + size


def is_message_set(buf: bytes | memoryview) -> bool:
    """True when the record set starts with a v0/v1 message rather than a v2 batch."""
    return len(buf) > _MAGIC_OFFSET and buf[_MAGIC_OFFSET] in (0, 1)


def produce_records(buf: bytes, api_version: int) -> bytes:
    """The record set of one Produce partition, as the log takes it (v2 batches), per Kafka's
    `ProduceRequest.validateRecords`: v0-2 may carry message sets (up-converted here) or v2 batches
    (kept); ZStandard needs Produce v7+ (KIP-110), else UNSUPPORTED_COMPRESSION_TYPE."""
    if api_version < 3 and is_message_set(buf):
        return upconvert_message_set(buf)
    if api_version < 7:
        pos, end = 0, len(buf)
        while pos + 23 <= end and buf[pos + _MAGIC_OFFSET] == 2:
            if buf[pos + 22] & 0x07 == _CODEC_ZSTD:  # attributes, low byte
                raise KafkaProtocolError(
                    ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"ZStandard needs Produce v7 or later, not v{api_version}"
                )
            (length,) = struct.unpack_from(">i", buf, pos + 8)
            pos += _LOG_OVERHEAD + max(length, 0)
            if length <= 0:
                break
    return buf


def upconvert_message_set(buf: bytes | memoryview) -> bytes:
    """One v2 batch holding every message of a v0/v1 message set (see the module docstring)."""
    records: list[tuple[int, bytes | None, bytes | None]] = []
    codec = 0
    for msg in _messages(buf):
        if msg.compression_type:
            if msg.compression_type == _CODEC_ZSTD or msg.compression_type > 3:
                raise KafkaProtocolError(
                    ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
                    f"compression codec {msg.compression_type} is not allowed in message format v{msg.magic}",
                )
            codec = msg.compression_type
        try:
            for r in msg:
                ts = r.timestamp if msg.magic == 1 and r.timestamp is not None else -1
                records.append((ts, r.key, r.value))
        except KafkaProtocolError:
            raise
        except Exception as exc:  # a codec's own error, a double-compressed set (AssertionError)
            raise KafkaProtocolError(ErrorCode.CORRUPT_MESSAGE, f"messages do not parse ({exc})") from exc
    if not records:
        raise KafkaProtocolError(ErrorCode.INVALID_RECORD, "empty message set")
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 31,
    )
    try:
        for delta, (ts, key, value) in enumerate(records):
            builder.append(delta, timestamp=ts, key=key, value=value, headers=[])
        return bytes(builder.build())
    except (OverflowError, ValueError, TypeError) as exc:  # e.g. timestamps too far apart for a v2 delta
        raise KafkaProtocolError(ErrorCode.INVALID_RECORD, f"messages cannot form a v2 batch ({exc})") from exc


def _legacy_message(magic: int, offset: int, timestamp: int, key: bytes | None, value: bytes | None) -> bytes:
    """One uncompressed v0/v1 message (KIP-32 layout; CRC-32 over magic..end), built with struct."""
    body = bytearray()
    for field in (key, value):
        if field is None:
            body += b"\xff\xff\xff\xff"
        else:
            body += struct.pack(">i", len(field)) + field
    head = struct.pack(">bb", 0, 0) if magic == 0 else struct.pack(">bbq", 1, 0, timestamp)
    crc = zlib.crc32(head + body) & 0xFFFFFFFF
    size = 4 + len(head) + len(body)
    return struct.pack(">qiI", offset, size, crc) + head + bytes(body)


def downconvert_batches(buf: bytes | memoryview, magic: int, first_offset: int = 0) -> bytes:
    """Rewrite whole v2 batches (as read from the log) as uncompressed magic-0/1 messages.

    Records below `first_offset` (the fetch offset, inside the first batch) are left out, as
    in Kafka's `RecordsUtil.downConvert`: a v2 consumer skips them itself, an old one may not.
    """
    out = bytearray()
    view = memoryview(buf)
    pos, end = 0, len(view)
    while pos + 61 <= end:
        (length,) = struct.unpack_from(">i", view, pos + 8)
        stop = pos + _LOG_OVERHEAD + length
        if stop > end:
            break  # a partial batch at the end of a read: never sent to anyone
        batch = DefaultRecordBatch(view[pos:stop])
        pos = stop
        if batch.is_control_batch:
            continue
        log_append = batch.timestamp_type == 1
        for r in batch:
            if r.offset < first_offset:
                continue
            ts = batch.max_timestamp if log_append else r.timestamp
            out += _legacy_message(magic, r.offset, ts if ts is not None and ts >= 0 else -1, r.key, r.value)
    return bytes(out)
