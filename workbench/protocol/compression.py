"""Decompressing a record batch's payload with a cap on the output, checked while it runs.

A compressed batch is small on the wire and can be huge inside: 33 KB of zstd hold a
1 GiB record. Decompressing it whole and measuring afterwards is already the damage
(seconds of CPU on the event loop, gigabytes of memory), so every codec here stops as
soon as the output would pass ``limit`` and raises `DecompressedTooLarge`:

* gzip: `zlib.decompressobj` with ``max_length`` (every member of a multi-member stream);
* snappy: the uncompressed length each raw block declares is checked *before* the block
  is decompressed (raw snappy as librdkafka sends it, and the xerial framing of the Java
  client: a magic header, then length-prefixed raw blocks);
* lz4: the LZ4 frame format Kafka uses for v2 batches, `lz4.frame.LZ4FrameDecompressor`
  with ``max_length``;
* zstd: `zstandard`'s ``stream_reader``, read in bounded chunks and thrown away, measures
  the output first (a frame's declared content size is never trusted); only a payload
  known to fit is then decompressed for real (twice the CPU of one pass, for zstd only).

Anything that does not decode raises `CorruptCompressedData`. No I/O here.
"""

from __future__ import annotations

import struct
import zlib

COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD = 1, 2, 3, 4

# xerial snappy-java framing (SnappyOutputStream): magic, then int32 version and
# compatible version, then blocks of int32 length + raw snappy data.
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = 16
_INT32 = struct.Struct(">i")
# zstd output is pulled in pieces of this size, so one read never allocates more.
_CHUNK = 1 << 20


class DecompressedTooLarge(Exception):
    """The payload decompresses to more than the limit (checked while decompressing)."""


class CorruptCompressedData(Exception):
    """The payload is not valid data for its codec."""


def decompress_bounded(codec: int, data: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Decompress ``data`` (codec id 1-4) to at most ``limit`` bytes, or raise."""
    try:
        if codec == COMPRESSION_GZIP:
            return _gzip(data, limit)
        if codec == COMPRESSION_SNAPPY:
            return _snappy(bytes(data), limit)
        if codec == COMPRESSION_LZ4:
            return _lz4(data, limit)
        if codec == COMPRESSION_ZSTD:
            return _zstd(data, limit)
    except (DecompressedTooLarge, CorruptCompressedData):
        raise
    except Exception as exc:  # each codec has its own error types (zlib.error, ZstdError, RuntimeError...)
        raise CorruptCompressedData(f"{type(exc).__name__}: {exc}") from exc
    raise ValueError(f"unknown compression codec id {codec}")


def _too_large(limit: int) -> DecompressedTooLarge:
    return DecompressedTooLarge(f"decompresses to more than {limit} bytes")


def _gzip(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    out = bytearray()
    rest = bytes(data)
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip member
        out += d.decompress(rest, limit + 1 - len(out))
        while d.unconsumed_tail and len(out) <= limit:
            out += d.decompress(d.unconsumed_tail, limit + 1 - len(out))
        if len(out) > limit:
            raise _too_large(limit)
        if not d.eof:
            raise CorruptCompressedData("gzip stream is truncated")
        rest = d.unused_data
        if not rest:
            return bytes(out)


def _snappy(data: bytes, limit: int) -> bytes:
    import cramjam

    def block(raw: bytes, total: int) -> bytes:
        declared = cramjam.snappy.decompress_raw_len(raw)  # reads the preamble only
        if total + declared > limit:
            raise _too_large(limit)
        return bytes(cramjam.snappy.decompress_raw(raw))

    if not data.startswith(_XERIAL_MAGIC):
        return block(data, 0)
    out = bytearray()
    pos = _XERIAL_HEADER
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptCompressedData("xerial snappy block length is truncated")
        (length,) = _INT32.unpack_from(data, pos)
        pos += 4
        if length < 0 or pos + length > len(data):
            raise CorruptCompressedData(f"xerial snappy block of {length} bytes does not fit")
        out += block(data[pos : pos + length], len(out))
        pos += length
    return bytes(out)


def _lz4(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    import lz4.frame

    d = lz4.frame.LZ4FrameDecompressor()
    out = d.decompress(bytes(data), max_length=limit + 1)
    if len(out) > limit:
        raise _too_large(limit)
    if not d.eof:
        raise CorruptCompressedData("lz4 frame is truncated")
    return out


def _zstd(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    import zstandard

    data = bytes(data)
    # Pass 1 measures, in bounded chunks, keeping nothing: a bomb stops here at `limit`.
    total = 0
    with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
        while chunk := reader.read(min(_CHUNK, limit + 1 - total)):
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
    # Pass 2 decompresses what is now known to fit, frame by frame, and notices truncation
    # (the stream reader just stops at the end of the input).
    out = bytearray()
    rest = data
    while rest:
        d = zstandard.ZstdDecompressor().decompressobj()
        out += d.decompress(rest)
        if not d.eof:
            raise CorruptCompressedData("zstd frame is truncated")
        rest = d.unused_data
    return bytes(out)
