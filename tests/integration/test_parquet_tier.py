"""Sealed segments become Parquet; fetches of offsets that live only in Parquet still work."""

from __future__ import annotations

import time

import duckdb
import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition


def test_sealed_segments_are_parquet_and_old_offsets_are_served_from_it(cluster, topic_name):
    # Tiny segments, no raw segments kept once converted: reading from offset 0 must come from Parquet.
    cluster.create_topic(topic_name, partitions=1, replication_factor=1, config={"segment.bytes": "4096",
                                                           "workbench.hot.segments": "0"})
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 0, "compression.type": "zstd"})
    base_ts = int(time.time() * 1000) - 60_000  # recent: older records would fall to retention.ms (7 days)
    for i in range(500):
        p.produce(topic_name, key=f"k{i}".encode(), value=f'{{"n": {i}}}'.encode(), headers=[("i", str(i).encode())],
                  timestamp=base_ts + i, partition=0)
        if i % 25 == 0:
            p.flush(10)
    assert p.flush(15) == 0

    pattern = str(cluster.data_dir / "broker-*" / "topics" / topic_name / "partition=*" / "*.parquet")
    deadline = time.monotonic() + 20
    files = []
    while time.monotonic() < deadline:
        files = sorted((cluster.data_dir).glob(f"broker-*/topics/{topic_name}/partition=0/*.parquet"))
        logs = sorted((cluster.data_dir).glob(f"broker-*/topics/{topic_name}/partition=0/*.log"))
        if files and len(logs) == 1:  # only the active segment is left raw
            break
        time.sleep(0.2)
    assert files, "no Parquet file was written"
    assert len(logs) == 1

    # Any Parquet reader opens the topic; DuckDB sees hive partitioning.
    table = pq.read_table(files[0])
    assert {"offset", "timestamp", "key", "value", "headers"} <= set(table.column_names)
    rows = duckdb.sql(f"""select count(*), min("offset"), min("partition") from read_parquet('{pattern}', """
                      """hive_partitioning=true)""").fetchall()[0]
    assert rows[0] > 0 and rows[1] == 0 and rows[2] == 0

    # A consumer from the beginning gets every record, in order, with keys, headers and timestamps.
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"pq-{topic_name}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic_name, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 500 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg)
    c.close()
    assert [m.offset() for m in got] == list(range(500))
    assert [m.value() for m in got] == [f'{{"n": {i}}}'.encode() for i in range(500)]
    assert got[123].key() == b"k123" and dict(got[123].headers())["i"] == b"123"
    assert got[123].timestamp()[1] == base_ts + 123


def test_retention_by_bytes_removes_old_segments(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1, config={"segment.bytes": "2048", "retention.bytes": "8192"})
    # (replicated: retention runs on every replica)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 0})
    for i in range(400):
        p.produce(topic_name, value=b"x" * 100, partition=0)
        if i % 10 == 0:
            p.flush(10)
    p.flush(10)
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"ret-{topic_name}"})
    deadline = time.monotonic() + 20
    low = 0
    while time.monotonic() < deadline:
        low, high = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
        if low > 0:
            break
        time.sleep(0.3)
    c.close()
    assert low > 0 and high == 400
