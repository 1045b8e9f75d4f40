"""ListOffsets MAX_TIMESTAMP (KIP-734) in the partition log: the record with the largest timestamp.

Kafka answers the offset and timestamp of the record whose timestamp is the largest (the first
such record when several share it), among records a consumer may see (below the high
watermark), wherever they live: hot segments or the Parquet tier.
"""

from __future__ import annotations

from pathlib import Path

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.storage import LogConfig, PartitionLog

T0 = 1_700_000_000_000


def batch(timestamps: list[int]) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i, ts in enumerate(timestamps):
        b.append(i, ts, b"k", b"v%d" % i * 30, [])
    return bytes(b.build())


def open_log(path: Path, *, hw_tracks_leo: bool = True, **config: int) -> PartitionLog:
    return PartitionLog(path, LogConfig(**config), topic="t", partition=0, hw_tracks_leo=hw_tracks_leo)


def test_empty_log_has_no_max_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert log.max_timestamp_offset() is None
    log.close()


def test_the_largest_timestamp_wins_not_the_last_record(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch([T0, T0 + 50, T0 + 20]))  # offsets 0-2
    log.append(batch([T0 + 30, T0 + 40]))  # offsets 3-4: later, but older timestamps
    assert log.max_timestamp_offset() == (1, T0 + 50)
    log.close()


def test_ties_answer_the_first_record(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch([T0, T0 + 9, T0 + 1]))
    log.append(batch([T0 + 9, T0 + 2]))
    assert log.max_timestamp_offset() == (1, T0 + 9)
    log.close()


def test_records_above_the_high_watermark_do_not_count(tmp_path: Path) -> None:
    log = open_log(tmp_path, hw_tracks_leo=False)  # a replicated partition's leader
    log.append(batch([T0, T0 + 5]))  # 0-1
    log.append(batch([T0 + 99]))  # 2: not yet replicated
    log.maybe_update_high_watermark(2)
    assert log.max_timestamp_offset() == (1, T0 + 5)
    assert log.max_timestamp_offset(upper=log.log_end_offset) == (2, T0 + 99)  # a debugging replica
    log.close()


def test_found_across_segments_and_the_parquet_tier(tmp_path: Path) -> None:
    one = len(batch([T0] * 4))
    log = open_log(tmp_path, segment_bytes=one * 2, hot_segments=0)
    stamps = [[T0 + 10 * b + i for i in range(4)] for b in range(8)]
    stamps[2][3] = T0 + 10_000  # offset 11, in a segment that becomes Parquet
    stamps[6][0] = T0 + 10_000  # offset 24: the same timestamp later, still hot
    for s in stamps:
        log.append(batch(s))
    assert log.max_timestamp_offset() == (11, T0 + 10_000)
    assert log.convert_sealed_segments(), "expected sealed segments to convert"
    assert not (tmp_path / f"{8:020d}.log").exists()  # offset 11's segment lives only in Parquet now
    assert log.max_timestamp_offset() == (11, T0 + 10_000)
    log.delete_records(12)  # below the log start offset: gone for ListOffsets too
    assert log.max_timestamp_offset() == (24, T0 + 10_000)
    log.close()
