"""Keyed records land in the partition Kafka's default (murmur2) partitioner picks."""

from __future__ import annotations

from confluent_kafka import Producer
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2


def java_partition(key: bytes, partitions: int) -> int:
    # Kafka's DefaultPartitioner / BuiltInPartitioner: toPositive(murmur2(key)) % numPartitions
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_kafka_python_keyed_records_follow_murmur2(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=6)
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers)
    for i in range(60):
        key = f"customer-{i}".encode()
        meta = producer.send(topic_name, key=key, value=b"x").get(timeout=30)
        assert meta.partition == java_partition(key, 6), key
    producer.close()


def test_confluent_kafka_murmur2_partitioner_matches_java_clients(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=6)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "partitioner": "murmur2_random"})
    delivered = []
    for i in range(60):
        producer.produce(
            topic_name,
            key=f"order-{i}".encode(),
            value=b"x",
            on_delivery=lambda err, msg: delivered.append((err, msg.key(), msg.partition())),
        )
    producer.flush(30)
    assert len(delivered) == 60
    for err, key, partition in delivered:
        assert err is None
        assert partition == java_partition(key, 6)
    # The six partitions all got records: leaders are spread over the three brokers.
    assert len({p for _, _, p in delivered}) == 6
