"""The log's parts on their own: LogLoader (recovery), LocalLog (raw segments), ParquetLog (the tier).

`PartitionLog` (tests/unit/test_storage_log.py and friends) is what the broker uses; these
tests pin what each part promises the façade, so a change inside one part is caught there.
"""

from __future__ import annotations

from pathlib import Path

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.protocol import records as R
from workbench.storage import LogConfig, PartitionLog
from workbench.storage.leader_epoch import LeaderEpochCache
from workbench.storage.local_log import LocalLog
from workbench.storage.log_loader import LoadedLog, LogLoader
from workbench.storage.parquet_log import ParquetLog
from workbench.storage.producer_state import ProducerStateManager
from workbench.storage.segment import MAX_RELATIVE_OFFSET

T0 = 1_700_000_000_000


def batch(n: int = 10, *, tag: int = 0) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(n):
        b.append(i, T0 + i, b"k%d" % i, (b"%d-%d:" % (tag, i)).ljust(100, b"x"), [])
    return bytes(b.build())


ONE = len(batch())


def write_log(path: Path, batches: int, **config: int) -> LogConfig:
    cfg = LogConfig(**config)
    log = PartitionLog(path, cfg, topic="t", partition=0)
    for i in range(batches):
        log.append(batch(tag=i))
    log.close()
    return cfg


def load(path: Path, cfg: LogConfig) -> LoadedLog:
    return LogLoader(
        path, cfg, epochs=LeaderEpochCache(path), producers=ProducerStateManager(path), hw_tracks_leo=True
    ).load()


def test_loader_cuts_a_torn_tail_and_moves_a_damaged_parquet_file_aside(tmp_path: Path) -> None:
    cfg = write_log(tmp_path, 6, segment_bytes=ONE * 2)
    log = PartitionLog(tmp_path, cfg, topic="t", partition=0)
    assert [p.name for p in log.convert_sealed_segments()] == [f"{0:020d}.parquet", f"{20:020d}.parquet"]
    log.close()
    bad = tmp_path / f"{20:020d}.parquet"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(data)
    active = tmp_path / f"{40:020d}.log"
    active.write_bytes(active.read_bytes()[:-30])  # the last batch torn

    loaded = load(tmp_path, cfg)
    try:
        assert [p.base_offset for p in loaded.parquet] == [0]
        assert (tmp_path / f"{20:020d}.parquet.corrupt").exists() and not bad.exists()
        assert [s.base_offset for s in loaded.segments] == [0, 20, 40]  # hot_segments kept raw copies
        assert (loaded.log_start_offset, loaded.log_end_offset, loaded.high_watermark) == (0, 50, 50)
    finally:
        for s in loaded.segments:
            s.close()


def test_local_log_roll_rules(tmp_path: Path) -> None:
    cfg = write_log(tmp_path, 1, segment_bytes=ONE * 2, segment_ms=1000)
    loaded = load(tmp_path, cfg)
    local = LocalLog(tmp_path, cfg, loaded.segments)
    active = local.active_segment
    assert active.created_ms is not None
    now = active.created_ms
    assert not local.should_roll(ONE, 10, now)  # fits
    assert local.should_roll(ONE + 1, 10, now)  # segment.bytes
    assert local.should_roll(1, 10, now + 1000) and local.is_past_segment_ms(now + 1000)  # segment.ms
    assert local.should_roll(1, MAX_RELATIVE_OFFSET + 1, now)  # relative offsets are int32 in the indexes
    new = local.roll()
    assert new is local.active_segment and new.base_offset == 10 and local.sealed_segments == [active]
    assert not local.should_roll(ONE * 100, MAX_RELATIVE_OFFSET * 2, now + 10**9)  # an empty segment takes anything
    local.close()


def test_local_log_truncation_keeps_batch_boundaries(tmp_path: Path) -> None:
    cfg = write_log(tmp_path, 6, segment_bytes=ONE * 2)
    local = LocalLog(tmp_path, cfg, load(tmp_path, cfg).segments)
    assert [s.base_offset for s in local.segments] == [0, 20, 40]
    assert local.batch_boundary_at_or_below(25) == 20 and local.batch_boundary_at_or_below(30) == 30
    local.truncate_to(30)
    assert [s.base_offset for s in local.segments] == [0, 20] and local.log_end_offset == 30
    assert not (tmp_path / f"{40:020d}.log").exists()
    data = local.read(0, 1 << 20, local.log_end_offset)
    assert data is not None and R.decode_records(bytes(data))["offset"] == list(range(20))  # one segment per read
    local.truncate_fully(100)
    assert [s.base_offset for s in local.segments] == [100] and local.log_end_offset == 100
    assert sorted(p.name for p in tmp_path.glob("*.log")) == [f"{100:020d}.log"]
    local.close()


def test_parquet_log_serves_only_below_the_raw_segments_and_the_bound(tmp_path: Path) -> None:
    cfg = write_log(tmp_path, 6, segment_bytes=ONE * 2, hot_segments=0)
    log = PartitionLog(tmp_path, cfg, topic="t", partition=0)
    log.convert_sealed_segments()
    log.close()
    loaded = load(tmp_path, cfg)
    tier = ParquetLog(tmp_path, loaded.parquet, topic="t", partition=0)
    raw_start = loaded.segments[0].base_offset
    assert raw_start == 40 and sorted(tier.base_offsets()) == [0, 20]
    got = R.decode_records(tier.read(15, 1 << 20, upper=40, raw_start=raw_start))
    assert got["offset"] == list(range(10, 20))  # from the batch holding offset 15, one file per read
    assert tier.read(0, 1 << 20, upper=5, raw_start=raw_start) == b""  # a batch must end below the bound
    assert tier.read(40, 1 << 20, upper=50, raw_start=raw_start) == b""  # the raw segments' range
    assert tier.batch_boundary_at_or_below(25) == 20 and tier.batch_boundary_at_or_below(45) is None
    tier.truncate_to(30, raw_bases=set())
    assert [(p.base_offset, p.next_offset) for p in tier.segments] == [(0, 20), (20, 30)]
    for s in loaded.segments:
        s.close()
