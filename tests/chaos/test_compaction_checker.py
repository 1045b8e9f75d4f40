"""The compacted-topic checker on hand-made histories: a compacted read passes, each broken promise is caught."""

from __future__ import annotations

from tests.chaos.compaction import TOMBSTONE, KeyedRead, KeyedSend, check_compaction
from tests.chaos.history import OK, UNKNOWN

SENDS = [
    KeyedSend("a", "a-v0", 0, OK, 0, 1.0),
    KeyedSend("b", "b-v1", 0, OK, 1, 2.0),
    KeyedSend("a", "a-v2", 0, OK, 2, 3.0),
    KeyedSend("b", TOMBSTONE, 0, OK, 3, 4.0),
    KeyedSend("c", "c-v4", 0, OK, 4, 5.0),
]


def test_a_compacted_read_is_valid_with_or_without_the_expired_tombstone():
    compacted = [KeyedRead(0, 2, "a", "a-v2"), KeyedRead(0, 3, "b", TOMBSTONE), KeyedRead(0, 4, "c", "c-v4")]
    assert check_compaction(SENDS, compacted, {0: True}) == {}
    tombstone_gone = [r for r in compacted if r.key != "b"]
    assert check_compaction(SENDS, tombstone_gone, {0: True}) == {}
    uncompacted = [KeyedRead(0, i, s.key, s.value) for i, s in enumerate(SENDS)]
    assert check_compaction(SENDS, uncompacted, {0: True}) == {}


def test_a_lost_latest_value_is_caught():
    reads = [KeyedRead(0, 0, "a", "a-v0"), KeyedRead(0, 3, "b", TOMBSTONE), KeyedRead(0, 4, "c", "c-v4")]
    found = check_compaction(SENDS, reads, {0: True})
    assert list(found) == ["lost_latest_value"] and "a=a-v2" in found["lost_latest_value"][0]
    assert check_compaction(SENDS, reads, {0: False}) == {}  # an incomplete read judges nothing


def test_a_key_resurrected_after_its_tombstone_is_caught():
    reads = [KeyedRead(0, 1, "b", "b-v1"), KeyedRead(0, 2, "a", "a-v2"), KeyedRead(0, 4, "c", "c-v4")]
    found = check_compaction(SENDS, reads, {0: True})
    assert list(found) == ["resurrected_key"] and "b deleted" in found["resurrected_key"][0]


def test_another_value_at_an_acknowledged_offset_and_disorder_are_caught():
    reads = [KeyedRead(0, 2, "a", "a-v9"), KeyedRead(0, 4, "c", "c-v4"), KeyedRead(0, 3, "b", TOMBSTONE)]
    found = check_compaction(SENDS, reads, {0: True})
    assert set(found) == {"compacted_offset_mismatch", "compacted_nonmonotonic"}


def test_a_later_unacknowledged_delete_explains_an_absent_key():
    sends = [*SENDS, KeyedSend("c", TOMBSTONE, 0, UNKNOWN, None, 6.0)]
    reads = [KeyedRead(0, 2, "a", "a-v2"), KeyedRead(0, 3, "b", TOMBSTONE)]
    assert check_compaction(sends, reads, {0: True}) == {}
    assert "lost_latest_value" in check_compaction(SENDS, reads, {0: True})
