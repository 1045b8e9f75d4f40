"""KIP-848 consumer groups (`group.protocol=consumer`) with librdkafka: the broker assigns."""

from __future__ import annotations

from confluent_kafka import Consumer, ConsumerGroupType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer

from tests.support import wait_until


def produce_n(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    for i in range(start, start + n):
        p.produce(topic, key=str(i).encode(), value=str(i).encode())
    assert p.flush(30) == 0


def kip848_consumer(bootstrap: str, group: str, topic: str, **conf) -> Consumer:
    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    settings.update(conf)
    c = Consumer(settings)
    c.subscribe([topic])
    return c


def poll_until(consumers: list[Consumer], predicate, seen: list | None = None, timeout: float = 60.0) -> list:
    """Poll every consumer until predicate() holds, appending (consumer, message) to `seen`."""
    seen = [] if seen is None else seen

    def step() -> bool:
        for c in consumers:
            msg = c.poll(0.1)
            if msg is not None and msg.error() is None:
                seen.append((c, msg))
        return predicate()

    if not wait_until(step, timeout, interval=0, fail=False):
        assigned = [sorted(p.partition for p in c.assignment()) for c in consumers]
        raise AssertionError(f"not reached; assignments {assigned}")
    return seen


def test_two_kip848_consumers_split_partitions_consume_commit_and_resume(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=4)
    produce_n(cluster.bootstrap_servers, topic_name, 40)
    group = f"g848-{topic_name}"
    bootstrap = cluster.bootstrap_servers

    # One consumer gets everything; its messages are committed with its member epoch.
    first = kip848_consumer(bootstrap, group, topic_name)
    try:
        seen: list = []
        poll_until([first], lambda: len({p.partition for p in first.assignment()}) == 4 and len(seen) >= 40, seen)
        values = sorted(int(m.value()) for _, m in seen)
        assert values == list(range(40))
        first.commit(asynchronous=False)

        # A second member joins: the broker revokes from the first before assigning to the second,
        # and the two end up with disjoint halves.
        second = kip848_consumer(bootstrap, group, topic_name)
        try:

            def split() -> bool:
                a = {p.partition for p in first.assignment()}
                b = {p.partition for p in second.assignment()}
                return len(a) == 2 and len(b) == 2 and not a & b

            poll_until([first, second], split)

            produce_n(bootstrap, topic_name, 20, start=40)
            more: list = []
            poll_until([first, second], lambda: len(more) >= 20, more)
            by_consumer = {id(c): {m.partition() for cc, m in more if cc is c} for c in (first, second)}
            assert not by_consumer[id(first)] & by_consumer[id(second)]
            assert sorted(int(m.value()) for _, m in more) == list(range(40, 60))
            for c in (first, second):
                c.commit(asynchronous=False)

            # The admin client sees a KIP-848 group (ConsumerGroupDescribe) with both members.
            admin = AdminClient({"bootstrap.servers": bootstrap})
            described = admin.describe_consumer_groups([group], request_timeout=20)[group].result()
            assert described.type == ConsumerGroupType.CONSUMER
            assert len(described.members) == 2
            assert sum(len(m.assignment.topic_partitions) for m in described.members) == 4
            listed = admin.list_consumer_groups(request_timeout=20).result()
            assert group in {g.group_id for g in listed.valid}
        finally:
            second.close()
    finally:
        first.close()

    # The commits are in __consumer_offsets: a classic reader of the offsets sees 60 in total.
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = probe.committed([TopicPartition(topic_name, p) for p in range(4)], timeout=20)
    finally:
        probe.close()
    assert sum(tp.offset for tp in committed) == 60


def test_classic_join_to_a_live_consumer_group_is_inconsistent_protocol(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    produce_n(cluster.bootstrap_servers, topic_name, 1)
    group = f"g848-mixed-{topic_name}"
    modern = kip848_consumer(cluster.bootstrap_servers, group, topic_name)
    try:
        poll_until([modern], lambda: len(modern.assignment()) == 1)
        classic = KafkaConsumer(
            topic_name, bootstrap_servers=cluster.bootstrap_servers, group_id=group, consumer_timeout_ms=3000
        )
        try:
            try:
                classic.poll(timeout_ms=3000)
                raised = None
            except Exception as exc:  # kafka-python raises the broker's error
                raised = exc
            assert raised is not None and "InconsistentGroupProtocol" in type(raised).__name__
        finally:
            classic.close()
    finally:
        modern.close()


def test_kip848_offsets_survive_the_coordinators_death(fresh_cluster, topic_name):
    """The group's committed offsets are in __consumer_offsets: after the coordinator dies, a new member
    of the group (on the new coordinator) resumes after the commit, not from the start."""
    from confluent_kafka.admin import AdminClient

    cluster = fresh_cluster(brokers=3)
    bootstrap = cluster.bootstrap_servers
    cluster.create_topic(topic_name, partitions=2, replication_factor=3)
    produce_n(bootstrap, topic_name, 20)
    group = f"g848-failover-{topic_name}"
    c = kip848_consumer(bootstrap, group, topic_name)
    try:
        seen: list = []
        poll_until([c], lambda: len(seen) >= 20, seen)
        c.commit(asynchronous=False)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        coordinator = admin.describe_consumer_groups([group], request_timeout=20)[group].result().coordinator.id
    finally:
        c.close()
    cluster.kill_broker(coordinator)
    produce_n(bootstrap, topic_name, 10, start=20)
    again = kip848_consumer(bootstrap, group, topic_name)
    try:
        more: list = []
        poll_until([again], lambda: len(more) >= 10, more, timeout=90)
        assert sorted(int(m.value()) for _, m in more) == list(range(20, 30))
        assert len(again.assignment()) == 2
    finally:
        again.close()
