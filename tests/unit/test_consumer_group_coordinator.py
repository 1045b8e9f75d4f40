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
