"""Parquet tier: conversion of sealed segments, fetches served from Parquet, retention of both tiers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.protocol import records as R
from workbench.storage import LogConfig, PartitionLog
from workbench.storage.parquet_tier import schema
from workbench.storage.superseded import SupersededFiles

T0 = 1_700_000_000_000


def batch(n: int, *, codec: int = 0, pid: int = -1, epoch: int = -1, seq: int = -1, tag: int = 0) -> bytes:
    b = DefaultRecordBatchBuilder(2, codec, 0, pid, epoch, seq, 1 << 30)
    for i in range(n):
        headers = [("n", b"%d" % i)] if i % 2 else []
        b.append(i, T0 + tag * 100 + i, None if i == 3 else b"k%d" % i, b"%d:%d" % (tag, i) * 20, headers)
    return bytes(b.build())


def fill(path: Path, batches: int = 12, *, mixed_codecs: bool = False, **cfg: int) -> PartitionLog:
    log = PartitionLog(path, LogConfig(**cfg), topic="orders", partition=0)
    for i in range(batches):
        log.append(batch(10, codec=i % 5 if mixed_codecs else 0, pid=7, epoch=0, seq=i * 10, tag=i))
    return log


def test_conversion_writes_parquet_and_keeps_hot_segments(tmp_path: Path) -> None:
    one = len(batch(10))
    log = fill(tmp_path, segment_bytes=one * 2, hot_segments=1)
    logs = sorted(p.name for p in tmp_path.glob("*.log"))
    written = log.convert_sealed_segments()
    assert [p.stem for p in written] == [name.split(".")[0] for name in logs[:-1]]
    assert sorted(p.name for p in tmp_path.glob("*.log")) == logs[-2:]  # one hot segment + the active one
    table = pq.read_table(written[0])
    assert table.schema.remove_metadata() == schema()
    assert table.column("offset").to_pylist() == list(range(20))
    assert table.column("sequence").to_pylist() == list(range(20))
    assert log.convert_sealed_segments() == []  # idempotent
    n = duckdb.sql(f"select count(*), max(\"offset\") from read_parquet('{tmp_path}/*.parquet')").fetchall()[0]
    active_base = int(logs[-1].split(".")[0])
    assert n == (active_base, active_base - 1)


def test_reads_from_parquet_decode_to_the_same_records(tmp_path: Path) -> None:
    one = len(batch(10))
    log = fill(tmp_path, mixed_codecs=True, segment_bytes=one * 2, hot_segments=0)
    expected = R.decode_records(b"".join(bytes(log.read(o, 1)) for o in range(0, 120, 10)))
    log.convert_sealed_segments()
    assert len(list(tmp_path.glob("*.log"))) == 1
    got = []
    offset = 0
    while offset < 120:
        data = log.read(offset, 3000)
        headers = list(R.iter_batch_headers(data))
        assert headers and all(R.batch_crc_ok(data, h) for h in headers)
        got.append(bytes(data))
        offset = headers[-1].next_offset
    assert R.decode_records(b"".join(got)) == expected
    # mid-batch read from Parquet starts at the containing batch, KIP-74 for tiny max_bytes
    first = list(R.iter_batch_headers(log.read(35, 1)))
    assert [(h.base_offset, h.records_count, h.producer_id, h.base_sequence) for h in first] == [(30, 10, 7, 30)]
    assert log.offset_for_timestamp(T0 + 205) == (25, T0 + 205)
    log.close()
    reopened = PartitionLog(tmp_path, LogConfig(segment_bytes=one * 2, hot_segments=0))
    assert R.decode_records(bytes(reopened.read(0, 1 << 20)))["offset"][:10] == list(range(10))
    assert reopened.log_start_offset == 0 and reopened.log_end_offset == 120


def test_only_segments_below_high_watermark_are_converted(tmp_path: Path) -> None:
    one = len(batch(10))
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=one * 2), hw_tracks_leo=False)
    for i in range(6):
        log.append(batch(10, tag=i))
    log.high_watermark = 25
    assert [p.name for p in log.convert_sealed_segments()] == [f"{0:020d}.parquet"]


def test_retention_removes_parquet_too(tmp_path: Path) -> None:
    one = len(batch(10))
    log = fill(tmp_path, segment_bytes=one * 2, hot_segments=10, retention_bytes=one * 5)
    log.convert_sealed_segments()
    log.enforce_retention(now_ms=T0)
    assert log.log_start_offset == 60
    # The files retention removed stay for the grace period (a reader may have listed them), then go.
    assert min(int(p.stem) for p in log.parquet_files()) == 60
    assert min(int(p.stem) for p in tmp_path.glob("*.parquet")) == 0
    assert log.unlink_superseded(time.monotonic() + SupersededFiles.grace_s - 1) == 0
    assert log.unlink_superseded(time.monotonic() + SupersededFiles.grace_s + 1) > 0
    assert min(int(p.stem) for p in tmp_path.glob("*.parquet")) == 60
    assert log.delete_records(85) == 85
    log.unlink_superseded(time.monotonic() + SupersededFiles.grace_s + 1)
    assert min(int(p.stem) for p in tmp_path.glob("*.parquet")) == 80


def test_conversion_from_a_worker_thread_while_appending(tmp_path: Path) -> None:
    one = len(batch(10))
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=one * 3, hot_segments=1))
    errors: list[BaseException] = []
    stop = threading.Event()

    def convert() -> None:
        try:
            while not stop.is_set():
                log.convert_sealed_segments()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=convert)
    t.start()
    for i in range(300):
        log.append(batch(10, tag=i))
        if i % 7 == 0:
            assert R.decode_records(bytes(log.read(max(0, i * 10 - 50), 5000)))
    stop.set()
    t.join()
    log.convert_sealed_segments()
    assert not errors
    offsets = []
    o = 0
    while o < 3000:
        data = log.read(o, 1 << 20)
        h = list(R.iter_batch_headers(data))
        offsets += R.decode_records(bytes(data))["offset"]
        o = h[-1].next_offset
    assert offsets == list(range(3000))


def test_sealed_files_build_dictionaries_only_for_columns_whose_values_repeat(tmp_path: Path) -> None:
    """Issue 19: a dictionary for offsets, timestamps or values (mostly unique) costs a quarter of
    the write and is abandoned at its page limit; keys, header names and batch fields keep one."""
    from workbench.storage import parquet_tier

    seg = parquet_tier.write_segment(tmp_path, 0, 30, b"".join(batch(10, pid=7, epoch=0, seq=i * 10) for i in range(3)))
    meta = pq.ParquetFile(seg.path).metadata.row_group(0)
    dictionary = {
        meta.column(i).path_in_schema
        for i in range(meta.num_columns)
        if any("DICTIONARY" in e for e in meta.column(i).encodings)
    }
    assert dictionary == set(parquet_tier.DICTIONARY_COLUMNS)
    assert pq.read_table(seg.path).num_rows == 30
