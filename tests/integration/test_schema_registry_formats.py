"""JSON Schema and Protobuf through the registry with confluent-kafka's unmodified serializers,
and the subject name strategies."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    record_subject_name_strategy,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tests.conftest import FAST_GROUPS
from workbench import Cluster

ORDER = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
    "required": ["id"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def registry_cluster(tmp_path_factory):
    with Cluster(brokers=1, data_dir=tmp_path_factory.mktemp("srf"), config=FAST_GROUPS, schema_registry=True) as c:
        yield c


@pytest.fixture
def client(registry_cluster):
    return SchemaRegistryClient({"url": registry_cluster.schema_registry_url})


def round_trip(cluster, topic: str, values: list[bytes]) -> list[bytes]:
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for v in values:
        producer.produce(topic, value=v)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap_servers, "group.id": "g", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out: list[bytes] = []
    try:
        while len(out) < len(values):
            msg = consumer.poll(10)
            assert msg is not None and not msg.error()
            out.append(msg.value())
    finally:
        consumer.close()
    return out


def test_json_serializer_round_trip_and_validation(registry_cluster, client, topic_name):
    ser = JSONSerializer(json.dumps(ORDER), client)
    de = JSONDeserializer(None, schema_registry_client=client)
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    orders = [{"id": i, "item": f"thing-{i}"} for i in range(5)]
    got = [de(v, ctx) for v in round_trip(registry_cluster, topic_name, [ser(o, ctx) for o in orders])]
    assert got == orders
    latest = client.get_latest_version(f"{topic_name}-value")
    assert latest.schema.schema_type == "JSON"
    # Closed content model: an optional property added is backward compatible; closing a type is not.
    wider = {**ORDER, "properties": {**ORDER["properties"], "note": {"type": "string"}}}
    assert client.test_compatibility(f"{topic_name}-value", Schema(json.dumps(wider), "JSON"))
    narrower = {**ORDER, "properties": {"id": {"type": "string"}, "item": {"type": "string"}}}
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(f"{topic_name}-value", Schema(json.dumps(narrower), "JSON"))
    assert err.value.http_status_code == 409


def _user_class():
    fd = descriptor_pb2.FileDescriptorProto(name="wb_user.proto", package="wbtest", syntax="proto3")
    m = fd.message_type.add(name="User")
    m.field.add(name="name", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
    m.field.add(name="age", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("wbtest.User"))


def test_protobuf_serializer_round_trip(registry_cluster, client, topic_name):
    user = _user_class()
    ser = ProtobufSerializer(user, client, {"use.deprecated.format": False})
    de = ProtobufDeserializer(user, {"use.deprecated.format": False})
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    users = [user(name=f"u{i}", age=i) for i in range(5)]
    got = [de(v, ctx) for v in round_trip(registry_cluster, topic_name, [ser(u, ctx) for u in users])]
    assert [(u.name, u.age) for u in got] == [(u.name, u.age) for u in users]
    latest = client.get_latest_version(f"{topic_name}-value")
    assert latest.schema.schema_type == "PROTOBUF"
    changed = 'syntax = "proto3"; package wbtest; message User { string name = 1; string age = 2; }'
    assert client.test_compatibility(f"{topic_name}-value", Schema(changed, "PROTOBUF")) is False
    added = 'syntax = "proto3"; package wbtest; message User { string name = 1; int32 age = 2; bool vip = 3; }'
    assert client.test_compatibility(f"{topic_name}-value", Schema(added, "PROTOBUF")) is True


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        (None, "{topic}-value"),
        (record_subject_name_strategy, "example.Point"),
        (topic_record_subject_name_strategy, "{topic}-example.Point"),
    ],
)
def test_subject_name_strategies(registry_cluster, client, topic_name, strategy, subject):
    schema = {
        "type": "record",
        "name": "Point",
        "namespace": "example",
        "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}],
    }
    conf = {} if strategy is None else {"subject.name.strategy": strategy}
    ser = AvroSerializer(client, json.dumps(schema), conf=conf)
    ser({"x": 1, "y": 2}, SerializationContext(topic_name, MessageField.VALUE))
    assert subject.format(topic=topic_name) in client.get_subjects()
