"""A power loss of every broker at once, with and without `flush.messages=1`.

Simulated honestly: every broker is SIGKILLed while a producer is mid-stream, then each
partition's segments are cut back to the sizes the broker last fsynced (it records them
in `.flushed` after each fsync; a segment created after the last fsync is removed, as
its directory entry was never made durable). That is what the disks would hold after
the page cache is gone. The controller's metadata log is always fsynced.

With `flush.messages=1` (fsync before acknowledging, group-committed) nothing that was
acknowledged may be missing. Without it (and `flush.ms` long, so the background fsync
does not run during the test) acknowledged records are lost: the check that the
simulation does cut what was never fsynced.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

PARTITIONS = 2


def cut_to_last_fsync(data_dir, topic: str) -> int:
    """Truncate every segment of `topic` on every broker to its last fsynced size; return bytes cut."""
    cut = 0
    for part in sorted(data_dir.glob(f"broker-*/topics/{topic}/partition=*")):
        flushed_file = part / ".flushed"
        sizes = json.loads(flushed_file.read_text())["segments"] if flushed_file.exists() else {}
        for seg in part.glob("*.log"):
            size = seg.stat().st_size
            keep = sizes.get(seg.name, 0)
            if seg.name not in sizes:
                seg.unlink()
                for index in part.glob(seg.stem + ".*index"):
                    index.unlink()
            elif size > keep:
                os.truncate(seg, keep)
            cut += max(0, size - keep)
    return cut


def produce_until_killed(cluster, topic: str) -> tuple[set[bytes], int]:
    acked: set[bytes] = set()

    def on_delivery(err, msg):
        if err is None:
            acked.add(msg.value())

    p = Producer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": 5000,
        }
    )
    stop = threading.Event()

    def run():
        i = 0
        while not stop.is_set():
            p.produce(topic, value=f"v-{i}".encode(), on_delivery=on_delivery)
            i += 1
            p.poll(0)
            if i % 50 == 0:
                time.sleep(0.005)
        p.flush(10)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [pid for pid in cluster.broker_pids().values() if pid]
    for pid in pids:  # every broker at once
        os.kill(pid, signal.SIGKILL)
    stop.set()
    t.join(30)
    for node_id in cluster.brokers:
        cluster.kill_broker(node_id)  # reap
    return set(acked), len(pids)


def read_everything(cluster, topic: str, expected: set[bytes], timeout: float = 40.0) -> set[bytes]:
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "check", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            if not expected - seen or time.monotonic() - idle_since > 8:
                break
            continue
        if msg.error() is None:
            seen.add(msg.value())
            idle_since = time.monotonic()
    c.close()
    return seen


@pytest.mark.parametrize("flush_messages", [True, False], ids=["flush.messages=1", "default"])
def test_whole_cluster_power_loss(fresh_cluster, topic_name, flush_messages):
    cluster = fresh_cluster(brokers=3)
    config = {"min.insync.replicas": "2", "flush.ms": "600000"}
    if flush_messages:
        config["flush.messages"] = "1"
    cluster.create_topic(topic_name, PARTITIONS, replication_factor=3, config=config)
    acked, killed = produce_until_killed(cluster, topic_name)
    assert killed == 3 and len(acked) >= 2000
    cut = cut_to_last_fsync(cluster.data_dir, topic_name)
    cluster.start()
    seen = read_everything(cluster, topic_name, acked)
    lost = acked - seen
    if flush_messages:
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged records lost ({cut} unflushed bytes cut)"
    else:
        assert cut > 0 and lost, "the simulated power loss cut nothing: it would prove nothing"
