"""Acknowledged records and committed offsets survive SIGKILL and whole-cluster restarts."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.conftest import FAST_GROUPS
from workbench import Cluster


def produce_acked(bootstrap: str, topic: str, n: int, prefix: str = "") -> set[bytes]:
    acked: set[bytes] = set()

    def on_delivery(err, msg):
        if err is None:
            acked.add(msg.value())

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 1})
    for i in range(n):
        p.produce(topic, value=f"{prefix}{i}".encode(), on_delivery=on_delivery)
    p.flush(30)
    return acked


def read_all(bootstrap: str, topic: str, expected: int, group: str | None = None, timeout: float = 40.0):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"check-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        msg = c.poll(0.3)
        if msg is not None and msg.error() is None:
            out.append(msg)
    c.close()
    return out


def test_sigkill_and_restart_loses_no_acknowledged_record(fresh_cluster, topic_name):
    cluster = fresh_cluster(3)
    cluster.create_topic(topic_name, partitions=6)
    acked = produce_acked(cluster.bootstrap_servers, topic_name, 3000)
    assert len(acked) == 3000
    for node_id in (1, 2, 3):
        cluster.kill_broker(node_id)
    for node_id in (1, 2, 3):
        cluster.restart_broker(node_id)  # returns at once until a quorum majority runs
    cluster.start()  # waits until every broker serves
    msgs = read_all(cluster.bootstrap_servers, topic_name, len(acked))
    values = [m.value() for m in msgs]
    assert len(values) == len(set(values)) == len(acked)
    assert set(values) == acked
    # And the restarted brokers take new writes at the right offsets.
    more = produce_acked(cluster.bootstrap_servers, topic_name, 100, prefix="after-")
    assert len(more) == 100
    assert len(read_all(cluster.bootstrap_servers, topic_name, 3100)) == 3100


def test_restart_broker_keeps_its_port(fresh_cluster):
    cluster = fresh_cluster(2)
    before = cluster.bootstrap_servers
    cluster.kill_broker(2)
    assert not cluster.brokers[2].alive
    cluster.restart_broker(2)
    assert cluster.brokers[2].alive
    assert cluster.bootstrap_servers == before


def test_group_resumes_from_committed_offsets_after_whole_cluster_restart(tmp_path, topic_name):
    data = tmp_path / "data"
    group = f"resume-{topic_name}"
    with Cluster(brokers=3, data_dir=data, config=FAST_GROUPS) as cluster:
        cluster.create_topic(topic_name, partitions=6)
        produce_acked(cluster.bootstrap_servers, topic_name, 600)
        first = read_all(cluster.bootstrap_servers, topic_name, 600, group=None)
        assert len(first) == 600
        c = Consumer(
            {
                "bootstrap.servers": cluster.bootstrap_servers,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        c.subscribe([topic_name])
        got = 0
        deadline = time.monotonic() + 30
        while got < 300 and time.monotonic() < deadline:
            msg = c.poll(0.3)
            if msg is not None and msg.error() is None:
                got += 1
                c.commit(message=msg, asynchronous=False)
        c.close()
        assert got == 300
        bootstrap = cluster.bootstrap_servers
    # Reopen the same data directory: same topics, same data, same committed offsets.
    with Cluster(data_dir=data, config=FAST_GROUPS) as cluster:
        assert len(cluster.brokers) == 3
        assert cluster.bootstrap_servers == bootstrap  # ports are reused when free
        assert topic_name in cluster.topics()
        c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group})
        committed = c.committed([TopicPartition(topic_name, p) for p in range(6)], timeout=15)
        c.close()
        assert sum(max(tp.offset, 0) for tp in committed) == 300
        rest = read_all(cluster.bootstrap_servers, topic_name, 300, group=group)
        assert len(rest) == 300
        everything = {m.value() for m in first}
        assert {m.value() for m in rest} <= everything
