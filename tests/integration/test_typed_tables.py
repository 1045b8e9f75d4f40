"""Typed SQL over schema-framed topics: ``typed."<topic>"`` decodes Confluent-framed Avro, JSON
Schema and Protobuf values (produced by confluent-kafka's unmodified serializers) into columns
typed from the registered schemas, unions columns across schema versions, and shows records that
do not decode as NULL fields with a `decode_error`, never failing the query."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tests.conftest import FAST_GROUPS
from tests.support import wait_until
from workbench import Cluster

V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "item", "type": "string"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "buyer", "type": {"type": "record", "name": "Buyer", "fields": [{"name": "name", "type": "string"}]}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
    ],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "coupon", "type": ["null", "string"], "default": None}]}


@pytest.fixture(scope="module")
def registry_cluster(tmp_path_factory):
    with Cluster(brokers=1, data_dir=tmp_path_factory.mktemp("typed"), config=FAST_GROUPS, schema_registry=True) as c:
        yield c


@pytest.fixture
def client(registry_cluster):
    return SchemaRegistryClient({"url": registry_cluster.schema_registry_url})


def _produce(cluster, topic: str, values: list[bytes | None], **config) -> None:
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, **config})
    for v in values:
        producer.produce(topic, value=v)
    assert producer.flush(30) == 0


def _order(i: int) -> dict:
    return {
        "id": i,
        "item": f"item-{i}",
        "at": dt.datetime(2024, 5, 1, 12, 0, i, tzinfo=dt.UTC),
        "price": decimal.Decimal(f"{i}.25"),
        "ref": uuid.UUID(int=i),
        "day": dt.date(2024, 5, 1 + i),
        "tags": ["a", str(i)],
        "buyer": {"name": f"b{i}"},
        "note": None if i % 2 else "gift",
        "status": "PAID" if i % 2 else "NEW",
    }


def test_avro_typed_columns_evolution_and_bad_records(registry_cluster, client, topic_name):
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    v1 = AvroSerializer(client, json.dumps(V1))
    v2 = AvroSerializer(client, json.dumps(V2))
    values = [v1(_order(i), ctx) for i in range(3)]
    values += [v2({**_order(3), "coupon": "SPRING"}, ctx)]
    values += [b"plain text", b"\x00\x00\x00\x7f\xffgarbage", values[0][:5] + b"\xff"]
    _produce(registry_cluster, topic_name, values)

    df = registry_cluster.sql(f'SELECT * FROM typed."{topic_name}" ORDER BY "offset"')
    assert len(df) == 7
    cols = list(df.columns)
    for c in ("schema_id", "decode_error", "id", "item", "at", "price", "ref", "day", "tags", "buyer", "note"):
        assert c in cols
    assert cols.index("coupon") > cols.index("status")  # version 2's field joins after version 1's
    good = df.iloc[:4]
    assert good["decode_error"].isna().all()
    assert list(good["id"]) == [0, 1, 2, 3]
    assert good["coupon"].isna().tolist() == [True, True, True, False]
    assert good["coupon"].iloc[3] == "SPRING"
    assert good["buyer"].iloc[1] == {"name": "b1"}
    assert list(good["tags"].iloc[2]) == ["a", "2"]
    assert list(good["status"]) == ["NEW", "PAID", "NEW", "PAID"]
    assert good["price"].iloc[1] == decimal.Decimal("1.25")

    types = dict(
        registry_cluster.sql(
            f"SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = 'typed' AND table_name = '{topic_name}'"
        ).values.tolist()
    )
    assert types["id"] == "BIGINT"
    assert types["at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["price"] == "DECIMAL(9,2)"
    assert types["ref"] == "UUID"
    assert types["day"] == "DATE"
    assert types["tags"] == "VARCHAR[]"
    assert types["buyer"].startswith("STRUCT")
    row = registry_cluster.sql(f'SELECT buyer.name AS n, ref, "at" FROM typed."{topic_name}" WHERE id = 2').iloc[0]
    assert row["n"] == "b2"
    assert str(row["ref"]) == str(uuid.UUID(int=2))
    assert row["at"] == dt.datetime(2024, 5, 1, 12, 0, 2, tzinfo=dt.UTC)

    bad = df.iloc[4:]
    assert bad["id"].isna().all()
    assert bad["decode_error"].notna().all()
    assert "wire format" in bad["decode_error"].iloc[0]
    assert "not registered" in bad["decode_error"].iloc[1]
    assert "does not decode" in bad["decode_error"].iloc[2]
    assert bytes(bad["value_bytes"].iloc[0]) == b"plain text"  # raw bytes kept


def test_new_version_shows_up_in_the_next_query(registry_cluster, client, topic_name):
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    _produce(registry_cluster, topic_name, [AvroSerializer(client, json.dumps(V1))(_order(1), ctx)])
    first = registry_cluster.sql(f'SELECT * FROM typed."{topic_name}"')
    assert "coupon" not in first.columns
    _produce(registry_cluster, topic_name, [AvroSerializer(client, json.dumps(V2))({**_order(2), "coupon": "X"}, ctx)])
    second = registry_cluster.sql(f'SELECT id, coupon FROM typed."{topic_name}" ORDER BY id')
    assert second["id"].tolist() == [1, 2]
    assert second["coupon"].isna().tolist() == [True, False]
    assert second["coupon"].iloc[1] == "X"


def test_json_schema_typed_columns(registry_cluster, client, topic_name):
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Reading",
        "type": "object",
        "properties": {
            "sensor": {"type": "string"},
            "celsius": {"type": "number"},
            "count": {"type": "integer"},
            "labels": {"type": "array", "items": {"type": "string"}},
        },
    }
    ser = JSONSerializer(json.dumps(schema), client)
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    _produce(
        registry_cluster,
        topic_name,
        [ser({"sensor": f"s{i}", "celsius": 20.5 + i, "count": i, "labels": ["x"]}, ctx) for i in range(3)],
    )
    df = registry_cluster.sql(f'SELECT sensor, celsius, "count", labels FROM typed."{topic_name}" ORDER BY "count"')
    assert df["sensor"].tolist() == ["s0", "s1", "s2"]
    assert df["celsius"].tolist() == [20.5, 21.5, 22.5]
    types = dict(
        registry_cluster.sql(
            f"SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = 'typed' AND table_name = '{topic_name}'"
        ).values.tolist()
    )
    assert types["count"] == "BIGINT"
    assert types["celsius"] == "DOUBLE"


def _reading_class():
    fd = descriptor_pb2.FileDescriptorProto(name="typed_reading.proto", package="wbtyped", syntax="proto3")
    msg = fd.message_type.add(name="Reading")
    msg.field.add(name="sensor", number=1, type=9, label=1)  # string
    msg.field.add(name="value", number=2, type=3, label=1)  # int64
    msg.field.add(name="tags", number=3, type=9, label=3)  # repeated string
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("wbtyped.Reading"))


def test_protobuf_typed_columns(registry_cluster, client, topic_name):
    reading = _reading_class()
    ser = ProtobufSerializer(reading, client, {"use.deprecated.format": False})
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    _produce(
        registry_cluster, topic_name, [ser(reading(sensor=f"p{i}", value=i * 10, tags=["t"]), ctx) for i in range(3)]
    )
    # a field named like a base column gets a value_ prefix, as in the JSON-flattened topic views
    df = registry_cluster.sql(
        f'SELECT sensor, value_value, tags, decode_error FROM typed."{topic_name}" ORDER BY value_value'
    )
    assert df["decode_error"].isna().all(), df["decode_error"].tolist()
    assert df["sensor"].tolist() == ["p0", "p1", "p2"]
    assert df["value_value"].tolist() == [0, 10, 20]
    assert [list(t) for t in df["tags"]] == [["t"]] * 3


# ---------------------------------------------------------------------------------------------- widgets

POINT = {
    "type": "record",
    "name": "Point",
    "fields": [{"name": "x", "type": "int"}, {"name": "label", "type": "string"}],
}


def test_producer_panel_sends_values_typed_against_a_subject(registry_cluster, client, topic_name):
    from workbench.widgets import ProducerPanel, TopicBrowser

    registry_cluster.create_topic(topic_name)
    AvroSerializer(client, json.dumps(POINT))(
        {"x": 0, "label": "seed"}, SerializationContext(topic_name, MessageField.VALUE)
    )
    panel = ProducerPanel(registry_cluster, topic=topic_name)
    browser = TopicBrowser(registry_cluster, topic_name)
    try:
        assert f"{topic_name}-value" in panel.value_schema.options  # subjects offered from the registry
        panel.value_schema.value = f"{topic_name}-value"
        panel.value.value = '{"x": "seven", "label": "a"}'
        assert panel.send_button.disabled
        assert "Point.x" in panel.value_error.value and "does not match the schema" in panel.value_error.value
        panel.value.value = '{"x": 7, "label": "a"}'
        assert not panel.send_button.disabled, panel.value_error.value
        assert panel.send() is True
        wait_until(lambda: panel.last_delivery is not None and not isinstance(panel.last_delivery, str))
        df = registry_cluster.sql(f'SELECT x, label, schema_id FROM typed."{topic_name}"')
        assert df[["x", "label"]].values.tolist() == [[7, "a"]]
        assert df["schema_id"][0] == client.get_latest_version(f"{topic_name}-value").schema_id
        # the topic browser shows the framed value decoded, not bytes
        rows = browser.refresh()
        assert json.loads(rows["value"].iloc[0]) == {"x": 7, "label": "a"}
        panel.value_schema.value = "no-such-subject"
        assert panel.send_button.disabled and "not registered" in panel.value_error.value
    finally:
        panel.close()
        browser.close()


def test_schema_framed_keys_get_key_columns(registry_cluster, client, topic_name):
    key_schema = {"type": "record", "name": "OrderKey", "fields": [{"name": "shop", "type": "string"}]}
    keys = AvroSerializer(client, json.dumps(key_schema))
    values = AvroSerializer(client, json.dumps(V1))
    producer = Producer({"bootstrap.servers": registry_cluster.bootstrap_servers})
    for i in range(2):
        producer.produce(
            topic_name,
            key=keys({"shop": f"s{i}"}, SerializationContext(topic_name, MessageField.KEY)),
            value=values(_order(i), SerializationContext(topic_name, MessageField.VALUE)),
        )
    producer.produce(
        topic_name, key=b"plain key", value=values(_order(2), SerializationContext(topic_name, MessageField.VALUE))
    )
    assert producer.flush(30) == 0
    df = registry_cluster.sql(
        f'SELECT id, key_typed.shop AS shop, key_schema_id, key_decode_error FROM typed."{topic_name}" ORDER BY id'
    )
    assert df["shop"].tolist()[:2] == ["s0", "s1"]
    assert df["key_schema_id"].iloc[0] == client.get_latest_version(f"{topic_name}-key").schema_id
    assert df["id"].tolist() == [0, 1, 2]  # the value still decodes when the key does not
    assert "wire format" in df["key_decode_error"].iloc[2]


def test_topics_without_framed_keys_have_no_key_columns(registry_cluster, client, topic_name):
    ser = AvroSerializer(client, json.dumps(V1))
    _produce(registry_cluster, topic_name, [ser(_order(1), SerializationContext(topic_name, MessageField.VALUE))])
    cols = registry_cluster.sql(f'SELECT * FROM typed."{topic_name}"').columns
    assert "key_typed" not in cols and "id" in cols


def test_cache_files_are_decoded_once_into_typed_sidecars(registry_cluster, client, topic_name):
    """The SQL layer's copy stores values typed: a second query reads each cache file's typed
    sidecar instead of decoding it again, with identical results; only new files are decoded."""
    registry_cluster.create_topic(topic_name, partitions=1, config={"segment.bytes": 4096})
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    v1 = AvroSerializer(client, json.dumps(V1))
    _produce(
        registry_cluster,
        topic_name,
        [v1({**_order(i % 20), "id": i}, ctx) for i in range(400)],
        **{"batch.size": 1000, "linger.ms": 0},  # many small batches: segments seal
    )
    engine = registry_cluster.sql_engine
    query = f'SELECT "offset", id, item, price, ref, tags, buyer, status, decode_error FROM typed."{topic_name}"'

    def files() -> set[str]:
        return set(engine.topic_states()[topic_name].view_files or ())

    # Sealed segments become cache files (background compaction).
    assert wait_until(lambda: registry_cluster.sql(f'SELECT count(*) FROM "{topic_name}"') is not None and files(), 60)

    def second_query_reuses_sidecars():
        before = engine._typed.decoded_files
        first = registry_cluster.sql(query + ' ORDER BY "offset"')
        first_files = files()
        decoded = engine._typed.decoded_files
        second = registry_cluster.sql(query + ' ORDER BY "offset"')
        new_files = files() - first_files
        if not first_files & files():
            return None  # compaction replaced every cache file in between: try again
        assert decoded - before <= len(first_files)
        assert engine._typed.decoded_files - decoded == len(new_files)  # only new cache files decoded
        return first, second

    got = wait_until(second_query_reuses_sidecars)
    first, second = got
    assert len(first) == 400 and first["decode_error"].isna().all()
    assert first["id"].tolist() == list(range(400))
    assert first.equals(second)
    # The sidecars live in the SQL engine's own cache directory (never a broker's), one per
    # current cache file: those of replaced cache files are gone.
    sidecars = sorted((engine.cache_root / "typed" / topic_name).glob("partition=*/*.parquet"))
    assert sidecars and not any(part.startswith("broker-") for p in sidecars for part in p.parts)
    assert {p.name.split(".")[0] for p in sidecars} == {Path(f).stem for f in files()}
    assert sum(pq.read_metadata(p).num_rows for p in sidecars) > 0  # rows served typed from disk


def test_avro_schema_references_decode_into_typed_columns(registry_cluster, client, topic_name):
    """A value schema referencing another subject's record (Confluent's schema references),
    serialized by the unmodified AvroSerializer, decodes into typed columns."""
    address = {
        "type": "record",
        "name": "Address",
        "namespace": "shop",
        "fields": [{"name": "city", "type": "string"}, {"name": "zip", "type": "int"}],
    }
    ref_subject = f"{topic_name}-address"
    client.register_schema(ref_subject, Schema(json.dumps(address), "AVRO"))
    customer = {
        "type": "record",
        "name": "Customer",
        "namespace": "shop",
        "fields": [
            {"name": "name", "type": "string"},
            {"name": "home", "type": "shop.Address"},
            {"name": "others", "type": {"type": "array", "items": "shop.Address"}},
        ],
    }
    schema = Schema(json.dumps(customer), "AVRO", [SchemaReference("shop.Address", ref_subject, 1)])
    serialize = AvroSerializer(client, schema)
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    values = [
        serialize({"name": f"c{i}", "home": {"city": "Oslo", "zip": i}, "others": [{"city": "Rome", "zip": 7}]}, ctx)
        for i in range(3)
    ]
    _produce(registry_cluster, topic_name, values)
    df = registry_cluster.sql(
        f'SELECT name, home.city AS city, home.zip AS zip, others, decode_error FROM typed."{topic_name}" ORDER BY name'
    )
    assert df["decode_error"].isna().all(), df["decode_error"].tolist()
    assert df["name"].tolist() == ["c0", "c1", "c2"]
    assert df["city"].tolist() == ["Oslo"] * 3
    assert df["zip"].tolist() == [0, 1, 2]
    assert list(df["others"].iloc[0]) == [{"city": "Rome", "zip": 7}]
    types = dict(
        registry_cluster.sql(
            f"SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = 'typed' AND table_name = '{topic_name}'"
        ).values.tolist()
    )
    assert types["home"] == "STRUCT(city VARCHAR, zip INTEGER)"
