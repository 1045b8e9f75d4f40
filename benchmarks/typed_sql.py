"""Typed-table decoding speed: Confluent-framed Avro values decoded by `typed."<topic>"`'s UDF.

    python benchmarks/typed_sql.py [--records N]

No cluster: N framed values (an 8-field Avro record, two schema versions) go into a DuckDB table,
and the typed view's UDF (`workbench.sql.typed.TypedPlan.decode_column`) decodes them in a full
`SELECT sum(...)`. Then the same values as 4 cache Parquet files read through
`typed.TypedViews` with typed sidecars: the first query decodes each file into its sidecar, the
second reads the sidecars. Prints records/s of each and of a plain scan of the same table, and
writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import json
import tempfile
import time
from pathlib import Path

import duckdb
import fastavro
import pyarrow as pa

from workbench.sql import typed

V1 = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "item", "type": "string"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "buyer", "type": {"type": "record", "name": "Buyer", "fields": [{"name": "name", "type": "string"}]}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "qty", "type": "int"},
    ],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "coupon", "type": ["null", "string"], "default": None}]}


def _frame(schema_id: int, parsed, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record)
    return b"\x00" + schema_id.to_bytes(4, "big") + out.getvalue()


def _sidecar_queries(con, plan: typed.TypedPlan, values: list[bytes], expected) -> tuple[float, float]:
    """Seconds of the first and the second query of `typed."bench"` over 4 cache files (refresh included)."""
    tmp = Path(tempfile.mkdtemp(prefix="typed-sql-"))
    n = len(values)
    files = []
    for i in range(4):
        path = tmp / "cache" / "partition=0" / f"{i:020d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        lo, hi = i * n // 4, (i + 1) * n // 4
        con.execute(
            f'COPY (SELECT 0::INTEGER AS partition, rowid::BIGINT AS "offset", now()::TIMESTAMPTZ AS timestamp, '
            "NULL::BLOB AS key_bytes, value_bytes, []::STRUCT(key VARCHAR, value BLOB)[] AS headers "
            f"FROM t WHERE rowid >= {lo} AND rowid < {hi}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)"
        )
        files.append(path)
    paths = ", ".join(f"'{f}'" for f in files)
    con.execute("CREATE SCHEMA IF NOT EXISTS typed; CREATE SCHEMA IF NOT EXISTS wb_fresh")
    con.execute("CREATE TABLE wb_fresh.bench AS SELECT * FROM read_parquet(?) LIMIT 0", [str(files[0])])
    con.execute(
        f"CREATE VIEW main.bench AS SELECT * FROM read_parquet([{paths}]) UNION ALL SELECT * FROM wb_fresh.bench"
    )
    views = typed.TypedViews(tmp / "typed")
    views._readers["bench"] = _FixedReader(plan)  # the two schemas, no registry process
    times = []
    for _ in range(2):
        start = time.perf_counter()
        views.refresh(con, con, "bench", "bench", files, "wb_fresh.bench")
        got = con.execute("SELECT sum(qty), count(coupon), count(decode_error) FROM typed.bench").fetchone()
        times.append(time.perf_counter() - start)
        assert got == expected, (got, expected)
    assert views.decoded_files == len(files)  # the second query decoded nothing
    return times[0], times[1]


class _FixedReader(typed.RegistryReader):
    def __init__(self, plan: typed.TypedPlan) -> None:
        super().__init__("http://unused")
        self._by_id = {
            1: {"schema": json.dumps(V1), "schemaType": "AVRO"},
            2: {"schema": json.dumps(V2), "schemaType": "AVRO"},
        }

    def subject_ids(self, subject: str) -> list[int]:
        return [1, 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    p1, p2 = fastavro.parse_schema(V1), fastavro.parse_schema(V2)
    now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    values = []
    for i in range(args.records):
        rec = {
            "id": i,
            "item": f"item-{i % 100}",
            "at": now,
            "price": decimal.Decimal("12.34"),
            "tags": ["a", "b"],
            "buyer": {"name": "ada"},
            "note": None,
            "qty": i % 7,
        }
        values.append(_frame(1, p1, rec) if i % 2 else _frame(2, p2, {**rec, "coupon": "X"}))
    plan = typed.TypedPlan(
        {
            1: typed.writer_schema(1, "AVRO", json.dumps(V1)),
            2: typed.writer_schema(2, "AVRO", json.dumps(V2)),
        }
    )
    con = duckdb.connect()
    con.register("src", pa.table({"value_bytes": pa.array(values, pa.binary())}))
    con.execute("CREATE TABLE t AS SELECT * FROM src")
    con.create_function(
        "decode_typed",
        plan.decode_column,
        [duckdb.sqltype("BLOB")],
        duckdb.sqltype(typed.duckdb_type(plan.result_type)),
        type="arrow",
        null_handling="special",
        side_effects=False,
    )
    start = time.perf_counter()
    scan = con.execute("SELECT sum(octet_length(value_bytes)) FROM t").fetchone()
    scan_s = time.perf_counter() - start
    start = time.perf_counter()
    got = con.execute(
        "SELECT sum(d.fields.qty), count(d.fields.coupon), count(d.decode_error) "
        "FROM (SELECT decode_typed(value_bytes) AS d FROM t)"
    ).fetchone()
    decode_s = time.perf_counter() - start
    assert got is not None and got[2] == 0 and scan is not None
    first_s, second_s = _sidecar_queries(con, plan, values, got)
    result = {
        "records": args.records,
        "decode_s": round(decode_s, 3),
        "decode_records_per_s": round(args.records / decode_s),
        "scan_records_per_s": round(args.records / max(scan_s, 1e-9)),
        "sidecar_first_query_s": round(first_s, 3),
        "sidecar_first_query_records_per_s": round(args.records / first_s),
        "sidecar_second_query_s": round(second_s, 3),
        "sidecar_second_query_records_per_s": round(args.records / second_s),
    }
    print(f"{'records':>10} {'decode s':>9} {'decoded rec/s':>14} {'plain scan rec/s':>17}")
    print(
        f"{args.records:>10} {decode_s:>9.2f} {result['decode_records_per_s']:>14,} {result['scan_records_per_s']:>17,}"
    )
    print(
        f"typed sidecars: first query {first_s:.2f} s ({result['sidecar_first_query_records_per_s']:,} rec/s), "
        f"second query {second_s:.2f} s ({result['sidecar_second_query_records_per_s']:,} rec/s)"
    )
    out = Path(__file__).resolve().parent / "results" / f"typed-sql-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
