"""Registry-framed values as typed Iceberg columns (issue 17), for the committer process.

A topic whose values carry Confluent's wire format (magic byte 0, a 4-byte schema id) gets, in
its Iceberg table, beside the Parquet tier's columns (``value`` keeps the raw bytes):
``schema_id``, ``decode_error`` and one column per top-level field of the value (a non-record
value: one ``value_typed`` column; a field named like a base column: ``value_<name>``), typed as
`workbench.sql.typed` types them (the mapping and decoders are shared,
`workbench.schema_registry.arrow_types`): records are structs, arrays lists, maps maps, logical
types timestamps / dates / times / decimals, UUIDs and JSON-text fields strings.

Keys the same way, as one column (`KeyTyping`): a topic whose keys are framed (subject
``<topic>-key``, or ids found in its keys) gets ``key_schema_id``, ``key_decode_error`` and
``key_typed`` (a record key: a struct of its fields; any other key: its own type), as the SQL
typed views name them.

Where the schemas come from: the `_schemas` topic, read over the Kafka protocol from this
broker's own listener (`workbench.schema_registry.topic_reader`), never the registry's HTTP
server. Why: the committer is a child of the broker, started before any registry and without
its URL; `_schemas` is where the registry itself keeps its state, reachable through any broker
(also one holding no replica of it), and it exists exactly when a registry has run. Without it
nothing waits: the table stays untyped (bytes, as without a registry).

When a topic is typed: once its subject ``<topic>-value`` (Confluent's TopicNameStrategy, what
the serializers use by default) has a version, or a value carries a registered schema id. Rows
committed before that (no registry yet, or a schema the reader had not read yet) are in data
files without the typed columns: Iceberg reads them as NULL there (``schema_id`` too, which tells
them from rows that were decoded). A commit whose rows carry ids the reader has not seen waits
for the reader to reach the end of `_schemas` (at most `CATCH_UP_TIMEOUT_S`, at most once per
`CATCH_UP_EVERY_S`; `FIRST_CATCH_UP_TIMEOUT_S` while its consumer connects), so a serializer's
just-registered schema is normally there. The reader starts at the first framed value a commit
meets: a cluster whose values are never framed runs no consumer for it.

Evolution: the columns are the union by name of the table's columns and each writer schema's
(pyiceberg ``union_by_name``, committed in the same transaction as the data file): a field added
by a new version is a new column, NULL in older rows; a number widens as Iceberg allows (int ->
long, float -> double). A field whose type a new version changed incompatibly (say long ->
string) keeps its column; that version's values of it go, as JSON text, to a string column
``<field>__json``. A value that does not decode (not framed, an unknown id, bytes that do not
match its schema, a value that does not fit the columns) has NULL fields and says why in
``decode_error``; it never fails a commit.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from workbench._lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa

    from workbench.schema_registry.arrow_types import WriterSchema
    from workbench.schema_registry.topic_reader import SchemasTopicReader
else:
    pa = lazy_module("pyarrow")

SCHEMA_ID = "schema_id"
DECODE_ERROR = "decode_error"
#: Registry-framed keys (subject ``<topic>-key``): the decoded key as one column of its own type
#: (a record key: a struct), its schema id and why it did not decode, named as `workbench.sql.typed`
#: names them in the SQL typed views.
KEY_TYPED = "key_typed"
KEY_SCHEMA_ID = "key_schema_id"
KEY_DECODE_ERROR = "key_decode_error"
KEY_COLUMNS = (KEY_TYPED, KEY_TYPED + "__json", KEY_SCHEMA_ID, KEY_DECODE_ERROR)
#: A field whose type changed incompatibly: the new version's values, as JSON text.
JSON_SUFFIX = "__json"
#: How long a commit meeting an unknown schema id waits for the reader, and how often it may.
CATCH_UP_TIMEOUT_S = 2.0
CATCH_UP_EVERY_S = 2.0
FIRST_CATCH_UP_TIMEOUT_S = 5.0

#: bootstrap servers -> the reader of `_schemas` (one per committer process).
_readers: dict[str, SchemasTopicReader] = {}
_last_catch_up: dict[str, float] = {}


def reader(bootstrap: str) -> SchemasTopicReader:
    from workbench.schema_registry.topic_reader import SchemasTopicReader

    found = _readers.get(bootstrap)
    if found is None:
        found = _readers[bootstrap] = SchemasTopicReader(bootstrap)
        found.start()
    return found


def iceberg_type(t: pa.DataType) -> pa.DataType:
    """An Arrow column type as Iceberg stores it: the JSON-text and UUID markers of
    `arrow_types` (string view, large string) and NULL are strings, unsigned 64-bit is long."""
    if pa.types.is_struct(t):
        return pa.struct([pa.field(t.field(i).name, iceberg_type(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(iceberg_type(t.value_type))
    if pa.types.is_map(t):
        return pa.map_(pa.string(), iceberg_type(t.item_type))
    if pa.types.is_string_view(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return pa.binary()
    if pa.types.is_uint64(t) or pa.types.is_uint32(t):
        return pa.int64()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    if pa.types.is_time(t):
        return pa.time64("us")
    return t


def evolve(table: pa.DataType | None, writer: pa.DataType) -> pa.DataType | None:
    """The column type holding both the table's `table` and a writer's `writer` (both Iceberg
    types), as Iceberg's schema evolution allows: new struct fields, int -> long, float ->
    double, a wider decimal of the same scale. None: incompatible (the column cannot change)."""
    if table is None or table == writer:
        return writer if table is None else table
    if pa.types.is_struct(table) and pa.types.is_struct(writer):
        fields = {table.field(i).name: table.field(i).type for i in range(table.num_fields)}
        for i in range(writer.num_fields):
            f = writer.field(i)
            merged = evolve(fields.get(f.name), f.type)
            if merged is None:
                return None
            fields[f.name] = merged
        return pa.struct([pa.field(n, t) for n, t in fields.items()])
    if pa.types.is_list(table) and pa.types.is_list(writer):
        item = evolve(table.value_type, writer.value_type)
        return None if item is None else pa.list_(item)
    if pa.types.is_map(table) and pa.types.is_map(writer):
        item = evolve(table.item_type, writer.item_type)
        return None if item is None else pa.map_(pa.string(), item)
    if pa.types.is_integer(table) and pa.types.is_integer(writer):
        return pa.int64()
    if pa.types.is_floating(table) and pa.types.is_floating(writer):
        return pa.float64()
    if pa.types.is_decimal(table) and pa.types.is_decimal(writer) and table.scale == writer.scale:
        return pa.decimal128(max(table.precision, writer.precision), table.scale)
    return None


def column_name(field: str, reserved: set[str]) -> str:
    """A value field's column: its name, ``value_<name>`` when a base column has that name."""
    return f"value_{field}" if field in reserved else field


class IcebergTyping:
    """The typed columns of one commit: the table's (``existing``: name -> Iceberg Arrow type)
    evolved by each writer schema's fields; decodes a ``value`` column into them."""

    def __init__(
        self,
        writers: dict[int, WriterSchema],
        errors: dict[int, str],
        existing: dict[str, pa.DataType],
        reserved: set[str],
    ) -> None:
        from workbench.schema_registry.arrow_types import _columns, converter_for

        self.writers = writers
        self.errors = errors
        columns: dict[str, pa.DataType] = dict(existing)
        self.routes: dict[int, dict[str, str]] = {}  # sid -> field -> column
        self.json_fields: dict[int, set[str]] = {}  # sid -> fields written as JSON text
        self.wrapped: dict[int, bool] = {}
        self.convert: dict[int, Any] = {}
        for sid in sorted(writers):
            w = writers[sid]
            marked = _columns(w.arrow_type)
            self.wrapped[sid] = not (pa.types.is_struct(w.arrow_type) and w.arrow_type.num_fields)
            self.convert[sid] = converter_for(marked)
            routes, as_json = {}, set()
            for i in range(marked.num_fields):
                f = marked.field(i)
                name = column_name(f.name, reserved)
                merged = evolve(columns.get(name), iceberg_type(f.type))
                if merged is None:  # an incompatible change: the column stays, this version's values go to JSON
                    name += JSON_SUFFIX
                    merged = evolve(columns.get(name), pa.string()) or pa.string()
                    as_json.add(f.name)
                columns[name] = merged
                routes[f.name] = name
            self.routes[sid] = routes
            self.json_fields[sid] = as_json
        self.columns = columns
        self.struct = pa.struct([pa.field(n, t) for n, t in columns.items()])

    def decode_one(self, data: bytes | None) -> tuple[int | None, str | None, dict[str, Any] | None]:
        from workbench.schema_registry.arrow_types import _to_json, decode_framed

        sid, error, value, decoded = decode_framed(data, self.writers, self.errors, self.wrapped)
        if not decoded:
            return sid, error, None
        assert sid is not None
        convert = self.convert[sid]
        if convert is not None:
            value = convert(value)
        if not isinstance(value, dict):
            return sid, "the decoded value is not a record", None
        as_json = self.json_fields[sid]
        out = {}
        for field, column in self.routes[sid].items():
            v = value.get(field)
            out[column] = _to_json(v) if field in as_json else v
        return sid, None, out

    def decode(self, values: pa.ChunkedArray | pa.Array) -> dict[str, pa.Array]:
        """``schema_id``, ``decode_error`` and the field columns of a ``value`` column."""
        sids, errs, rows = [], [], []
        for item in values.to_pylist():
            sid, err, row = self.decode_one(item)
            sids.append(sid)
            errs.append(err)
            rows.append(row)
        try:
            fields = pa.array(rows, type=self.struct)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            fitted = []
            for i, row in enumerate(rows):  # some value does not fit the columns: find it, keep the others
                try:
                    pa.array([row], type=self.struct)
                    fitted.append(row)
                except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                    errs[i] = f"does not fit the table's columns: {exc}"
                    fitted.append(None)
            fields = pa.array(fitted, type=self.struct)
        out: dict[str, pa.Array] = {
            SCHEMA_ID: pa.array(sids, pa.int32()),
            DECODE_ERROR: pa.array(errs, pa.string()),
        }
        for name, column in zip(self.columns, fields.flatten(), strict=True):  # flatten: NULL rows stay NULL
            out[name] = column
        return out


class KeyTyping:
    """The typed key columns of one commit: ``key_schema_id``, ``key_decode_error`` and
    ``key_typed``, the decoded key as one column (a record key: a struct of its fields, evolving
    like the value columns; any other key: its own type). The table's ``key_typed`` (``existing``,
    its Iceberg Arrow type, None before) evolves by each writer schema; a version whose key cannot
    evolve it (long -> string) writes that key as JSON text to ``key_typed__json``."""

    def __init__(self, writers: dict[int, WriterSchema], errors: dict[int, str], existing: pa.DataType | None) -> None:
        self.record = existing is not None and pa.types.is_struct(existing)
        if existing is None:  # the first typing: a struct when any writer's key is a record
            self.record = any(pa.types.is_struct(w.arrow_type) and w.arrow_type.num_fields for w in writers.values())
        if self.record:
            fields = (
                {}
                if existing is None
                else {existing.field(i).name: existing.field(i).type for i in range(existing.num_fields)}
            )
        else:
            fields = {} if existing is None else {"value_typed": existing}
        self.values = IcebergTyping(writers, errors, fields, set())

    def decode(self, keys: pa.ChunkedArray | pa.Array) -> dict[str, pa.Array]:
        cols = self.values.decode(keys)
        sids, errors = cols.pop(SCHEMA_ID), cols.pop(DECODE_ERROR)
        out: dict[str, pa.Array] = {KEY_SCHEMA_ID: sids, KEY_DECODE_ERROR: errors}
        if self.record:
            import pyarrow.compute as pc

            decoded = pc.and_(pc.is_valid(sids), pc.is_null(errors))
            names = list(cols)
            out[KEY_TYPED] = pa.StructArray.from_arrays([cols[n] for n in names], names=names, mask=pc.invert(decoded))
            return out
        out[KEY_TYPED] = cols.pop("value_typed", pa.nulls(len(sids), pa.string()))
        json_text = cols.pop("value_typed" + JSON_SUFFIX, None)
        if json_text is not None:
            out[KEY_TYPED + JSON_SUFFIX] = json_text
        for name, col in cols.items():  # a record key version on a table typed before by scalar keys
            out[KEY_TYPED + JSON_SUFFIX] = _merge_json(out.get(KEY_TYPED + JSON_SUFFIX), name, col)
        return out


def _merge_json(have: pa.Array | None, name: str, col: pa.Array) -> pa.Array:
    """A record key's field ``name`` as JSON text where the table types keys as scalars."""
    from workbench.schema_registry.arrow_types import _to_json

    texts = [None if v is None else _to_json({name: v}) for v in col.to_pylist()]
    if have is not None:
        texts = [a if a is not None else b for a, b in zip(have.to_pylist(), texts, strict=True)]
    return pa.array(texts, pa.string())


def key_typing_for(
    bootstrap: str | None, topic: str, keys: pa.ChunkedArray | pa.Array, existing: pa.DataType | None, typed: bool
) -> KeyTyping | None:
    """The typing of a commit's ``keys`` for `topic` (subject ``<topic>-key``), None when its keys
    are not typed (no subject, no registered id among them, and the table's keys not typed before)."""
    found = _writers(bootstrap, f"{topic}-key", keys, typed)
    return None if found is None else KeyTyping(*found, existing)


def _writers(
    bootstrap: str | None, subject: str, framed: pa.ChunkedArray | pa.Array, typed: bool
) -> tuple[dict[int, WriterSchema], dict[int, str]] | None:
    """The writer schemas (and why some did not parse) of `subject`'s versions and of the ids found
    in `framed`; None when there is nothing to type (no id found and the table not typed before,
    or no schema known and not typed before)."""
    if not bootstrap:
        return None
    from workbench.schema_registry.arrow_types import writer_schemas

    seen = seen_ids(framed)
    if not seen and not typed:
        return None  # nothing framed to type: the reader (a consumer) is not even started
    source = _caught_up(bootstrap, seen)
    ids = list(dict.fromkeys([*source.subject_ids(subject), *seen]))
    writers, errors = writer_schemas(source, ids)
    if not writers and not typed:
        return None
    return writers, errors


def _caught_up(bootstrap: str, seen: list[int]) -> SchemasTopicReader:
    """The `_schemas` reader, caught up (within bounds) when an id among `seen` is not known yet."""
    first = bootstrap not in _readers
    source = reader(bootstrap)
    if any(source.by_id(sid) is None for sid in seen):
        now = time.monotonic()
        if first or now - _last_catch_up.get(bootstrap, 0.0) >= CATCH_UP_EVERY_S:
            _last_catch_up[bootstrap] = now
            # A serializer's schema registered a moment ago; the first time the consumer is still connecting.
            source.catch_up(FIRST_CATCH_UP_TIMEOUT_S if first else CATCH_UP_TIMEOUT_S)
    return source


def seen_ids(values: pa.ChunkedArray | pa.Array) -> list[int]:
    """The distinct schema ids of the framed values (vectorized: only distinct headers reach Python)."""
    import pyarrow.compute as pc

    values = values.cast(pa.binary())
    framed = pc.and_(pc.greater_equal(pc.binary_length(values), 5), pc.equal(pc.binary_slice(values, 0, 1), b"\x00"))
    heads = pc.unique(pc.binary_slice(pc.filter(values, pc.fill_null(framed, False)), 1, 5))
    return sorted(int.from_bytes(h, "big") for h in heads.to_pylist())


def typing_for(
    bootstrap: str | None,
    topic: str,
    values: pa.ChunkedArray | pa.Array,
    existing: dict[str, pa.DataType],
    reserved: set[str],
    typed: bool,
) -> IcebergTyping | None:
    """The typing of a commit's ``values`` for `topic`, None when the topic is not typed (no
    subject, no registered id among the values, and the table not typed before). `existing`: the
    table's typed columns (name -> type), `typed`: the table has them already."""
    found = _writers(bootstrap, f"{topic}-value", values, typed)
    return None if found is None else IcebergTyping(*found, existing, reserved)
