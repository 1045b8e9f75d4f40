"""KIP-227 both sides, I/O-free: the follower's FetchSessionHandler against the leader's FetchSessionCache."""

from __future__ import annotations

from types import SimpleNamespace as NS

from workbench.broker.fetch_session import FetchSessionCache, FetchSessionHandler
from workbench.protocol.errors import ErrorCode


def _body(session_id, epoch, changed, forgotten):
    by_topic: dict = {}
    for (t, p), (offset,) in changed.items():
        by_topic.setdefault(t, []).append(NS(partition=p, fetch_offset=offset, partition_max_bytes=1 << 20))
    return NS(
        session_id=session_id,
        session_epoch=epoch,
        max_bytes=1 << 20,
        topics=[NS(topic=t, partitions=ps) for t, ps in by_topic.items()],
        forgotten_topics_data=[NS(topic=t, partitions=ps) for t, ps in forgotten],
    )


def _positions(view):
    return {(t.topic, p.partition): p.fetch_offset for t in view.topics for p in t.partitions}


def test_a_follower_sends_only_moved_partitions_and_the_leader_still_reads_them_all():
    cache, handler = FetchSessionCache(), FetchSessionHandler()
    wanted = {("t", 0): (0,), ("t", 1): (0,), ("u", 0): (5,)}
    sid, epoch, changed, forgotten = handler.build(wanted)
    assert (sid, epoch, changed, forgotten) == (0, 0, wanted, [])
    view, session = cache.open(_body(sid, epoch, changed, forgotten), replica_id=2)
    assert session is not None and session.privileged
    handler.handle_response(0, session.id)

    wanted = {("t", 0): (3,), ("t", 1): (0,)}  # t-0 moved, u-0 no longer followed
    sid, epoch, changed, forgotten = handler.build(wanted)
    assert (sid, epoch) == (session.id, 1) and changed == {("t", 0): (3,)} and forgotten == [("u", [0])]
    view, _ = cache.open(_body(sid, epoch, changed, forgotten), replica_id=2)
    assert _positions(view) == {("t", 0): 3, ("t", 1): 0}
    handler.handle_response(0, session.id)

    # The leader lost the session (restart): the follower starts over with a full fetch.
    cache.sessions.clear()
    sid, epoch, changed, forgotten = handler.build(wanted)
    try:
        cache.open(_body(sid, epoch, changed, forgotten), replica_id=2)
        raise AssertionError("expected FETCH_SESSION_ID_NOT_FOUND")
    except Exception as exc:
        assert getattr(exc, "code", None) == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    handler.handle_response(ErrorCode.FETCH_SESSION_ID_NOT_FOUND, 0)
    assert handler.build(wanted)[:3] == (0, 0, wanted)


def test_the_cache_prefers_follower_sessions_and_evicts_idle_ones():
    now = [0.0]
    cache = FetchSessionCache(max_slots=1, eviction_ms=1000, clock=lambda: now[0])
    _, consumer = cache.open(_body(0, 0, {("t", 0): (0,), ("t", 1): (0,)}, []), replica_id=-1)
    assert consumer is not None
    _, follower = cache.open(_body(0, 0, {("t", 0): (0,)}, []), replica_id=1)
    assert follower is not None and list(cache.sessions) == [follower.id]  # privileged beats bigger
    _, other = cache.open(_body(0, 0, {("t", 0): (0,), ("t", 1): (0,)}, []), replica_id=-1)
    assert other is None  # a consumer session cannot evict a live follower session
    now[0] = 5.0
    _, late = cache.open(_body(0, 0, {("t", 0): (0,)}, []), replica_id=-1)
    assert late is not None and cache.evictions == 2  # the follower session was idle too long
