"""The client façade's arguments: a mistake gives a message naming the argument and what to pass,
not a Python or librdkafka internal (issue 18)."""

from __future__ import annotations

import datetime

import pytest


def test_send_refuses_bad_headers_timestamp_and_partition(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2)
    producer = cluster.producer()
    with pytest.raises(ValueError, match=r"headers must be a dict .* or a list of \(name, value\) pairs"):
        producer.send(topic_name, {"a": 1}, headers="x")
    with pytest.raises(ValueError, match=r"each header must be a \(name, value\) pair"):
        producer.send(topic_name, {"a": 1}, headers=["x"])
    with pytest.raises(ValueError, match="timestamp must be epoch milliseconds"):
        producer.send(topic_name, {"a": 1}, timestamp="yesterday")
    with pytest.raises(ValueError, match=r"has 2 partition\(s\), numbered 0 to 1; there is no partition 99"):
        producer.send(topic_name, {"a": 1}, partition=99)
    with pytest.raises(ValueError, match="there is no partition 99"):
        producer.send_and_wait(topic_name, {"a": 1}, partition=99)
    # The good spellings still work, a datetime timestamp included.
    at = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    d = producer.send_and_wait(topic_name, {"a": 1}, partition=1, headers={"h": "v"}, timestamp=at)
    assert d.partition == 1
    consumer = cluster.consumer(None)
    consumer.assign(topic_name, [1])
    got = consumer.read(1, timeout=15)
    consumer.close()
    assert got and got[0].timestamp == int(at.timestamp() * 1000) and got[0].headers == [("h", b"v")]


def test_read_and_consumer_refuse_bad_arguments(cluster, topic_name):
    with pytest.raises(ValueError, match="group must be a consumer group name"):
        cluster.consumer(123, topic_name)
    with pytest.raises(ValueError, match="topics must be a topic name or a list of them"):
        cluster.consumer("g", 42)
    consumer = cluster.consumer("g-args", topic_name)
    try:
        with pytest.raises(ValueError, match="max_records must be a positive integer"):
            consumer.read("ten")
        with pytest.raises(ValueError, match="timeout must be a number of seconds"):
            consumer.read(10, timeout="soon")
    finally:
        consumer.close()


def test_topic_overview_lists_records_size_and_configs(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=3, config={"retention.ms": 3_600_000, "cleanup.policy": "delete"})
    producer = cluster.producer()
    for i in range(30):
        producer.send(topic_name, {"i": i}, key=str(i))
    producer.flush()
    overview = cluster.topic_overview().set_index("topic")
    row = overview.loc[topic_name]
    assert (row.partitions, row.replication_factor, row.records) == (3, 3, 30)
    assert row.size_bytes > 0 and row.under_replicated == 0 and row.offline == 0
    assert row["retention.ms"] == "3600000" and row["cleanup.policy"] == "delete"
    assert row.configs["retention.ms"] == "3600000"
    assert not any(t.startswith("__") for t in overview.index)
