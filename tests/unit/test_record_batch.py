"""Record batch v2: header walk, produce validation, offset assignment, decode/build."""

from __future__ import annotations

import struct

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from crc32c import crc32c
from kafka.record.memory_records import MemoryRecordsBuilder

from workbench.protocol import records as R
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

# Every test here runs with the compiled record walk and with the pure-Python one (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("record_walk")

CODECS = [R.COMPRESSION_NONE, R.COMPRESSION_GZIP, R.COMPRESSION_SNAPPY, R.COMPRESSION_LZ4, R.COMPRESSION_ZSTD]


def aiokafka_batch(
    n: int = 10, *, codec: int = 0, pid: int = -1, epoch: int = -1, seq: int = -1, ts: int = 1_700_000_000_000
) -> bytes:
    """A batch as aiokafka's producer builds it (base offset 0, leader epoch -1)."""
    b = DefaultRecordBatchBuilder(2, codec, 0, pid, epoch, seq, 1 << 30)
    for i in range(n):
        headers = [("trace", b"t%d" % i), ("empty", None)] if i % 3 == 0 else []
        b.append(i, ts + i, None if i % 4 == 0 else b"key-%d" % i, b"value-%d " % i * 10, headers)
    return bytes(b.build())


def kafka_python_batch(n: int = 10, codec: int = 0) -> bytes:
    b = MemoryRecordsBuilder(magic=2, compression_type=codec, batch_size=1 << 30)
    for i in range(n):
        b.append(timestamp=1_000 + i, key=b"k%d" % i, value=b"v%d" % i * 50, headers=[("h", b"x")])
    b.close()
    return bytes(b.buffer())


def test_header_fields_of_a_client_batch() -> None:
    buf = aiokafka_batch(10, pid=42, epoch=3, seq=7)
    (h,) = list(R.iter_batch_headers(buf))
    assert (h.base_offset, h.magic, h.records_count, h.last_offset_delta) == (0, 2, 10, 9)
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence) == (42, 3, 7, 16)
    assert h.size == len(buf) and h.position == 0 and h.end == len(buf)
    assert h.last_offset == 9 and h.record_count == 10
    assert not h.is_transactional and not h.is_control and h.compression == 0
    assert R.batch_crc_ok(buf, h)


@pytest.mark.parametrize("codec", CODECS)
def test_validate_accepts_every_codec_and_decodes(codec: int) -> None:
    buf = aiokafka_batch(20, codec=codec)
    (h,) = R.validate_produce_batches(buf)
    assert h.compression == codec
    cols = R.decode_records(buf)
    assert cols["offset"] == list(range(20))
    assert cols["value"][5] == b"value-5 " * 10
    assert cols["key"][0] is None and cols["key"][1] == b"key-1"
    assert cols["headers"][3] == [("trace", b"t3"), ("empty", None)]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_batches(codec: int) -> None:
    buf = kafka_python_batch(5, codec)
    (h,) = R.validate_produce_batches(buf)
    assert h.compression == codec
    assert R.decode_records(buf)["value"] == [b"v%d" % i * 50 for i in range(5)]


def test_crc_corruption_is_corrupt_message() -> None:
    buf = bytearray(aiokafka_batch(5))
    buf[-3] ^= 0xFF
    with pytest.raises(KafkaProtocolError) as e:
        R.validate_produce_batches(buf)
    assert e.value.code == ErrorCode.CORRUPT_MESSAGE


def test_truncated_and_trailing_garbage() -> None:
    buf = aiokafka_batch(5)
    for bad in (buf[:-1], buf[:30], buf + b"\x00" * 5, buf + buf[:70]):
        with pytest.raises(KafkaProtocolError) as e:
            R.validate_produce_batches(bad)
        assert e.value.code == ErrorCode.CORRUPT_MESSAGE


def test_iter_headers_stops_cleanly_at_truncated_tail() -> None:
    one = aiokafka_batch(5)
    buf = one * 3 + one[:40]
    headers = list(R.iter_batch_headers(buf))
    assert len(headers) == 3 and headers[-1].end == 3 * len(one)
    assert list(R.iter_batch_headers(buf, start=len(one))) == headers[1:]
    assert list(R.iter_batch_headers(one[:-1])) == []


def test_old_magic_is_unsupported_for_message_format() -> None:
    # A magic 1 message: offset, size, crc, magic=1, attributes, timestamp, key, value.
    body = struct.pack(">bbqii", 1, 0, 0, -1, 1) + b"x"
    msg = struct.pack(">qiI", 0, len(body) + 4, crc32c(body)) + body
    with pytest.raises(KafkaProtocolError) as e:
        R.validate_produce_batches(msg)
    assert e.value.code == ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT


def _recrc(buf: bytearray) -> bytearray:
    struct.pack_into(">I", buf, R.CRC_OFFSET, crc32c(memoryview(buf)[R.ATTRIBUTES_OFFSET :]))
    return buf


def test_count_must_match_last_offset_delta() -> None:
    buf = bytearray(aiokafka_batch(5))
    struct.pack_into(">i", buf, 57, 4)  # records count
    with pytest.raises(KafkaProtocolError) as e:
        R.validate_produce_batches(_recrc(buf))
    assert e.value.code == ErrorCode.INVALID_RECORD


def test_control_batch_from_client_is_invalid_record() -> None:
    buf = bytearray(aiokafka_batch(1))
    struct.pack_into(">h", buf, R.ATTRIBUTES_OFFSET, R.CONTROL_MASK)
    with pytest.raises(KafkaProtocolError) as e:
        R.validate_produce_batches(_recrc(buf))
    assert e.value.code == ErrorCode.INVALID_RECORD


def test_empty_record_set_is_invalid_record() -> None:
    with pytest.raises(KafkaProtocolError) as e:
        R.validate_produce_batches(b"")
    assert e.value.code == ErrorCode.INVALID_RECORD


def test_assign_offsets_patches_in_place_and_keeps_crc() -> None:
    buf = bytearray(aiokafka_batch(3) + aiokafka_batch(4, codec=R.COMPRESSION_ZSTD))
    headers = R.validate_produce_batches(buf)
    assert R.assign_offsets(buf, headers, 100, partition_leader_epoch=7) == 107
    patched = R.validate_produce_batches(buf)  # CRCs still valid
    assert [(h.base_offset, h.partition_leader_epoch) for h in patched] == [(100, 7), (103, 7)]
    assert R.decode_records(buf)["offset"] == list(range(100, 107))


def test_decode_batch_fields_and_sequences() -> None:
    buf = bytearray(aiokafka_batch(3, pid=9, epoch=2, seq=0x7FFFFFFF - 1))
    R.assign_offsets(buf, R.validate_produce_batches(buf), 50, 4)
    cols = R.decode_records(buf)
    assert cols["sequence"] == [0x7FFFFFFF - 1, 0x7FFFFFFF, 0]  # wraps
    assert cols["producer_id"] == [9] * 3 and cols["producer_epoch"] == [2] * 3
    assert cols["batch_base_offset"] == [50] * 3 and cols["partition_leader_epoch"] == [4] * 3
    assert cols["timestamp"] == [1_700_000_000_000 + i for i in range(3)]
    assert cols["timestamp_type"] == [0] * 3


def test_control_batches_are_skipped() -> None:
    buf = bytearray(aiokafka_batch(1))
    struct.pack_into(">h", buf, R.ATTRIBUTES_OFFSET, R.CONTROL_MASK)
    _recrc(buf)
    assert R.decode_records(bytes(buf) + aiokafka_batch(2))["offset"] == [0, 1]
    assert len(R.decode_records(buf, include_control=True)["offset"]) == 1


@pytest.mark.parametrize("codec", CODECS)
def test_decode_build_round_trip(codec: int) -> None:
    parts = []
    base = 0
    for i in range(3):
        b = bytearray(aiokafka_batch(7, codec=codec, pid=5, epoch=1, seq=i * 7))
        R.assign_offsets(b, R.validate_produce_batches(b), base, 3)
        base += 7
        parts.append(bytes(b))
    original = b"".join(parts)
    cols = R.decode_records(original)
    rebuilt = R.build_batches(cols)
    headers = R.validate_produce_batches(rebuilt)  # complete, CRCs right
    assert [
        (h.base_offset, h.producer_id, h.producer_epoch, h.base_sequence, h.partition_leader_epoch) for h in headers
    ] == [(0, 5, 1, 0, 3), (7, 5, 1, 7, 3), (14, 5, 1, 14, 3)]
    assert R.decode_records(rebuilt) == cols
    # and byte-identical to the client's own encoding when uncompressed
    if codec == R.COMPRESSION_NONE:
        assert rebuilt == original


def test_build_keeps_offset_gaps_and_log_append_time() -> None:
    cols = R.decode_records(aiokafka_batch(4))
    del cols["offset"][1], cols["timestamp"][1], cols["key"][1], cols["value"][1], cols["headers"][1]
    for name in (
        "producer_id",
        "producer_epoch",
        "sequence",
        "batch_base_offset",
        "partition_leader_epoch",
        "timestamp_type",
        "is_transactional",
    ):
        del cols[name][1]
    cols["timestamp_type"] = [1, 1, 1]
    rebuilt = R.build_batches(cols)
    (h,) = list(R.iter_batch_headers(rebuilt))
    assert R.batch_crc_ok(rebuilt, h) and h.timestamp_type == 1 and h.last_offset_delta == 3
    out = R.decode_records(rebuilt)
    assert out["offset"] == [0, 2, 3]
    assert out["timestamp"] == [h.max_timestamp] * 3  # LogAppendTime: consumers see maxTimestamp


# -- validate_fetched_batches (a follower's append) ---------------------------------------------


def _fetched(*sizes: int) -> bytearray:
    buf = bytearray()
    offset = 0
    for n in sizes:
        b = bytearray(aiokafka_batch(n))
        R.assign_offsets(b, R.validate_produce_batches(b), offset, 3)
        buf += b
        offset += n
    return buf


def test_fetched_batches_keep_offsets_and_ignore_a_partial_tail() -> None:
    buf = _fetched(3, 4, 5)
    whole = R.validate_fetched_batches(buf)
    assert [(h.base_offset, h.partition_leader_epoch) for h in whole] == [(0, 3), (3, 3), (7, 3)]
    two_end = whole[1].end
    for cut in (two_end + 1, two_end + 16, two_end + 17, two_end + R.HEADER_SIZE, len(buf) - 1):
        assert [h.base_offset for h in R.validate_fetched_batches(buf[:cut])] == [0, 3], cut
    assert R.validate_fetched_batches(b"") == []
    assert R.validate_fetched_batches(buf[:10]) == []


def test_fetched_batches_reject_corruption() -> None:
    buf = _fetched(3, 4)
    second = R.validate_fetched_batches(buf)[1].position
    bad = bytearray(buf)
    bad[-1] ^= 0xFF
    with pytest.raises(KafkaProtocolError) as e:
        R.validate_fetched_batches(bad)
    assert e.value.code == ErrorCode.CORRUPT_MESSAGE
    bad = bytearray(buf)
    struct.pack_into(">i", bad, second + 8, 5)  # impossible batchLength
    with pytest.raises(KafkaProtocolError) as e:
        R.validate_fetched_batches(bad)
    assert e.value.code == ErrorCode.CORRUPT_MESSAGE
    bad = bytearray(buf)
    bad[second + R.MAGIC_OFFSET] = 1
    with pytest.raises(KafkaProtocolError) as e:
        R.validate_fetched_batches(bad)
    assert e.value.code == ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT
    bad[second + R.MAGIC_OFFSET] = 7
    with pytest.raises(KafkaProtocolError) as e:
        R.validate_fetched_batches(bad)
    assert e.value.code == ErrorCode.CORRUPT_MESSAGE


def test_fetched_control_batches_are_accepted() -> None:
    buf = _fetched(1)
    struct.pack_into(">h", buf, R.ATTRIBUTES_OFFSET, R.CONTROL_MASK)
    assert len(R.validate_fetched_batches(_recrc(buf))) == 1


def test_a_batch_rebuilt_without_its_first_records_keeps_their_sequences() -> None:
    """A compacted batch (its first records removed) re-encoded from rows: every record keeps the
    sequence it was produced with, so a follower's producer state sees the producer's real last
    sequence (base sequence = row sequence - offset delta, as Kafka's cleaner keeps the header)."""
    b = DefaultRecordBatchBuilder(2, 0, 0, 7, 0, 10, 1 << 30)  # producer 7, epoch 0, base sequence 10
    for i in range(4):
        b.append(i, 1000 + i, b"k%d" % i, b"v", [])
    raw = bytearray(b.build())
    struct.pack_into(">q", raw, 0, 100)  # base offset 100
    cols = R.decode_records(bytes(raw))
    assert cols["sequence"] == [10, 11, 12, 13]
    kept = {k: v[2:] for k, v in cols.items()}  # offsets 100, 101 compacted away
    rebuilt = R.build_batches(kept)
    (h,) = list(R.iter_batch_headers(memoryview(rebuilt)))
    assert h.base_offset == 100 and h.last_offset == 103
    assert (h.base_sequence, h.last_sequence) == (10, 13)
    assert R.decode_records(rebuilt)["sequence"] == [12, 13]
