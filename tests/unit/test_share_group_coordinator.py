"""Share group membership (KIP-932 ShareGroupHeartbeat, workbench/broker/share_group_coordinator.py)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from workbench.broker.share_group_coordinator import ShareGroupCoordinator
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

TOPICS = {"jobs": SimpleNamespace(id=uuid.uuid4().hex, partitions={0: None, 1: None})}


def beat(c, member, epoch, topics=None, now=0, group="g"):
    body = SimpleNamespace(
        group_id=group, member_id=member, member_epoch=epoch, rack_id=None, subscribed_topic_names=topics
    )
    return c.heartbeat(body, TOPICS, now)


def partitions(resp):
    return sorted(p for tp in resp["assignment"]["topic_partitions"] for p in tp["partitions"])


def test_joining_members_get_every_partition_between_them_and_a_new_epoch():
    c = ShareGroupCoordinator()
    a = beat(c, "a", 0, ["jobs"])
    assert a["member_epoch"] == 1 and partitions(a) == [0, 1]
    b = beat(c, "b", 0, ["jobs"])
    assert b["member_epoch"] == 2 and partitions(b) == [1]
    a2 = beat(c, "a", 1)  # a's next heartbeat learns its smaller assignment and the new epoch
    assert a2["member_epoch"] == 2 and partitions(a2) == [0]
    assert beat(c, "a", 2)["assignment"] is None  # nothing changed: no assignment sent


def test_unknown_members_and_stale_epochs_are_refused():
    c = ShareGroupCoordinator()
    beat(c, "a", 0, ["jobs"])
    with pytest.raises(KafkaProtocolError) as unknown:
        beat(c, "nobody", 3)
    assert unknown.value.code == ErrorCode.UNKNOWN_MEMBER_ID
    with pytest.raises(KafkaProtocolError) as fenced:
        beat(c, "a", 7)
    assert fenced.value.code == ErrorCode.FENCED_MEMBER_EPOCH


def test_leaving_and_expiring_members_give_their_partitions_back():
    c = ShareGroupCoordinator(session_timeout_ms=1000)
    beat(c, "a", 0, ["jobs"], now=0)
    beat(c, "b", 0, ["jobs"], now=0)
    assert beat(c, "a", 1)["member_epoch"] == 2
    assert beat(c, "b", -1)["member_epoch"] == -1
    back = beat(c, "a", 2, now=10)
    assert back["member_epoch"] == 3 and partitions(back) == [0, 1]
    beat(c, "c", 0, ["jobs"], now=500)
    later = beat(c, "c", c.groups["g"].members["c"].member_epoch, now=1200)  # a missed its session
    assert set(c.groups["g"].members) == {"c"} and partitions(later) == [0, 1]
    described = c.describe("g", TOPICS)
    assert described["group_state"] == "Stable" and [m["member_id"] for m in described["members"]] == ["c"]


class _Store:
    """The group's __consumer_offsets partition, as the coordinator sees it: appends in order."""

    def __init__(self) -> None:
        self.log: list[tuple[bytes, bytes | None]] = []

    async def append(self, entries):
        self.log.extend(entries)


def test_membership_is_written_as_kafkas_share_group_records_and_a_new_coordinator_loads_it():
    import asyncio

    from workbench.protocol import kip932

    store = _Store()
    c = ShareGroupCoordinator(store)
    for member, epoch, topics in [("a", 0, ["jobs"]), ("b", 0, ["jobs"]), ("b", -1, None), ("a", 1, None)]:
        beat(c, member, epoch, topics)
        asyncio.run(c.persist("g", TOPICS))
    assert {kip932.decode_share_record_key(k)[0] for k, _ in store.log} == {10, 11, 12, 13, 14}
    tombstoned = {kip932.decode_share_record_key(k) for k, v in store.log if v is None}
    assert tombstoned == {(10, "g", "b"), (13, "g", "b"), (14, "g", "b")}  # b left
    asyncio.run(c.persist("g", TOPICS))
    written = len(store.log)
    beat(c, "a", c.groups["g"].members["a"].member_epoch)  # a steady heartbeat writes nothing
    asyncio.run(c.persist("g", TOPICS))
    assert len(store.log) == written

    moved = ShareGroupCoordinator()
    for key, value in store.log:
        moved.replay(key, value)
    moved.finish_load(TOPICS, now_ms=0)
    old, new = c.groups["g"], moved.groups["g"]
    assert (new.group_epoch, new.assignment_epoch) == (old.group_epoch, old.assignment_epoch) == (3, 3)
    assert list(new.members) == ["a"] and new.members["a"].assignment == {"jobs": [0, 1]}
    assert new.members["a"].member_epoch == 3 and new.members["a"].subscribed == ["jobs"]
    assert beat(moved, "a", 3)["member_epoch"] == 3  # the member carries on with its epoch


def test_deleting_an_empty_group_tombstones_its_records():
    import asyncio

    store = _Store()
    c = ShareGroupCoordinator(store)
    beat(c, "a", 0, ["jobs"])
    asyncio.run(c.persist("g", TOPICS))
    with pytest.raises(KafkaProtocolError) as busy:
        asyncio.run(c.delete_empty_group("g", TOPICS))
    assert busy.value.code == ErrorCode.NON_EMPTY_GROUP
    beat(c, "a", -1)
    asyncio.run(c.persist("g", TOPICS))
    asyncio.run(c.delete_empty_group("g", TOPICS))
    assert "g" not in c.groups and store.log[-1][1] is None
    moved = ShareGroupCoordinator()
    for key, value in store.log:
        moved.replay(key, value)
    moved.finish_load(TOPICS, now_ms=0)
    assert moved.groups == {}
