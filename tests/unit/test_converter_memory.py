"""The Parquet conversion's memory is bounded whatever a segment holds (issue 12, item 7).

A segment is decoded and written one bounded chunk (one row group) at a time, never as
a whole, and a batch that decompresses past MAX_CONVERT_BATCH_BYTES is refused while it
is being decompressed instead of being inflated in memory (a 33 KB zstd batch holding a
1 GiB record needed 8.3 GB before). `benchmarks/converter_memory.py` measures the peaks.
"""

from __future__ import annotations

import struct
import time

import pyarrow.parquet as pq
import pytest
import zstandard
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from crc32c import crc32c

from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import iter_record_chunks
from workbench.storage import parquet_tier
from workbench.storage.parquet_tier import write_segment

MiB = 1 << 20


def batch(n: int, tag: int, base: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(n):
        b.append(i, 1_700_000_000_000 + base + i, None, b"%d-%d" % (tag, i), [])
    out = bytearray(b.build())
    struct.pack_into(">q", out, 0, base)
    return bytes(out)


def segment(batches: int, per_batch: int) -> bytes:
    return b"".join(batch(per_batch, t, t * per_batch) for t in range(batches))


def zstd_bomb(value_len: int) -> bytes:
    """One record with a `value_len`-byte value, zstd-compressed, in a batch with a correct CRC."""

    def varint(n: int) -> bytes:
        z, out = (n << 1) ^ (n >> 63), bytearray()
        while z >= 0x80:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        out.append(z)
        return bytes(out)

    head = varint(5 + len(varint(value_len)) + value_len) + b"\x00\x00\x00" + varint(-1) + varint(value_len)
    c = zstandard.ZstdCompressor(level=1).compressobj()
    payload = c.compress(head) + b"".join(c.compress(bytes(MiB)) for _ in range(value_len // MiB))
    payload += c.compress(b"\x00") + c.flush()
    now = int(time.time() * 1000)
    body = struct.pack(">hiqqqhii", 4, 0, now, now, -1, -1, -1, 1) + payload
    return struct.pack(">qiibI", 0, 9 + len(body), -1, 2, crc32c(body)) + body


def test_chunks_are_bounded_in_rows_even_inside_one_batch():
    data = segment(3, 500)
    chunks = list(iter_record_chunks(data, max_rows=64, max_bytes=1 << 30, max_batch_bytes=MiB))
    assert all(len(c["offset"]) <= 64 for c in chunks)
    assert [o for c in chunks for o in c["offset"]] == list(range(1500))


def test_a_segment_is_written_one_row_group_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet_tier, "CONVERT_CHUNK_ROWS", 100)
    seg = write_segment(tmp_path, 0, 1000, segment(10, 100), topic="t", partition=0)
    f = pq.ParquetFile(seg.path)
    assert f.metadata.num_row_groups == 10 and f.metadata.num_rows == 1000
    assert f.read().column("offset").to_pylist() == list(range(1000))
    assert seg.max_timestamp == 1_700_000_000_000 + 999


def test_a_batch_that_inflates_past_the_cap_is_refused_while_decompressing(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet_tier, "MAX_CONVERT_BATCH_BYTES", 4 * MiB)
    data = segment(2, 10) + zstd_bomb(64 * MiB)
    assert len(data) < 64 * 1024
    with pytest.raises(KafkaProtocolError) as exc:
        write_segment(tmp_path, 0, 21, data)
    assert exc.value.code == ErrorCode.MESSAGE_TOO_LARGE
    assert not list(tmp_path.glob("*.parquet*"))  # no file, no temp file left behind
