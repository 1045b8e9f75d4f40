"""LogLoader reports the offset ranges recovery could not keep (issue 12, item 4).

The replica side (`ReplicaManager`) repairs them from a healthy replica or reports them
lost; here: that the loader names exactly the damaged ranges, and nothing when an
interrupted truncation merely raised the log start.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_storage_replication import ONE, batch_at, open_follower


def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_sealed_segment_is_reported_missing(tmp_path):
    log = open_follower(tmp_path, segment_bytes=ONE * 2)
    for i in range(8):
        log.append_as_follower(batch_at(2 * i))
    log.close()
    sealed = sorted(tmp_path.glob("*.log"), key=lambda p: int(p.stem))
    _damage(sealed[1])  # offsets 4..7
    again = open_follower(tmp_path, segment_bytes=ONE * 2)
    [(start, end)] = again.missing_ranges
    assert 4 <= start < end == 8
    again.close()


def test_a_damaged_first_parquet_file_is_reported_missing(tmp_path):
    log = open_follower(tmp_path, segment_bytes=ONE * 2, hot_segments=0)
    for i in range(8):
        log.append_as_follower(batch_at(2 * i))
    log.high_watermark = 16
    log.convert_sealed_segments()
    log.close()
    first = min(tmp_path.glob("*.parquet"), key=lambda p: int(p.stem))
    assert not (tmp_path / first.name.replace(".parquet", ".log")).exists()  # only Parquet holds it
    _damage(first)
    again = open_follower(tmp_path, segment_bytes=ONE * 2, hot_segments=0)
    assert again.missing_ranges and again.missing_ranges[0][0] == 0
    again.close()


def test_an_intact_log_reports_nothing(tmp_path):
    log = open_follower(tmp_path, segment_bytes=ONE * 2)
    for i in range(4):
        log.append_as_follower(batch_at(2 * i))
    log.close()
    assert open_follower(tmp_path, segment_bytes=ONE * 2).missing_ranges == []
