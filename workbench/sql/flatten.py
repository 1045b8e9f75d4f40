"""JSON values -> typed columns.

A topic's *structure* is DuckDB's JSON structure notation (what `json_structure`
returns): a dict of field -> structure for objects, a one-element list for arrays,
and a DuckDB type name for scalars, e.g. ``{"id": "BIGINT", "user": {"name": "VARCHAR"},
"tags": ["VARCHAR"]}``. It is inferred from the data with `json_group_structure`
and only ever grows: a new field adds a column, a field seen with two kinds of value
becomes JSON text. Top-level fields become columns; nested objects are STRUCTs
(``SELECT user.name FROM orders``), arrays are LISTs.

Per topic, an explicit structure can be given instead (no inference), or
flattening turned off (only the raw columns).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: Columns every topic table has; a JSON field with one of these names gets a `value_` prefix.
BASE_COLUMNS = ("partition", "offset", "timestamp", "key", "value", "headers", "key_bytes", "value_bytes")
#: Beyond this many fields an object is kept as JSON text (a map keyed by ids is not a schema).
MAX_FIELDS = 300

_NUMERIC_RANK = {"BOOLEAN": 0, "BIGINT": 1, "UBIGINT": 1, "HUGEINT": 1, "DOUBLE": 2}


@dataclass
class TopicSchema:
    """How one topic's values are flattened: inferred (default), explicit, or not at all."""

    flatten: bool = True
    explicit: bool = False
    structure: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"flatten": self.flatten, "explicit": self.explicit, "structure": self.structure}

    @classmethod
    def from_json(cls, data: dict) -> TopicSchema:
        return cls(
            bool(data.get("flatten", True)),
            bool(data.get("explicit", False)),
            dict(data.get("structure") or {}),
        )


def normalize(structure: Any) -> Any:
    """DuckDB's inferred structure -> one json_transform accepts and we want: UBIGINT is BIGINT,
    all-null fields and empty objects are dropped (no type known yet), huge objects are JSON."""
    if isinstance(structure, dict):
        if len(structure) > MAX_FIELDS:
            return "JSON"
        out = {}
        for k, v in structure.items():
            n = normalize(v)
            if n is not None:
                out[k] = n
        return out or None
    if isinstance(structure, list):
        inner = normalize(structure[0]) if structure else None
        return [inner if inner is not None else "JSON"]
    if structure == "NULL":
        return None
    if structure in ("UBIGINT", "HUGEINT"):
        return "BIGINT"
    return structure


def merge(a: Any, b: Any) -> Any:
    """The smallest structure both `a` and `b` fit in (numbers widen, conflicts become JSON)."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out.get(k), v)
        return out if len(out) <= MAX_FIELDS else "JSON"
    if isinstance(a, list) and isinstance(b, list):
        return [merge(a[0], b[0])]
    if (
        isinstance(a, str)
        and isinstance(b, str)
        and a in _NUMERIC_RANK
        and b in _NUMERIC_RANK
        and "BOOLEAN" not in (a, b)
    ):
        return a if _NUMERIC_RANK[a] >= _NUMERIC_RANK[b] else b
    return "JSON"


def parse_explicit(schema: dict[str, Any]) -> dict[str, Any]:
    """An explicit schema: field -> DuckDB type name, or a nested dict / one-element list."""
    if not isinstance(schema, dict) or not schema:
        raise ValueError(
            "schema must be a non-empty dict of field name -> DuckDB type, e.g. "
            '{"id": "BIGINT", "user": {"name": "VARCHAR"}, "tags": ["VARCHAR"]}'
        )
    return schema


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def column_name(field_name: str) -> str:
    return f"value_{field_name}" if field_name in BASE_COLUMNS else field_name


def infer_sql(relation: str) -> str:
    """SQL returning one row: the JSON structure of the object values in `relation` (raw columns)."""
    return (
        f"SELECT json_group_structure(j) FROM (SELECT TRY(CAST(TRY(decode(value)) AS JSON)) AS j "
        f"FROM {relation}) WHERE json_type(j) = 'OBJECT'"
    )


#: `infer_structure` merges at most this many distinct per-row structures in Python; beyond
#: that (map-like objects, many optional-field combinations) DuckDB's aggregate does it.
MAX_DISTINCT_STRUCTURES = 2000


def distinct_structures_sql(relation: str, limit: int = MAX_DISTINCT_STRUCTURES) -> str:
    """SQL returning the distinct JSON structures of the object values in `relation`, one row each,
    at most `limit + 1` rows. One JSON parse per row (about twice as fast as `infer_sql`)."""
    return (
        f"SELECT s FROM (SELECT TRY(json_structure(TRY(decode(value)))) AS s FROM {relation}) "
        f"WHERE s LIKE '{{%' GROUP BY s LIMIT {limit + 1}"
    )


def infer_structure(con, relation: str) -> Any:
    """The normalized structure of the object values in `relation` (None when there are none):
    the distinct per-row structures merged with `merge`, or `infer_sql` when there are many."""
    rows = con.execute(distinct_structures_sql(relation)).fetchall()
    if len(rows) > MAX_DISTINCT_STRUCTURES:
        found = con.execute(infer_sql(relation)).fetchall()[0][0]
        return normalize(json.loads(found)) if found else None
    out = None
    for (s,) in rows:
        out = merge(out, normalize(json.loads(s)))
    return out


#: The decoded key, stored beside its bytes (cache files, the fresh table): a predicate on the
#: topic view's ``key`` then reaches the Parquet scan (row-group statistics) or the table's zone
#: maps as it is written, instead of decoding every row's bytes first (issue 19). A cache file
#: without this column is from before it and is rebuilt (`workbench.sql.cache`).
KEY_TEXT = "TRY(decode(key)) AS key"


def flatten_sql(relation: str, schema: TopicSchema, partition_expr: str = "partition") -> str:
    """SQL turning raw rows (partition?, offset, timestamp, key, value, headers) into the cached
    table shape: partition, offset, timestamp, key, key_bytes, value_bytes, headers, <fields...>
    (``key`` the key as text, NULL when it is null or not UTF-8)."""
    base = (
        f'CAST({partition_expr} AS INTEGER) AS partition, "offset", '
        f"CAST(timestamp AS TIMESTAMPTZ) AS timestamp, {KEY_TEXT}, key AS key_bytes, value AS value_bytes, headers"
    )
    if not schema.flatten or not schema.structure:
        return f"SELECT {base} FROM {relation}"
    fields = ", ".join(f"__v.{quote(k)} AS {quote(column_name(k))}" for k in schema.structure)
    structure = sql_literal(json.dumps(schema.structure, separators=(",", ":")))
    return (
        f'SELECT partition, "offset", timestamp, key, key_bytes, value_bytes, headers, {fields} FROM ('
        f"SELECT {base}, TRY(json_transform(TRY(decode(value)), {structure})) AS __v FROM {relation})"
    )


def present_sql(relation: str) -> str:
    """The user-facing topic table over cached-shape rows: text key/value next to the raw bytes.
    ``key`` is the stored column, so filters on it are pushed into the scans."""
    return (
        'SELECT partition, "offset", timestamp, key, '
        "TRY(decode(value_bytes)) AS value, headers, key_bytes, value_bytes, "
        '* EXCLUDE (partition, "offset", timestamp, key, key_bytes, value_bytes, headers) '
        f"FROM {relation}"
    )
