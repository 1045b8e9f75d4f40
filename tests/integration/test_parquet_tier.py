"""Sealed segments become Parquet; fetches of offsets that live only in Parquet still work."""

from __future__ import annotations

import os
import time

import duckdb
import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition


def test_sealed_segments_are_parquet_and_old_offsets_are_served_from_it(cluster, topic_name):
    # Tiny segments, no raw segments kept once converted: reading from offset 0 must come from Parquet.
    cluster.create_topic(
        topic_name,
        partitions=1,
        replication_factor=1,
        config={"segment.bytes": "4096", "workbench.hot.segments": "0"},
    )
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 0, "compression.type": "zstd"})
    base_ts = int(time.time() * 1000) - 60_000  # recent: older records would fall to retention.ms (7 days)
    for i in range(500):
        p.produce(
            topic_name,
            key=f"k{i}".encode(),
            value=f'{{"n": {i}}}'.encode(),
            headers=[("i", str(i).encode())],
            timestamp=base_ts + i,
            partition=0,
        )
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
    rows = duckdb.sql(
        f"""select count(*), min("offset"), min("partition") from read_parquet('{pattern}', """
        """hive_partitioning=true)"""
    ).fetchall()[0]
    assert rows[0] > 0 and rows[1] == 0 and rows[2] == 0

    # A consumer from the beginning gets every record, in order, with keys, headers and timestamps.
    c = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": f"pq-{topic_name}",
            "enable.auto.commit": False,
        }
    )
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


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except FileNotFoundError:
            pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _maps_arrow(pid: int) -> bool:
    return "libarrow" in open(f"/proc/{pid}/maps").read()


def test_conversion_runs_in_an_idle_priority_process_that_dies_with_the_broker(fresh_cluster, topic_name):
    cluster = fresh_cluster(brokers=1)
    cluster.create_topic(
        topic_name,
        partitions=1,
        replication_factor=1,
        config={"segment.bytes": "4096", "workbench.hot.segments": "0"},
    )
    broker_pid = cluster.broker_pids()[1]
    # An idle broker has not loaded pyarrow: that is most of its memory otherwise.
    assert not _maps_arrow(broker_pid)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 0})
    for i in range(300):
        p.produce(topic_name, value=b"v%03d" % i + b"x" * 50, partition=0)
        if i % 10 == 0:
            p.flush(10)  # batches stay below segment.bytes
    assert p.flush(15) == 0

    converter = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and converter is None:
        converter = next((c for c in _children(broker_pid) if "workbench.storage.converter" in _cmdline(c)), None)
        time.sleep(0.05)
    assert converter is not None, "no converter process under the broker"

    def lowered() -> bool:  # SCHED_IDLE, or nice 19 where that is refused
        return os.sched_getscheduler(converter) == os.SCHED_IDLE or os.getpriority(os.PRIO_PROCESS, converter) == 19

    deadline = time.monotonic() + 10  # the child lowers itself once started
    while time.monotonic() < deadline and not lowered():
        time.sleep(0.05)
    assert lowered()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(cluster.data_dir.glob(f"broker-1/topics/{topic_name}/*/*.parquet")):
        time.sleep(0.1)
    assert list(cluster.data_dir.glob(f"broker-1/topics/{topic_name}/*/*.parquet"))
    # The broker never decoded a record into Arrow itself.
    assert not _maps_arrow(broker_pid)

    cluster.kill_broker(1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{converter}"):
        if open(f"/proc/{converter}/stat").read().split(")")[1].split()[0] == "Z":
            break  # exited, waiting to be reaped by init
        time.sleep(0.05)
    alive = (
        os.path.exists(f"/proc/{converter}") and open(f"/proc/{converter}/stat").read().split(")")[1].split()[0] != "Z"
    )
    assert not alive, "the converter outlived its broker"
