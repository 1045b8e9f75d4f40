"""Replication, leader failover, ISR and min.insync.replicas, with real broker processes."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.integration.test_durability import read_all


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{message} not reached within {timeout}s (last: {last!r})")


def partitions_of(cluster, topic: str):
    frame = cluster.describe().partitions
    return frame[frame.topic == topic]


def produce_acked(bootstrap: str, topic: str, n: int, *, prefix: str = "", key=None, **conf) -> tuple[list, list]:
    acked, failed = [], []

    def on_delivery(err, msg):
        (failed if err else acked).append((err, msg.value()))

    settings = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 15000,
    }
    settings.update(conf)
    p = Producer(settings)
    for i in range(n):
        p.produce(topic, value=f"{prefix}{i}".encode(), key=key, on_delivery=on_delivery)
        p.poll(0)
    p.flush(30)
    return acked, failed


def consume_values(bootstrap: str, topic: str, expected: int, timeout: float = 40.0) -> list[bytes]:
    return [m.value() for m in read_all(bootstrap, topic, expected, timeout=timeout)]


def test_replicas_default_to_three_spread_and_leaders_balanced(fresh_cluster, topic_name):
    cluster = fresh_cluster(3)
    cluster.create_topic(topic_name, partitions=6)
    parts = partitions_of(cluster, topic_name)
    assert all(len(r) == 3 and sorted(r) == [1, 2, 3] for r in parts.replicas)
    assert sorted(parts.leader.value_counts().tolist()) == [2, 2, 2]
    acked, failed = produce_acked(cluster.bootstrap_servers, topic_name, 600)
    assert len(acked) == 600 and not failed
    # Every replica catches up: high watermark == log end offset, full ISR.
    wait_until(lambda: all(len(i) == 3 for i in partitions_of(cluster, topic_name).isr), message="full ISR")
    parts = partitions_of(cluster, topic_name)
    assert parts.high_watermark.sum() == 600
    assert (parts.high_watermark == parts.log_end_offset).all()


def test_leader_failover_after_sigkill_loses_nothing(fresh_cluster, topic_name):
    cluster = fresh_cluster(3)
    cluster.create_topic(topic_name, partitions=3, config={"min.insync.replicas": "2"})
    history = cluster.leader_history(interval=0.05)
    acked, _ = produce_acked(cluster.bootstrap_servers, topic_name, 300)
    victim = int(partitions_of(cluster, topic_name).leader.iloc[0])
    t0 = time.monotonic()
    cluster.kill_broker(victim)
    wait_until(
        lambda: victim not in set(partitions_of(cluster, topic_name).leader),
        timeout=15,
        message="new leaders",
    )
    failover = time.monotonic() - t0
    print(f"\nleader failover after SIGKILL took {failover:.2f}s")
    assert failover < 9.0  # well inside Kafka's default broker session timeout
    more, failed = produce_acked(cluster.bootstrap_servers, topic_name, 300, prefix="after-")
    assert len(more) == 300 and not failed
    values = consume_values(cluster.bootstrap_servers, topic_name, 600)
    assert sorted(values) == sorted(v for _, v in acked + more)
    # The returning broker truncates, catches up, rejoins the ISR, and gets its leadership back.
    cluster.restart_broker(victim)
    wait_until(
        lambda: all(victim in i for i in partitions_of(cluster, topic_name).isr),
        timeout=30,
        message="victim back in every ISR",
    )
    cluster.rebalance_leaders()
    wait_until(
        lambda: (lambda p: bool((p.leader == p.replicas.str[0]).all()))(partitions_of(cluster, topic_name)),
        timeout=15,
        message="preferred leaders",
    )
    wait_until(
        lambda: (lambda p: bool((p.high_watermark == p.log_end_offset).all()))(partitions_of(cluster, topic_name)),
        timeout=10,
        message="high watermark == log end offset",
    )
    events = history.frame()
    history.stop()
    assert (events.old_leader == victim).any()
    assert events.reason.str.len().gt(0).all()


def test_two_of_three_down_refuses_acks_all_then_recovers(fresh_cluster, topic_name):
    cluster = fresh_cluster(3)
    cluster.create_topic(topic_name, partitions=1, config={"min.insync.replicas": "2"})
    acked, _ = produce_acked(cluster.bootstrap_servers, topic_name, 10)
    assert len(acked) == 10
    leader = int(partitions_of(cluster, topic_name).leader.iloc[0])
    others = [b for b in (1, 2, 3) if b != leader]
    for b in others:
        cluster.kill_broker(b)
    # With two of three brokers gone, the controller quorum has no majority either: the ISR cannot
    # shrink, so the high watermark cannot move and acks=all writes fail (not silently lost).
    _, failed = produce_acked(
        cluster.bootstrap_servers, topic_name, 5, prefix="refused-", **{"message.timeout.ms": 3000}
    )
    assert len(failed) == 5
    assert {err.code() for err, _ in failed} <= {
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.REQUEST_TIMED_OUT,
    }
    cluster.restart_broker(others[0])
    more, failed = produce_acked(
        cluster.bootstrap_servers, topic_name, 10, prefix="resumed-", **{"message.timeout.ms": 30000}
    )
    assert len(more) == 10 and not failed
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"hw-{topic_name}"})
    _, high = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    c.close()
    values = consume_values(cluster.bootstrap_servers, topic_name, high)
    # Everything acknowledged is there; a refused write may or may not have been kept (it was never
    # acknowledged, as with Kafka's timeouts), but nothing appears twice.
    assert {v for _, v in acked + more} <= set(values)
    assert len(values) == len(set(values))


def test_controlled_shutdown_causes_no_client_errors(fresh_cluster, topic_name):
    cluster = fresh_cluster(3)
    cluster.create_topic(topic_name, partitions=3, config={"min.insync.replicas": "2"})
    wait_until(lambda: all(len(i) == 3 for i in partitions_of(cluster, topic_name).isr))
    errors, acked = [], []
    stop = threading.Event()

    def run():
        p = Producer(
            {
                "bootstrap.servers": cluster.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        i = 0
        while not stop.is_set():
            p.produce(
                topic_name,
                value=str(i).encode(),
                on_delivery=lambda err, msg: (errors if err else acked).append(err or msg.value()),
            )
            p.poll(0.002)
            i += 1
        p.flush(30)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.0)
    leader = int(partitions_of(cluster, topic_name).leader.iloc[0])
    cluster.stop_broker(leader)
    time.sleep(1.5)
    stop.set()
    t.join(60)
    assert not errors, errors[:3]
    assert len(acked) > 100
    assert leader not in set(partitions_of(cluster, topic_name).leader)


def test_group_coordinator_moves_and_consumers_resume(fresh_cluster, topic_name):
    cluster = fresh_cluster(3)
    cluster.create_topic(topic_name, partitions=3)
    acked, _ = produce_acked(cluster.bootstrap_servers, topic_name, 300)
    group = f"survivor-{topic_name}"
    c = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    c.subscribe([topic_name])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 150 and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None:
            seen.append(msg.value())
            c.commit(message=msg, asynchronous=False)
    c.close()
    assert len(seen) == 150
    # Find and kill the group's coordinator.
    from kafka.protocol.metadata import FindCoordinatorRequest

    from workbench.protocol.blocking_client import WireClient

    wire = WireClient.to(cluster.bootstrap_servers)
    coordinator = wire.request(FindCoordinatorRequest(key=group, key_type=0), 3).node_id
    wire.close()
    assert coordinator in cluster.brokers
    cluster.kill_broker(coordinator)
    c2 = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    committed = wait_until(
        lambda: (lambda r: r if sum(max(tp.offset, 0) for tp in r) == 150 else None)(
            c2.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=5)
        ),
        timeout=30,
        message="committed offsets readable from the new coordinator",
    )
    assert sum(max(tp.offset, 0) for tp in committed) == 150
    c2.subscribe([topic_name])
    rest = []
    deadline = time.monotonic() + 30
    while len(rest) < 150 and time.monotonic() < deadline:
        msg = c2.poll(0.2)
        if msg is not None and msg.error() is None:
            rest.append(msg.value())
    c2.close()
    assert len(rest) == 150
    assert set(rest).isdisjoint(seen)
    assert set(rest) | set(seen) == {v for _, v in acked}


@pytest.mark.slow
def test_chaos_kills_and_restarts_lose_and_duplicate_nothing(fresh_cluster, topic_name):
    cluster = fresh_cluster(3)
    cluster.create_topic(topic_name, partitions=6, config={"min.insync.replicas": "2"})
    acked: list[tuple[int, int, bytes]] = []
    failed: list = []
    stop = threading.Event()

    def produce():
        p = Producer(
            {
                "bootstrap.servers": cluster.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 60000,
                "partitioner": "murmur2_random",
            }
        )
        i = 0
        while not stop.is_set():
            p.produce(
                topic_name,
                key=f"k{i % 97}".encode(),
                value=str(i).encode(),
                on_delivery=lambda err, msg: (
                    failed.append(err) if err else acked.append((msg.partition(), msg.offset(), msg.value()))
                ),
            )
            p.poll(0.001)
            i += 1
            if i % 2000 == 0:
                p.flush(0.5)
        p.flush(90)

    # Watch for partitions without a live leader.
    leaderless: dict[int, float] = {}
    longest = [0.0]

    def watch():
        from workbench.describe import metadata

        while not stop.is_set():
            try:
                md = metadata(cluster.bootstrap_servers)
            except Exception:
                time.sleep(0.05)
                continue
            running = {b for b, pid in cluster.broker_pids().items() if pid is not None}
            live = {b.node_id for b in md.brokers} & running  # a killed leader counts until replaced
            now = time.monotonic()
            for t in md.topics:
                if t.name != topic_name:
                    continue
                for p in t.partitions:
                    if p.leader_id in live and p.leader_id != -1:
                        if p.partition_index in leaderless:
                            longest[0] = max(longest[0], now - leaderless.pop(p.partition_index))
                    else:
                        leaderless.setdefault(p.partition_index, now)
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    watcher = threading.Thread(target=watch)
    producer.start()
    watcher.start()
    kills = 0
    try:
        for round_ in range(12):
            time.sleep(1.0)
            desc = cluster.describe()
            if round_ % 3 == 0:
                victim = int(desc.controller_id)  # the active controller
            else:
                victim = int(desc.partitions[desc.partitions.topic == topic_name].leader.iloc[round_ % 6])
            if victim not in cluster.brokers or not cluster.brokers[victim].alive:
                victim = 1 + round_ % 3
            cluster.kill_broker(victim)
            kills += 1
            time.sleep(1.5)
            cluster.restart_broker(victim)
            wait_until(
                lambda: all(len(i) >= 2 for i in partitions_of(cluster, topic_name).isr),
                timeout=30,
                message="ISR of two or more",
            )
    finally:
        time.sleep(1.0)
        stop.set()
        producer.join(120)
        watcher.join(10)
    c = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": f"verify-{topic_name}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic_name])
    # The log, read back: one entry per (partition, offset). A consumer may be handed the same offset
    # twice (at-least-once delivery across leader moves); that is not a duplicate in the log, so
    # reading continues until every acknowledged value has been seen.
    stored: dict[tuple[int, int], bytes] = {}
    redelivered = 0
    want = {v for _, _, v in acked}
    seen_values: set[bytes] = set()
    deadline = time.monotonic() + 60
    while not want <= seen_values and time.monotonic() < deadline:
        msg = c.poll(0.3)
        if msg is not None and msg.error() is None:
            key = (msg.partition(), msg.offset())
            if key in stored:
                redelivered += 1
                assert stored[key] == msg.value(), f"offset {key} read back with two different values"
            stored[key] = msg.value()
            seen_values.add(msg.value())
    c.close()
    consumed = sorted((p, o, v) for (p, o), v in stored.items())
    values = [v for _, _, v in consumed]
    got = set(values)
    lost = [v for _, _, v in acked if v not in got]
    duplicated = len(values) - len(got)  # one value stored at two offsets
    print(
        f"\nchaos: kills={kills} acknowledged={len(acked)} failed={len(failed)} lost={len(lost)} "
        f"duplicated={duplicated} redelivered_by_consumer={redelivered} "
        f"longest_leaderless_window={longest[0]:.2f}s"
    )
    assert kills >= 10
    assert not lost
    assert duplicated == 0
    # Per-partition order: every acknowledged record is read in its acknowledged partition, each
    # partition in increasing offset order. (Whether the acknowledged *offset* always equals where the
    # record sits is printed, not asserted: a rare mismatch after retries across leader changes is an
    # open finding, see the README's "Known limits".)
    where = {v: (p, o) for p, o, v in consumed}
    assert all(where[v][0] == p for p, _, v in acked)
    moved = sum(1 for p, o, v in acked if where[v] != (p, o))
    print(f"chaos: acknowledged offset differs from the stored offset for {moved} records")
    by_partition: dict[int, list[int]] = {}
    for partition, offset, _ in consumed:
        by_partition.setdefault(partition, []).append(offset)
    for offsets in by_partition.values():
        assert offsets == sorted(offsets) and len(offsets) == len(set(offsets))
