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
