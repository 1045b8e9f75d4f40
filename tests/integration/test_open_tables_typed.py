"""Issue 17: schemas from the registry become typed columns of the Iceberg tables.

A topic whose values confluent-kafka's AvroSerializer framed (magic 0 + schema id) gets, in its
Iceberg table (read here with pyiceberg), ``schema_id``, ``decode_error`` and the value's fields
as typed columns beside the raw columns; a new version adding a field evolves the table (older
rows NULL there); a field whose type changed incompatibly lands as JSON text in ``<field>__json``;
a record that does not decode has a ``decode_error`` and never stops the commits. The committer
reads the schemas from `_schemas` over the Kafka protocol, so a registry started after the brokers
is picked up; rows committed before their schema was known are decoded when their files merge.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import uuid

import fastavro
import pyarrow as pa
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.conftest import FAST_GROUPS
from tests.integration.test_open_tables import DEADLINE_S, ICEBERG, iceberg_offsets
from tests.integration.test_open_tables_default import plain_duckdb  # re-runs a read torn by a rename
from tests.support import wait_until
from workbench import Cluster
from workbench.schema_registry.process import SchemaRegistryProcess

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
#: An incompatible change (registered with compatibility NONE): `item` string -> long.
V3 = {**V1, "fields": [f if f["name"] != "item" else {"name": "item", "type": "long"} for f in V1["fields"]]}


def order(i: int) -> dict:
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


def produce(cluster, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "enable.idempotence": True})
    for v in values:
        p.produce(topic, value=v)
    assert p.flush(30) == 0


def rows_by_offset(cluster, topic: str, n: int) -> list[dict]:
    """The table's rows once it holds `n` (pyiceberg scan of the current snapshot), by offset."""
    wait_until(lambda: len(iceberg_offsets(cluster, topic)) >= n, timeout=DEADLINE_S, interval=0.5)
    rows = cluster.iceberg_table(topic).scan().to_arrow().sort_by("offset").to_pylist()
    assert [r["offset"] for r in rows] == list(range(n))  # each record once
    return rows


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One broker, the registry, Iceberg commits every second."""
    with Cluster(brokers=1, data_dir=tmp_path_factory.mktemp("typed"), config=ICEBERG, schema_registry=True) as c:
        yield c


def test_avro_values_become_typed_iceberg_columns_and_versions_evolve_the_table(cluster, topic_name):
    client = SchemaRegistryClient({"url": cluster.schema_registry_url})
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    v1 = AvroSerializer(client, json.dumps(V1))
    produce(cluster, topic_name, [v1(order(i), ctx) for i in range(3)])
    rows = rows_by_offset(cluster, topic_name, 3)  # committed with version 1 only
    table = cluster.iceberg_table(topic_name)
    assert "coupon" not in table.schema().column_names

    v2 = AvroSerializer(client, json.dumps(V2))
    framed = v1(order(9), ctx)
    produce(cluster, topic_name, [v2({**order(3), "coupon": "SPRING"}, ctx), b"plain text", framed[:5] + b"\xff"])
    rows = rows_by_offset(cluster, topic_name, 6)

    schema = cluster.iceberg_table(topic_name).schema().as_arrow()
    for base in ("partition", "offset", "timestamp", "key", "value", "headers", "producer_id"):
        assert base in schema.names  # the raw columns stay
    types = {f.name: f.type for f in schema}
    assert types["schema_id"] == pa.int32()
    assert pa.types.is_string(types["decode_error"]) or pa.types.is_large_string(types["decode_error"])
    assert types["id"] == pa.int64()
    assert types["at"] == pa.timestamp("us", tz="UTC")
    assert types["price"] == pa.decimal128(9, 2)
    assert types["day"] == pa.date32()
    assert pa.types.is_struct(types["buyer"]) and types["buyer"].field(0).name == "name"
    assert pa.types.is_list(types["tags"]) or pa.types.is_large_list(types["tags"])
    assert schema.names.index("coupon") > schema.names.index("status")  # version 2's field, added by evolution

    good = rows[:4]
    assert [r["decode_error"] for r in good] == [None] * 4
    assert [r["id"] for r in good] == [0, 1, 2, 3]
    assert len({r["schema_id"] for r in good}) == 2  # two versions, two ids
    assert [r["coupon"] for r in good] == [None, None, None, "SPRING"]  # older rows NULL in the new field
    assert good[1]["buyer"] == {"name": "b1"}
    assert good[2]["tags"] == ["a", "2"]
    assert good[1]["price"] == decimal.Decimal("1.25")
    assert good[2]["at"] == dt.datetime(2024, 5, 1, 12, 0, 2, tzinfo=dt.UTC)
    assert good[2]["day"] == dt.date(2024, 5, 3)
    assert good[2]["ref"] == str(uuid.UUID(int=2))
    assert [r["status"] for r in good] == ["NEW", "PAID", "NEW", "PAID"]
    assert good[0]["value"] == v1(order(0), ctx)  # the raw bytes are kept beside the columns

    plain, garbled = rows[4], rows[5]
    assert plain["value"] == b"plain text" and plain["id"] is None and plain["schema_id"] is None
    assert "wire format" in plain["decode_error"]
    assert garbled["id"] is None and "does not decode" in garbled["decode_error"]

    # An incompatible change (item: string -> long, allowed by compatibility NONE) keeps the
    # column; that version's values of it are JSON text in item__json. Commits go on.
    client.set_compatibility(subject_name=f"{topic_name}-value", level="NONE")
    v3 = AvroSerializer(client, json.dumps(V3))
    produce(cluster, topic_name, [v3({**order(6), "item": 77}, ctx), v1(order(7), ctx)])
    rows = rows_by_offset(cluster, topic_name, 8)
    schema = cluster.iceberg_table(topic_name).schema().as_arrow()
    assert pa.types.is_string(schema.field("item").type) or pa.types.is_large_string(schema.field("item").type)
    assert rows[6]["item"] is None and rows[6]["item__json"] == "77" and rows[6]["decode_error"] is None
    assert rows[7]["item"] == "item-7" and rows[7]["item__json"] is None
    assert rows[6]["id"] == 6

    # Every snapshot still maps to offsets: contiguous ranges from 0 to the end.
    reached = 0
    for snap in cluster.iceberg_table(topic_name).snapshots():
        props = snap.summary.additional_properties
        if props.get("workbench.operation"):
            continue
        assert int(props["workbench.from-offset"]) == reached
        reached = int(props["workbench.to-offset"])
    assert reached == 8


def avro_framed(schema_id: int, schema: dict, value: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return b"\x00" + schema_id.to_bytes(4, "big") + out.getvalue()


SMALL = {
    "type": "record",
    "name": "Reading",
    "fields": [{"name": "n", "type": "long"}, {"name": "s", "type": "string"}],
}


def test_a_registry_started_after_the_brokers_types_the_table_and_earlier_rows_are_decoded_at_merge(
    fresh_cluster, topic_name, tmp_path
):
    config = {**FAST_GROUPS, "iceberg_commit_ms": 1000, "iceberg_merge_age_ms": 3000, "iceberg_merge_min_files": 2}
    c = fresh_cluster(brokers=1, config=config).start()
    # No registry: framed values (id 1, which the registry will give its first schema) are committed
    # as bytes; the commits do not wait for a registry.
    produce(c, topic_name, [avro_framed(1, SMALL, {"n": 0, "s": "a"})])
    rows_by_offset(c, topic_name, 1)
    produce(c, topic_name, [avro_framed(1, SMALL, {"n": 1, "s": "b"})])
    rows = rows_by_offset(c, topic_name, 2)
    assert "schema_id" not in rows[0]  # untyped: no schema is known
    # The committer's reader of `_schemas` never creates it (the registry must, compacted).
    assert "_schemas" not in c.topics(internal=True)

    registry = SchemaRegistryProcess(c.bootstrap_servers, tmp_path / "sr", replication_factor=1)
    registry.start()
    try:
        client = SchemaRegistryClient({"url": registry.url})
        ctx = SerializationContext(topic_name, MessageField.VALUE)
        serializer = AvroSerializer(client, json.dumps(SMALL))
        value = serializer({"n": 2, "s": "c"}, ctx)
        assert value[1:5] == (1).to_bytes(4, "big")  # the id the earlier values named
        produce(c, topic_name, [value])
        rows_by_offset(c, topic_name, 3)
        # The snapshot of that commit (a merge may follow it at once: its files are old enough)
        table = c.iceberg_table(topic_name)
        [commit] = [
            s
            for s in table.snapshots()
            if s.summary.additional_properties.get("workbench.to-offset") == "3"
            and not s.summary.additional_properties.get("workbench.operation")
        ]
        rows = table.scan(snapshot_id=commit.snapshot_id).to_arrow().sort_by("offset").to_pylist()
        assert rows[2]["schema_id"] == 1 and rows[2]["n"] == 2 and rows[2]["s"] == "c"
        # Committed before the schema was known: NULL in the typed columns, schema_id too ...
        assert [r["schema_id"] for r in rows[:2]] == [None, None]
        assert [r["n"] for r in rows[:2]] == [None, None]

        # ... until their small files are merged (older than iceberg_merge_age_ms): decoded then.
        def decoded() -> list | None:
            got = c.iceberg_table(topic_name).scan().to_arrow().sort_by("offset").to_pylist()
            return got if [r["n"] for r in got] == [0, 1, 2] else None

        rows = wait_until(decoded, timeout=DEADLINE_S, interval=1.0)
        assert [r["s"] for r in rows] == ["a", "b", "c"] and [r["schema_id"] for r in rows] == [1, 1, 1]
        snapshots = c.iceberg_table(topic_name).snapshots()
        assert "merge" in [s.summary.additional_properties.get("workbench.operation") for s in snapshots]
    finally:
        registry.stop()


def test_plain_duckdb_catalog_has_typed_views_over_the_iceberg_data_files(cluster, topic_name):
    client = SchemaRegistryClient({"url": cluster.schema_registry_url})
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    v1, v2 = AvroSerializer(client, json.dumps(V1)), AvroSerializer(client, json.dumps(V2))
    produce(cluster, topic_name, [v1(order(i), ctx) for i in range(4)] + [b"not framed"])
    rows_by_offset(cluster, topic_name, 5)
    cluster.sql(f'SELECT count(*) FROM "{topic_name}"')  # the notebook writes the catalog
    catalog = cluster.data_dir / "workbench.duckdb"
    query = (
        "SELECT count(*), count(schema_id), count(decode_error), sum(id)::BIGINT, max(buyer.name), "
        "min(price)::VARCHAR "
        f'FROM typed."{topic_name}"'
    )
    got = wait_until(lambda: (r := plain_duckdb(catalog, query))[0] >= 5 and r, timeout=DEADLINE_S, interval=0.5)
    assert got == (5, 4, 1, 0 + 1 + 2 + 3, "b3", "0.25")
    # A new version's field shows up without the catalog being rewritten (the view globs the files).
    produce(cluster, topic_name, [v2({**order(5), "coupon": "X"}, ctx)])
    count = f'SELECT count(*) FROM typed."{topic_name}"'
    wait_until(lambda: plain_duckdb(catalog, count)[0] >= 6, timeout=DEADLINE_S, interval=0.5)
    assert plain_duckdb(catalog, f'SELECT count(*), max(coupon) FROM typed."{topic_name}"') == (6, "X")


def test_json_schema_and_protobuf_values_become_typed_iceberg_columns(cluster, topic_name):
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer

    from tests.integration.test_typed_tables import _reading_class

    client = SchemaRegistryClient({"url": cluster.schema_registry_url})
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Reading",
        "type": "object",
        "properties": {"sensor": {"type": "string"}, "celsius": {"type": "number"}, "count": {"type": "integer"}},
    }
    json_topic = f"{topic_name}-json"
    ser = JSONSerializer(json.dumps(schema), client)
    ctx = SerializationContext(json_topic, MessageField.VALUE)
    produce(cluster, json_topic, [ser({"sensor": f"s{i}", "celsius": 20.5 + i, "count": i}, ctx) for i in range(3)])
    rows = rows_by_offset(cluster, json_topic, 3)
    assert [(r["sensor"], r["celsius"], r["count"]) for r in rows] == [
        ("s0", 20.5, 0),
        ("s1", 21.5, 1),
        ("s2", 22.5, 2),
    ]
    types = {f.name: f.type for f in cluster.iceberg_table(json_topic).schema().as_arrow()}
    assert types["count"] == pa.int64() and types["celsius"] == pa.float64()

    proto_topic = f"{topic_name}-proto"
    reading = _reading_class()
    pser = ProtobufSerializer(reading, client, {"use.deprecated.format": False})
    ctx = SerializationContext(proto_topic, MessageField.VALUE)
    produce(cluster, proto_topic, [pser(reading(sensor=f"p{i}", value=i * 10, tags=["t"]), ctx) for i in range(3)])
    rows = rows_by_offset(cluster, proto_topic, 3)
    assert [r["decode_error"] for r in rows] == [None] * 3
    # a field named like a base column (`value`) is value_value; the raw bytes stay in `value`
    assert [(r["sensor"], r["value_value"], r["tags"]) for r in rows] == [(f"p{i}", i * 10, ["t"]) for i in range(3)]


def test_a_typed_table_is_consistent_and_decoded_after_the_broker_is_killed_mid_traffic(fresh_cluster, topic_name):
    import threading
    import time

    c = fresh_cluster(brokers=1, config=ICEBERG, schema_registry=True).start()
    c.create_topic(topic_name, partitions=1, replication_factor=1)
    serializer = AvroSerializer(SchemaRegistryClient({"url": c.schema_registry_url}), json.dumps(SMALL))
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    sid = int.from_bytes(serializer({"n": -1, "s": "x"}, ctx)[1:5], "big")  # registers the schema
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "linger.ms": 5})
    acked: set[int] = set()
    stop = threading.Event()

    def on_delivery(err, msg) -> None:
        if err is None:
            acked.add(msg.offset())

    def produce() -> None:
        i = 0
        while not stop.is_set():
            try:
                p.produce(
                    topic_name, value=serializer({"n": i, "s": f"r{i}"}, ctx), partition=0, on_delivery=on_delivery
                )
                i += 1
            except BufferError:
                pass
            p.poll(0.002)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    wait_until(lambda: len(iceberg_offsets(c, topic_name)) > 0, timeout=DEADLINE_S, interval=0.2)
    time.sleep(1.7)  # commits are happening: the kill lands at an arbitrary point of one
    [node] = list(c.brokers)
    c.kill_broker(node)
    stop.set()
    t.join(10)
    c.restart_broker(node)
    p2 = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all"})
    for i in range(100):
        p2.produce(
            topic_name, value=serializer({"n": 10**6 + i, "s": "after"}, ctx), partition=0, on_delivery=on_delivery
        )
    assert p2.flush(30) == 0
    top = max(acked)
    wait_until(lambda: (o := iceberg_offsets(c, topic_name)) and o[-1][1] >= top, timeout=DEADLINE_S, interval=0.5)
    rows = c.iceberg_table(topic_name).scan(selected_fields=("offset", "schema_id", "decode_error", "n", "s"))
    rows = rows.to_arrow().sort_by("offset").to_pylist()
    offsets = [r["offset"] for r in rows]
    assert offsets == sorted(set(offsets)), "a record was published twice"
    assert acked <= set(offsets), "an acknowledged record is missing from the table"
    # Every row typed: the restarted committer read `_schemas` again before (or while) committing.
    assert {r["schema_id"] for r in rows} == {sid} and all(r["decode_error"] is None for r in rows)
    assert all(r["s"] == ("after" if r["n"] >= 10**6 else f"r{r['n']}") for r in rows)


def test_avro_schema_references_are_resolved_from_the_schemas_topic(cluster, topic_name):
    """A value schema referencing another subject's record (Confluent's schema references): the
    committer resolves the reference from `_schemas` and types the referenced record as a struct."""
    from confluent_kafka.schema_registry import Schema, SchemaReference

    client = SchemaRegistryClient({"url": cluster.schema_registry_url})
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
    home = [{"city": "Oslo", "zip": i} for i in range(3)]
    produce(
        cluster, topic_name, [serialize({"name": f"c{i}", "home": home[i], "others": home[:i]}, ctx) for i in range(3)]
    )
    rows = rows_by_offset(cluster, topic_name, 3)
    assert [r["decode_error"] for r in rows] == [None] * 3
    assert [r["home"] for r in rows] == home
    assert [r["others"] for r in rows] == [home[:i] for i in range(3)]
    home_type = cluster.iceberg_table(topic_name).schema().as_arrow().field("home").type
    assert pa.types.is_struct(home_type) and [home_type.field(i).name for i in range(2)] == ["city", "zip"]


ORDER_KEY = {
    "type": "record",
    "name": "OrderKey",
    "namespace": "shop",
    "fields": [{"name": "region", "type": "string"}, {"name": "id", "type": "long"}],
}


def test_avro_keys_become_a_typed_key_column_beside_the_value_columns(cluster, topic_name):
    """Subject `<topic>-key` (what AvroSerializer registers for MessageField.KEY): a record key is
    one struct column `key_typed`, with `key_schema_id` and `key_decode_error`, beside the value's
    columns; the raw `key` bytes stay. A second topic with plain Avro string keys gets a string
    `key_typed`; an unframed key is a decode error and never stops the commits."""
    client = SchemaRegistryClient({"url": cluster.schema_registry_url})
    kctx = SerializationContext(topic_name, MessageField.KEY)
    vctx = SerializationContext(topic_name, MessageField.VALUE)
    keys = AvroSerializer(client, json.dumps(ORDER_KEY))
    values = AvroSerializer(client, json.dumps(SMALL))
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "enable.idempotence": True})
    for i in range(3):
        p.produce(topic_name, key=keys({"region": "eu", "id": i}, kctx), value=values({"n": i, "s": f"s{i}"}, vctx))
    p.produce(topic_name, key=b"not framed", value=values({"n": 3, "s": "s3"}, vctx))
    assert p.flush(30) == 0
    rows = rows_by_offset(cluster, topic_name, 4)
    types = {f.name: f.type for f in cluster.iceberg_table(topic_name).schema().as_arrow()}
    key_type = types["key_typed"]
    assert pa.types.is_struct(key_type)
    assert [(f.name, f.type) for f in key_type] in (
        [("region", pa.string()), ("id", pa.int64())],
        [("region", pa.large_string()), ("id", pa.int64())],
    )
    assert types["key_schema_id"] == pa.int32() and types["n"] == pa.int64()
    assert [r["key_typed"] for r in rows[:3]] == [{"region": "eu", "id": i} for i in range(3)]
    assert [r["n"] for r in rows] == [0, 1, 2, 3]  # the values are typed as before
    assert len({r["key_schema_id"] for r in rows[:3]}) == 1 and rows[0]["key_schema_id"] != rows[0]["schema_id"]
    assert rows[3]["key_typed"] is None and "wire format" in rows[3]["key_decode_error"]
    assert rows[3]["key"] == b"not framed" and rows[0]["key"] == keys({"region": "eu", "id": 0}, kctx)

    scalar = f"{topic_name}-s"
    skeys = AvroSerializer(client, json.dumps("string"))
    sctx = SerializationContext(scalar, MessageField.KEY)
    p.produce(scalar, key=skeys("user-7", sctx), value=b"{}")
    assert p.flush(30) == 0
    row = rows_by_offset(cluster, scalar, 1)[0]
    key_type = cluster.iceberg_table(scalar).schema().as_arrow().field("key_typed").type
    assert pa.types.is_string(key_type) or pa.types.is_large_string(key_type)
    assert row["key_typed"] == "user-7" and row["key_decode_error"] is None
