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


def holds_while_polling(consumers: list[Consumer], predicate, seconds: float) -> bool:
    """Poll the consumers for `seconds` (a few heartbeat intervals); False as soon as predicate() fails."""

    def broken() -> bool:
        for c in consumers:
            c.poll(0.1)
        return not predicate()

    return not wait_until(broken, seconds, interval=0, fail=False)


def describe_848(bootstrap: str, group: str) -> dict:
    """ConsumerGroupDescribe at the group's coordinator, over the wire (confluent-kafka's description
    has no epochs): {"group_epoch", "state", "members": {member_id: (member_epoch, partitions)}}."""
    from kafka.protocol.metadata import FindCoordinatorRequest

    from workbench.protocol.blocking_client import WireClient
    from workbench.protocol.kip848 import ConsumerGroupDescribeRequest

    def ask() -> dict | None:
        found = None
        for address in bootstrap.split(","):  # some broker may be down
            host, port = address.rsplit(":", 1)
            try:
                w = WireClient(host, int(port))
            except OSError:
                continue
            try:
                found = w.request(FindCoordinatorRequest(key=group), 0)
            finally:
                w.close()
            break
        if found is None or found.error_code:
            return None
        w = WireClient(found.host, found.port)
        try:
            r = w.request(ConsumerGroupDescribeRequest(group_ids=[group], include_authorized_operations=False), 0)
        finally:
            w.close()
        g = r.groups[0]
        if g.error_code:
            return None
        return {
            "coordinator": found.node_id,
            "group_epoch": g.group_epoch,
            "state": g.group_state,
            "members": {
                m.member_id: (
                    m.member_epoch,
                    sorted(p for tp in m.assignment.topic_partitions for p in tp.partitions),
                )
                for m in g.members
            },
        }

    box: list[dict] = []

    def answered() -> bool:
        try:
            d = ask()
        except OSError:
            return False
        if d is not None:
            box.append(d)
        return d is not None

    wait_until(answered, 60)
    return box[-1]


def _stable_split(bootstrap: str, group: str, consumers: list[Consumer], partitions: int) -> dict:
    """Poll until each consumer owns an equal share and the coordinator says Stable; its description."""
    box: list[dict] = []

    def stable() -> bool:
        mine = [{p.partition for p in c.assignment()} for c in consumers]
        if sorted(len(m) for m in mine) != [partitions // len(consumers)] * len(consumers):
            return False
        d = describe_848(bootstrap, group)
        box.append(d)
        return d["state"] == "Stable" and len(d["members"]) == len(consumers)

    poll_until(consumers, stable, timeout=90)
    return box[-1]


def test_kip848_members_keep_their_epochs_and_partitions_when_the_coordinator_dies(fresh_cluster, topic_name):
    """Durable KIP-848 state: the group, member and assignment records are in __consumer_offsets, so
    the new coordinator knows the members. librdkafka's consumers carry on with their member ids and
    epochs (the group epoch does not move: no rebalance) and resume exactly after their commits."""
    cluster = fresh_cluster(brokers=3)
    bootstrap = cluster.bootstrap_servers
    cluster.create_topic(topic_name, partitions=4, replication_factor=3)
    produce_n(bootstrap, topic_name, 40)
    group = f"g848-durable-{topic_name}"
    a = kip848_consumer(bootstrap, group, topic_name)
    b = kip848_consumer(bootstrap, group, topic_name)
    try:
        seen: list = []
        poll_until([a, b], lambda: len(seen) >= 40, seen, timeout=90)
        for consumer in (a, b):
            consumer.commit(asynchronous=False)
        # A third member comes and goes, so the group epoch (4) differs from what a coordinator that
        # lost the state would reach when the two rejoin (2).
        c = kip848_consumer(bootstrap, group, topic_name)
        try:
            poll_until([a, b, c], lambda: len(c.assignment()) > 0, timeout=90)
        finally:
            c.close()
        before = _stable_split(bootstrap, group, [a, b], 4)
        assert before["group_epoch"] >= 4
        owned = [{p.partition for p in consumer.assignment()} for consumer in (a, b)]

        cluster.kill_broker(before["coordinator"])
        produce_n(bootstrap, topic_name, 20, start=40)
        more: list = []
        poll_until([a, b], lambda: len(more) >= 20, more, timeout=120)
        after = describe_848(bootstrap, group)
        assert after["coordinator"] != before["coordinator"]
        assert after["group_epoch"] == before["group_epoch"]
        assert after["members"] == before["members"]
        assert [{p.partition for p in consumer.assignment()} for consumer in (a, b)] == owned
        # Nothing before the commits came again; each new record once, to the partition's owner.
        assert sorted(int(m.value()) for _, m in more) == list(range(40, 60))
        for consumer, mine in zip((a, b), owned, strict=True):
            assert {m.partition() for cc, m in more if cc is consumer} <= mine
    finally:
        a.close()
        b.close()


def test_kip848_static_member_restart_gets_its_partitions_back_without_a_rebalance(cluster, topic_name):
    """`group.instance.id`: a static member's close() leaves with epoch -2; the same instance id,
    restarted, gets the same partitions, the other member is never asked to change, and the group
    epoch does not move. A second live consumer with the same instance id is refused
    (UNRELEASED_INSTANCE_ID) and gets nothing."""
    bootstrap = cluster.bootstrap_servers
    cluster.create_topic(topic_name, partitions=4)
    group = f"g848-static-{topic_name}"
    a = kip848_consumer(bootstrap, group, topic_name, **{"group.instance.id": "a"})
    b = kip848_consumer(bootstrap, group, topic_name, **{"group.instance.id": "b"})
    a2 = dup = None
    try:
        before = _stable_split(bootstrap, group, [a, b], 4)
        pa = {p.partition for p in a.assignment()}
        pb = {p.partition for p in b.assignment()}
        a.close()
        # b keeps exactly its partitions while a is away (a few heartbeat intervals).
        assert holds_while_polling([b], lambda: {p.partition for p in b.assignment()} == pb, seconds=4)
        a2 = kip848_consumer(bootstrap, group, topic_name, **{"group.instance.id": "a"})
        poll_until([a2, b], lambda: {p.partition for p in a2.assignment()} == pa)
        after = describe_848(bootstrap, group)
        assert after["group_epoch"] == before["group_epoch"]
        b_id = next(m for m, (_e, ps) in before["members"].items() if set(ps) == pb)
        assert after["members"][b_id] == before["members"][b_id]

        dup = kip848_consumer(bootstrap, group, topic_name, **{"group.instance.id": "a"})
        assert holds_while_polling([dup, a2, b], lambda: not dup.assignment(), seconds=5)
        assert {p.partition for p in a2.assignment()} == pa
        members = describe_848(bootstrap, group)["members"]
        assert len(members) == 2
    finally:
        for consumer in (dup, a2, b):
            if consumer is not None:
                consumer.close()


def test_classic_and_consumer_groups_side_by_side_show_their_protocol(cluster, topic_name):
    """A classic group and a KIP-848 group read the same topic at once; ListGroups v5's types filter,
    `wb.consumer_groups`, `describe()` and the group monitor name each group's protocol."""
    from confluent_kafka import ConsumerGroupType

    from workbench.widgets import GroupMonitor

    bootstrap = cluster.bootstrap_servers
    cluster.create_topic(topic_name, partitions=2)
    produce_n(bootstrap, topic_name, 10)
    classic_group, modern_group = f"gc-{topic_name}", f"g848-{topic_name}"
    classic = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": classic_group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    classic.subscribe([topic_name])
    modern = kip848_consumer(bootstrap, modern_group, topic_name)
    try:
        seen: list = []
        poll_until(
            [classic, modern],
            lambda: sum(1 for c, _ in seen if c is classic) >= 10 and sum(1 for c, _ in seen if c is modern) >= 10,
            seen,
        )
        for c in (classic, modern):
            c.commit(asynchronous=False)
        for c in (classic, modern):
            assert sorted(int(m.value()) for cc, m in seen if cc is c) == list(range(10))

        admin = AdminClient({"bootstrap.servers": bootstrap})

        def listed(kind) -> set[str]:
            result = admin.list_consumer_groups(types={kind}, request_timeout=20).result()
            return {g.group_id for g in result.valid} & {classic_group, modern_group}

        assert listed(ConsumerGroupType.CONSUMER) == {modern_group}
        assert listed(ConsumerGroupType.CLASSIC) == {classic_group}

        expected = {classic_group: "classic", modern_group: "consumer"}

        def sql_protocols() -> dict:
            frame = cluster.sql(
                f"SELECT group_id, protocol FROM wb.consumer_groups "
                f"WHERE group_id IN ('{classic_group}', '{modern_group}')"
            )
            return dict(zip(frame.group_id, frame.protocol, strict=True))

        wait_until(lambda: sql_protocols() == expected, 30)

        groups = cluster.describe().groups
        described = groups[groups.group_id.isin(list(expected))]
        assert dict(zip(described.group_id, described.protocol, strict=True)) == expected
        assert set(described.state) == {"Stable"}

        monitor = GroupMonitor(cluster, live=False)
        try:
            monitor.refresh()
            shown = monitor.groups[monitor.groups.group_id.isin(list(expected))]
            assert dict(zip(shown.group_id, shown.protocol, strict=True)) == expected
            assert "protocol" in monitor.groups_table.value
        finally:
            monitor.close()
    finally:
        classic.close()
        modern.close()


def test_offset_fetch_v9_checks_a_consumer_group_members_epoch(cluster, topic_name):
    """OffsetFetch v9 (librdkafka sends it with its member id and epoch): a member of a KIP-848 group
    must carry its current epoch (STALE_MEMBER_EPOCH) and be known (UNKNOWN_MEMBER_ID); an outsider
    (no member id, epoch -1: an admin client) is answered."""
    from kafka.protocol.consumer import OffsetFetchRequest

    from workbench.protocol.blocking_client import WireClient

    bootstrap = cluster.bootstrap_servers
    cluster.create_topic(topic_name, partitions=1)
    produce_n(bootstrap, topic_name, 3)
    group = f"g848-of9-{topic_name}"
    c = kip848_consumer(bootstrap, group, topic_name)
    try:
        seen: list = []
        poll_until([c], lambda: len(seen) >= 3, seen)
        c.commit(asynchronous=False)  # OffsetCommit v9 with the member epoch
        d = describe_848(bootstrap, group)
        [(member_id, (epoch, _parts))] = d["members"].items()

        def fetch(member: str | None, member_epoch: int):
            from kafka.protocol.metadata import FindCoordinatorRequest

            w = WireClient.to(bootstrap)
            try:
                found = w.request(FindCoordinatorRequest(key=group), 0)
            finally:
                w.close()
            w = WireClient(found.host, found.port)
            try:
                topics = [
                    OffsetFetchRequest.OffsetFetchRequestGroup.OffsetFetchRequestTopics(
                        name=topic_name, partition_indexes=[0]
                    )
                ]
                request = OffsetFetchRequest(
                    groups=[
                        OffsetFetchRequest.OffsetFetchRequestGroup(
                            group_id=group, member_id=member, member_epoch=member_epoch, topics=topics
                        )
                    ],
                    require_stable=False,
                )
                return w.request(request, 9).groups[0]
            finally:
                w.close()

        ok = fetch(member_id, epoch)
        assert ok.error_code == 0 and ok.topics[0].partitions[0].committed_offset == 3
        assert fetch(member_id, epoch - 1).error_code == 113  # STALE_MEMBER_EPOCH
        assert fetch("no-such-member", epoch).error_code == 25  # UNKNOWN_MEMBER_ID
        outsider = fetch(None, -1)
        assert outsider.error_code == 0 and outsider.topics[0].partitions[0].committed_offset == 3
    finally:
        c.close()
