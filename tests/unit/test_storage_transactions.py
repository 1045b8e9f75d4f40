"""A partition log that knows transactions: open ones, the last stable offset, aborted ones,
markers fencing old epochs, and all of it across restarts, follower appends and truncation."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.protocol.control_records import ABORT, COMMIT, build_control_batch, control_record_type
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.records import iter_batch_headers
from workbench.storage import LogConfig, PartitionLog, UnexpectedAppendOffsetError


def txn_batch(n: int, pid: int, epoch: int, seq: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 1, pid, epoch, seq, 1 << 30)
    for i in range(n):
        b.append(i, 1000 + i, None, b"t%d" % i, [])
    return bytes(b.build())


def plain_batch(n: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(n):
        b.append(i, 1000 + i, None, b"p%d" % i, [])
    return bytes(b.build())


def marker(pid: int, epoch: int, commit: bool) -> bytes:
    return build_control_batch(pid, epoch, commit=commit, coordinator_epoch=0, timestamp_ms=2000)


def test_control_batch_round_trip() -> None:
    data = marker(5, 2, True)
    [h] = list(iter_batch_headers(data))
    assert h.is_control and h.is_transactional and (h.producer_id, h.producer_epoch) == (5, 2)
    assert control_record_type(data) == COMMIT
    assert control_record_type(marker(5, 2, False)) == ABORT


def test_clients_may_not_write_markers(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    with pytest.raises(KafkaProtocolError) as e:
        log.append(marker(1, 0, True))
    assert e.value.code == ErrorCode.INVALID_RECORD
    assert log.append(marker(1, 0, True), origin="coordinator").base_offset == 0


def test_lso_stops_at_open_transaction_and_moves_at_its_marker(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    log.append(plain_batch(2))  # 0-1
    log.append(txn_batch(3, 7, 0, 0))  # 2-4, open
    log.append(plain_batch(1))  # 5
    assert log.high_watermark == 6
    assert log.last_stable_offset == 2
    log.append(marker(7, 0, True), origin="coordinator")  # 6
    assert log.last_stable_offset == 7 == log.high_watermark
    assert log.aborted_transactions(0, 7) == []


def test_aborted_transactions_are_listed_for_the_range_they_overlap(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    log.append(txn_batch(3, 7, 0, 0))  # 0-2
    log.append(txn_batch(2, 8, 0, 0))  # 3-4
    log.append(marker(7, 0, False), origin="coordinator")  # 5: abort of 7
    assert log.last_stable_offset == 3  # 8 is still open
    log.append(marker(8, 0, True), origin="coordinator")  # 6: commit of 8
    assert log.last_stable_offset == 7
    assert log.aborted_transactions(0, 7) == [(7, 0)]
    assert log.aborted_transactions(6, 7) == []  # the abort marker is below the fetch offset


def test_marker_with_newer_epoch_fences_the_old_producer(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    log.append(txn_batch(1, 7, 0, 0))
    log.append(marker(7, 1, False), origin="coordinator")  # coordinator aborted with a bumped epoch
    with pytest.raises(KafkaProtocolError) as e:
        log.append(txn_batch(1, 7, 0, 1))  # the zombie
    assert e.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
    with pytest.raises(KafkaProtocolError) as e:
        log.append(marker(7, 0, True), origin="coordinator")  # an old coordinator's marker
    assert e.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
    assert log.append(txn_batch(1, 7, 1, 0)).base_offset == 2  # the new incarnation


def test_transaction_state_survives_restart(tmp_path: Path) -> None:
    cfg = LogConfig(segment_bytes=200)  # several segments: snapshots at rolls
    log = PartitionLog(tmp_path, cfg)
    log.append(txn_batch(2, 7, 0, 0))
    log.append(marker(7, 0, False), origin="coordinator")
    for _ in range(3):
        log.append(plain_batch(2))
    log.append(txn_batch(2, 9, 0, 0))  # still open at the "crash"
    lso, aborted = log.last_stable_offset, log.aborted_transactions(0, log.log_end_offset)
    log.close()
    again = PartitionLog(tmp_path, cfg)
    assert again.last_stable_offset == lso
    assert again.aborted_transactions(0, again.log_end_offset) == aborted == [(7, 0)]
    again.append(marker(9, 0, True), origin="coordinator")
    assert again.last_stable_offset == again.log_end_offset


def test_state_rebuilt_without_snapshot_or_index(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    log.append(txn_batch(2, 7, 0, 0))
    log.append(marker(7, 0, False), origin="coordinator")
    log.append(txn_batch(2, 9, 0, 0))
    log.close()
    (tmp_path / "producer-state.json").unlink()
    (tmp_path / "aborted-transactions.txnindex").unlink()
    again = PartitionLog(tmp_path, LogConfig())
    assert again.aborted_transactions(0, 10) == [(7, 0)]
    assert again.last_stable_offset == 3


def test_follower_append_and_truncation(tmp_path: Path) -> None:
    leader = PartitionLog(tmp_path / "l", LogConfig())
    leader.append(txn_batch(2, 7, 0, 0))  # 0-1
    leader.append(marker(7, 0, False), origin="coordinator")  # 2
    leader.append(txn_batch(2, 9, 0, 0))  # 3-4
    leader.append(marker(9, 0, True), origin="coordinator")  # 5
    data = bytes(leader.read(0, 1 << 20, upper_bound=leader.log_end_offset))
    follower = PartitionLog(tmp_path / "f", LogConfig(), hw_tracks_leo=False)
    follower.append_as_follower(data)
    follower.high_watermark = 6
    assert follower.aborted_transactions(0, 6) == [(7, 0)]
    assert follower.last_stable_offset == 6
    follower.truncate_to(5)  # the commit marker of 9 goes: its transaction is open again
    assert follower.last_stable_offset == 3
    follower.truncate_to(2)  # the abort marker goes too
    assert follower.aborted_transactions(0, 6) == []
    assert follower.last_stable_offset == 0


def test_unreplicated_marker_holds_lso_until_the_high_watermark_passes_it(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig(), hw_tracks_leo=False)
    log.append(txn_batch(2, 7, 0, 0))  # 0-1
    log.append(marker(7, 0, True), origin="coordinator")  # 2
    log.high_watermark = 2
    assert log.last_stable_offset == 0
    log.high_watermark = 3
    assert log.last_stable_offset == 3


def test_parquet_tier_holds_only_committed_records(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    log = PartitionLog(tmp_path, LogConfig(segment_bytes=150, hot_segments=0))
    log.append(txn_batch(2, 7, 0, 0))  # aborted below
    log.append(txn_batch(2, 8, 0, 0))  # committed below
    log.append(marker(7, 0, False), origin="coordinator")
    log.append(marker(8, 0, True), origin="coordinator")
    log.append(txn_batch(2, 9, 0, 0))  # open: its segment must wait
    log.append(plain_batch(1))
    log.append(plain_batch(1))
    log.convert_sealed_segments()
    rows = [v for f in log.parquet_files() for v in pq.read_table(f).column("value").to_pylist()]
    assert rows and all(v.startswith(b"t") for v in rows)
    producers = {p for f in log.parquet_files() for p in pq.read_table(f).column("producer_id").to_pylist()}
    assert 7 not in producers and 8 in producers
    converted_up_to = max(int(f.stem) for f in log.parquet_files())
    assert converted_up_to < log.last_stable_offset <= 6  # nothing at or past the open transaction


def test_log_cleaner_never_lets_an_aborted_record_supersede_a_committed_one(tmp_path: Path) -> None:
    from workbench.protocol import records as R
    from workbench.storage.log_cleaner import LogCleaner

    def keyed(pid: int, key: bytes, value: bytes, transactional: bool) -> bytes:
        b = DefaultRecordBatchBuilder(
            2, 0, int(transactional), pid, 0 if pid >= 0 else -1, 0 if pid >= 0 else -1, 1 << 30
        )
        b.append(0, 1000, key, value, [])
        return bytes(b.build())

    cfg = LogConfig(segment_bytes=90, cleanup_policy="compact", min_cleanable_dirty_ratio=0.0)
    log = PartitionLog(tmp_path, cfg)
    log.append(keyed(-1, b"k", b"good", False))  # 0
    log.append(keyed(7, b"k", b"bad", True))  # 1: aborted below
    log.append(marker(7, 0, False), origin="coordinator")  # 2
    log.append(keyed(8, b"k", b"open", True))  # 3: still open: never cleaned
    log.append(plain_batch(1))
    log.convert_sealed_segments()  # the cleaner takes segments once the converter is done with them
    LogCleaner(lambda: [log], io_max_bytes_per_second=0).clean_log(log, force=True)
    values = []
    offset = log.log_start_offset
    while offset < log.last_stable_offset:
        data = bytes(log.read(offset, 1 << 20, upper_bound=log.last_stable_offset))
        if not data:
            break
        cols = R.decode_records(data)
        values += cols["value"]
        offset = max(h.next_offset for h in R.iter_batch_headers(data))
    assert b"good" in values and b"bad" not in values


def test_delete_records_past_an_open_transaction_exposes_none_of_it(tmp_path: Path) -> None:
    log = PartitionLog(tmp_path, LogConfig())
    log.append(txn_batch(3, 7, 0, 0))  # 0-2, open
    log.append(plain_batch(2))  # 3-4
    assert log.delete_records(2) == 2  # past the open transaction's first offset
    assert log.last_stable_offset == 2  # nothing readable: the transaction is still undecided
    assert log.read(2, 1 << 20, upper_bound=log.last_stable_offset) == b""
    log.append(marker(7, 0, False), origin="coordinator")  # 5: aborted
    assert log.last_stable_offset == 6
    assert log.aborted_transactions(2, 6) == [(7, 0)]  # a reader from 2 still drops offset 2


def test_follower_catches_up_through_a_parquet_only_transactional_range(tmp_path: Path) -> None:
    """The Parquet tier leaves out markers and aborted records, so a range only Parquet holds has
    offset gaps; a follower re-fetching it (non-compacted topic) must take it, hole-free where the
    leader has data, and end with the leader's committed records at the leader's offsets."""
    leader = PartitionLog(tmp_path / "l", LogConfig(segment_bytes=150, hot_segments=0))
    leader.append(plain_batch(1))  # 0
    leader.append(txn_batch(2, 7, 0, 0))  # 1-2, aborted at 5
    leader.append(txn_batch(2, 8, 0, 0))  # 3-4, committed at 6
    leader.append(marker(7, 0, False), origin="coordinator")  # 5
    leader.append(marker(8, 0, True), origin="coordinator")  # 6
    leader.append(txn_batch(1, 7, 1, 0))  # 7, aborted at 8: the gap at the end of a file
    leader.append(marker(7, 1, False), origin="coordinator")  # 8
    for _ in range(6):
        leader.append(plain_batch(1))  # 9-14
    leader.convert_sealed_segments()
    raw_start = min(int(p.stem) for p in (tmp_path / "l").glob("*.log"))
    assert raw_start > 9, "the transactional range lives only in Parquet"
    follower = PartitionLog(tmp_path / "f", LogConfig(), hw_tracks_leo=False)
    follower.append_as_follower(bytes(leader.read(0, 1 << 20, upper_bound=leader.log_end_offset)))
    unfilled = bytes(leader.read(follower.log_end_offset, 1 << 20, upper_bound=leader.log_end_offset))
    with pytest.raises(UnexpectedAppendOffsetError):  # a consumer's read: the gaps stay gaps
        follower.append_as_follower(unfilled)
    fetches = 0
    while follower.log_end_offset < leader.log_end_offset:
        end = leader.log_end_offset
        data = bytes(leader.read(follower.log_end_offset, 1 << 20, upper_bound=end, fill_gaps=True))
        assert data
        follower.append_as_follower(data)
        fetches += 1
    assert fetches < 15
    follower.high_watermark = leader.high_watermark
    assert follower.log_end_offset == leader.log_end_offset == 15

    def records(log: PartitionLog) -> list[tuple[int, bytes]]:
        out, offset = [], 0
        while offset < log.log_end_offset:
            data = bytes(log.read(offset, 1 << 20, upper_bound=log.log_end_offset))
            for h in iter_batch_headers(data):
                offset = h.next_offset
            out += [(o, v) for o, v in read_values(data)]
        return out

    mine = records(follower)
    assert mine == records(leader)
    assert [o for o, _v in mine] == [0, 3, 4, *range(9, 15)]  # committed records only, leader's offsets
    assert follower.last_stable_offset == 15  # no transaction left open by the re-encoded range
    assert follower.aborted_transactions(0, 15) == []  # and no producer -1 transaction
    assert follower.epoch_entries() == leader.epoch_entries()
    follower.close()
    reopened = PartitionLog(tmp_path / "f", LogConfig(), hw_tracks_leo=False)
    assert reopened.log_end_offset == 15 and records(reopened) == mine


def read_values(data: bytes) -> list[tuple[int, bytes]]:
    from workbench.protocol.records import decode_records

    cols = decode_records(data)
    return list(zip(cols["offset"], cols["value"], strict=True))


def test_idle_producers_expire_unless_a_transaction_is_open(tmp_path: Path) -> None:
    """producer.id.expiration.ms: a producer whose last batch is that old is forgotten (its next
    batch is taken at any sequence, KIP-360); one with an open transaction here is kept."""
    log = PartitionLog(tmp_path, LogConfig())
    log.append(txn_batch(2, 7, 0, 0))  # 0-1: producer 7, timestamps 1000-1001
    log.append(marker(7, 0, True), origin="coordinator")  # 2, timestamp 2000
    log.append(txn_batch(1, 9, 0, 0))  # 3: producer 9, open
    assert log.remove_expired_producers(10_000, now_ms=11_999) == []  # 7 last wrote at 2000
    assert log.remove_expired_producers(10_000, now_ms=12_000) == [7]
    assert set(log.producers.producers) == {9}
    log.append(txn_batch(1, 7, 0, 5))  # an unknown producer: any sequence
    log.append(marker(7, 0, False), origin="coordinator")
    log.append(marker(9, 0, True), origin="coordinator")
    log.close()
    again = PartitionLog(tmp_path, LogConfig())  # the timestamps survive the snapshot
    assert set(again.producers.producers) == {7, 9}
    assert again.remove_expired_producers(10_000, now_ms=11_999) == []  # both last wrote a marker at 2000
    assert sorted(again.remove_expired_producers(10_000, now_ms=12_000)) == [7, 9]
