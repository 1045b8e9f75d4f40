"""KIP-227 fetch sessions: full and incremental fetches, session errors, the bounded cache, kafka-python."""

from __future__ import annotations

from kafka import KafkaConsumer

from tests.support import wait_until
from workbench.protocol.api_keys import ApiKey
from workbench.protocol.blocking_client import WireClient, make_batch
from workbench.protocol.codec import REQUEST_CLASSES, build
from workbench.protocol.errors import ErrorCode


def _fetch(c: WireClient, topic: str | None, offsets: dict[int, int], session_id: int, epoch: int, forgotten=()):
    body = {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": 1 << 20,
        "session_id": session_id,
        "session_epoch": epoch,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {"partition": p, "fetch_offset": o, "partition_max_bytes": 1 << 20, "current_leader_epoch": -1}
                    for p, o in offsets.items()
                ],
            }
        ]
        if offsets
        else [],
        "forgotten_topics_data": [{"topic": topic, "partitions": list(forgotten)}] if forgotten else [],
        "rack_id": "",
    }
    return c.request(build(REQUEST_CLASSES[ApiKey.FETCH], body), 12)


def _produce(c: WireClient, topic: str, partition: int, values: list[bytes]) -> None:
    body = {
        "acks": -1,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": make_batch(values)}]}],
    }
    resp = c.request(build(REQUEST_CLASSES[ApiKey.PRODUCE], body), 9)
    assert resp.responses[0].partition_responses[0].error_code == 0


def _leader(cluster, topic: str) -> WireClient:
    boot = WireClient.to(cluster.bootstrap_servers)
    md = boot.request(build(REQUEST_CLASSES[ApiKey.METADATA], {"topics": [{"name": topic}]}), 1)
    boot.close()
    leaders = {p.leader_id for p in md.topics[0].partitions}
    assert len(leaders) == 1, "the test wants one leader for every partition (a one-broker cluster)"
    b = next(b for b in md.brokers if b.node_id == leaders.pop())
    return WireClient(b.host, b.port)


def test_incremental_fetch_answers_only_what_changed_and_checks_the_session(fresh_cluster, topic_name):
    cluster = fresh_cluster(brokers=1, config={"max_incremental_fetch_session_cache_slots": 1})
    cluster.create_topic(topic_name, partitions=2, replication_factor=1)
    c = _leader(cluster, topic_name)
    try:
        _produce(c, topic_name, 0, [b"a", b"b"])
        _produce(c, topic_name, 1, [b"c"])
        full = _fetch(c, topic_name, {0: 0, 1: 0}, 0, 0)
        assert full.error_code == 0 and full.session_id != 0
        assert sorted(p.partition_index for t in full.responses for p in t.partitions) == [0, 1]
        sid = full.session_id

        # Nothing new: an incremental fetch at the next positions names no partition at all.
        quiet = _fetch(c, topic_name, {0: 2, 1: 1}, sid, 1)
        assert quiet.error_code == 0 and quiet.session_id == sid and quiet.responses == []

        # New data on partition 1 only: the answer carries partition 1 only, although the request named none.
        _produce(c, topic_name, 1, [b"d"])
        news = _fetch(c, topic_name, {}, sid, 2)
        parts = [(p.partition_index, p.high_watermark) for t in news.responses for p in t.partitions]
        assert parts == [(1, 2)] and len(news.responses[0].partitions[0].records) > 0

        # Forgetting partition 1: new data there no longer shows up.
        _fetch(c, topic_name, {1: 2}, sid, 3, forgotten=[1])
        _produce(c, topic_name, 1, [b"e"])
        assert _fetch(c, topic_name, {}, sid, 4).responses == []

        # A replayed epoch and an unknown session are refused, as Kafka does.
        assert _fetch(c, topic_name, {}, sid, 4).error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
        assert _fetch(c, topic_name, {}, sid + 1, 1).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND

        # The cache has one slot: a bigger new session evicts the old one; a smaller one gets no session.
        smaller = _fetch(c, topic_name, {0: 0}, 0, 0)
        assert smaller.session_id == 0 and smaller.responses
        bigger = _fetch(c, topic_name, {0: 0, 1: 0}, 0, 0)
        assert bigger.session_id not in (0, sid)
        assert _fetch(c, topic_name, {}, sid, 5).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND

        # Epoch -1 closes the session and answers sessionless.
        closed = _fetch(c, topic_name, {0: 0}, bigger.session_id, -1)
        assert closed.session_id == 0 and closed.responses
        assert _fetch(c, topic_name, {}, bigger.session_id, 1).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    finally:
        c.close()


def test_kafka_python_consumes_everything_over_an_incremental_session(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=3)
    c = _leader_any(cluster)
    try:
        consumer = KafkaConsumer(
            topic_name,
            bootstrap_servers=cluster.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        try:
            seen: list[bytes] = []
            from kafka import KafkaProducer

            producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers)
            for round_ in range(3):
                for i in range(30):
                    producer.send(topic_name, f"{round_}-{i}".encode(), partition=i % 3)
                producer.flush(30)

                def got(n: int = 30 * (round_ + 1)) -> bool:
                    for records in consumer.poll(timeout_ms=200).values():
                        seen.extend(r.value for r in records)
                    return len(seen) >= n

                assert wait_until(got, 60, interval=0, fail=False), f"{len(seen)} records"
            producer.close()
            assert sorted(seen) == sorted(f"{r}-{i}".encode() for r in range(3) for i in range(30))
            # kafka-python kept a session with the broker (a non-zero id) and advanced its epoch.
            handlers = consumer._fetcher._session_handlers
            assert any(h.next_metadata.session_id > 0 and h.next_metadata.epoch > 1 for h in handlers.values())
        finally:
            consumer.close()
    finally:
        c.close()


def _leader_any(cluster) -> WireClient:
    return WireClient.to(cluster.bootstrap_servers)


def test_followers_replicate_with_sessions_and_without_when_the_cache_has_no_slots(fresh_cluster, topic_name):
    """acks=all needs every follower's fetches: with sessions (default) and falling back to full fetches."""
    from confluent_kafka import Producer

    for slots in (1000, 0):
        cluster = fresh_cluster(brokers=3, config={"max_incremental_fetch_session_cache_slots": slots})
        topic = f"{topic_name}-{slots}"
        cluster.create_topic(topic, partitions=3, replication_factor=3)
        p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all"})
        for rounds in range(3):
            for i in range(50):
                p.produce(topic, value=f"{rounds}-{i}".encode(), partition=i % 3)
            assert p.flush(30) == 0
        _consume_all(cluster.bootstrap_servers, topic, 150)
        cluster.stop()


def _consume_all(bootstrap: str, topic: str, n: int) -> None:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    seen: list[bytes] = []

    def got() -> bool:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            seen.append(m.value())
        return len(seen) >= n

    try:
        assert wait_until(got, 60, interval=0, fail=False), f"{topic}: {len(seen)} of {n} records"
    finally:
        c.close()
