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

import hashlib
import json
import logging
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa

from workbench.schema_registry.arrow_types import (  # shared with the Iceberg committer; re-exported
    _JSON,
    _UUID,
    Converter,
    WriterSchema,
    _avro_type,
    _columns,
    _json_schema_type,
    _to_json,
    converter_for,
    decode_framed,
    merge_types,
    writer_schema,
    writer_schemas,
)
from workbench.sql.flatten import BASE_COLUMNS, quote, sql_literal

__all__ = [
    "Converter",
    "WriterSchema",
    "_avro_type",
    "_json_schema_type",
    "_to_json",
    "converter_for",
    "merge_types",
    "writer_schema",
]

log = logging.getLogger(__name__)

#: The schema holding one typed view per topic.
SCHEMA = "typed"
#: Columns a typed view adds before the value's fields.
EXTRA_COLUMNS = ("schema_id", "decode_error")

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
        sid, error, value, decoded = decode_framed(data, self.writers, self.errors, self.wrapped)
        if decoded and self.convert is not None:
            value = self.convert(value)
        return sid, error, value

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
    writers, errors = writer_schemas(reader, ids)
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
