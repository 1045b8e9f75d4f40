"""The checker, on hand-made histories: each anomaly kind is caught, and a clean history passes."""

from __future__ import annotations

import pytest

from tests.chaos.checker import check
from tests.chaos.history import FAILED, OK, OK_NO_OFFSET, UNKNOWN, History


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
