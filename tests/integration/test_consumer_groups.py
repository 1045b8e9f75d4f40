"""Consumer groups (classic protocol): assignment, rebalances, committed offsets."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer

from tests.support import wait_until


def produce_n(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    for i in range(start, start + n):
        p.produce(topic, key=str(i).encode(), value=str(i).encode())
    assert p.flush(30) == 0


def new_consumer(bootstrap: str, group: str, topic: str, **conf) -> Consumer:
    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
    }
    settings.update(conf)
    c = Consumer(settings)
    c.subscribe([topic])
    return c


def poll_until(consumers: list[Consumer], predicate, timeout: float = 40.0) -> list:
    """Poll every consumer round-robin until predicate() holds; returns the messages seen."""
    seen = []

    def step() -> bool:
        for c in consumers:
            msg = c.poll(0.1)
            if msg is not None and msg.error() is None:
                seen.append((c, msg))
        return predicate()

    if not wait_until(step, timeout, interval=0, fail=False):
        raise AssertionError(f"condition not reached in time; assignments: {assignments(consumers)}")
    return seen


def assignments(consumers: list[Consumer]) -> list[set[int]]:
    return [{tp.partition for tp in c.assignment()} for c in consumers]


def test_three_consumers_split_six_partitions_and_rebalance_on_leave_and_join(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=6)
    produce_n(cluster.bootstrap_servers, topic_name, 60)
    group = f"g-{topic_name}"
    consumers = [new_consumer(cluster.bootstrap_servers, group, topic_name) for _ in range(3)]

    def split_evenly() -> bool:
        a = assignments(consumers)
        return all(len(s) == 2 for s in a) and set().union(*a) == set(range(6))

    poll_until(consumers, split_evenly)
    # One leaves: the remaining two take over all six partitions.
    consumers[2].close()
    rest = consumers[:2]
    poll_until(
        rest,
        lambda: (
            sorted(len(s) for s in assignments(rest)) == [3, 3] and set().union(*assignments(rest)) == set(range(6))
        ),
    )
    # A new one joins: back to two each.
    newcomer = new_consumer(cluster.bootstrap_servers, group, topic_name)
    everyone = [*rest, newcomer]
    poll_until(
        everyone,
        lambda: (
            all(len(s) == 2 for s in assignments(everyone)) and set().union(*assignments(everyone)) == set(range(6))
        ),
    )
    for c in everyone:
        c.close()


def test_cooperative_sticky_consumers_share_partitions(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=4)
    produce_n(cluster.bootstrap_servers, topic_name, 40)
    group = f"coop-{topic_name}"
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    a = new_consumer(cluster.bootstrap_servers, group, topic_name, **conf)
    poll_until([a], lambda: len(a.assignment()) == 4)
    b = new_consumer(cluster.bootstrap_servers, group, topic_name, **conf)
    poll_until([a, b], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
    a.close()
    b.close()


def test_committed_offsets_round_trip_with_metadata(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2)
    group = f"meta-{topic_name}"
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group})
    c.commit(
        offsets=[
            TopicPartition(topic_name, 0, 5, metadata="checkpoint ✓"),
            TopicPartition(topic_name, 1, 7, metadata=""),
        ],
        asynchronous=False,
    )
    got = {
        tp.partition: (tp.offset, tp.metadata)
        for tp in c.committed([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=10)
    }
    c.close()
    assert got == {0: (5, "checkpoint ✓"), 1: (7, "")}


def test_static_membership_rejoin_keeps_assignment(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2)
    group = f"static-{topic_name}"
    conf = {"group.instance.id": "worker-1", "session.timeout.ms": 10000}
    a = new_consumer(cluster.bootstrap_servers, group, topic_name, **conf)
    poll_until([a], lambda: len(a.assignment()) == 2)
    a.close()  # a static member's close does not leave the group
    a2 = new_consumer(cluster.bootstrap_servers, group, topic_name, **conf)
    poll_until([a2], lambda: len(a2.assignment()) == 2, timeout=20)
    a2.close()


def test_kafka_python_group_consumer_commits(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=3)
    produce_n(cluster.bootstrap_servers, topic_name, 30)
    group = f"kp-{topic_name}"
    consumer = KafkaConsumer(
        topic_name,
        bootstrap_servers=cluster.bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15000,
    )
    got = []
    for msg in consumer:
        got.append(msg.value)
        if len(got) == 30:
            break
    consumer.commit()
    consumer.close()
    assert len(got) == 30
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group})
    committed = c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)
    c.close()
    assert sum(tp.offset for tp in committed) == 30


def test_find_coordinator_without_a_controller_majority_is_answered_not_dropped():
    """With two of three brokers down, `__consumer_offsets` cannot be created: FindCoordinator is
    answered COORDINATOR_NOT_AVAILABLE (clients retry it), not a closed connection."""
    from kafka.protocol.metadata import FindCoordinatorRequest

    from workbench import Cluster
    from workbench.protocol.blocking_client import WireClient

    with Cluster(brokers=3) as c:
        c.kill_broker(3)
        c.kill_broker(2)
        w = WireClient.to(c.bootstrap_servers)
        try:
            r = w.request(FindCoordinatorRequest(key="g-no-majority"), 0)
        finally:
            w.close()
        assert r.error_code == 15  # COORDINATOR_NOT_AVAILABLE


def test_the_first_find_coordinator_of_a_new_cluster_names_a_coordinator():
    """The first FindCoordinator creates `__consumer_offsets`; its answer waits (bounded) until
    the group's partition has a leader instead of answering COORDINATOR_NOT_AVAILABLE a moment
    too early. sarama's offset manager retries that error only three times in 750 ms, so a fresh
    cluster under load failed its `ManagePartition` in a clean-clone CI run."""
    from kafka.protocol.metadata import FindCoordinatorRequest

    from workbench import Cluster
    from workbench.protocol.blocking_client import WireClient

    with Cluster(brokers=3) as c:
        w = WireClient.to(c.bootstrap_servers)
        try:
            answers = [w.request(FindCoordinatorRequest(key=f"g-first-{i}"), 0) for i in range(8)]
        finally:
            w.close()
        assert [a.error_code for a in answers] == [0] * 8
        assert all(a.node_id in (1, 2, 3) for a in answers)


def test_the_coordinator_named_by_another_broker_answers_at_once_on_a_new_cluster():
    """FindCoordinator through one broker, then the request to the broker it named, as every client
    does. On a new cluster the coordinator may not have applied the internal topic's creation, or
    loaded the partition, when the request arrives; it waits (bounded) instead of answering
    COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR. sarama's offset manager does not retry the first
    on OffsetFetch (`ManagePartition: kafka server: Offset's topic has not yet been created` in a CI
    run). Before the fix, 9 of 30 such OffsetFetches in five new clusters got it, and InitProducerId
    got COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR about 1 in 30 (the API sweep's retried failure)."""
    from kafka.protocol.consumer import OffsetFetchRequest
    from kafka.protocol.metadata import FindCoordinatorRequest

    from workbench import Cluster
    from workbench.broker.apis import ApiKey
    from workbench.protocol.blocking_client import WireClient
    from workbench.protocol.codec import REQUEST_CLASSES, build

    topics = [OffsetFetchRequest.OffsetFetchRequestTopic(name="t", partition_indexes=[0])]
    codes: dict[str, list[int]] = {"offset_fetch": [], "init_producer_id": []}
    for trial in range(4):
        with Cluster(brokers=3) as c:
            finder = WireClient.to(c.bootstrap_servers.split(",")[trial % 3])
            coordinators: dict[tuple[str, int], WireClient] = {}

            def at(found, coordinators=coordinators) -> WireClient:
                assert found.error_code == 0, found
                key = (found.host, found.port)
                if key not in coordinators:
                    coordinators[key] = WireClient(*key)
                return coordinators[key]

            try:
                for i in range(8):
                    group = f"g-named-{trial}-{i}"
                    found = finder.request(FindCoordinatorRequest(key=group), 0)
                    answer = at(found).request(OffsetFetchRequest(group_id=group, topics=topics), 1)
                    codes["offset_fetch"].append(answer.topics[0].partitions[0].error_code)
                for i in range(8):
                    tid = f"t-named-{trial}-{i}"
                    find = build(REQUEST_CLASSES[ApiKey.FIND_COORDINATOR], {"key": tid, "key_type": 1})
                    init = build(
                        REQUEST_CLASSES[ApiKey.INIT_PRODUCER_ID],
                        {"transactional_id": tid, "transaction_timeout_ms": 60_000},
                    )
                    codes["init_producer_id"].append(at(finder.request(find, 1)).request(init, 1).error_code)
            finally:
                finder.close()
                for w in coordinators.values():
                    w.close()
    assert codes == {name: [0] * 32 for name in codes}
