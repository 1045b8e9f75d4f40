"""KIP-848 group settings (Kafka 4.x's group.consumer.* broker configs) and empty-group migration
between the classic and consumer protocols, with librdkafka and the wire."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer

from tests.support import wait_until
from workbench.broker.apis import ApiKey
from workbench.cluster_config import validate_broker_config
from workbench.protocol.blocking_client import WireClient
from workbench.protocol.codec import REQUEST_CLASSES, build

SETTINGS = {
    "group_initial_rebalance_delay_ms": 0,
    "group_consumer_heartbeat_interval_ms": 700,
    "group_consumer_session_timeout_ms": 9000,
    "group_consumer_min_session_timeout_ms": 5000,
    "group_consumer_assignors": ["range"],
    "group_consumer_max_size": 2,
}


def coordinator_of(bootstrap: str, group: str) -> WireClient:
    c = WireClient.to(bootstrap)
    try:

        def found():
            fc = c.request(build(REQUEST_CLASSES[ApiKey.FIND_COORDINATOR], {"key": group}), 0)
            return fc if fc.error_code == 0 else None

        fc = wait_until(found, 30)
    finally:
        c.close()
    return WireClient(fc.host, fc.port)


def heartbeat(c: WireClient, group: str, topic: str, **fields):
    body = {
        "group_id": group,
        "member_id": uuid.uuid4().hex,
        "member_epoch": 0,
        "rebalance_timeout_ms": 30000,
        "subscribed_topic_names": [topic],
        "topic_partitions": [],
    }
    body.update(fields)
    return c.request(build(REQUEST_CLASSES[ApiKey.CONSUMER_GROUP_HEARTBEAT], body), 0)


@pytest.mark.parametrize(
    "config",
    [
        {"group_consumer_session_timeout_ms": 500},  # below the minimum (1000)
        {"group_consumer_session_timeout_ms": 70000},  # above the maximum (60000)
        {"group_consumer_heartbeat_interval_ms": 45000},  # not below the session timeout
        {"group_consumer_min_session_timeout_ms": 70000},  # min above max
        {"group_consumer_assignors": ["uniform", "sticky"]},
        {"group_consumer_assignors": []},
        {"group_consumer_max_size": 0},
        {"group_consumer_migration_policy": "sideways"},
    ],
)
def test_group_consumer_settings_are_checked_before_a_broker_starts(config):
    name = next(iter(config))
    with pytest.raises(ValueError, match=name):
        validate_broker_config(config)


def test_group_consumer_settings_reach_the_consumer_group_coordinator(fresh_cluster, topic_name):
    """librdkafka joins and consumes under the configured settings; the heartbeat interval the broker
    answers is group.consumer.heartbeat.interval.ms, the assignor the only one configured, and a member
    beyond group.consumer.max.size is refused."""
    cluster = fresh_cluster(brokers=1, config=SETTINGS)
    bootstrap = cluster.bootstrap_servers
    cluster.create_topic(topic_name, partitions=2)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        p.produce(topic_name, value=str(i).encode(), partition=i % 2)
    assert p.flush(30) == 0
    group = f"settings-{topic_name}"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic_name])
    c = coordinator_of(bootstrap, group)
    try:
        seen: list = []

        def consumed() -> bool:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.append(msg.value())
            return len(seen) >= 10

        wait_until(consumed, 60, interval=0)
        assert sorted(int(v) for v in seen) == list(range(10))
        # A second member (the wire) is told the configured interval and gets range's half.
        second = heartbeat(c, group, topic_name)
        assert second.error_code == 0 and second.heartbeat_interval_ms == 700
        # Naming an assignor that is not configured is UNSUPPORTED_ASSIGNOR (112) ...
        assert heartbeat(c, group, topic_name, server_assignor="uniform").error_code == 112
        # ... and a third member is GROUP_MAX_SIZE_REACHED (81): max.size is 2.
        assert heartbeat(c, group, topic_name).error_code == 81
        described = c.request(build(REQUEST_CLASSES[ApiKey.CONSUMER_GROUP_DESCRIBE], {"group_ids": [group]}), 0).groups[
            0
        ]
        assert described.assignor_name == "range" and len(described.members) == 2
    finally:
        consumer.close()
        c.close()


def test_workbench_up_config_takes_kafkas_names_and_list_form():
    from workbench.cli import parse_config

    config = parse_config(["group.consumer.assignors=range,uniform", "group.consumer.heartbeat.interval.ms=700"])
    assert config == {"group_consumer_assignors": ["range", "uniform"], "group_consumer_heartbeat_interval_ms": 700}
    validate_broker_config(config)


def _consume(consumer: Consumer, n: int) -> list[int]:
    seen: list[int] = []

    def step() -> bool:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            seen.append(int(msg.value()))
        return len(seen) >= n

    wait_until(step, 60, interval=0)
    return seen


def _group_type(admin, group: str) -> str:
    listed = {g.group_id: g for g in admin.list_consumer_groups(request_timeout=20).result().valid}
    return listed[group].type.name if group in listed else "absent"


def test_an_empty_group_switches_protocol_both_ways_and_keeps_its_offsets(cluster, topic_name):
    """KIP-848 migration of an empty group: classic members commit and leave, a group.protocol=consumer
    member of the same group id resumes after the commit (the group is now a consumer group), commits
    and leaves, and a classic member resumes after that (a classic group again)."""
    from confluent_kafka.admin import AdminClient

    bootstrap = cluster.bootstrap_servers
    cluster.create_topic(topic_name, partitions=1)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(30):
        p.produce(topic_name, value=str(i).encode())
    assert p.flush(30) == 0
    group = f"migrate-{topic_name}"
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def member(protocol: str) -> Consumer:
        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "group.protocol": protocol,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "max.poll.interval.ms": 10000,
                **({"session.timeout.ms": 6000} if protocol == "classic" else {}),
            }
        )
        c.subscribe([topic_name])
        return c

    classic = member("classic")
    assert _consume(classic, 10)[:10] == list(range(10))
    classic.commit(asynchronous=False)
    assert _group_type(admin, group) == "CLASSIC"
    classic.close()

    modern = member("consumer")
    try:
        resumed = _consume(modern, 10)
        assert resumed[0] == 10, f"the consumer-protocol member did not resume at the commit: {resumed[:3]}"
        modern.commit(asynchronous=False)
        assert _group_type(admin, group) == "CONSUMER"
    finally:
        modern.close()

    back = member("classic")
    try:
        again = _consume(back, 5)
        assert again[0] == 20, f"the classic member did not resume at the commit: {again[:3]}"
        assert _group_type(admin, group) == "CLASSIC"
    finally:
        back.close()
    # Empty again, it stays what it last was: a classic group (the consumer group was deleted).
    assert _group_type(admin, group) == "CLASSIC"
    described = admin.describe_consumer_groups([group], request_timeout=20)[group].result()
    assert described.type.name == "CLASSIC"
