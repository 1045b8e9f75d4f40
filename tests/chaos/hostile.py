"""Hostile record batches: small on the wire, enormous once decompressed.

A broker that only bounds the *compressed* size can be made to allocate gigabytes, or to spend
seconds on its event loop, by one small Produce request (issue 12, case 7). These builders make
such batches the way a hostile client would: a valid v2 batch (correct CRC-32C, correct record
count and offset deltas) whose zstd payload expands to `value_bytes` of one record, or to `count`
empty records. The payload is compressed as a stream, so the harness itself never holds the
expanded bytes.
"""

from __future__ import annotations

import struct
import time

import crc32c
import numpy as np
import zstandard

COMPRESSION_ZSTD = 4
CHUNK = 1 << 20


def _varint(n: int) -> bytes:
    """Kafka's zigzag varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _batch(records: int, payload: bytes) -> bytes:
    now = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", COMPRESSION_ZSTD, records - 1, now, now, -1, -1, -1, records) + payload
    crc = crc32c.crc32c(after_crc)
    body = struct.pack(">ibI", -1, 2, crc) + after_crc  # partition leader epoch, magic, crc
    return struct.pack(">qi", 0, len(body)) + body


def zstd_bomb(value_bytes: int) -> bytes:
    """One record whose value is `value_bytes` zero bytes."""
    head = b"\x00" + _varint(0) + _varint(0) + _varint(-1) + _varint(value_bytes)  # attrs, ts, delta, key
    length = len(head) + value_bytes + 1  # + headers count
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    out = [compressor.compress(_varint(length) + head)]
    zeros = bytes(CHUNK)
    left = value_bytes
    while left > 0:
        n = min(left, CHUNK)
        out.append(compressor.compress(zeros if n == CHUNK else bytes(n)))
        left -= n
    out.append(compressor.compress(_varint(0)))
    out.append(compressor.flush())
    return _batch(1, b"".join(out))


def many_empty_records(count: int, consecutive_offsets: bool = False) -> bytes:
    """`count` records with no key, no value and no headers.

    By default every record carries offset delta 0: identical records compress to almost nothing
    (60 million fit in about 35 KB), and a broker only learns that the deltas are wrong after
    decompressing them all. With `consecutive_offsets` the deltas run 0..count-1 (a valid batch,
    but it compresses less: 5 million records take about 4 MB)."""
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    out = []
    if not consecutive_offsets:
        record = bytes([6 << 1, 0, 0, 0, 1, 1, 0])  # length 6, attrs, ts, delta 0, key -1, value -1, headers
        block = record * 100_000
        left = count
        while left > 0:
            n = min(left, 100_000)
            out.append(compressor.compress(block if n == 100_000 else record * n))
            left -= n
        out.append(compressor.flush())
        return _batch(count, b"".join(out))
    # A record: length, attributes, timestamp delta, offset delta (zigzag varint of 1..4 bytes),
    # key length -1, value length -1, header count 0. Built a block at a time with numpy.
    start = 0
    while start < count:
        end = min(count, start + 1_000_000)
        deltas = np.arange(start, end, dtype=np.int64) << 1  # zigzag of a non-negative number
        for lo, hi, width in ((0, 1 << 7, 1), (1 << 7, 1 << 14, 2), (1 << 14, 1 << 21, 3), (1 << 21, 1 << 28, 4)):
            sel = deltas[(deltas >= lo) & (deltas < hi)]
            if not len(sel):
                continue
            rows = np.zeros((len(sel), 6 + width), dtype=np.uint8)
            rows[:, 0] = (5 + width) << 1  # length (zigzag), always one byte
            rows[:, 1] = 0  # attributes
            rows[:, 2] = 0  # timestamp delta
            z = sel.copy()
            for i in range(width):
                byte = (z & 0x7F).astype(np.uint8)
                z >>= 7
                rows[:, 3 + i] = byte | (0x80 if i < width - 1 else 0)
            rows[:, 3 + width] = 1  # key length -1
            rows[:, 4 + width] = 1  # value length -1
            rows[:, 5 + width] = 0  # headers
            out.append(compressor.compress(rows.tobytes()))
        start = end
    out.append(compressor.flush())
    return _batch(count, b"".join(out))
