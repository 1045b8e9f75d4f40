"""Typed-table column rules (`workbench.sql.typed`), without a cluster: Avro types to columns,
the union across schema versions, and records that do not decode."""

from __future__ import annotations

import io
import json

import fastavro
import pyarrow as pa

from workbench.sql import typed


def _framed(schema_id: int, schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return b"\x00" + schema_id.to_bytes(4, "big") + out.getvalue()


A = {"type": "record", "name": "A", "fields": [{"name": "n", "type": "int"}, {"name": "s", "type": "string"}]}
B = {  # n widened to long, s changed to a record (a conflict), t added
    "type": "record",
    "name": "A",
    "fields": [
        {"name": "n", "type": "long"},
        {"name": "s", "type": {"type": "record", "name": "S", "fields": [{"name": "x", "type": "int"}]}},
        {"name": "t", "type": ["null", "string"], "default": None},
        {"name": "u", "type": ["int", "string"]},
    ],
}


def _plan() -> typed.TypedPlan:
    return typed.TypedPlan(
        {1: typed.writer_schema(1, "AVRO", json.dumps(A)), 2: typed.writer_schema(2, "AVRO", json.dumps(B))}
    )


def test_columns_are_the_union_by_name_numbers_widen_conflicts_are_json():
    fields = _plan().fields
    assert [fields.field(i).name for i in range(fields.num_fields)] == ["n", "s", "t", "u"]
    assert fields.field("n").type == pa.int64()
    assert typed.duckdb_type(fields.field("s").type) == "VARCHAR"  # string vs record: JSON text
    assert fields.field("t").type == pa.string()  # ["null", string]: a nullable string
    assert typed.duckdb_type(fields.field("u").type) == "VARCHAR"  # several non-null branches: JSON text


def test_decode_column_keeps_good_rows_and_explains_bad_ones():
    plan = _plan()
    column = pa.array(
        [
            _framed(1, A, {"n": 1, "s": "one"}),
            _framed(2, B, {"n": 2, "s": {"x": 5}, "t": "tee", "u": 3}),
            b"not framed",
            b"\x00\x00\x00\x00\x09rest",
            _framed(1, A, {"n": 1, "s": "one"})[:6],
            None,
        ],
        pa.binary(),
    )
    rows = plan.decode_column(column).to_pylist()
    assert rows[0]["fields"] == {"n": 1, "s": "one", "t": None, "u": None}
    assert rows[1]["fields"] == {"n": 2, "s": '{"x": 5}', "t": "tee", "u": "3"}
    assert rows[0]["schema_id"] == 1 and rows[1]["schema_id"] == 2
    assert "wire format" in rows[2]["decode_error"] and rows[2]["fields"] is None
    assert rows[3]["schema_id"] == 9 and "not registered" in rows[3]["decode_error"]
    assert "does not decode" in rows[4]["decode_error"]
    assert rows[5] == {"schema_id": None, "decode_error": None, "fields": None}  # a tombstone


def test_typed_sidecars_decode_each_cache_file_once_and_go_with_it(tmp_path):
    """Cache files are decoded once into typed sidecars keyed by name, size, mtime and plan; the
    sidecar of a cache file that was replaced is returned as stale."""
    import duckdb

    con = duckdb.connect()
    rows = 'partition::INTEGER AS partition, "offset"::BIGINT AS "offset", now()::TIMESTAMPTZ AS timestamp'
    raw = (
        f"{rows}, NULL::BLOB AS key_bytes, ('x' || \"offset\")::BLOB AS value_bytes, "
        "[]::STRUCT(key VARCHAR, value BLOB)[] AS headers"
    )

    def cache_file(name: str, lo: int, hi: int):
        path = tmp_path / "cache" / "partition=0" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f'COPY (SELECT {raw} FROM (SELECT 0 AS partition, range AS "offset" FROM range({lo}, {hi}))) '
            f"TO '{path}' (FORMAT parquet)"
        )
        return path

    a, b = cache_file("a.parquet", 0, 10), cache_file("b.parquet", 10, 20)
    con.execute("CREATE SCHEMA wb_fresh; CREATE SCHEMA typed")
    con.execute(
        f'CREATE TABLE wb_fresh.t AS SELECT {raw} FROM (SELECT 0 AS partition, range AS "offset" FROM range(20, 25))'
    )

    def main_view(files):
        paths = ", ".join(f"'{f}'" for f in files)
        con.execute(
            f"CREATE OR REPLACE VIEW main.t AS SELECT * FROM read_parquet([{paths}]) UNION ALL SELECT * FROM wb_fresh.t"
        )

    views = typed.TypedViews(tmp_path / "typed")
    main_view([a, b])
    assert views.refresh(con, con, None, "t", [a, b], "wb_fresh.t") == []
    assert views.decoded_files == 2
    assert con.execute('SELECT count(*), count(DISTINCT "offset") FROM typed.t').fetchone() == (25, 25)
    assert views.refresh(con, con, None, "t", [a, b], "wb_fresh.t") == []
    assert views.decoded_files == 2  # read from the sidecars, not decoded again
    b.unlink()  # compaction or retention replaced b
    c = cache_file("c.parquet", 10, 18)
    main_view([a, c])
    stale = views.refresh(con, con, None, "t", [a, c], "wb_fresh.t")
    assert views.decoded_files == 3
    assert [p.name.split(".")[0] for p in stale] == ["b"]
    assert con.execute("SELECT count(*) FROM typed.t").fetchone() == (23,)
    assert con.execute("SELECT count(*) FROM typed.t WHERE decode_error IS NULL").fetchone() == (0,)
