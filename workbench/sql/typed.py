"""Typed topic tables: ``typed."<topic>"``, Confluent-framed values decoded into columns.

A value in Confluent's wire format (magic byte 0, a 4-byte schema id, then the Avro binary,
JSON text or Protobuf message) is decoded by the schema registered under that id, and its
fields become columns typed from the schema (Avro records -> STRUCTs, arrays -> LISTs, maps
-> MAPs, enums -> VARCHAR, ``[null, T]`` unions -> nullable T, logical types: timestamps,
dates, times, decimals, UUIDs). The columns are the union by name of every schema the topic
uses: the versions of its subject ``<topic>-value`` (Confluent's TopicNameStrategy) plus every
schema id found in its values, so a field added in version 2 is NULL in version-1 records. A
field whose type changed between versions incompatibly (or an Avro union of several non-null
types) is JSON text.

Topics with schema-framed keys also get `key_typed`, `key_schema_id` and `key_decode_error`.

Avro schema references (Confluent's `references`: subject + version) are fetched from the registry,
recursively, and given to fastavro as `named_schemas`; their record types become columns too.

A record that does not decode (not framed, an unknown id, bytes that do not match the writer
schema) has NULL fields and says why in ``decode_error``; ``value_bytes`` keeps its raw bytes.
A bad record never fails the query.

How: the schemas are fetched from the registry over its REST API when a query names the view
(`refresh`), never while it runs. Decoding is a DuckDB vectorized Arrow UDF over the
``value_bytes`` column (one Python call per 2048-row chunk; each value decoded by its writer
schema with fastavro / json / protobuf, one Arrow array built per chunk), registered once per
set of schemas; the view calls it. Cost: `benchmarks/typed_sql.py`.

The SQL layer's copy stores them typed: the engine's cache files (immutable; compaction and
retention replace them under new names) are decoded once into a *typed sidecar* Parquet file in
the engine's own cache directory (``<cache>/sql/typed/<topic>/partition=N/``, never the brokers'
data directory), named by the cache file's name, size and mtime and by the plan's key (the set of
schema ids and the column types). The view reads the sidecars as they are and runs the UDF only
over the rows not in a cache file yet (the fresh table: the newest sealed files and the live
tail). A sidecar whose cache file is gone, or made for another set of schemas, is deleted at the
next refresh. `TypedViews.decoded_files` counts the sidecars written (for tests).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import io
import json
import logging
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from workbench.sql.flatten import BASE_COLUMNS, quote, sql_literal

log = logging.getLogger(__name__)

#: The schema holding one typed view per topic.
SCHEMA = "typed"
#: Columns a typed view adds before the value's fields.
EXTRA_COLUMNS = ("schema_id", "decode_error")
#: The type of a field kept as JSON text: VARCHAR in DuckDB, marked as Arrow's string view so
#: that only these fields (and UUIDs) need a per-value conversion; plain strings need none.
_JSON = pa.string_view()
#: Avro's uuid logical type: text in Arrow, marked by the large variant so the view's column is UUID.
_UUID = pa.large_string()

Converter = Callable[[Any], Any]


# ----------------------------------------------------------------------------- the registry


class RegistryReader:
    """The few registry reads typed views need, over Confluent's REST API; ids are cached
    (a schema id never changes meaning)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._by_id: dict[int, dict[str, Any]] = {}

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers={"Accept": "application/vnd.schemaregistry.v1+json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def subject_ids(self, subject: str) -> list[int]:
        """The schema ids of a subject's live versions, oldest first ([] for an unknown subject)."""
        q = urllib.parse.quote(subject, safe="")
        versions = self.get(f"/subjects/{q}/versions") or []
        ids = []
        for v in sorted(versions):
            found = self.get(f"/subjects/{q}/versions/{v}")
            if found is not None:
                ids.append(int(found["id"]))
                self._by_id.setdefault(int(found["id"]), _entry(found))
        return ids

    def version(self, subject: str, version: int) -> dict[str, Any] | None:
        """One version of a subject (a schema reference's target)."""
        q = urllib.parse.quote(subject, safe="")
        found = self.get(f"/subjects/{q}/versions/{int(version)}")
        return _entry(found) if found is not None else None

    def referenced(self, entry: dict[str, Any], seen: set[tuple[str, int]] | None = None) -> list[str]:
        """The texts of the schemas `entry` references, recursively, dependencies first (each once)."""
        seen = set() if seen is None else seen
        out: list[str] = []
        for ref in entry.get("references") or []:
            key = (ref["subject"], int(ref["version"]))
            if key in seen:
                continue
            seen.add(key)
            target = self.version(*key)
            if target is None:
                raise ValueError(f"reference {ref.get('name')!r}: {key[0]} version {key[1]} is not registered")
            out += self.referenced(target, seen)
            out.append(target["schema"])
        return out

    def by_id(self, schema_id: int) -> dict[str, Any] | None:
        if schema_id not in self._by_id:
            found = self.get(f"/schemas/ids/{schema_id}")
            if found is None:
                return None
            self._by_id[schema_id] = _entry(found)
        return self._by_id[schema_id]


def _entry(found: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": found["schema"],
        "schemaType": found.get("schemaType", "AVRO"),
        "references": found.get("references") or [],
    }


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


def duckdb_type(t: pa.DataType) -> str:
    """DuckDB's name for an Arrow column type (for the UDF's declared return type)."""
    if pa.types.is_struct(t):
        inner = ", ".join(f"{quote(t.field(i).name)} {duckdb_type(t.field(i).type)}" for i in range(t.num_fields))
        return f"STRUCT({inner})"
    if pa.types.is_list(t):
        return f"{duckdb_type(t.value_type)}[]"
    if pa.types.is_map(t):
        return f"MAP(VARCHAR, {duckdb_type(t.item_type)})"
    if t == _UUID:
        return "UUID"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    simple = {
        pa.bool_(): "BOOLEAN",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.uint64(): "UBIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.binary(): "BLOB",
        pa.string(): "VARCHAR",
        _JSON: "VARCHAR",
        pa.date32(): "DATE",
        pa.time64("us"): "TIME",
        pa.null(): "VARCHAR",
    }
    return simple.get(t, "VARCHAR")


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
        inner = {target.field(i).name: converter_for(target.field(i).type) for i in range(target.num_fields)}
        inner = {k: c for k, c in inner.items() if c is not None}
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
        item = converter_for(target.value_type)
        if item is None:
            return None
        return lambda value: [None if v is None else item(v) for v in value] if isinstance(value, list) else value
    if pa.types.is_map(target):
        item = converter_for(target.item_type)
        if item is None:
            return None
        return lambda value: (
            {k: None if v is None else item(v) for k, v in value.items()} if isinstance(value, dict) else value
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
        from workbench.sql import typed_protobuf

        arrow_p, decode_p = typed_protobuf.decoder(text)
        return WriterSchema(schema_id, "PROTOBUF", arrow_p, decode_p)
    raise ValueError(f"schema type {schema_type} is not decoded")


def _columns(t: pa.DataType) -> pa.DataType:
    """A value type as the struct of top-level columns (a non-record value is one `value_typed` column)."""
    if pa.types.is_struct(t) and t.num_fields:
        return t
    return pa.struct([pa.field("value_typed", t if not pa.types.is_null(t) else _JSON)])


class TypedPlan:
    """The decoding of one topic's values: writer schemas by id and the union column type."""

    def __init__(
        self, writers: dict[int, WriterSchema], errors: dict[int, str] | None = None, *, as_columns: bool = True
    ) -> None:
        """`as_columns`: values become top-level columns (a non-record value one `value_typed`
        column); False (keys): the decoded value is one column of its own type."""
        self.writers = writers
        self.errors = dict(errors or {})  # ids that could not be parsed: why
        union: pa.DataType | None = None
        for sid in sorted(writers):
            union = merge_types(union, _columns(writers[sid].arrow_type) if as_columns else writers[sid].arrow_type)
        if as_columns:
            self.fields: pa.DataType = union if union is not None else pa.struct([])
            self.has_fields = bool(self.fields.num_fields)
        else:
            self.fields = union if union is not None and not pa.types.is_null(union) else _JSON
            self.has_fields = union is not None
        self.wrapped = {
            sid: as_columns and not (pa.types.is_struct(w.arrow_type) and w.arrow_type.num_fields)
            for sid, w in writers.items()
        }
        self.convert = converter_for(self.fields) if self.has_fields else None
        self.result_type = pa.struct(
            [
                pa.field("schema_id", pa.int32()),
                pa.field("decode_error", pa.string()),
                *([pa.field("fields", self.fields)] if self.has_fields else []),
            ]
        )
        self.key = hashlib.sha1(str(self.result_type).encode() + repr(sorted(writers)).encode()).hexdigest()[:12]

    def decode_one(self, data: bytes | None) -> tuple[int | None, str | None, Any]:
        if data is None:
            return None, None, None
        if len(data) < 5 or data[0] != 0:
            return None, "not in Confluent's wire format (magic byte 0 and a schema id)", None
        sid = int.from_bytes(data[1:5], "big")
        writer = self.writers.get(sid)
        if writer is None:
            return sid, self.errors.get(sid, f"schema id {sid} is not registered"), None
        try:
            value = writer.decode(bytes(data[5:]))
        except Exception as exc:  # bytes that do not match the writer schema
            return sid, f"does not decode with schema id {sid}: {type(exc).__name__}: {exc}", None
        if self.wrapped[sid]:
            value = {"value_typed": value}
        if self.convert is not None:
            value = self.convert(value)
        return sid, None, value

    def decode_column(self, column: pa.Array) -> pa.Array:
        """The UDF: a BLOB column chunk -> STRUCT(schema_id, decode_error, fields)."""
        rows = []
        for item in column.to_pylist():
            sid, error, value = self.decode_one(item)
            row: dict[str, Any] = {"schema_id": sid, "decode_error": error}
            if self.has_fields:
                row["fields"] = value
            rows.append(row)
        try:
            return pa.array(rows, type=self.result_type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass
        fitted = []  # some value does not fit the column types: find it, keep the others
        for row in rows:
            try:
                pa.array([row], type=self.result_type)
                fitted.append(row)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                fitted.append(
                    {
                        "schema_id": row["schema_id"],
                        "decode_error": f"does not fit the table's columns: {exc}",
                        **({"fields": None} if self.has_fields else {}),
                    }
                )
        return pa.array(fitted, type=self.result_type)


def build_plan(reader: RegistryReader, topic: str, seen_ids: list[int], *, key: bool = False) -> TypedPlan:
    """The plan for a topic's values (keys): the versions of `<topic>-value` (`-key`) plus the ids
    found in the values (keys)."""
    ids = list(dict.fromkeys([*reader.subject_ids(f"{topic}-{'key' if key else 'value'}"), *seen_ids]))
    writers: dict[int, WriterSchema] = {}
    errors: dict[int, str] = {}
    for sid in ids:
        found = reader.by_id(sid)
        if found is None:
            continue
        try:
            refs = reader.referenced(found) if found["schemaType"] == "AVRO" else None
            writers[sid] = writer_schema(sid, found["schemaType"], found["schema"], refs)
        except Exception as exc:
            errors[sid] = f"schema id {sid} ({found['schemaType']}) cannot be decoded here: {exc}"
    return TypedPlan(writers, errors, as_columns=not key)


# ----------------------------------------------------------------------------- SQL


def create_schema_sql() -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};"


def drop_sql(topic: str) -> str:
    return f"DROP VIEW IF EXISTS {SCHEMA}.{quote(topic)};"


def seen_ids_sql(topic: str, column: str = "value_bytes") -> str:
    """The distinct schema ids of a topic's framed values or keys (one scan of the first 5 bytes)."""
    return (
        f"SELECT DISTINCT hex({column}[2:5]) FROM main.{quote(topic)} "
        f"WHERE octet_length({column}) >= 5 AND {column}[1:1] = '\\x00'::BLOB"
    )


def _fields_sql(plan: TypedPlan, key_function: str | None) -> str:
    fields = []
    for i in range(plan.fields.num_fields):
        name = plan.fields.field(i).name
        col = f"value_{name}" if name in BASE_COLUMNS or name in EXTRA_COLUMNS else name
        fields.append(f"__t.fields.{quote(name)} AS {quote(col)}")
    keys = []
    if key_function is not None:
        keys = ["__k.schema_id AS key_schema_id", "__k.decode_error AS key_decode_error", "__k.fields AS key_typed"]
    return ", ".join([*keys, "__t.schema_id AS schema_id", "__t.decode_error AS decode_error", *fields])


#: The raw columns a typed view (and a sidecar) keeps from the topic's rows.
RAW_COLUMNS = 'partition, "offset", timestamp, key_bytes, value_bytes, headers'


def decoded_sql(relation: str, function: str, key_function: str | None = None) -> str:
    """The raw columns of `relation` and the decoded `__t` (and `__k`) structs."""
    key_call = f", {key_function}(key_bytes) AS __k" if key_function is not None else ""
    return f"SELECT {RAW_COLUMNS}, {function}(value_bytes) AS __t{key_call} FROM {relation}"


def view_sql(
    topic: str,
    function: str,
    plan: TypedPlan,
    key_function: str | None = None,
    sidecars: list[str] | None = None,
    fresh: str | None = None,
) -> str:
    """``typed."<topic>"``: the topic view's base columns, schema_id, decode_error, the fields;
    with `key_function`, also key_schema_id, key_decode_error and key_typed. With `sidecars`
    (typed Parquet of the cache files) the UDF runs only over `fresh` (the rows not in them);
    without, over the whole topic view."""
    if sidecars:
        paths = ", ".join(sql_literal(p) for p in sidecars)
        body = (
            f"SELECT {RAW_COLUMNS}, __t{', __k' if key_function is not None else ''} "
            f"FROM read_parquet([{paths}]) UNION ALL BY NAME {decoded_sql(fresh or '', function, key_function)}"
        )
    else:
        body = decoded_sql(fresh or f"main.{quote(topic)}", function, key_function)
    return (
        f"CREATE OR REPLACE VIEW {SCHEMA}.{quote(topic)} AS "
        f'SELECT partition, "offset", timestamp, TRY(decode(key_bytes)) AS key, key_bytes, value_bytes, headers, '
        f"{_fields_sql(plan, key_function)} FROM ({body})"
    )


class TypedViews:
    """Keeps each queried topic's typed view in step with the registry (see the module docstring)."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        """`cache_dir`: where typed sidecars of cache files go (None: no sidecars, decode always)."""
        self._readers: dict[str, RegistryReader] = {}
        self._installed: dict[str, tuple] = {}  # topic -> (plan keys, sidecars) of its view
        self._functions: set[str] = set()
        self.cache_dir = cache_dir
        self.decoded_files = 0  # sidecars written: cache files decoded (tests read it)

    def refresh(
        self,
        db,
        ddl,
        url: str | None,
        topic: str,
        files: list[Path] | None = None,
        fresh: str | None = None,
    ) -> list[Path]:
        """(Re)build ``typed."<topic>"``; `db` registers the UDF, `ddl` runs the DDL. `files`: the
        topic's cache files, `fresh`: the relation of its other rows; with both (and a cache
        directory), cache files are read through typed sidecars. Returns the sidecars no longer
        used, for the caller to delete when no query can be reading them."""
        seen = [int(h, 16) for (h,) in ddl.execute(seen_ids_sql(topic)).fetchall() if h]
        seen_keys = [int(h, 16) for (h,) in ddl.execute(seen_ids_sql(topic, "key_bytes")).fetchall() if h]
        if url:
            reader = self._readers.setdefault(url, RegistryReader(url))
            plan = build_plan(reader, topic, seen)
            key_plan = build_plan(reader, topic, seen_keys, key=True)
        else:
            plan = TypedPlan({}, {sid: "no schema registry configured" for sid in seen})
            key_plan = TypedPlan({}, as_columns=False)
        keyed = bool(key_plan.writers)  # key columns only for topics with schema-framed keys
        plan_key = plan.key + (key_plan.key if keyed else "")
        function = self._function(db, plan)
        key_function = self._function(db, key_plan) if keyed else None
        use_sidecars = self.cache_dir is not None and files is not None and fresh is not None
        sidecars = (
            [self._sidecar(ddl, topic, f, plan_key, function, key_function) for f in files or []]
            if use_sidecars
            else []
        )
        installed = (plan_key, tuple(str(p) for p in sidecars))
        if self._installed.get(topic) != installed:
            ddl.execute(
                view_sql(
                    topic,
                    function,
                    plan,
                    key_function,
                    [str(p) for p in sidecars],
                    fresh if use_sidecars else None,
                )
            )
            self._installed[topic] = installed
        return self._stale(topic, set(sidecars)) if use_sidecars else []

    def _topic_dir(self, topic: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / topic

    def _sidecar(self, ddl, topic: str, source: Path, plan_key: str, function: str, key_function: str | None) -> Path:
        """The typed sidecar of one cache file, decoded and written now if missing."""
        st = source.stat()
        directory = self._topic_dir(topic) / source.parent.name
        path = directory / f"{source.stem}.{st.st_size}-{st.st_mtime_ns}.{plan_key}.parquet"
        if path.exists():
            return path
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        relation = f"read_parquet({sql_literal(str(source))})"
        ddl.execute(
            f"COPY ({decoded_sql(relation, function, key_function)}) TO {sql_literal(str(tmp))} "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        os.replace(tmp, path)
        self.decoded_files += 1
        return path

    def _stale(self, topic: str, keep: set[Path]) -> list[Path]:
        """Sidecars of `topic` not in `keep` (their cache file is gone, or another plan's)."""
        try:
            found = list(self._topic_dir(topic).glob("partition=*/*"))
        except OSError:
            return []
        return [p for p in found if p not in keep]

    def _function(self, db, plan: TypedPlan) -> str:
        """The UDF decoding with `plan`, registered once per distinct plan."""
        function = f"__wb_typed_{plan.key}"
        if function not in self._functions:
            import duckdb

            db.create_function(
                function,
                plan.decode_column,
                [duckdb.sqltype("BLOB")],
                duckdb.sqltype(duckdb_type(plan.result_type)),
                type="arrow",
                null_handling="special",
                side_effects=False,
            )
            self._functions.add(function)
        return function

    def forget(self, topic: str) -> None:
        self._installed.pop(topic, None)
