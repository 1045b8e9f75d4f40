"""Registered schemas as Arrow column types, and their decoders: shared by the notebook's typed
views (`workbench.sql.typed`), the schema browser and the brokers' Iceberg committer
(`workbench.storage.iceberg_typed`), so a value decodes to the same columns everywhere.

Avro records -> structs, arrays -> lists, maps -> maps, enums -> strings, ``[null, T]`` unions ->
nullable T, logical types (timestamps, dates, times, decimals, UUIDs); JSON Schema objects ->
structs; Protobuf (`arrow_protobuf`) messages -> structs. A type these cannot express (a
union of several non-null types, a recursive record) is JSON text, and `merge_types` makes a
field whose type differs between versions JSON text too.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

#: The type of a field kept as JSON text: VARCHAR in DuckDB, marked as Arrow's string view so
#: that only these fields (and UUIDs) need a per-value conversion; plain strings need none.
_JSON = pa.string_view()
#: Avro's uuid logical type: text in Arrow, marked by the large variant so the view's column is UUID.
_UUID = pa.large_string()

Converter = Callable[[Any], Any]


# ----------------------------------------------------------------------------- column types


def _avro_type(node: Any, named: dict[str, pa.DataType]) -> pa.DataType:
    """The Arrow type of one (fastavro-parsed) Avro schema node."""
    if isinstance(node, str):
        if node in named:
            return named[node]
        if "." in node and node.rsplit(".", 1)[1] in named:  # a full name (a reference's type)
            return named[node.rsplit(".", 1)[1]]
        return {
            "null": pa.null(),
            "boolean": pa.bool_(),
            "int": pa.int32(),
            "long": pa.int64(),
            "float": pa.float32(),
            "double": pa.float64(),
            "bytes": pa.binary(),
            "string": pa.string(),
        }.get(node, _JSON)
    if isinstance(node, list):
        branches = [b for b in node if b != "null"]
        return _avro_type(branches[0], named) if len(branches) == 1 else _JSON
    logical = node.get("logicalType")
    kind = node.get("type")
    if logical in ("timestamp-millis", "timestamp-micros"):
        return pa.timestamp("us", tz="UTC")
    if logical in ("local-timestamp-millis", "local-timestamp-micros"):
        return pa.timestamp("us")
    if logical == "date":
        return pa.date32()
    if logical in ("time-millis", "time-micros"):
        return pa.time64("us")
    if logical == "decimal" and kind in ("bytes", "fixed") and int(node.get("precision", 0)) <= 38:
        return pa.decimal128(int(node["precision"]), int(node.get("scale", 0)))
    if logical == "uuid":
        return _UUID
    if kind == "record":
        if node.get("name") in named:  # a recursive reference: kept as JSON text
            return named[node["name"]]
        named[node["name"]] = _JSON
        fields = [pa.field(f["name"], _avro_type(f["type"], named)) for f in node["fields"]]
        out = pa.struct(fields) if fields else _JSON
        named[node["name"]] = out
        return out
    if kind == "enum":
        named[node["name"]] = pa.string()
        return pa.string()
    if kind == "fixed":
        named[node["name"]] = pa.binary()
        return pa.binary()
    if kind == "array":
        return pa.list_(_avro_type(node["items"], named))
    if kind == "map":
        return pa.map_(pa.string(), _avro_type(node["values"], named))
    return _avro_type(kind, named)


def _json_schema_type(node: Any) -> pa.DataType:
    if not isinstance(node, dict):
        return _JSON
    kind = node.get("type")
    if isinstance(kind, list):
        rest = [k for k in kind if k != "null"]
        kind = rest[0] if len(rest) == 1 else None
    if kind == "object" or (kind is None and "properties" in node):
        props = node.get("properties") or {}
        if not props:
            return _JSON
        return pa.struct([pa.field(k, _json_schema_type(v)) for k, v in props.items()])
    if kind == "array" and isinstance(node.get("items"), dict):
        return pa.list_(_json_schema_type(node["items"]))
    return {"integer": pa.int64(), "number": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}.get(
        kind or "", _JSON
    )


def merge_types(a: pa.DataType | None, b: pa.DataType) -> pa.DataType:
    """The union of two column types: structs by field name, numbers widened, a conflict is JSON text."""
    if a is None or a == b or pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields = {a.field(i).name: a.field(i).type for i in range(a.num_fields)}
        for i in range(b.num_fields):
            f = b.field(i)
            fields[f.name] = merge_types(fields.get(f.name), f.type)
        return pa.struct([pa.field(n, t) for n, t in fields.items()])
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(merge_types(a.value_type, b.value_type))
    if pa.types.is_map(a) and pa.types.is_map(b):
        return pa.map_(pa.string(), merge_types(a.item_type, b.item_type))
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return pa.int64()
    if (pa.types.is_integer(a) or pa.types.is_floating(a)) and (pa.types.is_integer(b) or pa.types.is_floating(b)):
        return pa.float64()
    return _JSON


# ----------------------------------------------------------------------------- converters


def _to_json(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value

    def default(o: Any) -> Any:
        if isinstance(o, bytes | bytearray):
            return base64.b64encode(o).decode()
        if isinstance(o, decimal.Decimal | uuid.UUID | dt.date | dt.time | dt.datetime):
            return str(o)
        if isinstance(o, tuple):
            return list(o)
        raise TypeError(type(o).__name__)

    return json.dumps(value, default=default)


def converter_for(target: pa.DataType) -> Converter | None:
    """A function fitting a decoded Python value to `target` (None: the value fits as it is).

    JSON-text columns dump what they get; UUIDs become text; structs, lists and maps recurse."""
    if target == _JSON:
        return _to_json
    if target == _UUID:
        return str
    if pa.types.is_struct(target):
        found_f = {target.field(i).name: converter_for(target.field(i).type) for i in range(target.num_fields)}
        inner: dict[str, Converter] = {k: c for k, c in found_f.items() if c is not None}
        if not inner:
            return None

        def struct(value: Any) -> Any:
            if not isinstance(value, dict):
                return value
            out = dict(value)
            for k, c in inner.items():
                if out.get(k) is not None:
                    out[k] = c(out[k])
            return out

        return struct
    if pa.types.is_list(target):
        found = converter_for(target.value_type)
        if found is None:
            return None
        item: Converter = found
        return lambda value: [None if v is None else item(v) for v in value] if isinstance(value, list) else value
    if pa.types.is_map(target):
        found_v = converter_for(target.item_type)
        if found_v is None:
            return None
        value_item: Converter = found_v
        return lambda value: (
            {k: None if v is None else value_item(v) for k, v in value.items()} if isinstance(value, dict) else value
        )
    return None


# ----------------------------------------------------------------------------- decoders


@dataclass
class WriterSchema:
    """One registered schema: its format, its column type, and how to decode a payload (bytes
    after the 5-byte header) into Python values."""

    schema_id: int
    schema_type: str
    arrow_type: pa.DataType
    decode: Callable[[bytes], Any]


def writer_schema(schema_id: int, schema_type: str, text: str, references: list[str] | None = None) -> WriterSchema:
    """Parse a registered schema; raises ValueError for a format or schema it cannot decode.
    `references`: the texts of the Avro schemas it references, dependencies first."""
    if schema_type == "AVRO":
        import fastavro

        named_schemas: dict[str, Any] = {}
        named_types: dict[str, pa.DataType] = {}
        for ref_text in references or []:
            ref_raw = json.loads(ref_text)
            fastavro.parse_schema(ref_raw, named_schemas=named_schemas)
            _avro_type(ref_raw, named_types)
        raw = json.loads(text)
        parsed = fastavro.parse_schema(raw, named_schemas=named_schemas)
        arrow = _avro_type(raw, named_types)

        def decode_avro(payload: bytes) -> Any:
            return fastavro.schemaless_reader(io.BytesIO(payload), parsed, None)

        return WriterSchema(schema_id, "AVRO", arrow, decode_avro)
    if schema_type == "JSON":
        return WriterSchema(schema_id, "JSON", _json_schema_type(json.loads(text)), json.loads)
    if schema_type == "PROTOBUF":
        from workbench.schema_registry import arrow_protobuf

        arrow_p, decode_p = arrow_protobuf.decoder(text)
        return WriterSchema(schema_id, "PROTOBUF", arrow_p, decode_p)
    raise ValueError(f"schema type {schema_type} is not decoded")


def _columns(t: pa.DataType) -> pa.DataType:
    """A value type as the struct of top-level columns (a non-record value is one `value_typed` column)."""
    if pa.types.is_struct(t) and t.num_fields:
        return t
    return pa.struct([pa.field("value_typed", t if not pa.types.is_null(t) else _JSON)])


#: Confluent's wire format: magic byte 0, then the 4-byte big-endian schema id, then the payload.
NOT_FRAMED = "not in Confluent's wire format (magic byte 0 and a schema id)"


def frame(data: bytes) -> int | None:
    """The schema id of a Confluent-framed value, None when it is not framed."""
    if len(data) < 5 or data[0] != 0:
        return None
    return int.from_bytes(data[1:5], "big")


def decode_framed(
    data: bytes | None, writers: dict[int, WriterSchema], errors: dict[int, str], wrapped: dict[int, bool]
) -> tuple[int | None, str | None, Any, bool]:
    """One value by its writer schema: (schema id, why it did not decode, the value, decoded?).
    A value that is not a record is wrapped as ``{"value_typed": ...}`` where ``wrapped`` says so."""
    if data is None:
        return None, None, None, False
    sid = frame(data)
    if sid is None:
        return None, NOT_FRAMED, None, False
    writer = writers.get(sid)
    if writer is None:
        return sid, errors.get(sid, f"schema id {sid} is not registered"), None, False
    try:
        value = writer.decode(bytes(data[5:]))
    except Exception as exc:  # bytes that do not match the writer schema
        return sid, f"does not decode with schema id {sid}: {type(exc).__name__}: {exc}", None, False
    if wrapped[sid]:
        value = {"value_typed": value}
    return sid, None, value, True


class SchemaSource(Protocol):
    """Where registered schemas come from: the registry's REST API (`workbench.sql.typed`) or the
    `_schemas` topic (`workbench.schema_registry.topic_reader`). Entries are
    ``{"schema", "schemaType", "references"}``."""

    def by_id(self, schema_id: int) -> dict[str, Any] | None: ...

    def referenced(self, entry: dict[str, Any]) -> list[str]: ...


def writer_schemas(source: SchemaSource, ids: list[int]) -> tuple[dict[int, WriterSchema], dict[int, str]]:
    """The writer schemas of `ids` (unknown ids left out), and why those that did not parse failed."""
    writers: dict[int, WriterSchema] = {}
    errors: dict[int, str] = {}
    for sid in ids:
        found = source.by_id(sid)
        if found is None:
            continue
        try:
            refs = source.referenced(found) if found["schemaType"] == "AVRO" else None
            writers[sid] = writer_schema(sid, found["schemaType"], found["schema"], refs)
        except Exception as exc:
            errors[sid] = f"schema id {sid} ({found['schemaType']}) cannot be decoded here: {exc}"
    return writers, errors
