"""Typed Iceberg columns (`workbench.storage.iceberg_typed`), without a cluster: the Arrow types
Iceberg stores, schema evolution as Iceberg allows it, and the decoding of framed values into
columns, with an incompatible change routed to ``<field>__json`` and bad values as decode errors."""

from __future__ import annotations

import io
import json

import fastavro
import pyarrow as pa

from workbench.schema_registry.arrow_types import _JSON, _UUID, writer_schema
from workbench.storage.iceberg_typed import JSON_SUFFIX, IcebergTyping, evolve, iceberg_type

RESERVED = {"partition", "offset", "timestamp", "key", "value", "headers", "schema_id", "decode_error"}


def framed(sid: int, schema: dict, value: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return b"\x00" + sid.to_bytes(4, "big") + out.getvalue()


def test_iceberg_types_replace_the_markers_and_types_iceberg_lacks():
    assert iceberg_type(_JSON) == pa.string()
    assert iceberg_type(_UUID) == pa.string()
    assert iceberg_type(pa.null()) == pa.string()
    assert iceberg_type(pa.uint64()) == pa.int64()
    nested = pa.struct([("a", pa.list_(_JSON)), ("m", pa.map_(pa.string(), _UUID))])
    assert iceberg_type(nested) == pa.struct([("a", pa.list_(pa.string())), ("m", pa.map_(pa.string(), pa.string()))])


def test_evolution_follows_icebergs_rules():
    assert evolve(None, pa.int32()) == pa.int32()
    assert evolve(pa.int32(), pa.int64()) == pa.int64()  # int -> long
    assert evolve(pa.int64(), pa.int32()) == pa.int64()  # the column stays long
    assert evolve(pa.float32(), pa.float64()) == pa.float64()
    assert evolve(pa.decimal128(9, 2), pa.decimal128(12, 2)) == pa.decimal128(12, 2)
    assert evolve(pa.decimal128(9, 2), pa.decimal128(9, 3)) is None  # another scale
    assert evolve(pa.int64(), pa.string()) is None  # Iceberg cannot change long to string
    assert evolve(pa.int64(), pa.float64()) is None
    a = pa.struct([("x", pa.int32())])
    b = pa.struct([("x", pa.int64()), ("y", pa.string())])
    assert evolve(a, b) == pa.struct([("x", pa.int64()), ("y", pa.string())])  # a field added, one widened
    assert evolve(a, pa.struct([("x", pa.string())])) is None  # a nested conflict: the whole field conflicts
    assert evolve(pa.list_(pa.int32()), pa.list_(pa.int64())) == pa.list_(pa.int64())


V1 = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}, {"name": "value", "type": "string"}]}
V2 = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "string"}, {"name": "extra", "type": "int"}]}


def test_decoding_routes_an_incompatible_field_to_json_and_keeps_bad_values_as_errors():
    writers = {1: writer_schema(1, "AVRO", json.dumps(V1)), 2: writer_schema(2, "AVRO", json.dumps(V2))}
    existing = {"n": pa.int64()}  # the table has `n` as long already
    typing = IcebergTyping(writers, {}, existing, RESERVED)
    assert typing.columns["n"] == pa.int64()
    assert typing.columns["n" + JSON_SUFFIX] == pa.string()  # version 2's string n
    assert typing.columns["value_value"] == pa.string()  # a field named like a base column
    assert typing.columns["extra"] == pa.int32()
    values = pa.array(
        [
            framed(1, V1, {"n": 5, "value": "v"}),
            framed(2, V2, {"n": "five", "extra": 7}),
            b"plain",
            None,
            b"\x00\x00\x00\x00\x09rest",
            framed(1, V1, {"n": 5, "value": "v"})[:6],
        ],
        pa.binary(),
    )
    cols = typing.decode(values)
    assert cols["schema_id"].to_pylist() == [1, 2, None, None, 9, 1]
    assert cols["n"].to_pylist() == [5, None, None, None, None, None]
    assert cols["n__json"].to_pylist() == [None, "five", None, None, None, None]  # as typed.py: a string as itself
    assert cols["extra"].to_pylist() == [None, 7, None, None, None, None]
    assert cols["value_value"].to_pylist() == ["v", None, None, None, None, None]
    errors = cols["decode_error"].to_pylist()
    assert errors[:2] == [None, None] and errors[3] is None  # a NULL value is no error
    assert "wire format" in errors[2]
    assert "not registered" in errors[4]
    assert "does not decode" in errors[5]


V1B = {**V1, "fields": [*V1["fields"], {"name": "extra", "type": ["null", "int"], "default": None}]}


def typed_source_file(directory, lo: int, hi: int, keep=None, sid: int = 1) -> None:
    """A partition's Parquet file of framed values (id 1, `V1`): sealed, or what the log cleaner
    leaves (only the offsets ``keep`` accepts, marked cleaned)."""
    import os

    import pyarrow.compute as pc

    from tests.unit.test_iceberg_tables import tier_rows
    from workbench.storage import parquet_tier

    rows = tier_rows(lo, hi)
    schema, extra = (V1, {}) if sid == 1 else (V1B, {"extra": 1})
    values = pa.array([framed(sid, schema, {"n": o, "value": f"v{o}", **extra}) for o in range(lo, hi)], pa.binary())
    rows = rows.set_column(rows.schema.get_field_index("value"), rows.schema.field("value"), values)
    if keep is None:
        parquet_tier.write_table_file(directory / f"{lo:020d}.parquet", lo, hi, rows, 0, topic="t")
        return
    rows = rows.filter(pc.is_in(rows.column("offset"), pa.array([o for o in range(lo, hi) if keep(o)], pa.int64())))
    tmp = directory / f"{lo:020d}.parquet.cleaned"
    writer = parquet_tier.MergedFileWriter(tmp, lo, topic="t")
    writer.add(rows)
    writer.finish(hi, 0, merged=True)
    os.replace(tmp, directory / f"{lo:020d}.parquet")


def test_commits_and_a_compaction_rewrite_keep_the_typed_columns(tmp_path):
    """The committer's path with a `_schemas` reader fed the registry's own records (no thread)."""
    from workbench.open_tables import NAMESPACE, open_catalog
    from workbench.schema_registry import records
    from workbench.schema_registry.topic_reader import SchemasTopicReader
    from workbench.storage import iceberg_tables, iceberg_typed

    schemas = SchemasTopicReader("unused:0")
    schemas.apply(
        records.schema_key("t-value", 1), records.schema_value("t-value", 1, 1, "AVRO", json.dumps(V1), [], False)
    )
    iceberg_typed._readers["unused:0"] = schemas
    try:
        source = tmp_path / "partition=0"
        source.mkdir()
        root = tmp_path / "iceberg"
        job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source), "bootstrap": "unused:0"}
        for lo, hi in ((0, 40), (40, 60)):
            typed_source_file(source, lo, hi)
            assert iceberg_tables.publish(job)["to_offset"] == hi
        table = open_catalog(root).load_table((NAMESPACE, "t"))
        got = table.scan().to_arrow().sort_by("offset")
        assert got.column("n").to_pylist() == list(range(60))
        assert got.column("value_value").to_pylist() == [f"v{o}" for o in range(60)]
        assert set(got.column("schema_id").to_pylist()) == {1}

        typed_source_file(source, 0, 40, keep=lambda o: o % 4 == 0)  # the log cleaner rewrote [0, 40)
        summary = iceberg_tables._reflect_compaction(table, root, "t", 0, source, job)
        assert summary is not None and summary["workbench.operation"] == "compaction"
        got = open_catalog(root).load_table((NAMESPACE, "t")).scan().to_arrow().sort_by("offset")
        want = [o for o in range(60) if o % 4 == 0 or o >= 40]
        assert got.column("offset").to_pylist() == want
        assert got.column("n").to_pylist() == want  # the rewritten file is typed too
        assert got.column("decode_error").null_count == len(want)
    finally:
        iceberg_typed._readers.pop("unused:0", None)


def test_a_typed_file_left_by_a_crash_is_adopted_with_its_new_columns(tmp_path):
    """A publisher wrote a data file with a column the table lacks (a version 2 field) and died
    before its commit: the next publisher adopts the file and evolves the schema in that commit."""
    from workbench.open_tables import NAMESPACE, open_catalog
    from workbench.schema_registry import records
    from workbench.schema_registry.topic_reader import SchemasTopicReader
    from workbench.storage import iceberg_tables, iceberg_typed

    schemas = SchemasTopicReader("unused:1")

    def register(version: int, schema: dict) -> None:
        value = records.schema_value("t-value", version, version, "AVRO", json.dumps(schema), [], False)
        schemas.apply(records.schema_key("t-value", version), value)

    register(1, V1)
    iceberg_typed._readers["unused:1"] = schemas
    try:
        source = tmp_path / "partition=0"
        source.mkdir()
        root = tmp_path / "iceberg"
        job = {"root": str(root), "topic": "t", "partition": 0, "directory": str(source), "bootstrap": "unused:1"}
        typed_source_file(source, 0, 40)
        iceberg_tables.publish(job)
        table = open_catalog(root).load_table((NAMESPACE, "t"))
        assert "extra" not in table.schema().column_names
        register(2, V1B)  # version 2 adds `extra`: a publisher writes the file with it, then dies
        typed_source_file(source, 40, 60, sid=2)
        orphan = root / "t" / "data" / f"p{0:05d}-{40:020d}.parquet"
        rows = iceberg_tables._read_range(source, 40)[2]
        typed = iceberg_tables._typed(table, "t", iceberg_tables._to_iceberg(rows, 0), job)
        iceberg_tables._write_data_file(orphan, typed, 60)
        answer = iceberg_tables.publish(job)
        assert (answer["from_offset"], answer["to_offset"]) == (40, 60)  # adopted
        got = open_catalog(root).load_table((NAMESPACE, "t")).scan().to_arrow().sort_by("offset")
        assert got.column("offset").to_pylist() == list(range(60))
        assert got.column("extra").to_pylist() == [None] * 40 + [1] * 20
        assert got.column("schema_id").to_pylist() == [1] * 40 + [2] * 20
    finally:
        iceberg_typed._readers.pop("unused:1", None)


KEY = {"type": "record", "name": "K", "fields": [{"name": "region", "type": "string"}, {"name": "n", "type": "int"}]}
KEY2 = {**KEY, "fields": [*KEY["fields"], {"name": "shard", "type": ["null", "int"], "default": None}]}


def test_record_keys_become_one_struct_column_that_evolves():
    from workbench.storage.iceberg_typed import KeyTyping

    writers = {3: writer_schema(3, "AVRO", json.dumps(KEY))}
    keys = pa.array([framed(3, KEY, {"region": "eu", "n": 1}), None, b"plain"], pa.binary())
    cols = KeyTyping(writers, {}, None).decode(keys)
    assert set(cols) == {"key_typed", "key_schema_id", "key_decode_error"}
    assert cols["key_typed"].type == pa.struct([("region", pa.string()), ("n", pa.int32())])
    assert cols["key_typed"].to_pylist() == [{"region": "eu", "n": 1}, None, None]
    assert cols["key_schema_id"].to_pylist() == [3, None, None]
    errors = cols["key_decode_error"].to_pylist()
    assert errors[:2] == [None, None] and "wire format" in errors[2]  # a NULL key is no error
    # A second version adds a field: the struct grows, widening `n` as the table has it (long).
    existing = pa.struct([("region", pa.string()), ("n", pa.int64())])
    writers[4] = writer_schema(4, "AVRO", json.dumps(KEY2))
    cols = KeyTyping(writers, {}, existing).decode(pa.array([framed(4, KEY2, {"region": "us", "n": 2, "shard": 7})]))
    assert cols["key_typed"].type == pa.struct([("region", pa.string()), ("n", pa.int64()), ("shard", pa.int32())])
    assert cols["key_typed"].to_pylist() == [{"region": "us", "n": 2, "shard": 7}]


def test_scalar_keys_are_a_column_of_their_own_type_and_an_incompatible_version_goes_to_json():
    from workbench.storage.iceberg_typed import KeyTyping

    writers = {5: writer_schema(5, "AVRO", json.dumps("string"))}
    cols = KeyTyping(writers, {}, None).decode(pa.array([framed(5, "string", "user-1"), b"\x00\x00\x00\x00\x63x"]))
    assert cols["key_typed"].type == pa.string()
    assert cols["key_typed"].to_pylist() == ["user-1", None]
    assert cols["key_schema_id"].to_pylist() == [5, 99]
    assert "not registered" in cols["key_decode_error"].to_pylist()[1]
    # The table types keys as strings; a version whose keys are longs cannot change that column.
    writers[6] = writer_schema(6, "AVRO", json.dumps("long"))
    cols = KeyTyping(writers, {}, pa.string()).decode(pa.array([framed(6, "long", 42), framed(5, "string", "u")]))
    assert cols["key_typed"].to_pylist() == [None, "u"]
    assert cols["key_typed__json"].to_pylist() == ["42", None]
