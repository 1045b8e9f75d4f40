"""The checker, on hand-made histories: each anomaly kind is caught, and a clean history passes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.chaos.checker import check
from tests.chaos.history import ABORTED, COMMITTED, FAILED, OK, OK_NO_OFFSET, UNKNOWN, History


def clean_history(n: int = 5) -> History:
    """Producer p0 writes v0..v{n-1} to partition 0 at offsets 0..n-1; a consumer and the final read
    see them all."""
    h = History()
    for i in range(n):
        h.send(producer="p0", seq=i, value=f"v{i}", partition=0, outcome=OK, offset=i)
    for i in range(n):
        h.poll(reader="c0", session=0, mode="assign", partition=0, offset=i, value=f"v{i}")
    for i in range(n):
        h.poll(reader="final", session=0, mode="final", partition=0, offset=i, value=f"v{i}")
    h.final_read_complete[0] = True
    return h


def kinds(h: History) -> set[str]:
    return {k for k, n in check(h).counts.items() if n}


def test_clean_history_is_valid():
    report = check(clean_history())
    assert report.valid, report.anomalies
    assert report.stats["sends"][OK] == 5


def test_lost_write_acknowledged_but_absent_from_a_complete_final_read():
    h = clean_history()
    h.polls = [p for p in h.polls if not (p.mode == "final" and p.value == "v4")]
    report = check(h)
    assert report.counts["lost_write"] == 1
    assert "v4" in report.anomalies["lost_write"][0]


def test_lost_write_acknowledged_without_an_offset():
    h = clean_history()
    h.send(producer="p0", seq=5, value="v5", partition=0, outcome=OK_NO_OFFSET)
    assert kinds(h) == {"lost_write"}


def test_read_earlier_but_gone_at_the_end_is_lost():
    h = clean_history()
    h.polls = [p for p in h.polls if not (p.mode == "final" and p.offset >= 3)]
    report = check(h)
    assert report.counts["lost_write"] == 2
    assert "gone at the end" in report.anomalies["lost_write"][0]


def test_unseen_when_the_final_read_did_not_finish():
    h = clean_history()
    h.final_read_complete[0] = False
    h.polls = [p for p in h.polls if p.value != "v4"]
    assert kinds(h) == {"unseen"}


def test_unacknowledged_values_are_not_lost():
    h = clean_history()
    h.send(producer="p0", seq=5, value="v5", partition=0, outcome=UNKNOWN, error="_MSG_TIMED_OUT")
    h.send(producer="p0", seq=6, value="v6", partition=0, outcome=FAILED, error="_PURGE_QUEUE")
    assert check(h).valid


def test_duplicate_one_value_at_two_offsets():
    h = clean_history()
    h.poll(reader="final", session=0, mode="final", partition=0, offset=5, value="v2")
    report = check(h)
    assert report.counts["duplicate"] == 1
    assert "v2" in report.anomalies["duplicate"][0]


def test_group_redelivery_of_the_same_offset_is_not_a_duplicate():
    h = clean_history()
    for _ in range(2):
        for i in range(5):
            h.poll(reader="g0", session=0, mode="group", partition=0, offset=i, value=f"v{i}")
    assert check(h).valid


def test_inconsistent_offset_two_values_at_one_offset():
    h = clean_history()
    h.poll(reader="c1", session=0, mode="group", partition=0, offset=2, value="other")
    assert "inconsistent_offset" in kinds(h)


def test_inconsistent_offset_acknowledged_offset_holds_another_value():
    h = History()
    h.send(producer="p0", seq=0, value="a", partition=0, outcome=OK, offset=0)
    h.send(producer="p0", seq=1, value="b", partition=0, outcome=OK, offset=0)  # told 0, stored at 1
    h.poll(reader="final", session=0, mode="final", partition=0, offset=0, value="a")
    h.poll(reader="final", session=0, mode="final", partition=0, offset=1, value="b")
    h.final_read_complete[0] = True
    report = check(h)
    assert set(report.counts) >= {"inconsistent_offset"}
    assert any("holds" in e for e in report.anomalies["inconsistent_offset"])


def test_value_read_in_another_partition():
    h = clean_history()
    h.send(producer="p0", seq=5, value="x", partition=1, outcome=UNKNOWN)
    h.poll(reader="final", session=0, mode="final", partition=0, offset=5, value="x")
    assert kinds(h) == {"inconsistent_offset"}


def test_nonmonotonic_poll_under_assign():
    h = clean_history()
    h.poll(reader="c0", session=0, mode="assign", partition=0, offset=1, value="v1")
    assert kinds(h) == {"nonmonotonic_poll"}


def test_a_new_session_may_start_over():
    h = clean_history()
    for i in range(5):
        h.poll(reader="c0", session=1, mode="assign", partition=0, offset=i, value=f"v{i}")
    assert check(h).valid


def test_poll_skip_a_hole_under_assign():
    h = clean_history()
    h.polls = [p for p in h.polls if not (p.reader == "c0" and p.offset == 2)]
    assert kinds(h) == {"poll_skip"}


def test_final_read_must_begin_at_the_log_start():
    h = clean_history()
    h.polls = [p for p in h.polls if not (p.mode == "final" and p.offset == 0)]
    assert kinds(h) == {"poll_skip", "lost_write"}


def test_nonmonotonic_send_order():
    h = History()
    h.send(producer="p0", seq=0, value="a", partition=0, outcome=OK, offset=1)
    h.send(producer="p0", seq=1, value="b", partition=0, outcome=OK, offset=0)
    for o, v in ((0, "b"), (1, "a")):
        h.poll(reader="final", session=0, mode="final", partition=0, offset=o, value=v)
    h.final_read_complete[0] = True
    assert kinds(h) == {"nonmonotonic_send"}


@pytest.mark.parametrize("kind", ["broker_crash", "hostile_accepted", "lost_topic"])
def test_observations_are_anomalies(kind):
    h = clean_history()
    h.observe(kind, "broker 2")
    assert kinds(h) == {kind}


def test_extra_checks_hook_for_transactional_anomalies():
    h = clean_history()
    report = check(h, extra_checks=[lambda _h: {"aborted_read": ["v1 from an aborted transaction"]}])
    assert report.counts == {"aborted_read": 1}


def test_history_round_trips_through_json():
    h = clean_history()
    h.observe("broker_crash", "b1")
    again = History.from_json(h.to_json())
    assert check(again).counts == check(h).counts


# -- the txn workload's checks (checker.check_transactions) ------------------------------------


def txn_history() -> History:
    """tp0 commits t0 (a, b to p0; c to p1), aborts t1 (d to p0), commits t2 (e to p0); a reader
    and the final read see exactly the committed records, in order, after each commit was asked."""
    h = History()
    h.txn(producer="tp0", txn=0, values=[("a", 0), ("b", 0), ("c", 1)], outcome=COMMITTED, commit_asked=0.0)
    h.txn(producer="tp0", txn=1, values=[("d", 0)], outcome=ABORTED)
    h.txn(producer="tp0", txn=2, values=[("e", 0)], outcome=COMMITTED, commit_asked=0.0)
    # offsets: a@0 b@1 marker@2 d@3 marker@4 e@5 (gaps are normal); c@0 in p1
    for reader, mode in (("ta0", "assign"), ("final", "final")):
        for value, partition, offset in (("a", 0, 0), ("b", 0, 1), ("e", 0, 5), ("c", 1, 0)):
            h.txn_poll(reader=reader, session=0, mode=mode, partition=partition, offset=offset, value=value)
    h.txn_final_read_complete = {0: True, 1: True}
    return h


def txn_kinds(h: History) -> set[str]:
    return {k for k, n in check(h).counts.items() if n}


def test_clean_transactional_history_is_valid_despite_marker_gaps():
    report = check(txn_history())
    assert report.valid, report.anomalies
    assert report.stats["txns"] == {COMMITTED: 2, ABORTED: 1, UNKNOWN: 0}
    assert report.stats["txn_records_committed"] == 4


def test_a_record_of_an_aborted_transaction_read():
    h = txn_history()
    h.txn_poll(reader="ta0", session=1, mode="assign", partition=0, offset=3, value="d")
    report = check(h)
    assert txn_kinds(h) == {"txn_aborted_read"}
    assert "tp0/t1" in report.anomalies["txn_aborted_read"][0]


def test_a_record_read_before_its_commit_was_asked_for():
    h = txn_history()
    h.txns[2] = dataclasses.replace(h.txns[2], commit_asked=h.txn_polls[-1].time + 10)
    assert "txn_uncommitted_read" in txn_kinds(h)


def test_a_committed_record_missing_from_a_complete_final_read():
    h = txn_history()
    h.txn_polls = [p for p in h.txn_polls if not (p.mode == "final" and p.value == "b")]
    assert txn_kinds(h) == {"txn_lost_commit"}
    h.txn_final_read_complete[0] = False
    assert txn_kinds(h) == set()  # read by ta0 earlier: not lost, not unseen (the end was not reached)
    h.txn_polls = [p for p in h.txn_polls if p.value != "b"]
    assert txn_kinds(h) == {"txn_unseen"}


def test_an_unknown_transaction_partly_visible_is_torn():
    h = txn_history()
    h.txn(producer="tp0", txn=3, values=[("f", 0), ("g", 1)], outcome=UNKNOWN, commit_asked=0.0, error="_FATAL")
    h.txn_poll(reader="final", session=0, mode="final", partition=0, offset=6, value="f")
    assert txn_kinds(h) == {"txn_torn"}
    h.txn_poll(reader="final", session=0, mode="final", partition=1, offset=1, value="g")
    assert txn_kinds(h) == set()  # all of it: committed after all


def test_a_record_twice_and_two_records_at_one_offset():
    h = txn_history()
    h.txn_poll(reader="ta1", session=0, mode="assign", partition=0, offset=7, value="a")
    assert "txn_duplicate" in txn_kinds(h)
    h = txn_history()
    h.txn_poll(reader="ta1", session=0, mode="assign", partition=0, offset=1, value="e")
    assert "txn_inconsistent_offset" in txn_kinds(h)


def test_records_out_of_send_order_and_offsets_going_back():
    h = txn_history()
    # e (t2) read before b (t0) by a reader at increasing offsets: the log holds them out of order.
    h.txn_polls = [p for p in h.txn_polls if p.reader != "ta0"]
    for value, offset in (("a", 0), ("e", 1), ("b", 5)):
        h.txn_poll(reader="ta0", session=0, mode="assign", partition=0, offset=offset, value=value)
    kinds_found = txn_kinds(h)
    assert "txn_out_of_order" in kinds_found
    h = txn_history()
    h.txn_poll(reader="ta0", session=0, mode="assign", partition=0, offset=1, value="b")
    assert "txn_nonmonotonic_poll" in txn_kinds(h)


def test_transactional_history_round_trips_through_json():
    h = txn_history()
    again = History.from_json(json.loads(json.dumps(h.to_json())))
    assert again.txns == h.txns
    assert again.txn_polls == h.txn_polls
    assert again.txn_final_read_complete == h.txn_final_read_complete
