"""Storage primitives for replication: leader epoch cache, follower appends, truncation, the HW."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.protocol import records as R
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.storage import LogConfig, PartitionLog, UnexpectedAppendOffsetError
from workbench.storage import parquet_log as parquet_log_module
from workbench.storage.leader_epoch import CHECKPOINT_NAME, LeaderEpochCache

T0 = 1_700_000_000_000


def batch(n: int = 2, *, tag: int = 0, codec: int = 0, pid: int = -1, epoch: int = -1, seq: int = -1) -> bytes:
    b = DefaultRecordBatchBuilder(2, codec, 0, pid, epoch, seq, 1 << 30)
    for i in range(n):
        b.append(i, T0 + tag * 10 + i, b"k%d" % i, b"%d-%d:" % (tag, i) + b"x" * 60, [])
    return bytes(b.build())


ONE = len(batch())


def open_log(path: Path, **config: int) -> PartitionLog:
    return PartitionLog(path, LogConfig(**config), topic="t", partition=0)


def open_follower(path: Path, **config: int) -> PartitionLog:
    return PartitionLog(path, LogConfig(**config), topic="t", partition=0, hw_tracks_leo=False)


def everything(log: PartitionLog) -> bytes:
    """All batches from the log start to the log end, raw bytes as stored (segment by segment)."""
    out = bytearray()
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = bytes(log.read(offset, 1 << 30, upper_bound=log.log_end_offset))
        assert data, offset
        out += data
        offset = list(R.iter_batch_headers(data))[-1].next_offset
    return bytes(out)


def replicate(leader: PartitionLog, follower: PartitionLog, *, max_bytes: int = 1 << 20) -> int:
    """Fetch from the leader (beyond its HW, as a follower does) until caught up; return fetches."""
    fetches = 0
    while follower.log_end_offset < leader.log_end_offset:
        data = leader.read(follower.log_end_offset, max_bytes, upper_bound=leader.log_end_offset)
        follower.append_as_follower(data)
        fetches += 1
    follower.maybe_update_high_watermark(leader.high_watermark)
    return fetches


def follower_truncation_offset(leader: PartitionLog, follower: PartitionLog) -> int:
    """Kafka's follower rule (AbstractFetcherThread.getOffsetTruncationState), one round."""
    epoch, end = leader.end_offset_for_epoch(follower.latest_epoch)
    if end < 0:
        return follower.high_watermark
    local_epoch, local_end = follower.end_offset_for_epoch(epoch)
    if local_epoch < 0:
        return min(end, follower.log_end_offset)
    return min(end, local_end, follower.log_end_offset)


def headers_of(data: bytes) -> list[R.BatchHeader]:
    return list(R.iter_batch_headers(data))


# -- leader epoch cache -------------------------------------------------------------------------


def test_leader_appends_record_epochs_and_stamp_batches(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for epoch in (0, 0, 2, 2, 5):
        log.append(batch(), leader_epoch=epoch)
    assert log.epoch_entries() == [(0, 0), (2, 4), (5, 8)]
    assert log.latest_epoch == 5
    data = everything(log)
    assert [h.partition_leader_epoch for h in headers_of(data)] == [0, 0, 2, 2, 5]
    assert all(R.batch_crc_ok(data, h) for h in headers_of(data))
    assert (tmp_path / CHECKPOINT_NAME).read_text() == "0\n3\n0 0\n2 4\n5 8\n"
    # Without an explicit epoch: the latest one.
    log.append(batch())
    assert headers_of(everything(log))[-1].partition_leader_epoch == 5
    # A deposed leader (older epoch) may not write.
    with pytest.raises(KafkaProtocolError) as e:
        log.append(batch(), leader_epoch=4)
    assert e.value.code == ErrorCode.FENCED_LEADER_EPOCH
    assert log.log_end_offset == 12


def test_end_offset_for_epoch(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert log.latest_epoch == -1
    assert log.end_offset_for_epoch(0) == (-1, -1)  # empty cache
    for epoch in (2, 2, 4, 7):
        log.append(batch(), leader_epoch=epoch)
    assert log.epoch_entries() == [(2, 0), (4, 4), (7, 6)]
    assert log.end_offset_for_epoch(7) == (7, 8)  # current epoch: the LEO
    assert log.end_offset_for_epoch(4) == (4, 6)  # past epoch: where the next one starts
    assert log.end_offset_for_epoch(2) == (2, 4)
    assert log.end_offset_for_epoch(5) == (4, 6)  # unknown epoch between: the largest one below
    assert log.end_offset_for_epoch(6) == (4, 6)
    assert log.end_offset_for_epoch(8) == (-1, -1)  # newer than any: UNDEFINED
    assert log.end_offset_for_epoch(-1) == (-1, -1)
    # Below the earliest epoch: Kafka answers (requested, start of the earliest epoch).
    assert log.end_offset_for_epoch(1) == (1, 0)
    # Raising the log start offset moves the first entry up (Kafka's truncateFromStart).
    log.delete_records(5)
    assert log.epoch_entries() == [(4, 5), (7, 6)]
    assert log.end_offset_for_epoch(2) == (2, 5)
    assert log.end_offset_for_epoch(4) == (4, 6)


def test_assign_leader_epoch_at_election(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch(), leader_epoch=1)
    assert log.assign_leader_epoch(3)
    assert not log.assign_leader_epoch(3)
    assert log.end_offset_for_epoch(3) == (3, 2)
    assert log.end_offset_for_epoch(2) == (1, 2)
    with pytest.raises(KafkaProtocolError) as e:
        log.assign_leader_epoch(2)
    assert e.value.code == ErrorCode.FENCED_LEADER_EPOCH
    # A leader that never wrote in its epoch: truncating at the LEO drops that entry (Kafka does too).
    assert log.truncate_to(log.log_end_offset) is False
    assert log.epoch_entries() == [(1, 0)]


def test_epoch_cache_survives_reopen_and_is_rebuilt(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=ONE * 2, hot_segments=0)
    for epoch in (0, 0, 1, 1, 1, 3, 3, 6):
        log.append(batch(), leader_epoch=epoch)
    log.convert_sealed_segments()  # some ranges now exist only as Parquet
    assert log.parquet_files() and min(int(p.name.split(".")[0]) for p in tmp_path.glob("*.log")) > 0
    expected = [(0, 0), (1, 4), (3, 10), (6, 14)]
    assert log.epoch_entries() == expected
    log.close()
    assert open_log(tmp_path).epoch_entries() == expected
    open_log(tmp_path).close()
    (tmp_path / CHECKPOINT_NAME).unlink()
    again = open_log(tmp_path)
    assert again.epoch_entries() == expected  # rebuilt from Parquet rows and batch headers
    assert (tmp_path / CHECKPOINT_NAME).exists()
    again.close()
    (tmp_path / CHECKPOINT_NAME).write_text("0\n5\n1 2\n")  # malformed
    assert open_log(tmp_path).epoch_entries() == expected


def test_epoch_cache_is_trimmed_to_a_torn_tail_and_completed_from_it(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch(), leader_epoch=0)
    log.append(batch(), leader_epoch=1)
    log.close()
    seg = tmp_path / f"{0:020d}.log"
    with open(seg, "r+b") as f:  # tear the epoch-1 batch
        f.truncate(ONE + 10)
    log = open_log(tmp_path)
    assert log.log_end_offset == 2 and log.epoch_entries() == [(0, 0)]
    log.close()
    # A batch whose epoch never reached the checkpoint (crash in between) is learnt at recovery.
    cache = LeaderEpochCache(tmp_path)
    cache.load()
    log = open_log(tmp_path)
    log.append(batch(), leader_epoch=4)
    log.close()
    cache.flush()  # the checkpoint as it was before the epoch-4 batch
    assert open_log(tmp_path).epoch_entries() == [(0, 0), (4, 2)]


def test_epoch_cache_rules() -> None:
    cache = LeaderEpochCache(Path("/nonexistent"))
    for e, s in [(0, 0), (0, 5), (2, 10)]:
        cache.assign(e, s, flush=False)
    assert cache.entries == [(0, 0), (2, 10)]
    cache.assign(1, 12, flush=False)  # an older epoch after a newer one replaces it (leader wins)
    assert cache.entries == [(0, 0), (1, 12)]
    cache.assign(3, 12, flush=False)  # same start offset: the newer epoch replaces it
    assert cache.entries == [(0, 0), (3, 12)]
    assert not cache.assign(-1, 20, flush=False)
    assert cache.truncate_from_end(12, flush=False) and cache.entries == [(0, 0)]
    assert not cache.truncate_from_start(0, flush=False)


# -- follower appends -----------------------------------------------------------------------------


def fill_leader(path: Path, **config: int) -> PartitionLog:
    """12 batches of 1-3 records, all codecs, every other one from idempotent producer 9; epochs 0-2."""
    leader = open_log(path, **config)
    seq = 0
    for i in range(12):
        n = 1 + i % 3
        if i % 2:
            leader.append(batch(n, tag=i, codec=i % 5, pid=9, epoch=0, seq=seq), leader_epoch=i // 4)
            seq += n
        else:
            leader.append(batch(n, tag=i, codec=i % 5), leader_epoch=i // 4)
    return leader


def test_follower_append_keeps_offsets_and_epochs_byte_for_byte(tmp_path: Path) -> None:
    leader = fill_leader(tmp_path / "a", segment_bytes=ONE * 3)
    follower = open_follower(tmp_path / "b", segment_bytes=ONE * 2)
    assert replicate(leader, follower, max_bytes=ONE * 3) > 1  # several fetches, several batches each
    assert everything(follower) == everything(leader)
    starts = [h.base_offset for h in headers_of(everything(leader))]
    assert follower.epoch_entries() == leader.epoch_entries() == [(0, 0), (1, starts[4]), (2, starts[8])]
    assert follower.producer_state() == leader.producer_state()
    assert len(list((tmp_path / "b").glob("*.log"))) > 2  # rolled as it went
    assert follower.high_watermark == leader.log_end_offset
    follower.close()
    again = open_follower(tmp_path / "b", segment_bytes=ONE * 2)
    assert everything(again) == everything(leader)
    assert again.epoch_entries() == leader.epoch_entries()
    assert again.producer_state() == leader.producer_state()


def test_follower_ignores_a_partial_last_batch(tmp_path: Path) -> None:
    leader = fill_leader(tmp_path / "a")
    follower = open_follower(tmp_path / "b")
    data = bytes(leader.read(0, 1 << 20, upper_bound=leader.log_end_offset))
    hs = headers_of(data)
    info = follower.append_as_follower(data[: hs[2].position + 30])  # two batches and a bit
    assert (info.base_offset, info.last_offset) == (0, hs[1].last_offset)
    assert follower.log_end_offset == hs[2].base_offset
    nothing = follower.append_as_follower(data[hs[2].position : hs[2].position + 5])
    assert nothing.record_count == 0 and follower.log_end_offset == hs[2].base_offset
    follower.append_as_follower(data[hs[2].position :])
    assert everything(follower) == everything(leader)


def test_follower_rejects_corruption_and_gaps(tmp_path: Path) -> None:
    leader = fill_leader(tmp_path / "a")
    follower = open_follower(tmp_path / "b")
    data = bytearray(leader.read(0, 1 << 20, upper_bound=leader.log_end_offset))
    hs = headers_of(data)
    bad = bytearray(data)
    bad[hs[3].end - 1] ^= 0x55
    with pytest.raises(KafkaProtocolError) as e:
        follower.append_as_follower(bad)
    assert e.value.code == ErrorCode.CORRUPT_MESSAGE
    assert follower.log_end_offset == 0 and everything(follower) == b""
    # Not starting at the log end: a gap, or data we already have.
    with pytest.raises(UnexpectedAppendOffsetError) as gap:
        follower.append_as_follower(data[hs[1].position :])
    assert gap.value.code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert (gap.value.expected, gap.value.actual) == (0, hs[1].base_offset)
    follower.append_as_follower(data[: hs[2].position])
    with pytest.raises(UnexpectedAppendOffsetError):
        follower.append_as_follower(data[hs[1].position :])
    # A gap inside the record set.
    with pytest.raises(UnexpectedAppendOffsetError):
        follower.append_as_follower(data[hs[2].position : hs[3].position] + data[hs[4].position :])
    assert follower.log_end_offset == hs[2].base_offset
    follower.append_as_follower(data[hs[2].position :])
    assert everything(follower) == everything(leader)


def test_follower_reads_beyond_its_high_watermark(tmp_path: Path) -> None:
    leader = fill_leader(tmp_path / "a")
    follower = open_follower(tmp_path / "b")
    follower.append_as_follower(leader.read(0, 1 << 20, upper_bound=leader.log_end_offset))
    assert follower.high_watermark == 0
    assert follower.read(0, 1 << 20) == b""  # consumers see nothing above the HW
    assert bytes(follower.read(0, 1 << 20, upper_bound=follower.log_end_offset)) == everything(leader)
    follower.high_watermark = 8
    visible = headers_of(bytes(follower.read(0, 1 << 20)))
    assert visible[-1].next_offset <= 8
    # A leader whose HW lags (followers behind) still serves a follower up to its LEO.
    leader.set_hw_tracks_leo(False)
    leader.append(batch(3), leader_epoch=5)
    assert leader.high_watermark == leader.log_end_offset - 3
    tail = leader.read(leader.high_watermark, 1 << 20, upper_bound=leader.log_end_offset)
    assert headers_of(bytes(tail))[-1].next_offset == leader.log_end_offset
    assert leader.read(leader.high_watermark, 1 << 20) == b""


def test_follower_that_becomes_leader_detects_duplicates(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "a")
    first = batch(3, pid=5, epoch=0, seq=0)
    leader.append(first, leader_epoch=0)
    leader.append(batch(3, pid=5, epoch=0, seq=3), leader_epoch=0)
    follower = open_follower(tmp_path / "b")
    replicate(leader, follower)
    dup = follower.append(first, leader_epoch=1)
    assert dup.duplicate and (dup.base_offset, dup.last_offset) == (0, 2)
    with pytest.raises(KafkaProtocolError) as e:
        follower.append(batch(1, pid=5, epoch=0, seq=9), leader_epoch=1)
    assert e.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


# -- divergence and truncation ---------------------------------------------------------------------


def test_divergent_history_is_truncated_at_the_epoch_boundary(tmp_path: Path) -> None:
    """KIP-101: B took 0-5 from A (epoch 0), then led epoch 1 alone and wrote 6-7; A leads again."""
    a = open_log(tmp_path / "a")
    for i in range(5):
        a.append(batch(2, tag=i), leader_epoch=0)  # offsets 0-9 in epoch 0
    b = open_follower(tmp_path / "b")
    b.append_as_follower(a.read(0, 3 * ONE, upper_bound=a.log_end_offset))  # 0-5
    assert b.log_end_offset == 6
    b.high_watermark = 6
    b.set_hw_tracks_leo(True)  # B is elected (unclean) and writes alone in epoch 1
    b.append(batch(2, tag=99), leader_epoch=1)
    assert b.epoch_entries() == [(0, 0), (1, 6)] and b.log_end_offset == 8
    b.set_hw_tracks_leo(False)  # B steps down; A leads in epoch 2
    assert b.high_watermark == 8
    a.assign_leader_epoch(2)
    assert a.end_offset_for_epoch(1) == (0, 10)
    target = follower_truncation_offset(a, b)
    assert target == 6  # B's epoch 0 ends at 6: everything B wrote in epoch 1 goes
    assert b.truncate_to(target)
    assert b.log_end_offset == 6 and b.epoch_entries() == [(0, 0)] and b.high_watermark == 6
    assert follower_truncation_offset(a, b) == 6  # converged: no further truncation
    a.append(batch(2, tag=10), leader_epoch=2)
    replicate(a, b)
    assert everything(b) == everything(a)
    assert b.epoch_entries() == a.epoch_entries() == [(0, 0), (2, 10)]
    b.close()
    assert everything(open_follower(tmp_path / "b")) == everything(a)


def test_truncate_inside_the_active_segment_and_reopen(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=ONE * 4)
    for i in range(6):
        log.append(batch(2, tag=i), leader_epoch=i)
    assert len(list(tmp_path.glob("*.log"))) == 2  # [0, 8) and the active [8, 12)
    assert log.truncate_to(10)
    assert log.log_end_offset == 10 and log.epoch_entries() == [(i, 2 * i) for i in range(5)]
    assert log.truncate_to(9)  # inside a batch: the whole batch goes
    assert log.log_end_offset == 8
    assert log.truncate_to(8) is False
    info = log.append(batch(2, tag=50), leader_epoch=7)
    assert info.base_offset == 8
    log.close()
    log = open_log(tmp_path, segment_bytes=ONE * 4)
    assert log.log_end_offset == 10
    assert [h.base_offset for h in headers_of(everything(log))] == [0, 2, 4, 6, 8]
    assert log.epoch_entries() == [(0, 0), (1, 2), (2, 4), (3, 6), (7, 8)]


def test_truncate_across_segments_and_reopen(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=ONE * 2, index_interval_bytes=1)
    for i in range(10):
        log.append(batch(2, tag=i), leader_epoch=0)
    before = everything(log)
    assert len(list(tmp_path.glob("*.log"))) == 5
    assert log.truncate_to(6)  # inside segment [4, 8): later segments deleted
    assert sorted(p.name for p in tmp_path.glob("*.log")) == [f"{b:020d}.log" for b in (0, 4)]
    assert everything(log) == before[: 3 * ONE]
    assert log.offset_for_timestamp(T0 + 10) == (2, T0 + 10)
    assert log.truncate_to(4)  # exactly a segment base
    assert log.log_end_offset == 4
    assert log.append(batch(2, tag=7), leader_epoch=1).base_offset == 4
    log.close()
    log = open_log(tmp_path, segment_bytes=ONE * 2, index_interval_bytes=1)
    assert log.log_end_offset == 6
    data = everything(log)
    assert data[: 2 * ONE] == before[: 2 * ONE]
    assert R.decode_records(data)["offset"] == list(range(6))
    assert log.offset_for_timestamp(T0 + 70) == (4, T0 + 70)
    for i in range(6):  # the cut segment, now active, keeps rolling normally
        log.append(batch(2, tag=20 + i))
    assert log.log_end_offset == 18
    assert R.decode_records(everything(log))["offset"] == list(range(18))


def test_truncation_removes_affected_parquet_files(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=ONE * 2, hot_segments=1)
    for i in range(10):
        log.append(batch(2, tag=i), leader_epoch=i // 3)
    log.convert_sealed_segments()
    parquet = {int(p.name.split(".")[0]) for p in log.parquet_files()}
    raw = {int(p.name.split(".")[0]) for p in tmp_path.glob("*.log")}
    assert parquet == {0, 4, 8, 12} and raw == {12, 16}  # [12, 16) is hot: raw and Parquet
    original = everything(log)
    # Inside the hot segment: its Parquet copy goes (reconverted once sealed again), raw is cut.
    assert log.truncate_to(14)
    assert {int(p.name.split(".")[0]) for p in log.parquet_files()} == {0, 4, 8}
    assert not (tmp_path / f"{12:020d}.parquet").exists()
    assert log.log_end_offset == 14
    # Inside a Parquet-only range (an unclean election can cut below the HW): the file is rewritten.
    assert log.truncate_to(6)
    assert {int(p.name.split(".")[0]) for p in log.parquet_files()} == {0, 4}
    assert pq.read_table(tmp_path / f"{4:020d}.parquet").column("offset").to_pylist() == [4, 5]
    assert sorted(p.name for p in tmp_path.glob("*.log")) == [f"{6:020d}.log"]
    assert log.log_end_offset == 6 and log.epoch_entries() == [(0, 0)]
    assert R.decode_records(everything(log))["offset"] == list(range(6))
    assert R.decode_records(everything(log))["value"] == R.decode_records(original[: 3 * ONE])["value"]
    log.close()
    log = open_log(tmp_path, segment_bytes=ONE * 2, hot_segments=1)
    assert (log.log_start_offset, log.log_end_offset) == (0, 6)
    for i in range(4):
        log.append(batch(2, tag=40 + i), leader_epoch=5)
    log.convert_sealed_segments()
    assert R.decode_records(everything(log))["offset"] == list(range(14))
    # Below the first segment: truncate fully.
    log.delete_records(4)
    log.enforce_retention()
    assert log.truncate_to(2)
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (2, 2, 2)
    assert log.parquet_files() == [] and log.epoch_entries() == []


def test_conversion_racing_a_truncation_is_discarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_follower(tmp_path, segment_bytes=ONE * 2)
    leader = open_log(tmp_path / "leader")
    for i in range(6):
        leader.append(batch(2, tag=i), leader_epoch=0)
    replicate(leader, log)
    real = parquet_log_module.write_segment

    def write_then_truncate(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        if log.log_end_offset > 2:
            log.truncate_to(2)  # happens while the worker converts outside the lock
        return out

    monkeypatch.setattr(parquet_log_module, "write_segment", write_then_truncate)
    assert log.convert_sealed_segments() == []
    assert not list(tmp_path.glob("*.parquet"))
    assert log.log_end_offset == 2


def test_truncate_fully_and_start_at(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "a", segment_bytes=ONE * 2)
    for i in range(6):
        leader.append(batch(2, tag=i), leader_epoch=1)
    leader.delete_records(8)
    leader.enforce_retention()
    stale = open_follower(tmp_path / "b", segment_bytes=ONE * 2)
    stale.append_as_follower(batch_at(0))  # far behind: the leader's log now starts at 8
    stale.high_watermark = 2
    stale.truncate_fully_and_start_at(leader.log_start_offset)
    assert (stale.log_start_offset, stale.log_end_offset, stale.high_watermark) == (8, 8, 8)
    assert stale.epoch_entries() == [] and stale.producer_state() == {}
    assert sorted(p.name for p in (tmp_path / "b").glob("*.log")) == [f"{8:020d}.log"]
    replicate(leader, stale)
    assert everything(stale) == everything(leader)
    stale.close()
    again = open_follower(tmp_path / "b", segment_bytes=ONE * 2)
    assert (again.log_start_offset, again.log_end_offset, again.high_watermark) == (8, 12, 12)
    assert again.epoch_entries() == [(1, 8)]


def batch_at(offset: int, epoch: int = 0) -> bytes:
    """A batch as a leader stored it: offsets assigned, leader epoch stamped."""
    buf = bytearray(batch(2))
    R.assign_offsets(buf, R.validate_produce_batches(buf), offset, epoch)
    return bytes(buf)


# -- high watermark -----------------------------------------------------------------------------------


def test_high_watermark_is_monotonic_restored_and_clamped(tmp_path: Path) -> None:
    log = open_follower(tmp_path)
    for i in range(4):
        log.append_as_follower(batch_at(2 * i))
    log.high_watermark = 6
    with pytest.raises(ValueError):
        log.high_watermark = 4  # only truncation moves it back
    with pytest.raises(ValueError):
        log.high_watermark = 9  # beyond the LEO
    assert not log.maybe_update_high_watermark(3)  # a lagging leader HW is ignored
    assert log.high_watermark == 6
    assert log.maybe_update_high_watermark(100)  # clamped to the LEO
    assert log.high_watermark == 8
    log.close()
    log = open_follower(tmp_path)
    assert log.high_watermark == 8
    log.truncate_to(4)
    assert log.high_watermark == 4
    log.append_as_follower(batch_at(4))
    log.flush()
    log.close()
    assert open_follower(tmp_path).high_watermark == 4
    # A torn tail below the checkpointed HW: the restored HW is clamped to the LEO.
    log = open_follower(tmp_path)
    log.high_watermark = 6
    log.close()
    with open(tmp_path / f"{0:020d}.log", "r+b") as f:
        f.truncate(os.path.getsize(f.name) - 5)
    log = open_follower(tmp_path)
    assert log.log_end_offset == 4 and log.high_watermark == 4


def test_set_hw_tracks_leo(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch(), leader_epoch=0)
    assert log.hw_tracks_leo and log.high_watermark == 2
    log.set_hw_tracks_leo(False)  # the partition became replicated: HW frozen at the LEO
    log.set_hw_tracks_leo(False)
    log.append(batch(), leader_epoch=0)
    assert (log.high_watermark, log.log_end_offset) == (2, 4)
    assert log.read(2, 1 << 20) == b""
    log.close()
    assert open_follower(tmp_path).high_watermark == 2
    log = open_follower(tmp_path)
    log.set_hw_tracks_leo(True)  # back to a single replica
    assert log.high_watermark == 4


def test_follower_converts_only_below_the_high_watermark_it_was_told(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "a", segment_bytes=ONE * 2)
    for i in range(10):
        leader.append(batch(2, tag=i), leader_epoch=0)
    follower = open_follower(tmp_path / "b", segment_bytes=ONE * 2, hot_segments=0)
    follower.append_as_follower(leader.read(0, 1 << 30, upper_bound=leader.log_end_offset))
    while follower.log_end_offset < leader.log_end_offset:
        follower.append_as_follower(leader.read(follower.log_end_offset, 1 << 30, upper_bound=leader.log_end_offset))
    assert follower.convert_sealed_segments() == []  # HW 0: nothing is committed yet
    follower.high_watermark = 9
    written = follower.convert_sealed_segments()
    assert [int(p.name.split(".")[0]) for p in written] == [0, 4]  # [0,4), [4,8): below 9; [8,12) is not
    follower.maybe_update_high_watermark(leader.high_watermark)
    written = follower.convert_sealed_segments()
    assert [int(p.name.split(".")[0]) for p in written] == [8, 12]
    assert R.decode_records(everything(follower))["offset"] == list(range(20))


# -- producer state ---------------------------------------------------------------------------------


def test_truncated_batch_can_be_retried(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=ONE * 3)
    for i in range(4):
        log.append(batch(2, pid=3, epoch=0, seq=2 * i), leader_epoch=0)
    retry = batch(2, pid=3, epoch=0, seq=6)
    assert log.append(retry, leader_epoch=0).duplicate  # still in the log: a duplicate
    log.truncate_to(6)  # the batch with sequences 6-7 is gone
    assert log.producer_state() == {3: (0, 5, 5)}
    info = log.append(retry, leader_epoch=1)
    assert not info.duplicate and (info.base_offset, info.last_offset) == (6, 7)
    with pytest.raises(KafkaProtocolError) as e:
        log.append(batch(2, pid=3, epoch=0, seq=10), leader_epoch=1)
    assert e.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    # Truncating every batch of a producer forgets it; across a segment boundary too.
    log.append(batch(1, pid=4, epoch=2, seq=0), leader_epoch=1)
    log.truncate_to(2)
    assert log.producer_state() == {3: (0, 1, 1)}
    log.close()
    log = open_log(tmp_path, segment_bytes=ONE * 3)
    assert log.producer_state() == {3: (0, 1, 1)}
    assert log.append(batch(2, pid=3, epoch=0, seq=2), leader_epoch=1).base_offset == 2


class _Crash(BaseException):
    """The process dies here (not an error the log could handle)."""


def test_a_crash_inside_truncate_fully_never_leaves_a_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whichever file deletion the crash interrupts, the reopened log is contiguous.

    Parquet files go before raw segments: a crash between leaves the old raw tail (its start
    rises to the first raw segment), never an empty segment at the new offset above old
    Parquet files with missing offsets between them.
    """
    real_unlink = Path.unlink
    crash_at, crashed = 0, True
    while crashed:  # every file deletion truncate_fully makes, in turn
        crash_at += 1
        d = tmp_path / f"crash-{crash_at}"
        log = open_follower(d, segment_bytes=ONE * 2, hot_segments=1)
        for i in range(8):
            log.append_as_follower(batch_at(2 * i))
        log.high_watermark = 16
        log.convert_sealed_segments()
        assert log.parquet_files() and len(list(d.glob("*.log"))) >= 2
        calls = [0]

        def unlink(self: Path, missing_ok: bool = False, *, _at: int = crash_at, calls: list[int] = calls) -> None:
            calls[0] += 1
            if calls[0] == _at:
                raise _Crash
            real_unlink(self, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", unlink)
        try:
            log.truncate_fully_and_start_at(100)
            crashed = False
        except _Crash:
            pass
        monkeypatch.setattr(Path, "unlink", real_unlink)
        caplog.clear()
        again = open_follower(d, segment_bytes=ONE * 2, hot_segments=1)
        assert "are missing" not in caplog.text, (crash_at, caplog.text)
        offsets = R.decode_records(everything(again))["offset"]
        assert offsets == list(range(again.log_start_offset, again.log_end_offset)), crash_at
        again.close()
    assert crash_at > 6  # Parquet files and raw segments were both interrupted


def test_a_crash_inside_truncate_to_never_leaves_a_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A follower cut back below its raw segments (only Parquet holds the cut), crashing at each
    file deletion in turn: the reopened log is contiguous and no Parquet file reaches past its end.

    Raw segments go first, then Parquet files newest first (what is left is always a prefix), and
    the new empty segment at the cut last; a crash before that reopens with the log ending where
    the Parquet files end (the truncation undone; the next fetch redoes it).
    """
    real_unlink = Path.unlink
    crash_at, crashed = 0, True
    while crashed:
        crash_at += 1
        d = tmp_path / f"crash-{crash_at}"
        log = open_follower(d, segment_bytes=ONE * 2, hot_segments=0)
        for i in range(8):
            log.append_as_follower(batch_at(2 * i))
        log.high_watermark = 16
        log.convert_sealed_segments()
        assert [p.name for p in log.parquet_files()] == [f"{b:020d}.parquet" for b in (0, 4, 8)]
        assert [p.name for p in d.glob("*.log")] == [f"{12:020d}.log"]
        calls = [0]

        def unlink(self: Path, missing_ok: bool = False, *, _at: int = crash_at, calls: list[int] = calls) -> None:
            calls[0] += 1
            if calls[0] == _at:
                raise _Crash
            real_unlink(self, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", unlink)
        try:
            log.truncate_to(6)  # inside the Parquet file [4, 8): it is rewritten to [4, 6)
            crashed = False
        except _Crash:
            pass
        monkeypatch.setattr(Path, "unlink", real_unlink)
        caplog.clear()
        again = open_follower(d, segment_bytes=ONE * 2, hot_segments=0)
        assert "are missing" not in caplog.text, (crash_at, caplog.text)
        offsets = R.decode_records(everything(again))["offset"]
        assert offsets == list(range(again.log_start_offset, again.log_end_offset)), crash_at
        ends = [pq.read_metadata(p).metadata[b"workbench.next_offset"] for p in again.parquet_files()]
        assert all(int(e) <= again.log_end_offset for e in ends), (crash_at, ends, again.log_end_offset)
        again.close()
    assert crash_at > 3  # the raw segment's files and the Parquet files were both interrupted
