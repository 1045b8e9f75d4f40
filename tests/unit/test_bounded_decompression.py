"""`decompress_bounded`: every Kafka codec stops at the output limit while decompressing."""

from __future__ import annotations

import struct
import zlib

import cramjam
import lz4.frame
import pytest
import zstandard

from workbench.protocol.compression import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    CorruptCompressedData,
    DecompressedTooLarge,
    decompress_bounded,
)

DATA = b"kafka record payload " * 5000  # 105,000 bytes


def gzip_members(*parts: bytes) -> bytes:
    out = b""
    for part in parts:
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        out += c.compress(part) + c.flush()
    return out


def xerial(data: bytes, block: int = 32 * 1024) -> bytes:
    out = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    for i in range(0, len(data), block):
        raw = bytes(cramjam.snappy.compress_raw(data[i : i + block]))
        out += struct.pack(">i", len(raw)) + raw
    return out


COMPRESSED = {
    "gzip": (COMPRESSION_GZIP, gzip_members(DATA)),
    "gzip, two members": (COMPRESSION_GZIP, gzip_members(DATA[:50000], DATA[50000:])),
    "snappy raw": (COMPRESSION_SNAPPY, bytes(cramjam.snappy.compress_raw(DATA))),
    "snappy xerial": (COMPRESSION_SNAPPY, xerial(DATA)),
    "lz4 frame": (COMPRESSION_LZ4, lz4.frame.compress(DATA)),
    "zstd": (COMPRESSION_ZSTD, zstandard.ZstdCompressor().compress(DATA)),
    "zstd, no content size": (
        COMPRESSION_ZSTD,
        zstandard.ZstdCompressor(write_content_size=False).compress(DATA),
    ),
}


@pytest.mark.parametrize("name", list(COMPRESSED))
def test_round_trip_within_the_limit(name):
    codec, data = COMPRESSED[name]
    assert decompress_bounded(codec, data, len(DATA)) == DATA


@pytest.mark.parametrize("name", list(COMPRESSED))
def test_one_byte_over_the_limit_is_refused(name):
    codec, data = COMPRESSED[name]
    with pytest.raises(DecompressedTooLarge):
        decompress_bounded(codec, data, len(DATA) - 1)


@pytest.mark.parametrize("name", list(COMPRESSED))
def test_truncated_or_garbled_data_is_corrupt(name):
    codec, data = COMPRESSED[name]
    with pytest.raises(CorruptCompressedData):
        decompress_bounded(codec, data[: len(data) // 2], len(DATA))
    with pytest.raises(CorruptCompressedData):
        decompress_bounded(codec, b"\x00\xff" * 40, len(DATA))


def test_a_huge_declared_snappy_length_is_refused_before_any_allocation():
    # The raw snappy preamble declares 2^31 bytes; the data behind it is a few bytes.
    bomb = bytes([0x80, 0x80, 0x80, 0x80, 0x08]) + b"\x00" * 8
    with pytest.raises(DecompressedTooLarge):
        decompress_bounded(COMPRESSION_SNAPPY, bomb, 1 << 20)


def test_a_gigabyte_of_zstd_zeros_is_refused_at_the_limit():
    c = zstandard.ZstdCompressor(level=1).compressobj()
    chunk = bytes(1 << 20)
    bomb = b"".join([*(c.compress(chunk) for _ in range(1024)), c.flush()])
    assert len(bomb) < 64 * 1024
    with pytest.raises(DecompressedTooLarge):
        decompress_bounded(COMPRESSION_ZSTD, bomb, 4 << 20)
