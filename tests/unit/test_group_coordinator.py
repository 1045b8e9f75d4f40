"""The classic group coordinator, specified as Kafka behaves.

Most tests drive time with a fake clock and `GroupCoordinator.tick()`, so they
are deterministic and fast; one test runs the real timer task.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from workbench.broker.group_coordinator import GroupConfig, GroupCoordinator, JoinResult
from workbench.broker.group_metadata import decode_subscription_topics
from workbench.broker.group_offsets import InMemoryOffsetStore
from workbench.protocol.errors import ErrorCode, KafkaProtocolError

E = ErrorCode
SESSION = 10_000
REBALANCE = 20_000


def subscription(*topics: str) -> bytes:
    """ConsumerProtocolSubscription v0."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


RANGE = [("range", subscription("t"))]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Env:
    def __init__(self, store: InMemoryOffsetStore | None = None, **config: Any) -> None:
        self.clock = Clock()
        self.store = store or InMemoryOffsetStore()
        cfg = {
            "initial_rebalance_delay_ms": 0,
            "min_session_timeout_ms": 10,
            "max_session_timeout_ms": 60_000,
        }
        cfg.update(config)
        self.c = GroupCoordinator(
            self.store, GroupConfig(**cfg), clock=self.clock, wall_clock=lambda: 1.7e9 + self.clock.t
        )

    async def join(
        self,
        member_id: str = "",
        *,
        group: str = "g",
        instance: str | None = None,
        protocols: list[tuple[str, bytes]] | None = None,
        protocol_type: str = "consumer",
        session: int = SESSION,
        require: bool = False,
        client: str = "client",
    ) -> JoinResult:
        return await self.c.join_group(
            group,
            member_id,
            instance,
            protocol_type,
            RANGE if protocols is None else protocols,
            session,
            REBALANCE,
            client,
            "/127.0.0.1",
            require_known_member_id=require,
        )

    async def pass_initial_delay(self, delay_s: float) -> None:
        """Let the initial delayed join expire, including its one extension for late joiners."""
        for _ in range(2):
            await settle()
            self.clock.advance(delay_s)
            self.c.tick()
        await settle()

    def later(self, fn: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(fn())

    async def stable_pair(self) -> tuple[JoinResult, JoinResult]:
        """Two members A (leader) and B in a Stable generation with assignments."""
        a = await self.join(client="a")
        tb = self.later(lambda: self.join(client="b"))
        await settle()
        assert self.c.heartbeat("g", a.generation_id, a.member_id, None) == E.REBALANCE_IN_PROGRESS
        a = await self.join(a.member_id)
        b = await tb
        assert a.generation_id == b.generation_id
        ts = self.later(lambda: self.c.sync_group("g", b.generation_id, b.member_id, None, None, None, []))
        sa = await self.c.sync_group(
            "g",
            a.generation_id,
            a.member_id,
            None,
            "consumer",
            "range",
            [(a.member_id, b"A"), (b.member_id, b"B")],
        )
        assert sa.assignment == b"A" and (await ts).assignment == b"B"
        return a, b


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


# --- join / sync -------------------------------------------------------------


def test_single_member_joins_and_syncs():
    async def t():
        env = Env()
        r = await env.join()
        assert r.error_code == E.NONE
        assert r.generation_id == 1 and r.leader_id == r.member_id
        assert r.member_id.startswith("client-")
        assert (r.protocol_type, r.protocol_name) == ("consumer", "range")
        assert r.members == [(r.member_id, None, RANGE[0][1])]
        s = await env.c.sync_group("g", 1, r.member_id, None, "consumer", "range", [(r.member_id, b"assign")])
        assert (s.error_code, s.assignment, s.protocol_name) == (E.NONE, b"assign", "range")
        assert env.c.heartbeat("g", 1, r.member_id, None) == E.NONE
        d = env.c.describe_group("g")
        assert (d.state, d.protocol_type, d.protocol_name) == ("Stable", "consumer", "range")
        assert [(m.member_id, m.client_id, m.assignment) for m in d.members] == [(r.member_id, "client", b"assign")]

    run(t)


def test_member_id_required_flow():
    async def t():
        env = Env()
        first = await env.join(require=True)
        assert first.error_code == E.MEMBER_ID_REQUIRED
        assert first.member_id.startswith("client-") and first.generation_id == -1
        r = await env.join(first.member_id, require=True)
        assert r.error_code == E.NONE and r.member_id == first.member_id and r.generation_id == 1
        # An id the coordinator never handed out is refused.
        assert (await env.join("made-up", require=True)).error_code == E.UNKNOWN_MEMBER_ID

    run(t)


def test_pending_member_expires_after_session_timeout():
    async def t():
        env = Env()
        first = await env.join(require=True, session=1000)
        env.clock.advance(1.0)
        env.c.tick()
        assert (await env.join(first.member_id, require=True)).error_code == E.UNKNOWN_MEMBER_ID

    run(t)


def test_three_members_join_concurrently_in_one_generation():
    async def t():
        env = Env(initial_rebalance_delay_ms=100)
        tasks = [env.later(lambda i=i: env.join(client=f"c{i}")) for i in range(3)]
        await settle()
        assert not any(task.done() for task in tasks)  # initial delay holds the first join
        assert env.c.describe_group("g").state == "PreparingRebalance"
        env.clock.advance(0.1)
        env.c.tick()  # members kept arriving: the delay is extended once more
        await settle()
        assert not any(task.done() for task in tasks)
        env.clock.advance(0.1)
        env.c.tick()
        results = [await task for task in tasks]
        assert {r.error_code for r in results} == {E.NONE}
        assert {r.generation_id for r in results} == {1}
        assert len({r.leader_id for r in results}) == 1
        leaders = [r for r in results if r.member_id == r.leader_id]
        assert len(leaders) == 1 and len(leaders[0].members) == 3
        assert all(r.members == [] for r in results if r is not leaders[0])
        assert env.c.describe_group("g").state == "CompletingRebalance"

    run(t)


def test_followers_wait_for_the_leaders_sync():
    async def t():
        env = Env(initial_rebalance_delay_ms=10)
        ta, tb = env.later(lambda: env.join(client="a")), env.later(lambda: env.join(client="b"))
        await env.pass_initial_delay(0.01)
        a, b = await ta, await tb
        leader, follower = (a, b) if a.member_id == a.leader_id else (b, a)
        fs = env.later(lambda: env.c.sync_group("g", 1, follower.member_id, None, None, None, []))
        await settle()
        assert not fs.done()
        # The leader leaves the follower out: it gets an empty assignment.
        s = await env.c.sync_group("g", 1, leader.member_id, None, None, None, [(leader.member_id, b"L")])
        assert s.assignment == b"L"
        assert (await fs).error_code == E.NONE and (await fs).assignment == b""
        assert env.c.describe_group("g").state == "Stable"
        bad = await env.c.sync_group("g", 7, follower.member_id, None, None, None, [])
        assert bad.error_code == E.ILLEGAL_GENERATION
        bad = await env.c.sync_group("g", 1, "nobody", None, None, None, [])
        assert bad.error_code == E.UNKNOWN_MEMBER_ID

    run(t)


def test_join_while_stable_triggers_rebalance():
    async def t():
        env = Env()
        a, b = await env.stable_pair()
        assert (a.generation_id, b.generation_id) == (2, 2)
        tc = env.later(lambda: env.join(client="c"))
        await settle()
        assert env.c.describe_group("g").state == "PreparingRebalance"
        assert env.c.heartbeat("g", 2, a.member_id, None) == E.REBALANCE_IN_PROGRESS
        assert (await env.c.sync_group("g", 2, a.member_id, None, None, None, [])).error_code == (
            E.REBALANCE_IN_PROGRESS
        )
        # Offsets may still be committed while preparing (Kafka relies on heartbeats to signal).
        assert await env.c.commit_offsets("g", 2, a.member_id, None, [("t", 0, 5, -1, None)]) == [("t", 0, E.NONE)]
        ta = env.later(lambda: env.join(a.member_id))
        tb = env.later(lambda: env.join(b.member_id))
        results = [await ta, await tb, await tc]
        assert {r.generation_id for r in results} == {3}
        assert results[0].leader_id == a.member_id and len(results[0].members) == 3

    run(t)


def test_member_that_stops_heartbeating_is_expelled():
    async def t():
        env = Env()
        a, b = await env.stable_pair()
        env.clock.advance(SESSION / 2000)
        assert env.c.heartbeat("g", 2, a.member_id, None) == E.NONE
        env.clock.advance(SESSION / 2000)
        env.c.tick()  # b's session expired, a's did not
        assert env.c.heartbeat("g", 2, a.member_id, None) == E.REBALANCE_IN_PROGRESS
        assert env.c.heartbeat("g", 2, b.member_id, None) == E.UNKNOWN_MEMBER_ID
        r = await env.join(a.member_id)
        assert r.error_code == E.NONE and r.generation_id == 3 and [m[0] for m in r.members] == [a.member_id]

    run(t)


def test_member_that_does_not_rejoin_is_removed_at_rebalance_timeout():
    async def t():
        env = Env()
        a, b = await env.stable_pair()
        tc = env.later(lambda: env.join(client="c"))
        ta = env.later(lambda: env.join(a.member_id))
        await settle()
        # b keeps heartbeating but never rejoins.
        env.clock.advance(REBALANCE / 2000)
        assert env.c.heartbeat("g", 2, b.member_id, None) == E.REBALANCE_IN_PROGRESS
        env.clock.advance(REBALANCE / 2000)
        env.c.tick()
        ra, rc = await ta, await tc
        assert ra.generation_id == rc.generation_id == 3
        assert sorted(m[0] for m in ra.members) == sorted([a.member_id, rc.member_id])
        assert env.c.heartbeat("g", 2, b.member_id, None) == E.UNKNOWN_MEMBER_ID

    run(t)


def test_leave_triggers_rebalance():
    async def t():
        env = Env()
        a, b = await env.stable_pair()
        err, members = await env.c.leave_group("g", [(b.member_id, None), ("ghost", None)])
        assert err == E.NONE
        assert members == [(b.member_id, None, E.NONE), ("ghost", None, E.UNKNOWN_MEMBER_ID)]
        assert env.c.heartbeat("g", 2, a.member_id, None) == E.REBALANCE_IN_PROGRESS
        r = await env.join(a.member_id)
        assert r.generation_id == 3 and [m[0] for m in r.members] == [a.member_id]
        # The last member leaving makes the group Empty with a new generation.
        await env.c.sync_group("g", 3, a.member_id, None, None, None, [])
        await env.c.leave_group("g", [(a.member_id, None)])
        d = env.c.describe_group("g")
        assert (d.state, d.members) == ("Empty", [])

    run(t)


def test_leave_of_unknown_group_reports_each_member():
    async def t():
        env = Env()
        assert await env.c.leave_group("nope", [("m", None)]) == (E.NONE, [("m", None, E.UNKNOWN_MEMBER_ID)])

    run(t)


def test_pending_sync_member_is_removed_after_rebalance_timeout():
    async def t():
        env = Env(initial_rebalance_delay_ms=10)
        ta, tb = env.later(lambda: env.join(client="a")), env.later(lambda: env.join(client="b"))
        await env.pass_initial_delay(0.01)
        a, b = await ta, await tb
        leader, follower = (a, b) if a.member_id == a.leader_id else (b, a)
        fs = env.later(lambda: env.c.sync_group("g", 1, follower.member_id, None, None, None, []))
        await settle()
        for _ in range(2):  # both keep heartbeating; the leader never syncs
            env.clock.advance(REBALANCE / 2500)
            assert env.c.heartbeat("g", 1, leader.member_id, None) == E.NONE
            assert env.c.heartbeat("g", 1, follower.member_id, None) == E.NONE
        env.clock.advance(REBALANCE / 5000)
        env.c.tick()
        assert (await fs).error_code == E.REBALANCE_IN_PROGRESS
        assert [m.member_id for m in env.c.describe_group("g").members] == [follower.member_id]

    run(t)


# --- static membership (KIP-345) ---------------------------------------------


def test_static_member_rejoin_keeps_generation_without_rebalance():
    async def t():
        env = Env()
        a = await env.join(instance="i-a", client="a")
        await env.c.sync_group("g", 1, a.member_id, "i-a", None, None, [(a.member_id, b"A")])
        tb = env.later(lambda: env.join(instance="i-b", client="b"))
        await settle()
        a = await env.join(a.member_id, instance="i-a")
        b = await tb
        await env.c.sync_group("g", 2, a.member_id, "i-a", None, None, [(a.member_id, b"A"), (b.member_id, b"B")])
        # b restarts: empty member id, same instance id, same metadata.
        b2 = await env.join(instance="i-b", client="b")
        assert b2.error_code == E.NONE and b2.generation_id == 2 and b2.member_id != b.member_id
        assert b2.leader_id == a.member_id and b2.members == []
        assert env.c.describe_group("g").state == "Stable"
        assert env.c.heartbeat("g", 2, a.member_id, "i-a") == E.NONE
        s = await env.c.sync_group("g", 2, b2.member_id, "i-b", None, None, [])
        assert s.assignment == b"B"
        # The old incarnation is fenced.
        assert env.c.heartbeat("g", 2, b.member_id, "i-b") == E.FENCED_INSTANCE_ID
        assert (await env.join(b.member_id, instance="i-b")).error_code == E.FENCED_INSTANCE_ID
        assert (await env.c.commit_offsets("g", 2, b.member_id, "i-b", [("t", 0, 1, -1, "")]))[0][2] == (
            E.FENCED_INSTANCE_ID
        )

    run(t)


def test_static_leader_rejoin_returns_old_leader_id():
    async def t():
        env = Env()
        a = await env.join(instance="i-a")
        await env.c.sync_group("g", 1, a.member_id, "i-a", None, None, [(a.member_id, b"A")])
        a2 = await env.join(instance="i-a")
        # The restarted leader must not believe it leads (no assignment would be delivered).
        assert a2.generation_id == 1 and a2.leader_id == a.member_id != a2.member_id
        assert (await env.c.sync_group("g", 1, a2.member_id, "i-a", None, None, [])).assignment == b"A"
        # KIP-814 clients (JoinGroup v9+) are told they lead but may skip the assignment.
        a3 = await env.c.join_group(
            "g", "", "i-a", "consumer", RANGE, SESSION, REBALANCE, "c", "h",
            require_known_member_id=False, supports_skip_assignment=True,
        )  # fmt: skip
        assert a3.skip_assignment and a3.leader_id == a3.member_id and len(a3.members) == 1

    run(t)


def test_static_member_rejoin_with_new_metadata_triggers_rebalance():
    async def t():
        env = Env()
        a = await env.join(instance="i-a", client="a")
        await env.c.sync_group("g", 1, a.member_id, "i-a", None, None, [])
        tb = env.later(lambda: env.join(instance="i-b", client="b"))
        await settle()
        a = await env.join(a.member_id, instance="i-a")
        b = await tb
        await env.c.sync_group("g", 2, a.member_id, "i-a", None, None, [])
        tb2 = env.later(lambda: env.join(instance="i-b", protocols=[("range", subscription("t", "u"))]))
        await settle()
        assert env.c.heartbeat("g", 2, a.member_id, "i-a") == E.REBALANCE_IN_PROGRESS
        await env.join(a.member_id, instance="i-a")
        b2 = await tb2
        assert b2.generation_id == 3 and b2.member_id != b.member_id

    run(t)


def test_static_member_is_removed_by_instance_id():
    async def t():
        env = Env()
        a = await env.join(instance="i-a")
        await env.c.sync_group("g", 1, a.member_id, "i-a", None, None, [])
        assert await env.c.leave_group("g", [("", "i-a"), ("", "i-x")]) == (
            E.NONE,
            [("", "i-a", E.NONE), ("", "i-x", E.UNKNOWN_MEMBER_ID)],
        )
        assert env.c.describe_group("g").state == "Empty"

    run(t)


# --- protocols and validation ------------------------------------------------


def test_protocol_selection_by_votes_among_common_protocols():
    async def t():
        env = Env(initial_rebalance_delay_ms=10)
        rr, rg, st = ("roundrobin", b"x"), ("range", b"y"), ("sticky", b"z")
        prefs = [[rg, rr, st], [rr, rg, st], [rr, rg]]  # sticky is not common; rr has 2 votes
        tasks = [env.later(lambda p=p: env.join(protocols=p)) for p in prefs]
        await env.pass_initial_delay(0.01)
        results = [await task for task in tasks]
        assert {r.protocol_name for r in results} == {"roundrobin"}
        leader = next(r for r in results if r.members)
        assert {m[2] for m in leader.members} == {b"x"}  # each member's metadata for that protocol

    run(t)


def test_inconsistent_group_protocol():
    async def t():
        env = Env()
        await env.join(protocols=[("range", b""), ("roundrobin", b"")])
        r = await env.join(protocols=[("sticky", b"")])
        assert r.error_code == E.INCONSISTENT_GROUP_PROTOCOL
        r = await env.join(protocol_type="connect", protocols=[("range", b"")])
        assert r.error_code == E.INCONSISTENT_GROUP_PROTOCOL
        assert (await env.join(protocols=[])).error_code == E.INCONSISTENT_GROUP_PROTOCOL
        assert (await env.join(group="fresh", protocols=[])).error_code == E.INCONSISTENT_GROUP_PROTOCOL
        assert "fresh" not in env.c.group_ids()

    run(t)


def test_invalid_session_timeout_and_group_id():
    async def t():
        env = Env(min_session_timeout_ms=6000, max_session_timeout_ms=30000)
        assert (await env.join(session=5999)).error_code == E.INVALID_SESSION_TIMEOUT
        assert (await env.join(session=30001)).error_code == E.INVALID_SESSION_TIMEOUT
        assert (await env.join(group="", session=6000)).error_code == E.INVALID_GROUP_ID
        assert (await env.join("someone", session=6000)).error_code == E.UNKNOWN_MEMBER_ID

    run(t)


def test_group_max_size():
    async def t():
        env = Env(max_size=1)
        a = await env.join()
        assert (await env.join()).error_code == E.GROUP_MAX_SIZE_REACHED
        assert env.c.heartbeat("g", 1, a.member_id, None) == E.NONE

    run(t)


def test_subscription_decoder():
    assert decode_subscription_topics(subscription("a", "bb")) == ["a", "bb"]
    assert decode_subscription_topics(b"\x00") is None


def test_subscription_decoder_reads_every_kafka_python_version():
    from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription as Sub

    for v in range(Sub.min_version, Sub.max_version + 1):
        data = Sub(topics=["a", "bcd"], user_data=b"x", owned_partitions=[], generation_id=3, rack_id="r").encode(
            version=v
        )
        assert decode_subscription_topics(bytes(data)) == ["a", "bcd"]


# --- offsets -------------------------------------------------------------------


def test_commit_with_stale_generation_or_unknown_member_is_refused():
    async def t():
        env = Env()
        a, _b = await env.stable_pair()
        tp = [("t", 0, 10, 3, "m")]
        assert await env.c.commit_offsets("g", 1, a.member_id, None, tp) == [("t", 0, E.ILLEGAL_GENERATION)]
        assert await env.c.commit_offsets("g", 2, "ghost", None, tp) == [("t", 0, E.UNKNOWN_MEMBER_ID)]
        # A "simple" commit is refused while the group has members ...
        assert await env.c.commit_offsets("g", -1, "", None, tp) == [("t", 0, E.UNKNOWN_MEMBER_ID)]
        assert await env.c.commit_offsets("g", 2, a.member_id, None, tp) == [("t", 0, E.NONE)]
        # ... and a generation for a group that does not exist is illegal.
        assert await env.c.commit_offsets("other", 3, "m", None, tp) == [("t", 0, E.ILLEGAL_GENERATION)]

    run(t)


def test_commit_during_completing_rebalance_is_refused():
    async def t():
        env = Env()
        r = await env.join()
        res = await env.c.commit_offsets("g", 1, r.member_id, None, [("t", 0, 1, -1, None)])
        assert res == [("t", 0, E.REBALANCE_IN_PROGRESS)]

    run(t)


def test_commit_fetch_round_trip_with_metadata_strings():
    async def t():
        env = Env(offset_metadata_max_bytes=20)
        offsets = [
            ("t", 0, 100, 5, "héllo ✓ 🎉"),
            ("t", 1, 200, -1, ""),
            ("u", 0, 300, -1, None),
            ("u", 1, 400, -1, "x" * 21),
        ]
        res = await env.c.commit_offsets("simple", -1, "", None, offsets)
        assert res == [
            ("t", 0, E.NONE),
            ("t", 1, E.NONE),
            ("u", 0, E.NONE),
            ("u", 1, E.OFFSET_METADATA_TOO_LARGE),
        ]
        fetched = env.c.fetch_offsets("simple", [("t", 0), ("t", 1), ("u", 0), ("u", 1), ("v", 9)])
        assert fetched == [
            ("t", 0, 100, 5, "héllo ✓ 🎉", E.NONE),
            ("t", 1, 200, -1, "", E.NONE),
            ("u", 0, 300, -1, "", E.NONE),  # null metadata reads back as "", as in Kafka
            ("u", 1, -1, -1, "", E.NONE),
            ("v", 9, -1, -1, "", E.NONE),
        ]
        assert [f[:3] for f in env.c.fetch_offsets("simple", None)] == [
            ("t", 0, 100),
            ("t", 1, 200),
            ("u", 0, 300),
        ]
        assert env.c.fetch_offsets("unknown", None) == []
        assert env.c.fetch_offsets("unknown", [("t", 0)]) == [("t", 0, -1, -1, "", E.NONE)]
        assert env.c.list_groups() == [("simple", "", "Empty")]

    run(t)


class FailingStore(InMemoryOffsetStore):
    async def append(self, entries):
        raise KafkaProtocolError(E.NOT_LEADER_OR_FOLLOWER)


def test_failed_append_is_reported_and_not_applied():
    async def t():
        env = Env(store=FailingStore())
        res = await env.c.commit_offsets("s", -1, "", None, [("t", 0, 1, -1, None)])
        assert res == [("t", 0, E.NOT_COORDINATOR)]
        assert env.c.fetch_offsets("s", [("t", 0)])[0][2] == -1

    run(t)


def test_offsets_and_groups_survive_a_fresh_coordinator():
    async def t():
        env = Env()
        a, b = await env.stable_pair()
        await env.c.commit_offsets("g", 2, a.member_id, None, [("t", 0, 7, 1, "meta")])
        await env.c.commit_offsets("g", 2, b.member_id, None, [("t", 0, 8, 1, "newer"), ("t", 1, 9, 1, None)])
        await env.c.commit_offsets("s", -1, "", None, [("x", 0, 1, -1, "")])
        await env.c.close()

        env2 = Env(store=env.store)
        env2.c.load()
        assert env2.c.fetch_offsets("g", None) == [
            ("t", 0, 8, 1, "newer", E.NONE),
            ("t", 1, 9, 1, "", E.NONE),
        ]
        assert env2.c.fetch_offsets("s", None) == [("x", 0, 1, -1, "", E.NONE)]
        d = env2.c.describe_group("g")
        assert d.state == "Stable" and sorted(m.assignment for m in d.members) == [b"A", b"B"]
        # Members carry on heartbeating in the same generation after failover.
        assert env2.c.heartbeat("g", 2, a.member_id, None) == E.NONE
        assert sorted(env2.c.list_groups()) == [("g", "consumer", "Stable"), ("s", "", "Empty")]

    run(t)


def test_delete_groups():
    async def t():
        env = Env()
        a = await env.join()
        await env.c.commit_offsets("s", -1, "", None, [("t", 0, 1, -1, "")])
        res = await env.c.delete_groups(["g", "s", "nope"])
        assert res == [("g", E.NON_EMPTY_GROUP), ("s", E.NONE), ("nope", E.GROUP_ID_NOT_FOUND)]
        assert env.c.fetch_offsets("s", [("t", 0)])[0][2] == -1
        assert [g[0] for g in env.c.list_groups()] == ["g"]
        assert env.c.describe_group("s").state == "Dead"
        assert a.error_code == E.NONE

        env2 = Env(store=env.store)
        env2.c.load()
        assert env2.c.fetch_offsets("s", None) == []
        assert "s" not in env2.c.group_ids()

    run(t)


def test_delete_offsets():
    async def t():
        env = Env()
        r = await env.join(protocols=[("range", subscription("t"))])
        await env.c.sync_group("g", 1, r.member_id, None, None, None, [])
        commit = [("t", 0, 1, -1, ""), ("u", 0, 2, -1, "")]
        await env.c.commit_offsets("g", 1, r.member_id, None, commit)
        err, parts = await env.c.delete_offsets("g", [("t", 0), ("u", 0)])
        assert err == E.NONE and parts == [("t", 0, E.GROUP_SUBSCRIBED_TO_TOPIC), ("u", 0, E.NONE)]
        assert [f[:3] for f in env.c.fetch_offsets("g", None)] == [("t", 0, 1)]
        assert await env.c.delete_offsets("nope", [("t", 0)]) == (E.GROUP_ID_NOT_FOUND, [])
        # Once the group is empty every partition may go; a group left with nothing is gone.
        await env.c.leave_group("g", [(r.member_id, None)])
        assert await env.c.delete_offsets("g", [("t", 0)]) == (E.NONE, [("t", 0, E.NONE)])
        assert env.c.describe_group("g").state == "Dead"

    run(t)


def test_delete_offsets_of_non_consumer_group_with_members():
    async def t():
        env = Env()
        r = await env.join(protocol_type="connect", protocols=[("default", b"")])
        await env.c.sync_group("g", 1, r.member_id, None, None, None, [])
        assert await env.c.delete_offsets("g", [("t", 0)]) == (E.NON_EMPTY_GROUP, [])

    run(t)


def test_offsets_of_an_empty_group_expire_after_retention():
    async def t():
        env = Env(offsets_retention_ms=1000)
        await env.c.commit_offsets("s", -1, "", None, [("t", 0, 1, -1, "")])
        env.c.tick()
        await settle()
        assert env.c.fetch_offsets("s", None) != []
        env.clock.advance(1.0 + 600)  # past retention and the next retention check
        env.c.tick()
        await settle()
        assert env.c.fetch_offsets("s", None) == [] and env.c.list_groups() == []

    run(t)


# --- describe / list -----------------------------------------------------------


def test_describe_and_list_states():
    async def t():
        env = Env(initial_rebalance_delay_ms=10)
        assert env.c.describe_group("g").state == "Dead"
        ta = env.later(lambda: env.join())
        await settle()
        assert env.c.list_groups() == [("g", "consumer", "PreparingRebalance")]
        env.clock.advance(0.01)
        env.c.tick()
        a = await ta
        d = env.c.describe_group("g")
        # Kafka shows metadata and assignments only for a Stable group.
        assert (d.state, d.protocol_name, d.members[0].metadata) == ("CompletingRebalance", "", b"")
        await env.c.sync_group("g", 1, a.member_id, None, None, None, [(a.member_id, b"x")])
        d = env.c.describe_group("g")
        assert (d.state, d.protocol_name, d.members[0].metadata) == ("Stable", "range", RANGE[0][1])
        await env.c.commit_offsets("s", -1, "", None, [("t", 0, 1, -1, "")])
        assert sorted(env.c.list_groups()) == [("g", "consumer", "Stable"), ("s", "", "Empty")]
        assert env.c.list_groups(["stable"]) == [("g", "consumer", "Stable")]
        assert env.c.list_groups(["Empty", "Dead"]) == [("s", "", "Empty")]

    run(t)


# --- lifecycle -------------------------------------------------------------------


def test_close_fails_parked_requests_with_not_coordinator():
    async def t():
        env = Env(initial_rebalance_delay_ms=1000)
        ta = env.later(lambda: env.join())
        await settle()
        await env.c.close()
        assert (await ta).error_code == E.NOT_COORDINATOR
        assert env.c.heartbeat("g", 1, "m", None) == E.NOT_COORDINATOR
        try:
            env.c.fetch_offsets("g", None)
        except KafkaProtocolError as e:
            assert e.code == E.NOT_COORDINATOR
        else:
            raise AssertionError("fetch after close must fail")

    run(t)


def test_real_timers_expire_sessions():
    async def t():
        c = GroupCoordinator(
            InMemoryOffsetStore(),
            GroupConfig(initial_rebalance_delay_ms=30, min_session_timeout_ms=10),
            tick_interval_s=0.01,
        )
        await c.start()
        try:
            r = await c.join_group("g", "", None, "consumer", RANGE, 100, 1000, "c", "h", require_known_member_id=False)
            assert r.error_code == E.NONE
            await c.sync_group("g", 1, r.member_id, None, None, None, [])
            await asyncio.sleep(0.3)
            assert c.describe_group("g").state == "Empty"
            assert c.heartbeat("g", 1, r.member_id, None) == E.UNKNOWN_MEMBER_ID
        finally:
            await c.close()

    run(t)
