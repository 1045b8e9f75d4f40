"""System tables (brokers, partitions, groups, lag) and SQL on a cluster the workbench did not start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from confluent_kafka import TopicPartition

import workbench
from workbench.sql import materialize


def q(name: str) -> str:
    return '"' + name + '"'


def test_system_tables_and_lag_of_a_group_at_a_known_position(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2)
    producer = cluster.producer()
    sent_at = int(time.time() * 1000) - 5000  # five seconds old
    for i in range(10):
        producer.send(topic_name, {"i": i}, partition=0, timestamp=sent_at + i)
    producer.flush()
    group = f"g-{topic_name}"
    consumer = cluster.consumer(group)
    consumer.raw.commit(
        offsets=[TopicPartition(topic_name, 0, 4), TopicPartition(topic_name, 1, 0)], asynchronous=False
    )
    consumer.close()

    brokers = cluster.sql("SELECT * FROM wb.brokers ORDER BY node_id")
    assert brokers["node_id"].tolist() == [1, 2, 3] and brokers["is_controller"].sum() <= 1
    parts = cluster.sql(f"SELECT * FROM wb.partitions WHERE topic = '{topic_name}' ORDER BY partition")
    assert parts["high_watermark"].tolist() == [10, 0] and parts["leader"].notna().all()
    assert all(len(r) >= 1 for r in parts["replicas"]) and all(len(r) >= 1 for r in parts["isr"])
    groups = cluster.sql(f"SELECT group_id, state, members FROM wb.consumer_groups WHERE group_id = '{group}'")
    assert groups["members"].tolist() == [0]
    lag = cluster.sql(f"SELECT * FROM wb.consumer_lag WHERE group_id = '{group}' ORDER BY partition")
    assert lag["committed_offset"].tolist() == [4, 0]
    assert lag["log_end_offset"].tolist() == [10, 0] and lag["lag"].tolist() == [6, 0]
    assert 4.5 <= lag["lag_seconds"][0] < 60 and lag["lag_seconds"][1] == 0
    # Joins with topic tables work as with any table.
    joined = cluster.sql(
        f"SELECT count(*) n FROM {q(topic_name)} t JOIN wb.consumer_lag l "
        f"ON l.topic = '{topic_name}' AND l.partition = t.partition AND t.\"offset\" >= "
        f"l.committed_offset WHERE l.group_id = '{group}'"
    )
    assert joined["n"][0] == 6


def test_lag_lists_partitions_without_a_commit(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=3)
    producer = cluster.producer()
    for p, n in ((0, 5), (1, 3)):
        for i in range(n):
            producer.send(topic_name, {"i": i}, partition=p)
    producer.flush()
    group = f"g-{topic_name}"
    consumer = cluster.consumer(group)
    consumer.raw.commit(offsets=[TopicPartition(topic_name, 0, 2)], asynchronous=False)
    consumer.close()
    # The first query names two wb tables that do not exist yet, joined with USING.
    joined = cluster.sql(
        f"SELECT group_id, state, partition, committed_offset, lag FROM wb.consumer_groups "
        f"JOIN wb.consumer_lag USING (group_id) WHERE group_id = '{group}' ORDER BY partition"
    )
    assert joined["partition"].tolist() == [0, 1, 2]
    assert joined["committed_offset"].tolist()[0] == 2 and joined["committed_offset"][1:].isna().all()
    assert joined["lag"].tolist() == [3, 3, 0]  # without a commit: log end - log start
    lag = cluster.sql(f"SELECT * FROM wb.consumer_lag WHERE group_id = '{group}' AND partition = 1")
    assert lag["lag_seconds"][0] >= 0 and lag["oldest_unconsumed_timestamp"].notna()[0]


def test_members_and_assignments_of_an_active_group(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2)
    cluster.producer().send_and_wait(topic_name, {"x": 1})
    group = f"g-{topic_name}"
    consumer = cluster.consumer(group, topic_name, **{"session.timeout.ms": 6000})
    try:
        deadline = time.monotonic() + 20
        while not consumer.raw.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        members = cluster.sql(f"SELECT * FROM wb.consumer_group_members WHERE group_id = '{group}'")
        assert sorted(members["partition"].tolist()) == [0, 1] and members["member_id"].nunique() == 1
        state = cluster.sql(f"SELECT state, members FROM wb.consumer_groups WHERE group_id = '{group}'")
        assert state["members"][0] == 1 and state["state"][0].upper() == "STABLE"
    finally:
        consumer.close()


def test_connect_to_a_cluster_started_elsewhere_materializes_locally(tmp_path, monkeypatch):
    monkeypatch.setattr(materialize, "SEAL_RECORDS", 100)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "up", "--brokers", "1", "--data", str(tmp_path / "remote")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("bootstrap.servers="), line
        remote = workbench.connect(line.split("=", 1)[1])
        remote.sql_data_dir = tmp_path / "local"
        remote.create_topic("events", partitions=2)
        producer = remote.producer()
        for i in range(500):
            producer.send("events", {"i": i, "kind": "xy"[i % 2]})
        producer.flush()
        df = remote.sql("SELECT kind, count(*) n, sum(i) s FROM events GROUP BY kind ORDER BY kind")
        assert df["n"].tolist() == [250, 250] and df["s"].sum() == sum(range(500))
        delivery = producer.send_and_wait("events", {"i": 1000, "kind": "z"})
        assert remote.sql(
            f'SELECT i FROM events WHERE partition = {delivery.partition} AND "offset" = {delivery.offset}'
        )["i"].tolist() == [1000]
        # Consumed into the brokers' layout locally; never a group of its own.
        segments = list((tmp_path / "local" / "broker-local" / "topics" / "events").glob("partition=*/*.parquet"))
        assert segments
        groups = remote.sql("SELECT group_id FROM wb.consumer_groups")
        assert groups.empty
        remote.close_sql()
        # A new session resumes from the local files.
        again = workbench.connect(line.split("=", 1)[1])
        again.sql_data_dir = tmp_path / "local"
        assert again.sql("SELECT count(*) n FROM events")["n"][0] == 501
        again.close_sql()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_stop_ends_the_sql_threads_and_no_engine_starts_after(fresh_cluster, topic_name):
    import threading

    import pytest

    from workbench.sql import SqlError

    c = fresh_cluster(brokers=1)
    c.create_topic(topic_name, partitions=1)
    c.producer().send_and_wait(topic_name, {"a": 1})
    w = c.watch(f"SELECT count(*) n FROM {q(topic_name)}", every="100ms", display=False)
    assert w.next(10)["n"][0] == 1
    compactor = c.sql_engine._compactor
    c.stop()
    assert not compactor.is_alive() and not w.running
    with pytest.raises(SqlError, match="stopped"):
        c.sql("SELECT 1")
    assert compactor not in threading.enumerate()
