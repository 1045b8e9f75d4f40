"""The share-partition state machine (KIP-932, workbench/broker/share_partition.py) and the share assignor."""

from __future__ import annotations

from workbench.broker.share_group_coordinator import assign
from workbench.broker.share_partition import AcknowledgeType as Ack
from workbench.broker.share_partition import RecordState, SharePartition
from workbench.protocol.errors import ErrorCode


def test_two_members_acquire_distinct_records_and_accept_moves_the_start_offset():
    sp = SharePartition(0, lock_duration_ms=1000)
    assert sp.acquire("a", available_end=10, max_records=4, now_ms=0) == [(0, 3, 1)]
    assert sp.acquire("b", available_end=10, max_records=4, now_ms=0) == [(4, 7, 1)]
    assert sp.acknowledge("b", [(4, 7, [Ack.ACCEPT])], now_ms=1) == ErrorCode.NONE
    assert sp.start_offset == 0  # 0-3 still acquired by a
    assert sp.acknowledge("a", [(0, 3, [Ack.ACCEPT])], now_ms=1) == ErrorCode.NONE
    assert sp.start_offset == 8 and sp.records == {}


def test_a_record_acquired_by_another_member_cannot_be_acknowledged():
    sp = SharePartition(0)
    sp.acquire("a", 5, 5, 0)
    assert sp.acknowledge("b", [(0, 0, [Ack.ACCEPT])], 1) == ErrorCode.INVALID_RECORD_STATE
    assert sp.records[0].state == RecordState.ACQUIRED


def test_release_and_reject_per_offset_redeliver_with_a_higher_delivery_count():
    sp = SharePartition(0)
    sp.acquire("a", 3, 10, 0)
    assert sp.acknowledge("a", [(0, 2, [Ack.ACCEPT, Ack.RELEASE, Ack.REJECT])], 1) == ErrorCode.NONE
    assert sp.records[1].state == RecordState.AVAILABLE and sp.records[2].state == RecordState.ARCHIVED
    assert sp.start_offset == 1
    assert sp.acquire("b", 3, 10, 2) == [(1, 1, 2)]  # only the released one, second delivery


def test_past_the_delivery_count_limit_a_record_is_archived():
    sp = SharePartition(0, delivery_count_limit=3)
    for delivery in range(1, 4):
        assert sp.acquire("a", 1, 10, delivery) == [(0, 0, delivery)]
        sp.acknowledge("a", [(0, 0, [Ack.RELEASE])], delivery)
    assert sp.acquire("a", 1, 10, 10) == []
    assert sp.start_offset == 1  # archived, so the start offset moved past it


def test_an_expired_lock_makes_the_record_available_to_another_member():
    sp = SharePartition(0, lock_duration_ms=100)
    sp.acquire("a", 2, 10, now_ms=0)
    assert sp.acquire("b", 2, 10, now_ms=99) == []
    assert sp.acquire("b", 2, 10, now_ms=100) == [(0, 1, 2)]
    assert sp.acknowledge("a", [(0, 1, [Ack.ACCEPT])], 101) == ErrorCode.INVALID_RECORD_STATE


def test_renew_extends_the_lock():
    sp = SharePartition(0, lock_duration_ms=100)
    sp.acquire("a", 1, 10, 0)
    assert sp.acknowledge("a", [(0, 0, [Ack.RENEW])], 90) == ErrorCode.NONE
    assert sp.acquire("b", 1, 10, 150) == []
    assert sp.acquire("b", 1, 10, 190) == [(0, 0, 2)]


def test_a_member_leaving_releases_what_it_holds():
    sp = SharePartition(0)
    sp.acquire("a", 3, 10, 0)
    assert sp.release_member("a") == 3
    assert sp.acquire("b", 3, 10, 1) == [(0, 2, 2)]


def test_snapshot_and_restore_keep_start_offset_states_and_delivery_counts_but_not_locks():
    sp = SharePartition(5)
    sp.acquire("a", 10, 10, 0)
    sp.acknowledge("a", [(5, 9, [Ack.RELEASE, Ack.ACCEPT, Ack.REJECT, Ack.ACCEPT, Ack.ACCEPT])], 1)
    snap = sp.snapshot()
    other = SharePartition(0)
    other.restore(snap)
    assert other.start_offset == 5 and other.next_offset == 10
    assert other.records[5].state == RecordState.AVAILABLE and other.records[5].delivery_count == 1
    assert other.records[7].state == RecordState.ARCHIVED
    assert other.acquire("b", 10, 10, 2) == [(5, 5, 2)]


def test_log_start_moving_past_the_start_offset_drops_those_records():
    sp = SharePartition(0)
    sp.acquire("a", 5, 10, 0)
    assert sp.acquire("b", 8, 10, 1, log_start=3) == [(5, 7, 1)]
    assert sp.start_offset == 3 and min(sp.records) == 3


def test_malformed_acknowledgements_are_invalid_requests_and_change_nothing():
    sp = SharePartition(0)
    sp.acquire("a", 3, 10, 0)
    assert sp.acknowledge("a", [(0, 2, [Ack.ACCEPT, Ack.ACCEPT])], 1) == ErrorCode.INVALID_REQUEST
    assert sp.acknowledge("a", [(0, 0, [9])], 1) == ErrorCode.INVALID_REQUEST
    assert all(r.state == RecordState.ACQUIRED for r in sp.records.values())


def test_share_assignor_gives_every_partition_a_member_and_every_member_a_partition():
    assert assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 1}) == {"a": {"t": [0]}, "b": {"t": [0]}, "c": {"t": [0]}}
    assert assign({"a": ["t"], "b": ["t"]}, {"t": 4}) == {"a": {"t": [0, 2]}, "b": {"t": [1, 3]}}
    assert assign({"a": ["t"], "b": ["u"]}, {"t": 1}) == {"a": {"t": [0]}, "b": {}}


def test_archived_aborted_records_are_done_and_move_the_start_offset():
    """read_committed: the leader archives the acquired records of an aborted transaction."""
    sp = SharePartition(0)
    assert sp.acquire("a", 5, 5, 0) == [(0, 4, 1)]
    sp.archive_acquired([0, 1, 2])
    assert sp.start_offset == 3 and sp.acknowledge("a", [(0, 0, [Ack.ACCEPT])], 1) == ErrorCode.INVALID_RECORD_STATE
    assert sp.acknowledge("a", [(3, 4, [Ack.RELEASE])], 1) == ErrorCode.NONE
    sp.archive_acquired([3])  # only acquired records are archived: a released one stays available
    assert sp.acquire("b", 5, 5, 2) == [(3, 4, 2)]
