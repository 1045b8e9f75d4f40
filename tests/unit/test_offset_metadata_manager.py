"""OffsetMetadataManager: committed offsets apart from membership (Kafka's OffsetMetadataManager)."""

from __future__ import annotations

import asyncio

from workbench.broker.group_metadata import CONSUMER_PROTOCOL_TYPE, GroupMetadata, GroupState
from workbench.broker.group_offsets import (
    InMemoryOffsetStore,
    OffsetKey,
    decode_key,
    decode_offset_value,
)
from workbench.broker.offset_metadata_manager import OffsetMetadataManager
from workbench.protocol.errors import ErrorCode as E
from workbench.protocol.errors import KafkaProtocolError

NOW_MS = 1_700_000_000_000
DAY_MS = 24 * 3600 * 1000


class FailingStore(InMemoryOffsetStore):
    def __init__(self, code: E) -> None:
        super().__init__()
        self.code = code

    async def append(self, entries: list[tuple[bytes, bytes | None]]) -> None:
        raise KafkaProtocolError(self.code)


def manager(store: InMemoryOffsetStore | None = None, *, metadata_max_bytes: int = 4096) -> OffsetMetadataManager:
    return OffsetMetadataManager(
        store if store is not None else InMemoryOffsetStore(),
        metadata_max_bytes=metadata_max_bytes,
        wall_ms=lambda: NOW_MS,
    )


def test_commit_appends_kafka_records_then_fetch_reads_them() -> None:
    store = InMemoryOffsetStore()
    m = manager(store)
    results, stored = asyncio.run(m.commit("g", [("t", 0, 42, 3, "meta"), ("t", 1, 7, -1, None)]))
    assert stored and results == [("t", 0, E.NONE), ("t", 1, E.NONE)]
    assert [decode_key(k) for k, _ in store.records] == [OffsetKey("g", "t", 0), OffsetKey("g", "t", 1)]
    value = store.records[0][1]
    assert value is not None
    v = decode_offset_value(value)
    assert (v.offset, v.leader_epoch, v.metadata, v.commit_timestamp_ms) == (42, 3, "meta", NOW_MS)
    assert m.fetch("g", None) == [("t", 0, 42, 3, "meta", E.NONE), ("t", 1, 7, -1, "", E.NONE)]
    assert m.fetch("g", [("t", 9)]) == [("t", 9, -1, -1, "", E.NONE)]
    assert m.fetch("other", None) == []


def test_a_failed_append_changes_nothing_and_maps_the_error() -> None:
    for code, answer in [
        (E.NOT_LEADER_OR_FOLLOWER, E.NOT_COORDINATOR),
        (E.NOT_ENOUGH_REPLICAS, E.COORDINATOR_NOT_AVAILABLE),
        (E.MESSAGE_TOO_LARGE, E.INVALID_COMMIT_OFFSET_SIZE),
    ]:
        m = manager(FailingStore(code))
        results, stored = asyncio.run(m.commit("g", [("t", 0, 1, -1, None)]))
        assert (results, stored) == ([("t", 0, answer)], False)
        assert not m.has_offsets("g") and m.fetch("g", [("t", 0)])[0][2] == -1


def test_too_large_metadata_is_refused_per_partition() -> None:
    store = InMemoryOffsetStore()
    m = manager(store, metadata_max_bytes=4)
    results, stored = asyncio.run(m.commit("g", [("t", 0, 1, -1, "12345"), ("t", 1, 2, -1, "1234")]))
    assert stored and results == [("t", 0, E.OFFSET_METADATA_TOO_LARGE), ("t", 1, E.NONE)]
    assert m.partitions("g") == [("t", 1)] and len(store.records) == 1


def test_replay_rebuilds_offsets_and_honours_tombstones() -> None:
    store = InMemoryOffsetStore()
    m = manager(store)
    asyncio.run(m.commit("g", [("t", 0, 5, -1, None), ("t", 1, 6, -1, None)]))
    tombstones = m.remove("g", [("t", 0)])
    asyncio.run(store.append(tombstones))
    fresh = manager(store)
    for key, value in store.replay():
        k = decode_key(key)
        assert isinstance(k, OffsetKey)
        fresh.replay(k, value)
    assert fresh.fetch("g", None) == m.fetch("g", None) == [("t", 1, 6, -1, "", E.NONE)]
    assert fresh.remove("g", [("t", 1)]) and not fresh.has_offsets("g") and fresh.group_ids() == []


def test_expiry_follows_kafka_rules() -> None:
    m = manager()
    asyncio.run(m.commit("simple", [("t", 0, 1, -1, None)]))
    asyncio.run(m.commit("consumers", [("t", 0, 1, -1, None), ("old", 0, 1, -1, None)]))
    retention = 7 * DAY_MS
    later = NOW_MS + retention

    simple = GroupMetadata("simple")  # Empty, no protocol type: by each commit's timestamp
    assert m.expired_partitions(simple, retention, later - 1) == []
    assert m.expired_partitions(simple, retention, later) == [("t", 0)]

    # An Empty consumer group: all offsets, once it has been Empty for the retention (KIP-211).
    empty = GroupMetadata("consumers", protocol_type=CONSUMER_PROTOCOL_TYPE, state_since=NOW_MS + DAY_MS)
    assert m.expired_partitions(empty, retention, later) == []
    assert sorted(m.expired_partitions(empty, retention, later + DAY_MS)) == [("old", 0), ("t", 0)]

    # A live consumer group: only topics it no longer subscribes to (KIP-496).
    live = GroupMetadata(
        "consumers", state=GroupState.STABLE, protocol_type=CONSUMER_PROTOCOL_TYPE, subscribed_topics={"t"}
    )
    assert m.expired_partitions(live, retention, later) == [("old", 0)]
    live.subscribed_topics = None  # undecodable subscriptions: keep everything
    assert m.expired_partitions(live, retention, later) == []
