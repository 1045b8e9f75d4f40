"""`cluster.produce_from(sql, ...)`: replay and dead-letter redrive, byte-exact (issue 18)."""

from __future__ import annotations

import pytest


def read_raw(cluster, topic: str, expected: int) -> list:
    consumer = cluster.consumer(None)
    md = cluster.admin().list_topics(topic, timeout=10).topics[topic]
    consumer.raw.assign([__import__("confluent_kafka").TopicPartition(topic, p, 0) for p in sorted(md.partitions)])
    out = []
    for _ in range(200):
        msg = consumer.raw.poll(0.2)
        if msg is not None and msg.error() is None:
            out.append(msg)
        if len(out) >= expected:
            break
    consumer.close()
    return out


def test_replay_is_byte_exact_in_key_value_headers_and_timestamp(cluster, topic_name):
    source, copy = topic_name, topic_name + "-copy"
    cluster.create_topic(source, partitions=2)
    cluster.create_topic(copy, partitions=2)
    producer = cluster.producer()
    sent = [
        (b"\xff\x00not utf-8", b"\x01key", [("bin", b"\x00\xff"), ("none", None)], 1_700_000_000_000),
        (b'{"a": 1,  "spaced": true}', b"k2", [("h", b"v")], 1_700_000_000_001),
        (None, b"tombstone", [], 1_700_000_000_002),
    ]
    for value, key, headers, ts in sent:
        producer.send(source, value, key, headers=headers, timestamp=ts, partition=1)
    producer.flush()
    result = cluster.produce_from(f'SELECT * FROM "{source}" ORDER BY "offset"', topic=copy, keep_partitions=True)
    assert result.records == 3 and result.topics == {copy: 3}
    got = read_raw(cluster, copy, 3)
    assert [(m.value(), m.key(), m.headers() or [], m.timestamp()[1], m.partition()) for m in got] == [
        (v, k, h, ts, 1) for v, k, h, ts in sent
    ]


def test_redrive_routes_each_row_by_a_column(cluster, topic_name):
    dlq, a, b = topic_name + "-dlq", topic_name + "-a", topic_name + "-b"
    for t in (dlq, a, b):
        cluster.create_topic(t, partitions=1)
    producer = cluster.producer()
    for i in range(6):
        producer.send(dlq, {"source": a if i % 2 else b, "i": i}, key=str(i))
    producer.flush()
    result = cluster.produce_from(f'SELECT * FROM "{dlq}" ORDER BY "offset"', route_by="source", rate=200)
    assert result.topics == {a: 3, b: 3}
    assert sorted(m.key() for m in read_raw(cluster, a, 3)) == [b"1", b"3", b"5"]


def test_produce_from_refuses_unclear_arguments(cluster, topic_name):
    cluster.create_topic(topic_name)
    with pytest.raises(ValueError, match="say where the records go"):
        cluster.produce_from(f'SELECT * FROM "{topic_name}"')
    with pytest.raises(ValueError, match="route_by='nope' is not a column"):
        cluster.produce_from(f'SELECT * FROM "{topic_name}"', route_by="nope")
    with pytest.raises(ValueError, match="must select the record values"):
        cluster.produce_from(f'SELECT "offset" FROM "{topic_name}"', topic=topic_name)
    with pytest.raises(ValueError, match="rate must be records per second"):
        cluster.produce_from(f'SELECT * FROM "{topic_name}"', topic=topic_name, rate="fast")
