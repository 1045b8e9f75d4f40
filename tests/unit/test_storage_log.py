"""PartitionLog: append/read, rolling, indexes, recovery, retention, DeleteRecords, disk errors."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.protocol import records as R
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.storage import LogConfig, PartitionLog

T0 = 1_700_000_000_000


def batch(
    n: int = 10,
    *,
    ts: int = T0,
    value_size: int = 100,
    codec: int = 0,
    pid: int = -1,
    epoch: int = -1,
    seq: int = -1,
    tag: int = 0,
) -> bytes:
    """A batch as a producer sends it (aiokafka's builder)."""
    b = DefaultRecordBatchBuilder(2, codec, 0, pid, epoch, seq, 1 << 30)
    for i in range(n):
        b.append(i, ts + i, b"k%d" % i, (b"%d-%d:" % (tag, i)).ljust(value_size, b"x"), [])
    return bytes(b.build())


def offsets_of(data: bytes | memoryview) -> list[int]:
    return R.decode_records(bytes(data))["offset"]


def open_log(path: Path, **config: int | str) -> PartitionLog:
    return PartitionLog(path, LogConfig(**config), topic="t", partition=0)  # type: ignore[arg-type]


def test_append_assigns_offsets_and_read_round_trips(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    a = log.append(batch(10), leader_epoch=3)
    b = log.append(batch(5))
    assert (a.base_offset, a.last_offset, a.record_count, a.duplicate) == (0, 9, 10, False)
    assert (b.base_offset, b.last_offset) == (10, 14)
    assert log.log_end_offset == log.high_watermark == 15
    data = log.read(0, 1 << 20)
    headers = list(R.iter_batch_headers(data))
    # Without an explicit epoch, a batch is stamped with the log's latest leader epoch.
    assert [(h.base_offset, h.partition_leader_epoch) for h in headers] == [(0, 3), (10, 3)]
    assert all(R.batch_crc_ok(data, h) for h in headers)
    assert offsets_of(data) == list(range(15))
    assert log.read(15, 1 << 20) == b""
    log.close()


def test_read_mid_batch_starts_at_the_containing_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for _ in range(3):
        log.append(batch(10))
    data = log.read(15, 1 << 20)
    assert offsets_of(data)[0] == 10  # whole batch, as Kafka does
    assert offsets_of(data)[-1] == 29


def test_reads_near_the_end_find_their_batch_from_the_recent_positions(tmp_path: Path) -> None:
    """Fetches at recent offsets skip the header scan (LogSegment keeps recent batch positions);
    every offset must still start at its containing batch, before and after a truncation, across
    the cache's trimming, and after a reopen."""
    log = open_log(tmp_path)
    sizes = [1 + (i * 7) % 5 for i in range(700)]  # > 2 x RECENT_BATCHES batches of 1-5 records
    bases = []
    for n in sizes:
        bases.append(log.append(batch(n)).base_offset)
    ends = [b + n for b, n in zip(bases, sizes, strict=False)]

    def containing(offset: int) -> int:
        return next(b for b, e in zip(bases, ends, strict=False) if b <= offset < e)

    for offset in list(range(0, 40)) + list(range(ends[-1] - 1500, ends[-1])):
        assert offsets_of(log.read(offset, 1))[0] == containing(offset), offset
    assert sizes[651] == 3
    log.truncate_to(bases[651] + 1)  # mid-batch: the whole batch goes
    assert log.log_end_offset == bases[651]
    for offset in range(bases[600], bases[651]):
        assert offsets_of(log.read(offset, 1))[0] == containing(offset)
    assert log.read(bases[651], 1 << 20) == b""
    log.append(batch(3))
    assert offsets_of(log.read(bases[651] + 2, 1))[0] == bases[651]
    log.close()
    log = open_log(tmp_path)
    assert offsets_of(log.read(bases[649] + 1, 1))[0] == containing(bases[649] + 1)
    log.close()


def test_max_bytes_and_kip74(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    one = batch(10)
    for _ in range(5):
        log.append(one)
    assert len(log.read(0, 2 * len(one) + 10)) == 2 * len(one)
    assert len(log.read(0, 10)) == len(one)  # KIP-74: one whole batch even if larger


def test_upper_bound_and_out_of_range(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch(10))
    log.append(batch(10))
    assert offsets_of(log.read(0, 1 << 20, upper_bound=10)) == list(range(10))
    assert log.read(10, 1 << 20, upper_bound=10) == b""
    for bad in (-1, 21):
        with pytest.raises(KafkaProtocolError) as e:
            log.read(bad, 100)
        assert e.value.code == ErrorCode.OFFSET_OUT_OF_RANGE


def test_explicit_high_watermark_bounds_reads(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig(), hw_tracks_leo=False)
    log.append(batch(10))
    assert log.high_watermark == 0 and log.read(0, 1000) == b""
    log.high_watermark = 10
    assert offsets_of(log.read(0, 1 << 20)) == list(range(10))
    log.close()
    again = PartitionLog(tmp_path, LogConfig(), hw_tracks_leo=False)
    assert again.high_watermark == 10


def test_message_too_large_and_corrupt_rejected(tmp_path: Path) -> None:
    log = open_log(tmp_path, max_message_bytes=500)
    with pytest.raises(KafkaProtocolError) as e:
        log.append(batch(10))
    assert e.value.code == ErrorCode.MESSAGE_TOO_LARGE
    bad = bytearray(batch(1))
    bad[-1] ^= 1
    with pytest.raises(KafkaProtocolError) as e:
        log.append(bad)
    assert e.value.code == ErrorCode.CORRUPT_MESSAGE
    assert log.log_end_offset == 0


def test_roll_by_size_and_index_lookups_after_reopen(tmp_path: Path) -> None:
    one = batch(10)
    log = open_log(tmp_path, segment_bytes=len(one) * 4, index_interval_bytes=1)
    for i in range(20):
        log.append(batch(10, tag=i))
    logs = sorted(p.name for p in tmp_path.glob("*.log"))
    assert logs == [f"{o:020d}.log" for o in range(0, 200, 40)]
    log.close()
    idx = (tmp_path / f"{40:020d}.index").read_bytes()
    assert len(idx) == 8 * 4 and idx[:8] == (9).to_bytes(4, "big") + (0).to_bytes(4, "big")  # Kafka format
    log = open_log(tmp_path, segment_bytes=len(one) * 4, index_interval_bytes=1)
    assert log.log_end_offset == 200
    for target in (0, 39, 40, 95, 199):
        data = log.read(target, 1)
        got = R.decode_records(bytes(data))
        assert got["offset"][0] == target - target % 10
        assert got["value"][0].startswith(b"%d-0:" % (target // 10))
    assert log.append(batch(10)).base_offset == 200


def test_roll_by_time(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_ms=1000)
    log.append(batch(1), now_ms=T0)
    assert not log.maybe_roll(now_ms=T0 + 999)
    assert log.maybe_roll(now_ms=T0 + 1000)
    assert not log.maybe_roll(now_ms=T0 + 5000)  # empty active segment never rolls
    log.append(batch(1), now_ms=T0 + 5000)
    log.append(batch(1), now_ms=T0 + 6001)  # append past segment.ms rolls first
    assert len(list(tmp_path.glob("*.log"))) == 3


def test_offset_for_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=3000, index_interval_bytes=1)
    for i in range(10):
        log.append(batch(10, ts=T0 + i * 100))
    assert log.offset_for_timestamp(T0) == (0, T0)
    assert log.offset_for_timestamp(T0 + 305) == (35, T0 + 305)
    assert log.offset_for_timestamp(T0 + 310) == (40, T0 + 400)
    assert log.offset_for_timestamp(T0 + 10_000) is None
    log.close()
    log = open_log(tmp_path, segment_bytes=3000, index_interval_bytes=1)
    assert log.offset_for_timestamp(T0 + 305) == (35, T0 + 305)


def test_recovery_truncates_a_torn_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = open_log(tmp_path)
    for _ in range(3):
        log.append(batch(10))
    log.flush()
    log.close()  # the crash below happens after a clean close: cut mid-batch
    seg = tmp_path / f"{0:020d}.log"
    size = seg.stat().st_size
    os.truncate(seg, size - 50)
    with caplog.at_level(logging.WARNING):
        log = open_log(tmp_path)
    assert "offsets >= 20 lost" in caplog.text
    assert log.log_end_offset == 20
    assert log.append(batch(10)).base_offset == 20
    assert offsets_of(log.read(0, 1 << 20)) == list(range(30))


def test_recovery_truncates_at_a_crc_failure(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    one = batch(10)
    for _ in range(3):
        log.append(one)
    log.close()
    seg = tmp_path / f"{0:020d}.log"
    data = bytearray(seg.read_bytes())
    data[len(one) + 100] ^= 0xFF  # a value byte of the second batch
    seg.write_bytes(data)
    log = open_log(tmp_path)
    assert log.log_end_offset == 10
    assert seg.stat().st_size == len(one)
    assert log.append(batch(5)).base_offset == 10


def test_recovery_without_clean_close_rebuilds_indexes(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=5000, index_interval_bytes=1)
    for i in range(10):
        log.append(batch(10, tag=i))
    # no close(): simulate kill -9; also damage a sealed segment's index
    (tmp_path / f"{0:020d}.index").write_bytes(b"\x00\x00\x00\x05\x7f\x00\x00\x00")
    (tmp_path / f"{40:020d}.timeindex").unlink()
    again = open_log(tmp_path, segment_bytes=5000, index_interval_bytes=1)
    assert again.log_end_offset == 100
    for target in (5, 45, 99):
        assert offsets_of(again.read(target, 1))[0] == target - target % 10
    assert (tmp_path / f"{40:020d}.timeindex").exists()


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / f"{0:020d}.parquet.tmp").write_bytes(b"half a file")
    open_log(tmp_path).close()
    assert not list(tmp_path.glob("*.tmp"))


def test_delete_records(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=3000)
    for _ in range(10):
        log.append(batch(10))
    assert log.delete_records(45) == 45
    assert log.log_start_offset == 45
    assert f"{0:020d}.log" not in {p.name for p in tmp_path.glob("*.log")}
    with pytest.raises(KafkaProtocolError) as e:
        log.read(44, 100)
    assert e.value.code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert offsets_of(log.read(45, 1 << 20))[0] == 40  # batch containing 45
    with pytest.raises(KafkaProtocolError) as e:
        log.delete_records(101)
    assert e.value.code == ErrorCode.OFFSET_OUT_OF_RANGE
    log.close()
    assert open_log(tmp_path, segment_bytes=3000).log_start_offset == 45


def test_retention_by_time_and_size(tmp_path: Path) -> None:
    one = batch(10)
    log = open_log(tmp_path, segment_bytes=len(one) * 2, retention_ms=10_000)
    for i in range(10):
        log.append(batch(10, ts=T0 + i * 1000))
    assert len(list(tmp_path.glob("*.log"))) == 5
    # segment i holds timestamps up to T0 + 2000 * i + 1009; retention compares the largest
    assert log.enforce_retention(now_ms=T0 + 13_000) == 1
    assert log.enforce_retention(now_ms=T0 + 13_500) == 1
    assert log.log_start_offset == 40
    log.update_config(LogConfig(segment_bytes=len(one) * 2, retention_bytes=len(one) * 3))
    assert log.enforce_retention(now_ms=T0) == 1  # 6 batches -> keep 3 batches: delete one segment
    assert log.log_start_offset == 60
    assert log.size_bytes() == 4 * len(one)
    log.update_config(LogConfig(segment_bytes=len(one) * 2, retention_ms=10_000))
    assert log.enforce_retention(now_ms=T0 + 10**9) == 1
    assert log.log_start_offset == 80
    assert log.log_end_offset == 100  # the active segment is never deleted


def test_enospc_leaves_the_log_consistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(tmp_path)
    log.append(batch(10))
    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            real_write(fd, bytes(data)[:37])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(KafkaProtocolError) as e:
        log.append(batch(10))
    assert e.value.code == ErrorCode.KAFKA_STORAGE_ERROR
    assert log.log_end_offset == 10
    assert offsets_of(log.read(0, 1 << 20)) == list(range(10))
    assert log.append(batch(10)).base_offset == 10
    log.close()
    assert offsets_of(open_log(tmp_path).read(0, 1 << 20)) == list(range(20))


def test_from_topic_config() -> None:
    cfg = LogConfig.from_topic_config(
        {"segment.bytes": "1024", "retention.ms": "-1", "cleanup.policy": "compact", "unknown.key": "x"}
    )
    assert (cfg.segment_bytes, cfg.retention_ms, cfg.cleanup_policy) == (1024, -1, "compact")
    for bad in ({"segment.bytes": "lots"}, {"retention.ms": "-5"}, {"cleanup.policy": "shred"}):
        with pytest.raises(KafkaProtocolError) as e:
            LogConfig.from_topic_config(bad)
        assert e.value.code == ErrorCode.INVALID_CONFIG


def test_delete_removes_directory(tmp_path: Path) -> None:
    d = tmp_path / "topics" / "t" / "partition=0"
    log = open_log(d)
    log.append(batch(1))
    log.delete()
    assert not d.exists()
