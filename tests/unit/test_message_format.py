"""Message formats v0/v1 <-> v2 batches: what Produce v0-2 and Fetch v0-3 rely on."""

from __future__ import annotations

import gzip
import struct

import pytest
from aiokafka.record.default_records import DefaultRecordBatch
from kafka.record.legacy_records import LegacyRecordBatch, LegacyRecordBatchBuilder

from workbench.protocol.blocking_client import make_batch
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.message_format import (
    MAX_UNCOMPRESSED_BYTES,
    downconvert_batches,
    is_message_set,
    upconvert_message_set,
)


def message_set(magic: int, values: list[bytes], codec: int = 0, ts0: int = 1_700_000_000_000) -> bytes:
    b = LegacyRecordBatchBuilder(magic=magic, compression_type=codec, batch_size=1 << 24)
    for i, v in enumerate(values):
        b.append(i, timestamp=ts0 + i, key=b"k%d" % i, value=v)
    return bytes(b.build())


def records_of(batch: bytes) -> list[tuple]:
    b = DefaultRecordBatch(batch)
    return [(r.offset, r.timestamp, r.key, r.value) for r in b]


@pytest.mark.parametrize("codec", [0, 1, 2, 3], ids=["none", "gzip", "snappy", "lz4"])
@pytest.mark.parametrize("magic", [0, 1])
def test_upconvert_keeps_keys_values_and_create_time(magic, codec):
    if (magic, codec) == (0, 3):
        pytest.skip("lz4 in magic 0 uses Kafka 0.8's broken frame checksum (KAFKA-3160); building one needs xxhash")
    data = message_set(magic, [b"a", b"bb", b"ccc"], codec)
    assert is_message_set(data)
    batch = upconvert_message_set(data)
    assert not is_message_set(batch)
    ts = [1_700_000_000_000 + i for i in range(3)] if magic == 1 else [-1, -1, -1]
    assert records_of(batch) == [(i, ts[i], b"k%d" % i, v) for i, v in enumerate([b"a", b"bb", b"ccc"])]
    assert DefaultRecordBatch(batch).compression_type == codec  # compression.type=producer keeps the codec


def test_upconvert_refuses_a_flipped_byte():
    data = bytearray(message_set(1, [b"hello"]))
    data[-1] ^= 0x01
    with pytest.raises(KafkaProtocolError) as err:
        upconvert_message_set(bytes(data))
    assert err.value.code == ErrorCode.CORRUPT_MESSAGE


def test_upconvert_refuses_truncated_and_v2_input():
    data = message_set(0, [b"x", b"y"])
    with pytest.raises(KafkaProtocolError) as err:
        upconvert_message_set(data[:-3])
    assert err.value.code == ErrorCode.CORRUPT_MESSAGE
    with pytest.raises(KafkaProtocolError) as err:
        upconvert_message_set(make_batch([b"v2"]))
    assert err.value.code == ErrorCode.INVALID_RECORD


def test_gzip_bomb_is_bounded_while_decompressing():
    inner = message_set(1, [b"\0" * 1024])
    bomb_payload = gzip.compress(inner * ((MAX_UNCOMPRESSED_BYTES // len(inner)) + 2), compresslevel=9)
    assert len(bomb_payload) < MAX_UNCOMPRESSED_BYTES // 100
    b = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 30)
    b.append(0, timestamp=0, key=None, value=bomb_payload)
    wrapper = bytearray(b.build())
    # Mark the message gzip-compressed (attributes byte) and fix its CRC, as a hostile client would.
    wrapper[17] = 1
    from kafka.record.util import calc_crc32

    struct.pack_into(">I", wrapper, 12, calc_crc32(memoryview(wrapper)[16:]))
    with pytest.raises(KafkaProtocolError) as err:
        upconvert_message_set(bytes(wrapper))
    assert err.value.code == ErrorCode.RECORD_LIST_TOO_LARGE


@pytest.mark.parametrize("magic", [0, 1])
def test_downconvert_gives_absolute_offsets_and_skips_nothing(magic):
    first = bytearray(make_batch([b"a", b"b"], key=b"k"))
    struct.pack_into(">q", first, 0, 40)  # as the log stores it: base offset assigned
    second = bytearray(make_batch([b"c"]))
    struct.pack_into(">q", second, 0, 42)
    out = downconvert_batches(bytes(first + second) + bytes(second[:20]), magic)  # + a partial tail
    got = []
    pos = 0
    while pos < len(out):
        (size,) = struct.unpack_from(">i", out, pos + 8)
        msg = LegacyRecordBatch(out[pos : pos + 12 + size], magic)
        assert msg.validate_crc()
        got += [(r.offset, r.key, r.value) for r in msg]
        pos += 12 + size
    assert got == [(40, b"k", b"a"), (41, b"k", b"b"), (42, None, b"c")]


def test_produce_records_per_request_version():
    from workbench.protocol.message_format import produce_records

    v2 = make_batch([b"x"])
    assert produce_records(v2, 2) == v2  # Kafka lets v0-2 carry v2 batches too
    assert not is_message_set(produce_records(message_set(1, [b"a"]), 2))
    zstd = bytearray(v2)
    zstd[22] |= 4  # the codec bits of the attributes (CRC not rechecked here)
    with pytest.raises(KafkaProtocolError) as err:
        produce_records(bytes(zstd), 6)
    assert err.value.code == ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
    assert produce_records(bytes(zstd), 7) == bytes(zstd)
