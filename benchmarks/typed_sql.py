"""Typed-table decoding speed: Confluent-framed Avro values decoded by `typed."<topic>"`'s UDF.

    python benchmarks/typed_sql.py [--records N]

No cluster: N framed values (an 8-field Avro record, two schema versions) go into a DuckDB table,
and the typed view's UDF (`workbench.sql.typed.TypedPlan.decode_column`) decodes them in a full
`SELECT sum(...)`. Prints records/s of the decode and of a plain scan of the same table, and
writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import json
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
    result = {
        "records": args.records,
        "decode_s": round(decode_s, 3),
        "decode_records_per_s": round(args.records / decode_s),
        "scan_records_per_s": round(args.records / max(scan_s, 1e-9)),
    }
    print(f"{'records':>10} {'decode s':>9} {'decoded rec/s':>14} {'plain scan rec/s':>17}")
    print(
        f"{args.records:>10} {decode_s:>9.2f} {result['decode_records_per_s']:>14,} {result['scan_records_per_s']:>17,}"
    )
    out = Path(__file__).resolve().parent / "results" / f"typed-sql-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
