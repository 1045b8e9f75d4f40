"""The log cleaner (Kafka's LogCleaner) over a real partition log: what survives a pass, and when one runs."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.protocol import records as R
from workbench.storage import LogConfig, PartitionLog
from workbench.storage.log_cleaner import CLEANER_CHECKPOINT, LogCleaner, OffsetMap

T0 = 1_700_000_000_000


def batch(records: list[tuple[bytes | None, bytes | None]], ts: int = T0) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i, (k, v) in enumerate(records):
        b.append(i, ts + i, k, v, [])
    return bytes(b.build())


def read_all(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    out: list[tuple[int, bytes | None, bytes | None]] = []
    offset = log.log_start_offset
    while offset < log.high_watermark:
        data = log.read(offset, 1 << 20)
        if not data:
            break
        cols = R.decode_records(bytes(data))
        out += list(zip(cols["offset"], cols["key"], cols["value"], strict=True))
        offset = max(R.iter_batch_headers(memoryview(bytes(data))), key=lambda h: h.next_offset).next_offset
    return out


def changelog(path: Path, rounds: int = 5, keys: int = 4, **cfg: object) -> PartitionLog:
    """``rounds`` updates of ``keys`` keys, one batch per round; key 0 deleted in the last round."""
    one = len(batch([(b"k0", b"v0.0")] * keys))
    config = LogConfig(segment_bytes=one + 10, cleanup_policy="compact", min_cleanable_dirty_ratio=0.0, **cfg)  # type: ignore[arg-type]
    log = PartitionLog(path, config, topic="orders", partition=0)
    for r in range(rounds):
        recs: list[tuple[bytes | None, bytes | None]] = [(b"k%d" % k, b"v%d.%d" % (k, r)) for k in range(keys)]
        if r == rounds - 1:
            recs[0] = (b"k0", None)
        log.append(batch(recs, T0 + r * 1000), now_ms=T0)
    log.append(batch([(b"tail", b"active")]), now_ms=T0)  # the active segment: never cleaned
    log.convert_sealed_segments()  # the cleaner takes segments once the converter is done with them
    return log


def latest(rows: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes | None, tuple[int, bytes | None]]:
    out: dict[bytes | None, tuple[int, bytes | None]] = {}
    for o, k, v in rows:
        out[k] = (o, v)
    return out


def test_a_pass_keeps_exactly_the_latest_record_per_key_with_offsets(tmp_path: Path) -> None:
    log = changelog(tmp_path)
    before = read_all(log)
    cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0)
    res = cleaner.clean_log(log, now_ms=T0 + 10_000)
    assert res.cleaned and res.records_removed > 0
    after = read_all(log)
    # Exactly one record per key, each the latest one, at its original offset, in offset order.
    assert [o for o, _, _ in after] == sorted(o for o, _ in latest(before).values())
    assert latest(after) == latest(before)
    assert after[0] == (16, b"k0", None)  # the tombstone stays (delete.retention.ms is a day)
    assert (tmp_path / CLEANER_CHECKPOINT).read_text().strip() == str(log.active_segment.base_offset)
    # The Parquet tier is what a consumer sees (SQL reads it).
    files = ",".join(f"'{p}'" for p in log.parquet_files())
    sql = duckdb.sql(f'select "offset" from read_parquet([{files}]) order by 1').fetchall()
    assert [o for (o,) in sql] == [o for o, _, _ in after if o < log.active_segment.base_offset]
    # ListOffsets by timestamp lands on a surviving record (gaps skipped).
    found = log.offset_for_timestamp(T0)
    assert found is not None and found[0] == after[0][0]
    # Fetch from inside a gap returns the next surviving batch.
    data = log.read(1, 1 << 20)
    assert R.decode_records(bytes(data))["offset"][0] == after[0][0]


def test_survives_reopen_and_a_second_pass_is_a_no_op(tmp_path: Path) -> None:
    log = changelog(tmp_path)
    cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0)
    cleaner.clean_log(log, now_ms=T0 + 10_000)
    after = read_all(log)
    log.close()
    log = PartitionLog(tmp_path, log.config, topic="orders", partition=0)
    assert read_all(log) == after
    cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0)
    res = cleaner.clean_log(log, now_ms=T0 + 10_000)
    assert not res.cleaned  # nothing dirty since the checkpoint
    assert read_all(log) == after


def test_tombstones_go_after_delete_retention_in_a_later_pass(tmp_path: Path) -> None:
    log = changelog(tmp_path, delete_retention_ms=5_000)
    cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0)
    cleaner.clean_log(log, now_ms=T0 + 4_500)  # the tombstone (ts T0+4000) is in the dirty part: kept
    assert (16, b"k0", None) in read_all(log)
    expiry = cleaner.state(log).tombstone_expiry_ms
    assert expiry == T0 + 4000 + 5000
    assert not cleaner.clean_log(log, now_ms=expiry - 1).cleaned  # not due yet
    assert cleaner.clean_log(log, now_ms=expiry).cleaned  # due: the delete itself goes
    rows = read_all(log)
    assert b"k0" not in {k for _, k, _ in rows}
    assert {k for _, k, _ in rows} == {b"k1", b"k2", b"k3", b"tail"}


def test_dirty_ratio_and_compaction_lags_decide_when(tmp_path: Path) -> None:
    log = changelog(tmp_path, rounds=3)
    log.update_config(LogConfig(**{**log.config.__dict__, "min_cleanable_dirty_ratio": 0.99}))
    cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0)
    cleaner.clean_log(log, now_ms=T0 + 10_000, force=True)
    log.append(batch([(b"k1", b"new")], T0 + 20_000), now_ms=T0)
    log.append(batch([(b"k2", b"new")] * 4, T0 + 20_000), now_ms=T0)  # rolls: one more sealed segment
    log.convert_sealed_segments()
    assert 0 < cleaner.dirty_ratio(log, T0 + 30_000) < 0.99
    assert not cleaner.clean_log(log, now_ms=T0 + 30_000).cleaned
    # max.compaction.lag.ms: the oldest dirty record is 10 s old -> cleaned whatever the ratio.
    log.update_config(LogConfig(**{**log.config.__dict__, "max_compaction_lag_ms": 10_000}))
    assert cleaner.clean_log(log, now_ms=T0 + 30_000).cleaned
    # min.compaction.lag.ms: nothing newer than the lag is compacted.
    log.append(batch([(b"k3", b"x")] * 4, T0 + 40_000), now_ms=T0)
    log.append(batch([(b"k3", b"y")] * 4, T0 + 40_000), now_ms=T0)
    log.convert_sealed_segments()
    log.update_config(LogConfig(**{**log.config.__dict__, "min_compaction_lag_ms": 60_000}))
    before = read_all(log)
    cleaner.clean_log(log, now_ms=T0 + 50_000, force=True)
    assert [r for r in read_all(log) if r[1] == b"k3" and r[2] in (b"x", b"y")] == [
        r for r in before if r[1] == b"k3" and r[2] in (b"x", b"y")
    ]


def test_a_full_offset_map_cleans_what_it_holds_and_the_rest_next_pass(tmp_path: Path) -> None:
    log = changelog(tmp_path, rounds=6, keys=4)
    before = read_all(log)
    entry = OffsetMap.ENTRY_OVERHEAD + 2
    cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0, dedupe_buffer_bytes=entry * 4 + 1)
    first = cleaner.clean_log(log, now_ms=T0 + 10_000)
    assert first.cleaned and first.map_entries == 4
    passes = 1
    while cleaner.clean_log(log, now_ms=T0 + 10_000).cleaned:
        passes += 1
    assert latest(read_all(log)) == latest(before)
    assert len(read_all(log)) == len(latest(before))
    tiny = LogCleaner(lambda: [log], io_max_bytes_per_second=0, dedupe_buffer_bytes=entry)
    log.append(batch([(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"d", b"4")]), now_ms=T0)
    log.append(batch([(b"e", b"5")]), now_ms=T0)
    log.convert_sealed_segments()
    res = tiny.clean_log(log, now_ms=T0 + 10_000, force=True)
    assert not res.cleaned and "log.cleaner.dedupe.buffer.size" in res.reason


def test_a_truncation_during_a_pass_discards_its_output(tmp_path: Path) -> None:
    log = changelog(tmp_path)
    before = read_all(log)
    generation, segs = log.cleanable_segments()
    log.truncate_to(segs[2].base_offset)
    tmp = tmp_path / "x.parquet.cleaned.tmp"
    tmp.write_bytes(b"junk")
    assert not log.install_cleaned(generation, segs[0], tmp, 0)
    assert not tmp.exists()
    assert read_all(log) == [r for r in before if r[0] < segs[2].base_offset]


def test_follower_of_a_compacted_log_accepts_gaps_and_others_refuse_them(tmp_path: Path) -> None:
    leader = changelog(tmp_path / "leader")
    LogCleaner(lambda: [leader], io_max_bytes_per_second=0).clean_log(leader, now_ms=T0 + 10_000)
    follower = PartitionLog(tmp_path / "follower", leader.config, topic="orders", partition=0)
    offset = 0
    while offset < leader.high_watermark:
        data = bytes(leader.read(offset, 1 << 20))
        info = follower.append_as_follower(data)
        offset = info.last_offset + 1
    assert read_all(follower) == read_all(leader)
    plain = PartitionLog(tmp_path / "plain", LogConfig(), topic="orders", partition=0)
    with pytest.raises(Exception, match="does not continue"):
        plain.append_as_follower(bytes(leader.read(16, 1 << 20)))


def merged_changelog(path: Path, rounds: int = 8) -> PartitionLog:
    """A changelog of tiny segments (one batch each), then segment.bytes raised so they can merge."""
    log = changelog(path, rounds=rounds)
    log.update_config(LogConfig(**{**log.config.__dict__, "segment_bytes": 1 << 20}))
    return log


def sealed_rows(directory: Path) -> list[int]:
    """Offsets a notebook-side reader of the Parquet files sees (the SQL engine's file rule)."""
    from workbench.sql.cache import read_sealed

    files = read_sealed(directory)
    if not files:
        return []
    paths = ",".join(f"'{f.path}'" for f in files)
    return [o for (o,) in duckdb.sql(f'select "offset" from read_parquet([{paths}]) order by 1').fetchall()]


def test_adjacent_cleaned_segments_merge_into_one_file_and_bytes_go_down(tmp_path: Path) -> None:
    log = merged_changelog(tmp_path)
    before = read_all(log)
    n_before = len(log.parquet_files())
    assert n_before == 8
    cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0)
    res = cleaner.clean_log(log, now_ms=T0 + 10_000)
    assert res.cleaned and res.segments_rewritten == 8 and res.files_written == 1
    # A new name for the merged file (never over a listed one); the members wait out the grace period.
    [merged] = log.parquet_files()
    assert merged.name.startswith("00000000000000000000.g") and merged.name.endswith(".parquet")
    assert len(log.superseded_files()) == 8 and all(p.exists() for p in log.superseded_files())
    assert res.bytes_after < res.bytes_before
    assert cleaner.state(log).bytes_reclaimed > 0
    after = read_all(log)
    assert latest(after) == latest(before) and len(after) == len(latest(before))
    assert sealed_rows(tmp_path) == [o for o, _, _ in after if o < log.active_segment.base_offset]
    log.close()
    log = PartitionLog(tmp_path, log.config, topic="orders", partition=0)
    assert read_all(log) == after
    # More dirty segments later merge into the existing file, still one file.
    small = log.config
    log.update_config(LogConfig(**{**small.__dict__, "segment_bytes": 130}))  # roll at every batch
    for r in range(3):
        log.append(batch([(b"k1", b"late%d" % r)] * 4, T0 + 20_000 + r), now_ms=T0)
    log.append(batch([(b"tail", b"active2")]), now_ms=T0)
    log.convert_sealed_segments()
    log.update_config(small)
    cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0)
    res = cleaner.clean_log(log, now_ms=T0 + 30_000)
    assert res.cleaned and res.files_written == 1 and res.bytes_after < res.bytes_before
    assert len(log.parquet_files()) == 1
    assert latest(read_all(log))[b"k1"][1] == b"late2"


def test_a_lone_segment_never_grows_on_disk(tmp_path: Path) -> None:
    log = changelog(tmp_path)  # segment.bytes of one batch: nothing merges
    cleaner = LogCleaner(lambda: [log], io_max_bytes_per_second=0)
    for _ in range(3):
        cleaner.clean_log(log, now_ms=T0 + 10_000, force=True)
    st = cleaner.state(log)
    assert st.bytes_reclaimed >= 0, st


@pytest.mark.parametrize("point", ["cleaner.before_rename", "cleaner.after_rename", "cleaner.after_unlink"])
def test_a_crash_at_any_step_of_a_merge_leaves_the_old_files_or_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    from workbench.storage.failpoints import ENV, FailpointCrash

    log = merged_changelog(tmp_path)
    before = read_all(log)
    sealed_before = sealed_rows(tmp_path)
    monkeypatch.setenv(ENV, point)
    with pytest.raises(FailpointCrash):
        LogCleaner(lambda: [log], io_max_bytes_per_second=0).clean_log(log, now_ms=T0 + 10_000)
    monkeypatch.delenv(ENV)
    # A reader of the files while the broker is down: each offset once, the old set or the new.
    seen = sealed_rows(tmp_path)
    assert len(seen) == len(set(seen))
    compacted = sorted(o for o, _ in latest(before).values() if o < log.active_segment.base_offset)
    assert seen in (sealed_before, compacted), (point, seen)
    # The broker's recovery: the same, and nothing superseded left on disk.
    reopened = PartitionLog(tmp_path, log.config, topic="orders", partition=0)
    rows = read_all(reopened)
    assert rows == before or (latest(rows) == latest(before) and len(rows) == len(latest(before)))
    if point == "cleaner.before_rename":
        assert rows == before and len(reopened.parquet_files()) == 8
    else:
        assert len(reopened.parquet_files()) == 1
        assert not list(tmp_path.glob("0000000000000000000[1-9]*.log"))  # covered raw copies went
    # The next pass finishes the job.
    LogCleaner(lambda: [reopened], io_max_bytes_per_second=0).clean_log(reopened, now_ms=T0 + 10_000, force=True)
    assert latest(read_all(reopened)) == latest(before) and len(read_all(reopened)) == len(latest(before))
    assert len(reopened.parquet_files()) == 1


def idempotent_batch(pid: int, seq: int, records: list[tuple[bytes, bytes]], ts: int = T0) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, pid, 0, seq, 1 << 30)
    for i, (k, v) in enumerate(records):
        b.append(i, ts + i, k, v, [])
    return bytes(b.build())


def test_a_producers_sequences_survive_a_cleaned_batch_on_a_replica_fetching_it(tmp_path: Path) -> None:
    """A batch whose first records were cleaned away, fetched by a replica, still ends at the
    producer's last sequence (the rebuilt batch keeps its base sequence)."""
    one = len(idempotent_batch(7, 0, [(b"a", b"1"), (b"b", b"1")]))
    config = LogConfig(segment_bytes=one + 10, cleanup_policy="compact", min_cleanable_dirty_ratio=0.0)
    leader = PartitionLog(tmp_path / "leader", config, topic="t", partition=0)
    leader.append(idempotent_batch(7, 0, [(b"a", b"1"), (b"b", b"1")]), now_ms=T0)  # seq 0..1
    leader.append(idempotent_batch(9, 0, [(b"a", b"2"), (b"c", b"2")]), now_ms=T0)  # supersedes 7's first
    leader.append(batch([(b"tail", b"x")]), now_ms=T0)
    leader.convert_sealed_segments()
    LogCleaner(lambda: [leader], io_max_bytes_per_second=0).clean_log(leader, now_ms=T0 + 10_000)
    assert [(o, k) for o, k, _ in read_all(leader)][:1] == [(1, b"b")]  # producer 7's batch lost offset 0
    follower = PartitionLog(tmp_path / "follower", config, topic="t", partition=0)
    offset = 0
    while offset < leader.high_watermark:
        info = follower.append_as_follower(bytes(leader.read(offset, 1 << 20)))
        offset = info.last_offset + 1
    assert follower.producers.summary()[7][1] == 1  # last sequence of producer 7 (was 2 before the fix)
    assert follower.producers.summary() == leader.producers.summary()


@pytest.mark.xfail(strict=True, reason="not done: a producer's last batch wholly cleaned away leaves no header")
def test_a_replica_rebuilt_from_a_cleaned_log_knows_a_producer_whose_last_batch_went(tmp_path: Path) -> None:
    one = len(idempotent_batch(7, 0, [(b"a", b"1")]))
    config = LogConfig(segment_bytes=one + 10, cleanup_policy="compact", min_cleanable_dirty_ratio=0.0)
    leader = PartitionLog(tmp_path / "leader", config, topic="t", partition=0)
    leader.append(idempotent_batch(7, 0, [(b"k", b"1")]), now_ms=T0)
    leader.append(idempotent_batch(7, 1, [(b"a", b"1")]), now_ms=T0)
    leader.append(idempotent_batch(9, 0, [(b"a", b"2")]), now_ms=T0)  # producer 7's last batch goes
    leader.append(batch([(b"tail", b"x")]), now_ms=T0)
    leader.convert_sealed_segments()
    LogCleaner(lambda: [leader], io_max_bytes_per_second=0).clean_log(leader, now_ms=T0 + 10_000)
    follower = PartitionLog(tmp_path / "follower", config, topic="t", partition=0)
    offset = 0
    while offset < leader.high_watermark:
        info = follower.append_as_follower(bytes(leader.read(offset, 1 << 20)))
        offset = info.last_offset + 1
    assert follower.producers.summary()[7][1] == leader.producers.summary()[7][1] == 1
