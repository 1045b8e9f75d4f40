"""Admin APIs through confluent-kafka's AdminClient and kafka-python's KafkaAdminClient."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from kafka import TopicPartition as KPTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.admin import NewTopic as KPNewTopic


def admin(cluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap_servers})


def test_create_describe_alter_delete_topic(cluster, topic_name):
    a = admin(cluster)
    fs = a.create_topics(
        [
            NewTopic(
                topic_name,
                num_partitions=4,
                replication_factor=1,
                config={"retention.ms": "3600000", "cleanup.policy": "delete"},
            )
        ]
    )
    fs[topic_name].result(15)
    md = a.list_topics(topic_name, timeout=10).topics[topic_name]
    assert len(md.partitions) == 4
    assert {p.leader for p in md.partitions.values()} <= {1, 2, 3}

    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = a.describe_configs([res])[res].result(15)
    assert configs["retention.ms"].value == "3600000"
    assert configs["segment.bytes"].is_default

    a.incremental_alter_configs(
        [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                topic_name,
                incremental_configs=[
                    ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
                    ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
                    ConfigEntry("min.insync.replicas", "1", incremental_operation=AlterConfigOpType.SET),
                ],
            )
        ]
    )[res].result(15)
    configs = a.describe_configs([res])[res].result(15)
    assert configs["retention.bytes"].value == "1048576"
    assert configs["retention.ms"].is_default

    a.create_partitions([NewPartitions(topic_name, 6)])[topic_name].result(15)
    # CreatePartitions answers once the controller committed the change; each broker's metadata
    # follows shortly after (as in Kafka), so read until the broker we ask has it.
    deadline = time.monotonic() + 15
    while len(a.list_topics(topic_name, timeout=10).topics[topic_name].partitions) != 6:
        assert time.monotonic() < deadline, "the new partitions never appeared in Metadata"
        time.sleep(0.1)

    a.delete_topics([topic_name])[topic_name].result(15)
    deadline = time.monotonic() + 10
    while topic_name in a.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    assert topic_name not in a.list_topics(timeout=10).topics


def test_errors_use_kafka_error_codes(cluster, topic_name):
    a = admin(cluster)
    a.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(15)
    with pytest.raises(KafkaException) as exc:
        a.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(15)
    assert exc.value.args[0].code() == 36  # TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as exc:
        a.create_topics([NewTopic("bad name!", 1, 1)])["bad name!"].result(15)
    assert exc.value.args[0].code() == 17  # INVALID_TOPIC_EXCEPTION
    with pytest.raises(KafkaException) as exc:
        a.create_topics([NewTopic(topic_name + "x", 1, 7)])[topic_name + "x"].result(15)
    assert exc.value.args[0].code() == 38  # INVALID_REPLICATION_FACTOR
    with pytest.raises(KafkaException) as exc:
        a.create_topics([NewTopic(topic_name + "y", 1, 1, config={"retention.ms": "soon"})])[topic_name + "y"].result(
            15
        )
    assert exc.value.args[0].code() == 40  # INVALID_CONFIG
    with pytest.raises(KafkaException) as exc:
        a.delete_topics(["does-not-exist"])["does-not-exist"].result(15)
    assert exc.value.args[0].code() == 3  # UNKNOWN_TOPIC_OR_PART


def test_python_api_gives_clear_errors(cluster, topic_name):
    with pytest.raises(ValueError, match="partitions must be a positive integer"):
        cluster.create_topic(topic_name, partitions=0)
    with pytest.raises(ValueError, match="replication factor"):
        cluster.create_topic(topic_name, partitions=1, replication_factor=5)
    with pytest.raises(ValueError, match="may only use"):
        cluster.create_topic("no spaces please", partitions=1)


def test_describe_cluster_and_broker_configs(cluster):
    a = admin(cluster)
    desc = a.describe_cluster(request_timeout=10).result(15)
    assert sorted(n.id for n in desc.nodes) == [1, 2, 3]
    assert desc.controller.id in (1, 2, 3)
    assert desc.cluster_id
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    configs = a.describe_configs([res])[res].result(15)
    assert configs["auto.create.topics.enable"].value == "true"


def test_delete_records_moves_log_start_offset(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for i in range(100):
        p.produce(topic_name, value=str(i).encode())
    p.flush(15)
    a = admin(cluster)
    result = a.delete_records([TopicPartition(topic_name, 0, 40)])
    deleted = result[TopicPartition(topic_name, 0, 40)].result(15)
    assert deleted.low_watermark == 40
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"dr-{topic_name}"})
    low, high = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    c.close()
    assert (low, high) == (40, 100)


def test_list_describe_delete_groups_and_offset_delete(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2)
    group = f"admin-{topic_name}"
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group})
    c.commit(offsets=[TopicPartition(topic_name, 0, 3), TopicPartition(topic_name, 1, 4)], asynchronous=False)
    c.close()
    a = admin(cluster)
    listed = a.list_consumer_groups(request_timeout=10).result(15)
    assert group in {g.group_id for g in listed.valid}
    described = a.describe_consumer_groups([group])[group].result(15)
    assert described.state.name == "EMPTY"
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        offsets = kp.list_group_offsets({group: None})[group]
        assert {tp.partition: m.offset for tp, m in offsets.items()} == {0: 3, 1: 4}
        # OffsetDelete (KIP-496) removes one partition's commit.
        kp.delete_group_offsets(group, [KPTopicPartition(topic_name, 0)])
        offsets = kp.list_group_offsets({group: None})[group]
        assert {tp.partition: m.offset for tp, m in offsets.items()} == {1: 4}
    finally:
        kp.close()
    a.delete_consumer_groups([group])[group].result(15)
    listed = a.list_consumer_groups(request_timeout=10).result(15)
    assert group not in {g.group_id for g in listed.valid}


def test_kafka_python_admin_creates_and_describes(cluster, topic_name):
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        kp.create_topics([KPNewTopic(topic_name, num_partitions=3, replication_factor=1)])
        # Metadata reaches every broker a moment after the controller commits it, as in Kafka.
        deadline = time.monotonic() + 10
        described = kp.describe_topics([topic_name])
        while len(described[0]["partitions"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            described = kp.describe_topics([topic_name])
        assert len(described[0]["partitions"]) == 3
        kp.delete_topics([topic_name])
    finally:
        kp.close()
