"""The schema registry with unmodified confluent-kafka clients: REST API, Avro serde, `_schemas` durability."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.conftest import FAST_GROUPS
from workbench import Cluster
from workbench.client import KafkaConnection

USER_V1 = {
    "type": "record",
    "name": "User",
    "namespace": "example",
    "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}],
}
USER_V2 = {**USER_V1, "fields": USER_V1["fields"] + [{"name": "email", "type": ["null", "string"], "default": None}]}
USER_BAD = {**USER_V1, "fields": USER_V1["fields"] + [{"name": "country", "type": "string"}]}


@pytest.fixture(scope="module")
def registry_cluster(tmp_path_factory):
    with Cluster(brokers=3, data_dir=tmp_path_factory.mktemp("sr"), config=FAST_GROUPS, schema_registry=True) as c:
        yield c


@pytest.fixture
def client(registry_cluster):
    return SchemaRegistryClient({"url": registry_cluster.schema_registry_url})


def avro(schema: dict) -> Schema:
    return Schema(json.dumps(schema), "AVRO")


def test_avro_serializer_round_trip_through_a_topic(registry_cluster, client, topic_name):
    registry_cluster.create_topic(topic_name, partitions=1, replication_factor=3)
    serializer = AvroSerializer(client, json.dumps(USER_V1))
    deserializer = AvroDeserializer(client)
    producer = Producer({"bootstrap.servers": registry_cluster.bootstrap_servers})
    users = [{"name": f"user-{i}", "age": 20 + i} for i in range(10)]
    for u in users:
        ctx = SerializationContext(topic_name, MessageField.VALUE)
        producer.produce(topic_name, value=serializer(u, ctx))
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": registry_cluster.bootstrap_servers,
            "group.id": "g",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic_name])
    got = []
    try:
        while len(got) < len(users):
            msg = consumer.poll(10)
            assert msg is not None, f"only {len(got)} records came back"
            assert not msg.error(), msg.error()
            assert msg.value()[0] == 0, "Confluent wire format: magic byte 0"
            got.append(deserializer(msg.value(), SerializationContext(topic_name, MessageField.VALUE)))
    finally:
        consumer.close()
    assert got == users
    registered = client.get_latest_version(f"{topic_name}-value")
    assert registered.version == 1
    assert json.loads(registered.schema.schema_str)["name"] == "User"
    assert f"{topic_name}-value" in client.get_subjects()


def test_register_is_idempotent_and_ids_are_shared_across_subjects(client, topic_name):
    a = client.register_schema(f"{topic_name}-a", avro(USER_V1))
    again = SchemaRegistryClient({"url": client._rest_client.base_urls[0]})  # no client-side cache
    assert again.register_schema(f"{topic_name}-a", avro(USER_V1)) == a
    assert again.get_versions(f"{topic_name}-a") == [1]
    b = again.register_schema(f"{topic_name}-b", avro(USER_V1))
    assert b == a, "the same schema under another subject keeps its id, as in Confluent"
    assert {f"{topic_name}-a", f"{topic_name}-b"} <= set(again.get_subjects_by_schema_id(a))
    found = again.lookup_schema(f"{topic_name}-a", avro(USER_V1))
    assert (found.schema_id, found.version) == (a, 1)


def test_backward_compatibility_refuses_a_field_without_default(client, topic_name):
    subject = f"{topic_name}-value"
    client.register_schema(subject, avro(USER_V1))
    assert client.test_compatibility(subject, avro(USER_V2)) is True
    assert client.test_compatibility(subject, avro(USER_BAD)) is False
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(subject, avro(USER_BAD))
    assert err.value.http_status_code == 409
    client.register_schema(subject, avro(USER_V2))
    assert client.get_versions(subject) == [1, 2]
    client.set_compatibility(subject, "NONE")
    assert client.get_compatibility(subject) == "NONE"
    client.register_schema(subject, avro(USER_BAD))
    assert client.get_versions(subject) == [1, 2, 3]


def test_error_codes(client, topic_name):
    with pytest.raises(SchemaRegistryError) as err:
        client.get_latest_version(f"{topic_name}-missing")
    assert (err.value.http_status_code, err.value.error_code) == (404, 40401)
    subject = f"{topic_name}-value"
    client.register_schema(subject, avro(USER_V1))
    with pytest.raises(SchemaRegistryError) as err:
        client.get_version(subject, 7)
    assert err.value.error_code == 40402
    with pytest.raises(SchemaRegistryError) as err:
        client.get_schema(987654)
    assert err.value.error_code == 40403
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(subject, Schema('{"type": "record", "name": "X"}', "AVRO"))
    assert (err.value.http_status_code, err.value.error_code) == (422, 42201)
    with pytest.raises(SchemaRegistryError) as err:
        client.set_compatibility(subject, "SIDEWAYS")
    assert err.value.error_code == 42203


def test_soft_and_hard_deletes(client, topic_name):
    subject = f"{topic_name}-value"
    client.register_schema(subject, avro(USER_V1))
    client.register_schema(subject, avro(USER_V2))
    with pytest.raises(SchemaRegistryError) as err:
        client.delete_version(subject, 1, permanent=True)
    assert err.value.error_code == 40407, "a hard delete needs a soft delete first"
    assert client.delete_version(subject, 1) == 1
    assert client.get_versions(subject) == [2]
    assert client.delete_subject(subject) == [2]
    assert subject not in client.get_subjects()
    with pytest.raises(SchemaRegistryError) as err:
        client.get_latest_version(subject)
    assert err.value.error_code == 40401
    assert client.delete_subject(subject, permanent=True) == [1, 2]
    # The id of a hard-deleted schema is gone unless another subject still has it.
    new_id = client.register_schema(subject, avro(USER_V1))
    assert client.get_versions(subject) == [1]
    assert client.get_schema(new_id).schema_str


def test_registry_survives_a_broker_sigkill_and_a_restart(tmp_path, topic_name):
    with Cluster(brokers=3, data_dir=tmp_path / "c", config=FAST_GROUPS, schema_registry=True) as c:
        client = SchemaRegistryClient({"url": c.schema_registry_url})
        v1 = client.register_schema(f"{topic_name}-value", avro(USER_V1))
        client.set_compatibility(f"{topic_name}-value", "FULL")
        md = AdminClient({"bootstrap.servers": c.bootstrap_servers}).list_topics("_schemas", timeout=10)
        assert len(md.topics["_schemas"].partitions[0].replicas) == 3
        leader = md.topics["_schemas"].partitions[0].leader
        c.kill_broker(leader)
        v2 = client.register_schema(f"{topic_name}-value", avro(USER_V2))
        assert v2 != v1
    with Cluster(data_dir=tmp_path / "c", config=FAST_GROUPS, schema_registry=True) as c:
        client = SchemaRegistryClient({"url": c.schema_registry_url})
        assert client.get_versions(f"{topic_name}-value") == [1, 2]
        assert client.get_compatibility(f"{topic_name}-value") == "FULL"
        assert client.get_version(f"{topic_name}-value", 2).schema_id == v2


def test_facade_send_with_schema_and_consumer_decoding(registry_cluster, topic_name):
    """`Producer.send(..., schema=...)` registers and frames; the façade's consumer decodes by schema id."""
    producer = registry_cluster.producer()
    for i in range(3):
        producer.send(topic_name, {"name": f"n{i}", "age": i}, key=f"k{i}", schema=USER_V1)
    assert producer.flush(30) == 0
    consumer = registry_cluster.consumer(topics=[topic_name], auto_offset_reset="earliest")
    try:
        records = consumer.read(3, timeout=30)
    finally:
        consumer.close()
    assert [r.value for r in records] == [{"name": f"n{i}", "age": i} for i in range(3)]
    client = SchemaRegistryClient({"url": registry_cluster.schema_registry_url})
    assert client.get_latest_version(f"{topic_name}-value").version == 1
    with pytest.raises(ValueError, match="schema registry"):
        KafkaConnection(registry_cluster.bootstrap_servers).producer().send(topic_name, {"a": 1}, schema=USER_V1)


def test_wb_schemas_lists_subjects_and_versions(registry_cluster, client, topic_name):
    subject = f"{topic_name}-value"
    client.register_schema(subject, avro(USER_V1))
    client.register_schema(subject, avro(USER_V2))
    df = registry_cluster.sql(
        f"select version, schema_type from wb.schemas where subject = '{subject}' order by version"
    )
    assert df["version"].tolist() == [1, 2]
    assert set(df["schema_type"]) == {"AVRO"}
