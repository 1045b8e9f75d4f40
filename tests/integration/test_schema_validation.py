"""Broker-side schema validation (Confluent Server's `confluent.value.schema.validation` and
`confluent.key.schema.validation` topic configs): a record whose value (key) does not carry a
schema id registered under the topic's subject is refused with INVALID_RECORD, per record
(KIP-467); the broker learns ids from `_schemas`. Produced with confluent-kafka."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError

from tests.conftest import FAST_GROUPS
from tests.support import wait_until
from workbench import Cluster

POINT = {"type": "record", "name": "Point", "fields": [{"name": "x", "type": "int"}]}
OTHER = {"type": "record", "name": "Other", "fields": [{"name": "y", "type": "string"}]}


@pytest.fixture(scope="module")
def registry_cluster(tmp_path_factory):
    with Cluster(brokers=3, data_dir=tmp_path_factory.mktemp("sv"), config=FAST_GROUPS, schema_registry=True) as c:
        yield c


@pytest.fixture
def client(registry_cluster):
    return SchemaRegistryClient({"url": registry_cluster.schema_registry_url})


def _create(cluster, topic: str, configs: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3, config=configs)])[topic].result(30)


def _send(cluster, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> list[KafkaError | None]:
    """Produce each (key, value) on its own (one batch each) and return each delivery's error."""
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 0, "acks": "all"})
    out: list[KafkaError | None] = []
    for key, value in records:
        errors: list = []
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, _msg, e=errors: e.append(err))
        assert producer.flush(30) == 0
        out.append(errors[0])
    return out


def test_value_validation_refuses_records_without_a_registered_id(registry_cluster, client, topic_name):
    _create(registry_cluster, topic_name, {"confluent.value.schema.validation": "true"})
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    good = AvroSerializer(client, json.dumps(POINT))({"x": 1}, ctx)  # registers <topic>-value just now
    other_ctx = SerializationContext(f"{topic_name}-elsewhere", MessageField.VALUE)
    elsewhere = AvroSerializer(client, json.dumps(OTHER))({"y": "a"}, other_ctx)  # another subject's id
    unknown = b"\x00\x00\x01\x86\xa0" + good[5:]  # id 100000: never registered
    results = _send(registry_cluster, topic_name, [(None, good), (None, b"plain"), (None, elsewhere), (None, unknown)])
    assert results[0] is None
    for err in results[1:]:
        assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    # only the valid record is in the topic
    rows = registry_cluster.sql(f'SELECT value_bytes FROM "{topic_name}"')
    assert [bytes(v) for v in rows["value_bytes"]] == [good]


def test_per_record_errors_name_the_refused_records(registry_cluster, client, topic_name):
    """One batch with a good and a bad record: refused whole, KIP-467 names the bad one."""
    _create(registry_cluster, topic_name, {"confluent.value.schema.validation": "true"})
    good = AvroSerializer(client, json.dumps(POINT))({"x": 2}, SerializationContext(topic_name, MessageField.VALUE))
    producer = KafkaProducer(bootstrap_servers=registry_cluster.bootstrap_servers, linger_ms=200, retries=0)
    try:
        f1 = producer.send(topic_name, value=good, partition=0)
        f2 = producer.send(topic_name, value=b"not framed", partition=0)
        producer.flush(30)
        assert f1.exception is not None and "part of a batch" in str(f1.exception)  # refused whole (KIP-467)
        assert isinstance(f2.exception, InvalidRecordError)
        assert "wire format" in str(f2.exception)  # the record's own KIP-467 message
    finally:
        producer.close(5)
    assert registry_cluster.sql(f'SELECT count(*) AS n FROM "{topic_name}"')["n"][0] == 0


def test_key_validation_and_unvalidated_topics(registry_cluster, client, topic_name):
    _create(registry_cluster, topic_name, {"confluent.key.schema.validation": "true"})
    key = AvroSerializer(client, json.dumps(POINT))({"x": 3}, SerializationContext(topic_name, MessageField.KEY))
    results = _send(registry_cluster, topic_name, [(key, b"any value"), (b"raw key", b"v"), (None, b"v")])
    assert results[0] is None
    assert [e.code() if e else None for e in results[1:]] == [KafkaError.INVALID_RECORD] * 2
    # a topic without the configs takes anything
    plain = f"{topic_name}-plain"
    _create(registry_cluster, plain, {})
    assert _send(registry_cluster, plain, [(None, b"x")]) == [None]


def test_a_soft_deleted_subject_no_longer_validates(registry_cluster, client, topic_name):
    _create(registry_cluster, topic_name, {"confluent.value.schema.validation": "true"})
    value = AvroSerializer(client, json.dumps(POINT))({"x": 4}, SerializationContext(topic_name, MessageField.VALUE))
    assert _send(registry_cluster, topic_name, [(None, value)]) == [None]
    client.delete_subject(f"{topic_name}-value")

    def refused() -> bool:
        (err,) = _send(registry_cluster, topic_name, [(None, value)])
        return err is not None and err.code() == KafkaError.INVALID_RECORD

    wait_until(refused, timeout=30)
