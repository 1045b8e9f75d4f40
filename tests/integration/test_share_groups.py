"""KIP-932 share groups (queues) with confluent-kafka's real `ShareConsumer` (librdkafka 2.16).

The brokers run with a delivery count limit of 3 and share.auto.offset.reset=earliest; the
lock-expiry test gives its group a short acquisition lock (share.record.lock.duration.ms, a group
config), while the others keep Kafka's 30 s so a slow machine never expires their locks.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import AcknowledgeType, ConsumerGroupState, KafkaException, Producer, ShareConsumer

from tests.support import wait_until
from workbench import Cluster

LOCK_MS = 30_000  # the brokers' default (Kafka's)
SHORT_LOCK_MS = 3000  # the lock-expiry test's group
LIMIT = 3
SHARE_CONFIG = {
    "group_initial_rebalance_delay_ms": 0,
    "group_share_record_lock_duration_ms": LOCK_MS,
    "group_share_delivery_count_limit": LIMIT,
    "group_share_auto_offset_reset": "earliest",
}


@pytest.fixture(scope="module")
def share_cluster(tmp_path_factory):
    with Cluster(brokers=3, data_dir=tmp_path_factory.mktemp("share"), config=SHARE_CONFIG) as c:
        yield c


def _produce(bootstrap: str, topic: str, values: list[str]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for v in values:
        p.produce(topic, value=v.encode())
    assert p.flush(15) == 0


def _consumer(bootstrap: str, group: str, topic: str, mode: str = "explicit") -> ShareConsumer:
    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group, "share.acknowledgement.mode": mode})
    c.subscribe([topic])
    return c


def _poll(consumer: ShareConsumer, want: int = 1, timeout: float = 20.0) -> list:
    """Poll until at least `want` records came (each as (offset, value, delivery_count, message))."""
    got: list = []

    def more() -> bool:
        for m in consumer.poll(0.5):
            assert m.error() is None, m.error()
            got.append((m.offset(), m.value().decode(), m.delivery_count(), m))
        return len(got) >= want

    wait_until(more, timeout=timeout, interval=0, message=lambda: f"{want} records (got {len(got)})")
    return got


def _ack_all(consumer: ShareConsumer, records: list, kind=AcknowledgeType.ACCEPT) -> None:
    for *_, m in records:
        consumer.acknowledge(m, kind)
    consumer.commit_sync()


def test_three_share_consumers_on_one_partition_get_distinct_records(share_cluster, topic_name):
    share_cluster.create_topic(topic_name, partitions=1)
    bs, group = share_cluster.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}"
    _produce(bs, topic_name, [f"m{i}" for i in range(60)])
    consumers = [ShareConsumer({"bootstrap.servers": bs, "group.id": group, "max.poll.records": 5}) for _ in range(3)]
    for c in consumers:
        c.subscribe([topic_name])
    seen: dict[int, list[int]] = {}
    try:

        def round_robin() -> bool:
            # implicit acknowledgement: a poll accepts what the previous poll returned
            for i, c in enumerate(consumers):
                for m in c.poll(0.3):
                    assert m.error() is None, m.error()
                    seen.setdefault(m.offset(), []).append(i)
            return len(seen) >= 60

        wait_until(round_robin, timeout=60, interval=0, message=lambda: f"60 records (got {len(seen)})")
        assert sorted(seen) == list(range(60))
        assert all(len(owners) == 1 for owners in seen.values()), seen
        assert len({owners[0] for owners in seen.values()}) >= 2  # the queue was shared
    finally:
        for c in consumers:
            c.close()


def test_released_record_is_redelivered_with_a_higher_delivery_count_and_rejected_is_not(share_cluster, topic_name):
    share_cluster.create_topic(topic_name, partitions=1)
    bs, group = share_cluster.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}"
    _produce(bs, topic_name, ["keep", "again", "poison"])
    c = _consumer(bs, group, topic_name)
    try:
        first = sorted(_poll(c, 3))
        assert [(o, v, n) for o, v, n, _ in first] == [(0, "keep", 1), (1, "again", 1), (2, "poison", 1)]
        c.acknowledge(first[0][3], AcknowledgeType.ACCEPT)
        c.acknowledge(first[1][3], AcknowledgeType.RELEASE)
        c.acknowledge(first[2][3], AcknowledgeType.REJECT)
        c.commit_sync()
        _produce(bs, topic_name, ["later"])
        again = sorted(_poll(c, 2))
        assert [(o, v, n) for o, v, n, _ in again] == [(1, "again", 2), (3, "later", 1)]

        c.acknowledge(again[0][3], AcknowledgeType.RELEASE)  # offset 1 once more
        c.acknowledge(again[1][3], AcknowledgeType.ACCEPT)
        c.commit_sync()
        expected = {
            "start_offset": 1,  # offset 0 accepted
            "next_offset": 4,
            "available": 1,  # offset 1, released twice
            "acquired": 0,
            "acknowledged": 1,  # offset 3
            "archived": 1,  # offset 2, rejected
            "redelivered": 1,
            "max_delivery_count": 2,
        }

        def share_row():
            rows = share_cluster.sql(
                f"SELECT {', '.join(expected)} FROM wb.share_groups WHERE group_id = '{group}'"
            ).to_dict("records")
            return rows if rows == [expected] else None

        wait_until(share_row, message="wb.share_groups to show the share partition")
        [(offset, _v, count, m)] = _poll(c, 1)
        assert (offset, count) == (1, 3)
        _ack_all(c, [(offset, _v, count, m)])
    finally:
        c.close()


def test_a_record_past_the_delivery_count_limit_is_archived(share_cluster, topic_name):
    share_cluster.create_topic(topic_name, partitions=1)
    bs, group = share_cluster.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}"
    _produce(bs, topic_name, ["unlucky"])
    c = _consumer(bs, group, topic_name)
    try:
        counts = []
        for _ in range(LIMIT):
            [(offset, _v, count, m)] = _poll(c, 1)
            assert offset == 0
            counts.append(count)
            c.acknowledge(m, AcknowledgeType.RELEASE)
            c.commit_sync()
        assert counts == [1, 2, 3]
        _produce(bs, topic_name, ["next"])
        [(offset, value, count, m)] = _poll(c, 1)
        assert (offset, value, count) == (1, "next", 1)  # offset 0 was archived, never delivered again
        _ack_all(c, [(offset, value, count, m)])
    finally:
        c.close()


def test_records_of_a_consumer_that_stops_polling_are_redelivered_when_the_lock_expires(share_cluster, topic_name):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    share_cluster.create_topic(topic_name, partitions=1)
    bs, group = share_cluster.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}"
    short = ConfigEntry(
        "share.record.lock.duration.ms", str(SHORT_LOCK_MS), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[short])
    admin = share_cluster.admin()  # kept: a collected AdminClient fails its pending futures
    admin.incremental_alter_configs([resource])[resource].result(timeout=20)
    _produce(bs, topic_name, [f"m{i}" for i in range(4)])
    stuck = _consumer(bs, group, topic_name)
    other = _consumer(bs, group, topic_name)
    try:
        held = _poll(stuck, 4)
        assert sorted(o for o, *_ in held) == [0, 1, 2, 3]
        # `stuck` never polls or acknowledges again; after SHORT_LOCK_MS the records go to `other`
        again = _poll(other, 4, timeout=SHORT_LOCK_MS / 1000 + 20)
        assert sorted((o, n) for o, _v, n, _m in again) == [(0, 2), (1, 2), (2, 2), (3, 2)]
        _ack_all(other, again)
    finally:
        other.close()
        stuck.close()


def test_share_partition_state_survives_the_leader_restarting(fresh_cluster, tmp_path):
    cluster = fresh_cluster(config=SHARE_CONFIG)
    topic, group = f"q-{uuid.uuid4().hex[:6]}", "restart-group"
    cluster.create_topic(topic, partitions=1)
    bs = cluster.bootstrap_servers
    _produce(bs, topic, [f"m{i}" for i in range(6)])
    c = _consumer(bs, group, topic)
    try:
        got = sorted(_poll(c, 6))
        for offset, _v, _n, m in got:
            kind = AcknowledgeType.ACCEPT if offset < 3 else AcknowledgeType.RELEASE
            c.acknowledge(m, kind)
        c.commit_sync()
    finally:
        c.close()
    leader = int(cluster.describe().partitions.set_index("topic").loc[topic, "leader"])
    cluster.restart_broker(leader)
    wait_until(lambda: int(cluster.describe().partitions.set_index("topic").loc[topic, "leader"]) >= 0)
    c = _consumer(bs, group, topic)
    try:
        again = sorted(_poll(c, 3, timeout=40))
        # the accepted records stay done; the released ones come back with their delivery count
        assert [(o, n) for o, _v, n, _m in again] == [(3, 2), (4, 2), (5, 2)]
        _ack_all(c, again)
    finally:
        c.close()


def _describe(cluster: Cluster, group: str) -> dict:
    from workbench.protocol.blocking_client import WireClient
    from workbench.protocol.codec import REQUEST_CLASSES, build
    from workbench.protocol.kip932 import ShareGroupDescribeRequest

    FindCoordinatorRequest = REQUEST_CLASSES[10]

    for address in cluster.bootstrap_servers.split(","):  # the first live broker (one may be dead)
        try:
            boot = WireClient.to(address)
            break
        except OSError:
            continue
    fc = boot.request(build(FindCoordinatorRequest, {"key": group, "key_type": 0}), 3)
    boot.close()
    c = WireClient(fc.host, fc.port)
    try:
        resp = c.request(
            build(ShareGroupDescribeRequest, {"group_ids": [group], "include_authorized_operations": False}), 1
        )
    finally:
        c.close()
    [g] = resp.groups
    return {
        "error_code": g.error_code,
        "coordinator": fc.node_id,
        "state": g.group_state,
        "group_epoch": g.group_epoch,
        "epochs": {m.member_id: m.member_epoch for m in g.members},
        "assignor": g.assignor_name,
        "members": {
            m.member_id: [(tp.topic_name, list(tp.partitions)) for tp in m.assignment.topic_partitions]
            for m in g.members
        },
    }


def test_share_group_describe_shows_members_and_assignment(share_cluster, topic_name):
    share_cluster.create_topic(topic_name, partitions=2)
    bs, group = share_cluster.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}"
    assert _describe(share_cluster, group)["error_code"] == 69  # GROUP_ID_NOT_FOUND before anyone joins
    consumers = [_consumer(bs, group, topic_name, mode="implicit") for _ in range(3)]
    try:
        for c in consumers:
            c.poll(0.2)
        described = wait_until(
            lambda: (lambda d: d if len(d["members"]) == 3 else None)(_describe(share_cluster, group)), timeout=30
        )
        assert described["state"] == "Stable" and described["assignor"] == "simple"
        assigned = [tp for tps in described["members"].values() for tp in tps]
        assert all(topic == topic_name for topic, _ in assigned)
        assert sorted(p for _, ps in assigned for p in ps) == [0, 0, 1]  # 3 members share 2 partitions
    finally:
        for c in consumers:
            c.close()


def _admin(cluster: Cluster, group: str, api_key: int, body: dict):
    from workbench.protocol.blocking_client import WireClient
    from workbench.protocol.codec import REQUEST_CLASSES, build

    boot = WireClient.to(cluster.bootstrap_servers)
    fc = boot.request(build(REQUEST_CLASSES[10], {"key": group, "key_type": 0}), 3)
    boot.close()
    c = WireClient(fc.host, fc.port)
    try:
        return c.request(build(REQUEST_CLASSES[api_key], body), 0)
    finally:
        c.close()


def _start_offsets(cluster: Cluster, group: str, topic: str | None = None) -> dict:
    topics = None if topic is None else [{"topic_name": topic, "partitions": [0]}]
    resp = _admin(cluster, group, 90, {"groups": [{"group_id": group, "topics": topics}]})
    [g] = resp.groups
    assert g.error_code == 0
    return {(t.topic_name, p.partition_index): p.start_offset for t in g.topics for p in t.partitions}


def test_describe_alter_and_delete_share_group_offsets(share_cluster, topic_name):
    share_cluster.create_topic(topic_name, partitions=1)
    bs, group = share_cluster.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}"
    _produce(bs, topic_name, [f"m{i}" for i in range(5)])
    c = _consumer(bs, group, topic_name)
    try:
        got = sorted(_poll(c, 5))
        for offset, _v, _n, m in got:
            c.acknowledge(m, AcknowledgeType.ACCEPT if offset < 3 else AcknowledgeType.RELEASE)
        c.commit_sync()
        assert _start_offsets(share_cluster, group, topic_name) == {(topic_name, 0): 3}
        assert _start_offsets(share_cluster, group) == {(topic_name, 0): 3}  # all topics of the group
        alter = {
            "group_id": group,
            "topics": [{"topic_name": topic_name, "partitions": [{"partition_index": 0, "start_offset": 1}]}],
        }
        [t] = _admin(share_cluster, group, 91, alter).responses
        assert t.partitions[0].error_code == 68  # NON_EMPTY_GROUP while a member is in it
    finally:
        c.close()
    wait_until(
        lambda: _admin(share_cluster, group, 91, alter).responses[0].partitions[0].error_code == 0,
        message="AlterShareGroupOffsets once the member has left",
    )
    assert _start_offsets(share_cluster, group, topic_name) == {(topic_name, 0): 1}
    c = _consumer(bs, group, topic_name)
    try:
        again = sorted(_poll(c, 4))
        assert [(o, n) for o, _v, n, _m in again] == [(1, 1), (2, 1), (3, 1), (4, 1)]  # state started afresh at 1
        _ack_all(c, again)
    finally:
        c.close()
    resp = _admin(share_cluster, group, 92, {"group_id": group, "topics": [{"topic_name": topic_name}]})
    assert resp.error_code == 0 and [p.error_code for p in resp.responses[0].partitions] == [0]
    assert _start_offsets(share_cluster, group) == {}
    c = _consumer(bs, group, topic_name)
    try:
        fresh = sorted(_poll(c, 5))
        assert [o for o, *_ in fresh] == [0, 1, 2, 3, 4]  # deleted: share.auto.offset.reset=earliest again
        _ack_all(c, fresh)
    finally:
        c.close()


def test_share_group_configs_are_set_per_group_and_apply_to_its_records(share_cluster, topic_name):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    share_cluster.create_topic(topic_name, partitions=1)
    bs, group = share_cluster.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}"
    admin = share_cluster.admin()
    resource = ConfigResource(
        ResourceType.GROUP,
        group,
        incremental_configs=[
            ConfigEntry("share.delivery.count.limit", "2", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("share.auto.offset.reset", "latest", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=20)
    # Every broker applies the config record from the metadata log in its own time; the share
    # partition's leader must have it before the group's first fetch (else it starts at earliest).
    wait_until(
        lambda: all(
            c.get("share.auto.offset.reset", ("",))[0] == "latest"
            and c.get("share.delivery.count.limit", ("",))[0] == "2"
            for c in _group_configs_everywhere(share_cluster, group)
        ),
        timeout=20,
        message="every broker to apply the group's configs",
    )
    bad = ConfigResource(
        ResourceType.GROUP,
        group,
        incremental_configs=[
            ConfigEntry("share.delivery.count.limit", "99", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    with pytest.raises(KafkaException, match=r"share\.delivery\.count\.limit"):
        admin.incremental_alter_configs([bad])[bad].result(timeout=20)
    described = admin.describe_configs([ConfigResource(ResourceType.GROUP, group)])
    configs = next(iter(described.values())).result(timeout=20)
    assert configs["share.delivery.count.limit"].value == "2"
    assert configs["share.auto.offset.reset"].value == "latest"
    assert configs["share.record.lock.duration.ms"].value == str(LOCK_MS)  # the broker's default

    _produce(bs, topic_name, ["before the group existed"])  # latest: never delivered to this group
    c = _consumer(bs, group, topic_name)
    try:
        c.poll(1.0)  # joins; its share partition starts at the high watermark
        _produce(bs, topic_name, ["unlucky", "next"])
        deliveries = []
        for _ in range(2):
            got = sorted(_poll(c, 1))
            for offset, _v, count, m in got:
                deliveries.append((offset, count))
                c.acknowledge(m, AcknowledgeType.RELEASE if offset == 1 else AcknowledgeType.ACCEPT)
            c.commit_sync()
            if (1, 2) in deliveries:
                break
        assert (1, 1) in deliveries and (1, 2) in deliveries and all(o >= 1 for o, _ in deliveries)
        _produce(bs, topic_name, ["last"])
        tail = sorted(_poll(c, 1))
        assert 1 not in [o for o, *_ in tail]  # archived after its second delivery (the group's limit)
        _ack_all(c, tail)
    finally:
        c.close()


def _ask_every_broker(cluster: Cluster, api_key: int, version: int, body: dict) -> list:
    from workbench.protocol.blocking_client import WireClient
    from workbench.protocol.codec import REQUEST_CLASSES, build

    answers = []
    for b in cluster.describe().brokers.itertuples():
        host, port = b.address.rsplit(":", 1)
        c = WireClient(host, int(port))
        try:
            answers.append(c.request(build(REQUEST_CLASSES[api_key], body), version))
        finally:
            c.close()
    return answers


def _listed(cluster: Cluster, types: list[str], states: list[str] | None = None) -> dict[str, tuple]:
    """ListGroups v5 to every broker: group id -> (protocol type, state, group type)."""
    body = {"states_filter": states or [], "types_filter": types}
    return {
        g.group_id: (g.protocol_type, g.group_state, g.group_type)
        for answer in _ask_every_broker(cluster, 16, 5, body)
        for g in answer.groups
    }


def test_share_groups_are_listed_as_share_and_other_group_apis_answer_as_kafka(share_cluster, topic_name):
    """ListGroups lists a share group with protocol type and group type "share" (Kafka's
    ShareGroup.asListedGroup), and its types and states filters apply; DescribeGroups (v0-5) answers
    Dead with no members, as Kafka answers for a group that is not classic; ConsumerGroupDescribe
    answers GROUP_ID_NOT_FOUND ("is not a consumer group"). confluent-kafka's list_groups names it;
    its list_consumer_groups, which keeps consumer protocol types only, leaves it out, as it does
    against Kafka."""
    share_cluster.create_topic(topic_name, partitions=1)
    bs, group = share_cluster.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}"
    c = _consumer(bs, group, topic_name, mode="implicit")
    admin = share_cluster.admin()
    try:
        wait_until(lambda: c.poll(0.2) is not None and len(_describe(share_cluster, group)["members"]) == 1)
        assert _listed(share_cluster, ["share"])[group] == ("share", "Stable", "share")
        assert group in _listed(share_cluster, [])  # no filter: every type
        assert group not in _listed(share_cluster, ["consumer", "classic"])
        assert group not in _listed(share_cluster, ["share"], ["Empty"])
        assert _listed(share_cluster, ["share"], ["Stable"])[group][1] == "Stable"
        # librdkafka's list_groups lists what ListGroups names, then describes each with DescribeGroups
        assert group in [g.id for g in admin.list_groups(timeout=20)]
        listing = admin.list_consumer_groups(request_timeout=20).result()
        assert group not in [g.group_id for g in listing.valid]
        described = admin.describe_consumer_groups([group], request_timeout=20)[group].result()
        assert described.state == ConsumerGroupState.DEAD and described.members == []
        [cgd] = [
            g
            for answer in _ask_every_broker(
                share_cluster, 69, 0, {"group_ids": [group], "include_authorized_operations": False}
            )
            for g in answer.groups
            if g.error_code != 16  # NOT_COORDINATOR: the other brokers
        ]
        assert cgd.error_code == 69 and cgd.error_message == f"Group {group} is not a consumer group."
    finally:
        c.close()
    wait_until(lambda: _listed(share_cluster, ["share"]).get(group, (None, None))[1] == "Empty")
    assert group in _listed(share_cluster, ["share"], ["empty"])  # states match case-insensitively


def test_share_group_members_keep_their_epochs_when_the_coordinator_dies(fresh_cluster):
    """Durable share group membership: the group, member and assignment records are in
    __consumer_offsets (Kafka's record types 10-14), so the new coordinator knows the members.
    librdkafka's share consumers carry on with their member ids and epochs (no rejoin, the group
    epoch does not move) and keep receiving records."""
    cluster = fresh_cluster(config=SHARE_CONFIG)
    topic, group = f"q-{uuid.uuid4().hex[:6]}", f"durable-{uuid.uuid4().hex[:6]}"
    cluster.create_topic(topic, partitions=2, replication_factor=3)
    bs = cluster.bootstrap_servers
    a, b = _consumer(bs, group, topic, mode="implicit"), _consumer(bs, group, topic, mode="implicit")
    try:

        def stable(n: int) -> dict | None:
            for x in (a, b):
                x.poll(0.2)
            try:
                d = _describe(cluster, group)
            except (OSError, ConnectionError, TimeoutError):
                return None  # the coordinator is moving
            epochs = set(d["epochs"].values())
            return d if len(d["members"]) == n and epochs == {d["group_epoch"]} else None

        wait_until(lambda: stable(2), timeout=60, interval=0)
        # A third member comes and goes, so the group epoch (4) differs from what a coordinator that
        # lost the state would reach when the two rejoin (2).
        extra = _consumer(bs, group, topic, mode="implicit")
        wait_until(lambda: extra.poll(0.2) is not None and stable(3), timeout=60, interval=0)
        extra.close()
        before = wait_until(lambda: stable(2), timeout=60, interval=0)
        assert before["group_epoch"] >= 4

        cluster.kill_broker(before["coordinator"])
        _produce(bs, topic, [f"m{i}" for i in range(20)])
        got: list = []

        def more() -> bool:
            for x in (a, b):
                for m in x.poll(0.3):
                    if m.error() is None:
                        got.append(m.value().decode())
            return len(set(got)) >= 20

        wait_until(more, timeout=120, interval=0, message=lambda: f"20 records after the failover (got {len(got)})")
        after = wait_until(lambda: stable(2), timeout=60, interval=0)
        assert after["coordinator"] != before["coordinator"]
        assert after["group_epoch"] == before["group_epoch"]
        assert after["epochs"] == before["epochs"]
        assert after["members"] == before["members"]
    finally:
        a.close()
        b.close()


def _group_configs_everywhere(cluster: Cluster, group: str) -> list[dict[str, tuple[str, int]]]:
    """DescribeConfigs v4 of the GROUP resource, from every broker: name -> (value, source)."""
    body = {
        "resources": [{"resource_type": 32, "resource_name": group, "configuration_keys": None}],
        "include_synonyms": False,
        "include_documentation": False,
    }
    out = []
    for answer in _ask_every_broker(cluster, 32, 4, body):
        [r] = answer.results
        assert r.error_code == 0, r.error_message
        out.append({c.name: (c.value, c.config_source) for c in r.configs})
    return out


def _coordinator_ask(cluster: Cluster, group: str, api_key: int, version: int, body: dict):
    from workbench.protocol.blocking_client import WireClient
    from workbench.protocol.codec import REQUEST_CLASSES, build

    boot = WireClient.to(cluster.bootstrap_servers)
    fc = boot.request(build(REQUEST_CLASSES[10], {"key": group, "key_type": 0}), 3)
    boot.close()
    c = WireClient(fc.host, fc.port)
    try:
        return c.request(build(REQUEST_CLASSES[api_key], body), version)
    finally:
        c.close()


def test_group_configs_are_validated_kept_in_the_metadata_log_and_applied_to_both_group_protocols(
    share_cluster, topic_name
):
    """KIP-848/932 group configs (Kafka 4.x's GroupConfig): IncrementalAlterConfigs on a GROUP
    resource checks names, types, the broker's min/max bounds and session > heartbeat; the overrides
    are in the metadata log (every broker describes them); the coordinator answers heartbeats of
    that group with its own heartbeat interval, for a consumer group and for a share group."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    share_cluster.create_topic(topic_name, partitions=1)
    admin = share_cluster.admin()
    consumer_group, share_group = f"cg-{uuid.uuid4().hex[:6]}", f"sg-{uuid.uuid4().hex[:6]}"

    def alter(group: str, **configs: str | None) -> None:
        entries = [
            ConfigEntry(
                name.replace("_", "."),
                value,
                incremental_operation=AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE,
            )
            for name, value in configs.items()
        ]
        resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
        admin.incremental_alter_configs([resource])[resource].result(timeout=20)

    alter(consumer_group, consumer_heartbeat_interval_ms="2500", consumer_session_timeout_ms="30000")
    alter(share_group, share_heartbeat_interval_ms="3000", share_isolation_level="read_committed")
    for bad, why in [
        ({"consumer_session_timeout_ms": "2000"}, r"consumer\.session\.timeout\.ms must be greater than"),
        ({"consumer_heartbeat_interval_ms": "99999"}, r"must be less than or equal to"),
        ({"share_isolation_level": "sometimes"}, r"share\.isolation\.level"),
        ({"share_session_timeout_ms": "soon"}, r"share\.session\.timeout\.ms"),
        ({"consumer_fetch_ms": "1"}, r"Unknown group config name: consumer\.fetch\.ms"),
    ]:
        with pytest.raises(KafkaException, match=why):
            alter(consumer_group, **bad)

    # The answer comes once the controller committed the change; each broker (the coordinators
    # among them) applies it when its metadata log catches up: wait for all three to agree.
    def agree(group: str, name: str, value: str) -> bool:
        return all(d.get(name, (None,))[0] == value for d in _group_configs_everywhere(share_cluster, group))

    wait_until(lambda: agree(consumer_group, "consumer.heartbeat.interval.ms", "2500"), timeout=20)
    wait_until(lambda: agree(share_group, "share.heartbeat.interval.ms", "3000"), timeout=20)
    everywhere = _group_configs_everywhere(share_cluster, consumer_group)
    assert len(everywhere) == 3 and all(d == everywhere[0] for d in everywhere)  # one metadata log
    configs = everywhere[0]
    assert configs["consumer.heartbeat.interval.ms"] == ("2500", 8)  # GROUP_CONFIG
    assert configs["consumer.session.timeout.ms"] == ("30000", 8)
    assert configs["share.heartbeat.interval.ms"] == ("1000", 5)  # DEFAULT_CONFIG: the broker's
    assert set(configs) == {
        "consumer.session.timeout.ms",
        "consumer.heartbeat.interval.ms",
        "share.session.timeout.ms",
        "share.heartbeat.interval.ms",
        "share.record.lock.duration.ms",
        "share.delivery.count.limit",
        "share.auto.offset.reset",
        "share.isolation.level",
    }
    assert _group_configs_everywhere(share_cluster, share_group)[0]["share.isolation.level"] == ("read_committed", 8)

    joined = _coordinator_ask(
        share_cluster,
        consumer_group,
        68,
        0,
        {
            "group_id": consumer_group,
            "member_id": uuid.uuid4().hex,
            "member_epoch": 0,
            "rebalance_timeout_ms": 30000,
            "subscribed_topic_names": [topic_name],
            "topic_partitions": [],
        },
    )
    assert joined.error_code == 0 and joined.heartbeat_interval_ms == 2500
    share_joined = _coordinator_ask(
        share_cluster,
        share_group,
        76,
        1,
        {
            "group_id": share_group,
            "member_id": uuid.uuid4().hex,
            "member_epoch": 0,
            "rack_id": None,
            "subscribed_topic_names": [topic_name],
        },
    )
    assert share_joined.error_code == 0 and share_joined.heartbeat_interval_ms == 3000

    alter(consumer_group, consumer_heartbeat_interval_ms=None)  # DELETE: back to the broker's default
    # The answer comes once the controller committed the change; each broker applies it when its
    # metadata log catches up, so the first broker asked may still show the old value a moment.
    wait_until(
        lambda: all(
            d["consumer.heartbeat.interval.ms"] == ("1000", 5)
            for d in _group_configs_everywhere(share_cluster, consumer_group)
        ),
        message="the deleted group config back at the broker's default on every broker",
    )


def test_a_read_committed_share_group_gets_committed_records_only(share_cluster, topic_name):
    """share.isolation.level=read_committed (a group config): records are handed out up to the last
    stable offset, and the records of aborted transactions are archived, never delivered, as Kafka's
    SharePartition does; a read_uncommitted group of the same topic gets every record."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    share_cluster.create_topic(topic_name, partitions=1)
    bs = share_cluster.bootstrap_servers
    committed_group, everything_group = f"rc-{uuid.uuid4().hex[:6]}", f"ru-{uuid.uuid4().hex[:6]}"
    admin = share_cluster.admin()
    level = ConfigEntry("share.isolation.level", "read_committed", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.GROUP, committed_group, incremental_configs=[level])
    admin.incremental_alter_configs([resource])[resource].result(timeout=20)

    txn = Producer({"bootstrap.servers": bs, "transactional.id": f"t-{topic_name}"})
    txn.init_transactions(20)
    txn.begin_transaction()
    for v in ("aborted-0", "aborted-1", "aborted-2"):
        txn.produce(topic_name, value=v.encode())
    assert txn.flush(15) == 0  # in the log before the abort (an abort purges what is unsent)
    txn.abort_transaction(20)
    txn.begin_transaction()
    for v in ("committed-0", "committed-1"):
        txn.produce(topic_name, value=v.encode())
    txn.commit_transaction(20)
    txn.begin_transaction()
    txn.produce(topic_name, value=b"open")
    assert txn.flush(15) == 0
    _produce(bs, topic_name, ["plain"])  # above the open transaction: beyond the last stable offset

    rc = _consumer(bs, committed_group, topic_name, mode="implicit")
    try:
        first = _poll(rc, 2)
        assert sorted(v for _o, v, _n, _m in first) == ["committed-0", "committed-1"]
        txn.abort_transaction(20)  # the open one: the last stable offset moves past "plain"
        rest = _poll(rc, 1)
        assert [v for _o, v, _n, _m in rest] == ["plain"]
    finally:
        rc.close()
    ru = _consumer(bs, everything_group, topic_name, mode="implicit")
    try:
        values = sorted(v for _o, v, _n, _m in _poll(ru, 7))
        assert values == sorted(["aborted-0", "aborted-1", "aborted-2", "committed-0", "committed-1", "open", "plain"])
    finally:
        ru.close()


def test_delete_groups_removes_an_empty_share_group_and_its_state(share_cluster, topic_name):
    """DeleteGroups of a share group: NON_EMPTY_GROUP while a member is in it; once empty, its
    membership records and share-partition state go (Kafka deletes both), ListGroups no longer
    names it, and a member joining under the same id starts afresh."""
    share_cluster.create_topic(topic_name, partitions=1)
    bs, group = share_cluster.bootstrap_servers, f"g-{uuid.uuid4().hex[:6]}"
    _produce(bs, topic_name, [f"m{i}" for i in range(3)])
    admin = share_cluster.admin()
    c = _consumer(bs, group, topic_name)
    try:
        _ack_all(c, _poll(c, 3))
        assert _start_offsets(share_cluster, group) == {(topic_name, 0): 3}
        with pytest.raises(KafkaException, match="NON_EMPTY_GROUP"):
            admin.delete_consumer_groups([group], request_timeout=20)[group].result()
    finally:
        c.close()
    wait_until(lambda: _listed(share_cluster, ["share"]).get(group, (None, None))[1] == "Empty")
    admin.delete_consumer_groups([group], request_timeout=20)[group].result()
    assert group not in _listed(share_cluster, [])
    assert _start_offsets(share_cluster, group) == {}
    again = _consumer(bs, group, topic_name)
    try:
        fresh = sorted(_poll(again, 3))
        assert [(o, n) for o, _v, n, _m in fresh] == [(0, 1), (1, 1), (2, 1)]  # earliest, first delivery
        _ack_all(again, fresh)
    finally:
        again.close()
