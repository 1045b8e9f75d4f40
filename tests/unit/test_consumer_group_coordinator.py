"""KIP-848 coordinator rules, I/O-free: epochs, revocation before assignment, assignors, fencing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from workbench.broker.consumer_group_coordinator import ConsumerGroupCoordinator
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.kip848 import ConsumerGroupHeartbeatRequest


@dataclass
class Topic:
    id: str
    partitions: dict = field(default_factory=dict)


TOPICS = {"t": Topic(uuid.uuid4().hex, dict.fromkeys(range(4))), "u": Topic(uuid.uuid4().hex, dict.fromkeys(range(2)))}


def hb(member: str, epoch: int, subscribe=None, owned=None, **kw):
    topic_partitions = None
    if owned is not None:
        topic_partitions = [
            ConsumerGroupHeartbeatRequest.TopicPartitions(topic_id=uuid.UUID(hex=TOPICS[t].id), partitions=sorted(ps))
            for t, ps in owned.items()
        ]
    return ConsumerGroupHeartbeatRequest(
        version=1,
        group_id="g",
        member_id=member,
        member_epoch=epoch,
        rebalance_timeout_ms=30000,
        subscribed_topic_names=subscribe,
        topic_partitions=topic_partitions,
        **kw,
    )


def assigned(resp) -> dict[str, set[int]]:
    names = {uuid.UUID(hex=t.id): n for n, t in TOPICS.items()}
    return {names[tp["topic_id"]]: set(tp["partitions"]) for tp in resp["assignment"]["topic_partitions"]}


def test_a_partition_moves_only_after_its_owner_revoked_it():
    c = ConsumerGroupCoordinator()
    a = c.heartbeat(hb("a", 0, ["t"], {}), TOPICS)
    assert a["member_epoch"] == 1 and assigned(a) == {"t": {0, 1, 2, 3}}
    b = c.heartbeat(hb("b", 0, ["t"], {}), TOPICS)
    # b's target is half the topic, but a still owns it all: b gets nothing yet, at the new epoch.
    assert b["member_epoch"] == 2 and assigned(b) == {}
    a2 = c.heartbeat(hb("a", 1, owned={"t": {0, 1, 2, 3}}), TOPICS)
    kept = assigned(a2)["t"]
    assert len(kept) == 2 and a2["member_epoch"] == 1  # revoke first, epoch unchanged
    assert c.describe("g", TOPICS)["group_state"] == "Reconciling"
    b2 = c.heartbeat(hb("b", 2, owned={}), TOPICS)
    assert assigned(b2) == {}  # still not revoked by a
    a3 = c.heartbeat(hb("a", 1, owned={"t": kept}), TOPICS)
    assert a3["member_epoch"] == 2
    b3 = c.heartbeat(hb("b", 2, owned={}), TOPICS)
    assert assigned(b3) == {"t": {0, 1, 2, 3} - kept}
    assert c.describe("g", TOPICS)["group_state"] == "Stable"


def test_stale_epoch_is_fenced_and_unknown_member_is_refused():
    c = ConsumerGroupCoordinator()
    c.heartbeat(hb("a", 0, ["t"], {}), TOPICS)
    with pytest.raises(KafkaProtocolError) as e:
        c.heartbeat(hb("a", 7), TOPICS)
    assert e.value.code == ErrorCode.FENCED_MEMBER_EPOCH
    with pytest.raises(KafkaProtocolError) as e:
        c.heartbeat(hb("zz", 1), TOPICS)
    assert e.value.code == ErrorCode.UNKNOWN_MEMBER_ID
    assert c.validate_offset_commit("g", "a", 1) is None
    assert c.validate_offset_commit("g", "a", 0) == ErrorCode.STALE_MEMBER_EPOCH


def test_range_assignor_and_unknown_assignor():
    c = ConsumerGroupCoordinator()
    with pytest.raises(KafkaProtocolError) as e:
        c.heartbeat(hb("a", 0, ["t"], {}, server_assignor="sticky"), TOPICS)
    assert e.value.code == ErrorCode.UNSUPPORTED_ASSIGNOR
    c.heartbeat(hb("a", 0, ["t"], {}, server_assignor="range"), TOPICS)
    c.heartbeat(hb("b", 0, ["t"], {}, server_assignor="range"), TOPICS)
    d = c.describe("g", TOPICS)
    targets = {m["member_id"]: m["target_assignment"]["topic_partitions"][0]["partitions"] for m in d["members"]}
    assert d["assignor_name"] == "range" and targets == {"a": [0, 1], "b": [2, 3]}


def test_regex_subscription_matches_whole_names():
    c = ConsumerGroupCoordinator()
    resp = c.heartbeat(hb("a", 0, [], {}, subscribed_topic_regex="t|u"), TOPICS)
    assert assigned(resp) == {"t": {0, 1, 2, 3}, "u": {0, 1}}
    with pytest.raises(KafkaProtocolError):
        c.heartbeat(hb("b", 0, [], {}, subscribed_topic_regex="("), TOPICS)


def test_leave_gives_the_partitions_to_the_rest():
    c = ConsumerGroupCoordinator()
    c.heartbeat(hb("a", 0, ["t"], {}), TOPICS)
    c.heartbeat(hb("b", 0, ["t"], {}), TOPICS)
    c.heartbeat(hb("a", -1), TOPICS)
    resp = c.heartbeat(hb("b", 2, owned={}), TOPICS)
    assert assigned(resp) == {"t": {0, 1, 2, 3}} and resp["member_epoch"] == 3


def test_kip848_codec_round_trips_every_version():
    from workbench.protocol import kip848

    for cls, body in (
        (kip848.ConsumerGroupHeartbeatRequest, {"group_id": "g", "member_id": "m", "member_epoch": 3}),
        (kip848.ConsumerGroupDescribeRequest, {"group_ids": ["g"], "include_authorized_operations": False}),
    ):
        for version in range(cls.min_version, cls.max_version + 1):
            msg = cls(version=version, **body)
            decoded = cls.decode(msg.encode(version=version), version=version)
            assert all(getattr(decoded, k) == v for k, v in body.items())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _converge(c: ConsumerGroupCoordinator, members: dict[str, int], rounds: int = 4) -> dict[str, dict]:
    """Heartbeat every member a few times, each reporting what it was last told it owns."""
    owned: dict[str, dict] = {m: {} for m in members}
    for _ in range(rounds):
        for m in members:
            resp = c.heartbeat(hb(m, members[m], owned=owned[m]), TOPICS)
            members[m] = resp["member_epoch"]
            if resp["assignment"] is not None:
                owned[m] = assigned(resp)
    return owned


def test_group_state_is_written_as_kafka_records_and_replayed_by_a_new_coordinator():
    """Durable KIP-848 state: a coordinator built from the records of another (the offsets
    partition's new leader) has the same members, epochs, targets and owned partitions."""
    import asyncio

    from workbench.broker.group_coordinator import GroupCoordinator
    from workbench.broker.group_offsets import InMemoryOffsetStore
    from workbench.protocol import kip848

    store = InMemoryOffsetStore()
    first = GroupCoordinator(store).consumer

    def beat(body):
        resp = first.heartbeat(body, TOPICS)
        asyncio.run(first.persist("g", TOPICS))
        return resp

    epochs = {"a": beat(hb("a", 0, ["t"], {}))["member_epoch"]}
    epochs["b"] = beat(hb("b", 0, ["t"], {}, instance_id="static-b"))["member_epoch"]
    owned: dict[str, dict] = {"a": {"t": {0, 1, 2, 3}}, "b": {}}
    for _ in range(3):
        for m in ("a", "b"):
            resp = beat(hb(m, epochs[m], owned=owned[m]))
            epochs[m] = resp["member_epoch"]
            if resp["assignment"] is not None:
                owned[m] = assigned(resp)
    beat(hb("c", 0, ["t"], {}))
    beat(hb("c", -1))  # joins and leaves: its records end in tombstones
    before = first.describe("g", TOPICS)
    assert before["group_epoch"] == 4  # a, b, c joined, c left

    types = {kip848.decode_record_key(k)[0] for k, _ in store.records}
    assert types == {3, 5, 6, 7, 8}
    member_c = [v for k, v in store.records if kip848.decode_record_key(k)[2] == "c"]
    assert member_c[-1] is None

    second = GroupCoordinator(store)
    second.load()
    second.consumer.finish_load(TOPICS)
    after = second.consumer.describe("g", TOPICS)
    assert after == before
    assert {m["member_id"] for m in after["members"]} == {"a", "b"}
    assert second.consumer.pending_records("g", TOPICS) == []  # nothing to rewrite
    # The classic side did not take the records for a classic group.
    assert second.describe_group("g").state in ("", "Dead")
    # Members carry on with their epochs on the new coordinator: no UNKNOWN_MEMBER_ID, no rejoin.
    for m in ("a", "b"):
        resp = second.consumer.heartbeat(hb(m, epochs[m], owned=owned[m]), TOPICS)
        assert resp["member_epoch"] == 4 and assigned(resp) == owned[m]  # c's visit moved nothing
    assert second.consumer.describe("g", TOPICS)["group_epoch"] == 4


def test_a_member_that_does_not_revoke_within_its_rebalance_timeout_is_fenced():
    clock = Clock()
    c = ConsumerGroupCoordinator(clock=clock)
    c.heartbeat(hb("a", 0, ["t"], {}), TOPICS)  # rebalance_timeout_ms=30000 (hb's default)
    b = c.heartbeat(hb("b", 0, ["t"], {}), TOPICS)
    a = c.heartbeat(hb("a", 1, owned={"t": {0, 1, 2, 3}}), TOPICS)
    assert len(assigned(a)["t"]) == 2  # asked to give up two partitions
    clock.now += 20
    for _ in range(2):  # a keeps heartbeating but keeps reporting all four: not revoked
        c.heartbeat(hb("a", 1, owned={"t": {0, 1, 2, 3}}), TOPICS)
        c.heartbeat(hb("b", b["member_epoch"], owned={}), TOPICS)
    assert {m["member_id"] for m in c.describe("g", TOPICS)["members"]} == {"a", "b"}
    clock.now += 11  # past a's 30 s rebalance timeout (session timeout is 45 s: not the reason)
    resp = c.heartbeat(hb("b", b["member_epoch"], owned={}), TOPICS)
    assert assigned(resp) == {"t": {0, 1, 2, 3}}
    with pytest.raises(KafkaProtocolError) as e:
        c.heartbeat(hb("a", 1, owned={"t": {0, 1, 2, 3}}), TOPICS)
    assert e.value.code == ErrorCode.UNKNOWN_MEMBER_ID


def test_a_member_that_revokes_in_time_is_not_fenced():
    clock = Clock()
    c = ConsumerGroupCoordinator(clock=clock)
    c.heartbeat(hb("a", 0, ["t"], {}), TOPICS)
    c.heartbeat(hb("b", 0, ["t"], {}), TOPICS)
    kept = assigned(c.heartbeat(hb("a", 1, owned={"t": {0, 1, 2, 3}}), TOPICS))["t"]
    clock.now += 29
    c.heartbeat(hb("a", 1, owned={"t": kept}), TOPICS)
    clock.now += 10
    assert c.heartbeat(hb("a", 2, owned={"t": kept}), TOPICS)["member_epoch"] == 2


def test_static_member_rejoins_with_its_assignment_and_no_new_group_epoch():
    c = ConsumerGroupCoordinator()
    c.heartbeat(hb("a1", 0, ["t"], {}, instance_id="a"), TOPICS)
    c.heartbeat(hb("b", 0, ["t"], {}), TOPICS)
    owned = _converge(c, {"a1": 1, "b": 2})
    epoch = c.describe("g", TOPICS)["group_epoch"]
    assert len(owned["a1"]["t"]) == 2 and len(owned["b"]["t"]) == 2
    c.heartbeat(hb("a1", -2, instance_id="a"), TOPICS)  # a static member leaves for a restart
    b = c.describe("g", TOPICS)
    assert b["group_epoch"] == epoch
    # The restarted process (a new member id, the same instance id) gets the same partitions back.
    resp = c.heartbeat(hb("a2", 0, ["t"], {}, instance_id="a"), TOPICS)
    assert assigned(resp) == owned["a1"]
    assert c.describe("g", TOPICS)["group_epoch"] == epoch
    # b was never asked to change anything.
    resp_b = c.heartbeat(hb("b", 2, owned=owned["b"]), TOPICS)
    assert resp_b["member_epoch"] == 2 and (resp_b["assignment"] is None or assigned(resp_b) == owned["b"])


def test_duplicate_static_instance_is_unreleased_and_the_replaced_member_is_fenced():
    c = ConsumerGroupCoordinator()
    c.heartbeat(hb("a1", 0, ["t"], {}, instance_id="a"), TOPICS)
    with pytest.raises(KafkaProtocolError) as e:
        c.heartbeat(hb("a2", 0, ["t"], {}, instance_id="a"), TOPICS)
    assert e.value.code == ErrorCode.UNRELEASED_INSTANCE_ID
    c.heartbeat(hb("a1", -2, instance_id="a"), TOPICS)
    c.heartbeat(hb("a2", 0, ["t"], {}, instance_id="a"), TOPICS)
    with pytest.raises(KafkaProtocolError) as e:
        c.heartbeat(hb("a1", 1, instance_id="a"), TOPICS)
    assert e.value.code == ErrorCode.FENCED_INSTANCE_ID
    with pytest.raises(KafkaProtocolError) as e:
        c.heartbeat(hb("a1", -2, instance_id="a"), TOPICS)
    assert e.value.code == ErrorCode.FENCED_INSTANCE_ID


def test_uniform_gives_a_third_member_a_share_of_four_partitions():
    c = ConsumerGroupCoordinator()
    c.heartbeat(hb("a", 0, ["t"], {}), TOPICS)
    c.heartbeat(hb("b", 0, ["t"], {}), TOPICS)
    c.heartbeat(hb("c", 0, ["t"], {}), TOPICS)
    d = c.describe("g", TOPICS)
    sizes = sorted(
        sum(len(tp["partitions"]) for tp in m["target_assignment"]["topic_partitions"]) for m in d["members"]
    )
    assert sizes == [1, 1, 2]


def test_members_nobody_hears_from_are_removed_by_the_timer_and_tombstoned():
    """A group whose consumers all died: no heartbeat comes to expire them, the coordinator's timer
    does (session timeout), and the removal is written to the store."""
    import asyncio

    from workbench.broker.group_offsets import InMemoryOffsetStore
    from workbench.protocol import kip848

    clock, store = Clock(), InMemoryOffsetStore()
    c = ConsumerGroupCoordinator(store, clock=clock, session_timeout_ms=45000)
    c.topics = lambda: TOPICS
    c.heartbeat(hb("a", 0, ["t"], {}), TOPICS)
    asyncio.run(c.persist("g", TOPICS))
    clock.now += 30
    asyncio.run(c.expire_all())
    assert [m["member_id"] for m in c.describe("g", TOPICS)["members"]] == ["a"]
    clock.now += 16
    asyncio.run(c.expire_all())
    d = c.describe("g", TOPICS)
    assert d["members"] == [] and d["group_state"] == "Empty"
    gone = {kip848.decode_record_key(k)[0] for k, v in store.records if v is None}
    assert gone == {5, 7, 8}


def test_only_the_records_of_what_changed_are_written_again():
    from workbench.protocol import kip848

    c = ConsumerGroupCoordinator()
    c.heartbeat(hb("a", 0, ["t"], {}), TOPICS)
    c.heartbeat(hb("b", 0, ["t"], {}), TOPICS)
    assert len(c.pending_records("g", TOPICS)) == 2 + 3 * 2  # group, target epoch; 3 per member
    assert c.pending_records("g", TOPICS) == []  # a heartbeat that changes nothing writes nothing
    c.heartbeat(hb("a", 1, owned={"t": {0, 1, 2, 3}}), TOPICS)  # a is told to revoke two partitions
    changed = [kip848.decode_record_key(k) for k, _ in c.pending_records("g", TOPICS)]
    assert changed == [(8, "g", "a")]
    value = dict(c.records("g", TOPICS))[kip848.encode_record_key(8, "g", "a")]
    decoded = kip848.decode_record_value(8, value)
    assert len(decoded.partitions_pending_revocation[0].partitions) == 2


def test_an_empty_consumer_group_deleted_for_a_classic_join_stays_deleted_after_replay():
    """The empty downgrade (`delete_empty_group`) tombstones the group's records, so the offsets
    partition's next leader does not bring the consumer group back; a group with members is kept."""
    import asyncio

    from workbench.broker.group_coordinator import GroupCoordinator
    from workbench.broker.group_offsets import InMemoryOffsetStore

    store = InMemoryOffsetStore()
    first = GroupCoordinator(store).consumer
    first.heartbeat(hb("a", 0, ["t"], {}), TOPICS)
    asyncio.run(first.persist("g", TOPICS))
    assert asyncio.run(first.delete_empty_group("g", TOPICS)) is False  # a is a member
    first.heartbeat(hb("a", -1), TOPICS)
    asyncio.run(first.persist("g", TOPICS))
    assert "g" in first.groups
    assert asyncio.run(first.delete_empty_group("g", TOPICS)) is True
    assert "g" not in first.groups

    second = GroupCoordinator(store)
    second.load()
    second.consumer.finish_load(TOPICS)
    assert "g" not in second.consumer.groups
