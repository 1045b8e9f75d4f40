"""Schema inference rules for flattening JSON values, and the small parsers of the SQL side."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from workbench.sql.flatten import TopicSchema, flatten_sql, infer_sql, merge, normalize
from workbench.sql.locks import RWLock
from workbench.sql.magic import _parse
from workbench.sql.watch import parse_interval
from workbench.sql.wire import RAW_SCHEMA


def test_structures_only_grow_and_widen():
    assert normalize({"a": "UBIGINT", "b": "NULL", "c": {}, "d": ["NULL"]}) == {"a": "BIGINT", "d": ["JSON"]}
    assert merge({"a": "BIGINT"}, {"a": "DOUBLE", "b": "VARCHAR"}) == {"a": "DOUBLE", "b": "VARCHAR"}
    assert merge({"a": "BIGINT"}, {"a": "VARCHAR"}) == {"a": "JSON"}
    assert merge({"u": {"x": "BIGINT"}}, {"u": {"y": "BOOLEAN"}}) == {"u": {"x": "BIGINT", "y": "BOOLEAN"}}
    assert merge({"a": "BOOLEAN"}, {"a": "BIGINT"}) == {"a": "JSON"}
    assert merge(None, {"a": "BIGINT"}) == {"a": "BIGINT"}


def test_flatten_sql_types_fields_and_leaves_bad_values_null():
    raw = pa.table(
        {
            "partition": pa.array([0, 0, 0], pa.int32()),
            "offset": pa.array([0, 1, 2], pa.int64()),
            "timestamp": pa.array([0, 1, 2], pa.timestamp("ms", tz="UTC")),
            "key": pa.array([None, None, None], pa.binary()),
            "value": pa.array([b'{"id": 1, "offset": 5, "u": {"n": "a"}}', b"\xff", b"[1]"], pa.binary()),
            "headers": pa.array([None, None, None], RAW_SCHEMA.field("headers").type),
        }
    )
    con = duckdb.connect()
    con.register("raw", raw)
    structure = normalize(__import__("json").loads(con.execute(infer_sql("raw")).fetchall()[0][0]))
    assert structure == {"id": "BIGINT", "offset": "BIGINT", "u": {"n": "VARCHAR"}}
    rows = con.execute(flatten_sql("raw", TopicSchema(structure=structure))).fetchall()
    cols = [d[0] for d in con.execute(flatten_sql("raw", TopicSchema(structure=structure))).description]
    assert cols[-3:] == ["id", "value_offset", "u"]  # a field named like a base column is prefixed
    assert rows[0][-3:] == (1, 5, {"n": "a"}) and rows[1][-3:] == (None, None, None)


def test_intervals_and_magic_arguments():
    assert parse_interval("500ms") == 0.5 and parse_interval("2m") == 120 and parse_interval(3) == 3.0
    with pytest.raises(ValueError):
        parse_interval("soon")
    assert _parse("-o out") == (None, "out", "")
    assert _parse("other SELECT 1") == ("other", None, "SELECT 1")
    assert _parse("SELECT 1") == (None, None, "SELECT 1")


def test_rwlock_lets_readers_share():
    lock = RWLock()
    with lock.read(), lock.read():
        pass
    with lock.write():
        pass
