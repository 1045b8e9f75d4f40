"""Thousands of new partitions (issue 19, "how cost grows"): a large CreateTopics must not stall a
broker, and a broker killed right after one must find every partition when it comes back.

A broker opens new partition logs a slice at a time (`replica_manager.OPEN_SLICE_S`) and answers
whatever arrives in between; until it has opened a partition it leads, its Metadata shows that
partition without a leader (LEADER_NOT_AVAILABLE), so clients wait for it. The test of "answered
during the create" counts the partition directories the broker has made before each request is
sent and after its answer arrives: an answer that arrives while the broker is still opening logs
(some directories made, not all) could not exist if the opening blocked the event loop.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.metadata import MetadataRequest

from tests.support import wait_until
from workbench.protocol.blocking_client import WireClient


def broker_address(cluster, node_id: int) -> str:
    return f"127.0.0.1:{cluster.brokers[node_id].port}"


def partition_dirs(cluster, node_id: int, topic: str) -> int:
    directory = Path(cluster.data_dir) / f"broker-{node_id}" / "topics" / topic
    try:
        with os.scandir(directory) as entries:
            return sum(1 for entry in entries if entry.name.startswith("partition="))
    except FileNotFoundError:
        return 0


def metadata(address: str | WireClient, topic: str):
    """``topic``'s Metadata from one broker: an address (a connection of its own) or an open client."""
    if isinstance(address, WireClient):
        client, own = address, False
    else:
        host, port = address.rsplit(":", 1)
        client, own = WireClient(host, int(port), timeout=60.0), True
    try:
        request = MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False
        )
        [t] = client.request(request, 9).topics
        return t
    finally:
        if own:
            client.close()


def ready_partitions(address: str | WireClient, topic: str, node_id: int | None = None) -> int:
    """Partitions of ``topic`` this broker's Metadata shows with a leader (``node_id``: led by it)."""
    t = metadata(address, topic)
    if t.error_code != 0:
        return 0
    return sum(1 for p in t.partitions if p.error_code == 0 and p.leader_id >= 0 and node_id in (None, p.leader_id))


def test_a_broker_keeps_answering_while_it_opens_thousands_of_new_partitions(fresh_cluster, topic_name):
    cluster = fresh_cluster(1)
    small, big, partitions = f"{topic_name}-small", f"{topic_name}-big", 3000
    cluster.create_topic(small, partitions=3, replication_factor=1)
    t = metadata(broker_address(cluster, 1), small)
    [mine] = [p.partition_index for p in t.partitions if p.leader_id == 1][:1]
    address = broker_address(cluster, 1)
    producer = Producer({"bootstrap.servers": address, "acks": "all", "linger.ms": 0})
    producer.produce(small, b"warm-up", partition=mine)
    assert producer.flush(30) == 0

    # The create runs in the background; this thread keeps asking broker 1 meanwhile.
    created: list[BaseException | None] = []

    def create() -> None:
        try:
            cluster.create_topic(big, partitions=partitions, replication_factor=1, timeout=300)
            created.append(None)
        except BaseException as exc:
            created.append(exc)

    creator = threading.Thread(target=create)
    creator.start()
    produced: list[tuple[int, int]] = []  # (directories before the request, after its answer)
    described: list[tuple[int, int, int]] = []  # the same, and the partitions shown ready
    errors: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            errors.append(str(err))

    shown: list[tuple[int, int]] = []  # (partitions broker 1 shows ready as its own, directories after)
    # One connection for the whole loop and little other work in it: the broker opens its 3,000 logs
    # in about 10 slices of OPEN_SLICE_S (about 0.2 s in all here; with 1,000 logs, 2-3 slices, CI once
    # saw no round trip land inside), and each round trip must be short enough to fall between two.
    asker = WireClient("127.0.0.1", cluster.brokers[1].port, timeout=60.0)
    rounds = 0
    while creator.is_alive():
        before = partition_dirs(cluster, 1, big)
        producer.produce(small, b"during", partition=mine, on_delivery=on_delivery)
        assert producer.flush(60) == 0
        produced.append((before, partition_dirs(cluster, 1, big)))
        before = partition_dirs(cluster, 1, big)
        ready_small = ready_partitions(asker, small)
        described.append((before, partition_dirs(cluster, 1, big), ready_small))
        rounds += 1
        if rounds % 20 == 0:  # describing thousands of partitions is work for the broker: now and then
            ready = ready_partitions(asker, big, node_id=1)
            shown.append((ready, partition_dirs(cluster, 1, big)))
    asker.close()
    creator.join()
    assert created == [None]
    assert errors == []

    # The whole topic, all open and shown with their leader once the create returned.
    total = partition_dirs(cluster, 1, big)
    assert total == ready_partitions(address, big, node_id=1) > partitions // 10
    during_produce = [(b, a) for b, a in produced if b > 0 and a < total]
    during_metadata = [(b, a, r) for b, a, r in described if b > 0 and a < total and r == 3]
    assert during_produce, f"no produce was answered while broker 1 opened its {total} logs: {produced}"
    assert during_metadata, f"no Metadata was answered while broker 1 opened its {total} logs: {described}"
    # While it was opening, it showed as ready (its own) only partitions it had opened.
    assert all(ready <= dirs for ready, dirs in shown), shown
    wait_until(lambda: ready_partitions(address, big) == partitions, timeout=60, message="every partition led")

    # Every partition takes writes (librdkafka sends each to its leader).
    big_producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all", "linger.ms": 5})
    for p in range(0, partitions, 97):
        big_producer.produce(big, b"x", partition=p, on_delivery=on_delivery)
    assert big_producer.flush(60) == 0
    assert errors == []


def test_a_broker_killed_right_after_a_large_create_topics_finds_every_partition(fresh_cluster, topic_name):
    cluster = fresh_cluster(1)
    partitions = 2000
    address = broker_address(cluster, 1)
    admin = AdminClient({"bootstrap.servers": address})
    futures = admin.create_topics([NewTopic(topic_name, partitions, 1)], operation_timeout=120, request_timeout=120)
    futures[topic_name].result(120)
    # SIGKILL as soon as the controller committed the topic: the broker is still opening logs.
    opened_when_killed = partition_dirs(cluster, 1, topic_name)
    cluster.kill_broker(1)
    cluster.restart_broker(1)
    wait_until(
        lambda: ready_partitions(address, topic_name) == partitions,
        timeout=180,
        message=lambda: (
            f"all {partitions} partitions ready after the restart "
            f"({partition_dirs(cluster, 1, topic_name)} opened; {opened_when_killed} when killed)"
        ),
    )

    # One record in each partition, acknowledged (acks=all), then SIGKILL again: no flush, no close.
    acked: dict[int, int] = {}
    errors: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is None:
            acked[msg.partition()] = msg.offset()
        else:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": address, "acks": "all", "linger.ms": 5})
    for p in range(partitions):
        producer.produce(topic_name, f"r-{p}".encode(), partition=p, on_delivery=on_delivery)
    assert producer.flush(120) == 0
    assert errors == []
    assert acked == dict.fromkeys(range(partitions), 0)
    cluster.kill_broker(1)
    cluster.restart_broker(1)
    wait_until(lambda: ready_partitions(address, topic_name) == partitions, timeout=180, message="ready again")

    consumer = Consumer(
        {"bootstrap.servers": address, "group.id": f"check-{time.monotonic_ns()}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic_name, p, 0) for p in range(partitions)])
    got: dict[int, tuple[int, bytes]] = {}
    deadline = time.monotonic() + 120
    while len(got) < partitions and time.monotonic() < deadline:
        for msg in consumer.consume(1000, timeout=1.0):
            if msg.error() is None:
                got[msg.partition()] = (msg.offset(), msg.value())
    consumer.close()
    assert got == {p: (0, f"r-{p}".encode()) for p in range(partitions)}

    # The recovered logs continue where they ended.
    for p in range(0, partitions, 101):
        producer.produce(topic_name, b"after", partition=p, on_delivery=on_delivery)
    assert producer.flush(60) == 0
    assert errors == []
    assert all(acked[p] == 1 for p in range(0, partitions, 101))
