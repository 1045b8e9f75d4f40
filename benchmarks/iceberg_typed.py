"""Typed Iceberg columns: the committer's CPU per record for decoding registry-framed values.

    python -m benchmarks.iceberg_typed [--records N]   (from the repository root)

No cluster: N framed Avro values (the 8-field record of `benchmarks/typed_sql.py`, two versions)
are decoded into typed columns by `workbench.storage.iceberg_typed.IcebergTyping.decode`, the
step a commit of a typed topic adds, and, for comparison, the schema-id scan every commit runs
(`seen_ids`) over the same values and over unframed values. CPU seconds (`time.process_time`),
so the figure holds on a loaded machine. Prints a table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import time
from pathlib import Path

import fastavro
import pyarrow as pa

from benchmarks.typed_sql import V1, V2, _frame
from workbench.schema_registry.arrow_types import writer_schema
from workbench.storage.iceberg_typed import IcebergTyping, seen_ids

RESERVED = {"partition", "offset", "timestamp", "key", "value", "headers", "schema_id", "decode_error"}


def cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    args = ap.parse_args()
    n = args.records
    p1, p2 = fastavro.parse_schema(V1), fastavro.parse_schema(V2)
    now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    values = []
    for i in range(n):
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
    framed = pa.chunked_array([pa.array(values, pa.binary())])
    plain = pa.chunked_array([pa.array([json.dumps({"i": i}).encode() for i in range(n)], pa.binary())])
    writers = {1: writer_schema(1, "AVRO", json.dumps(V1)), 2: writer_schema(2, "AVRO", json.dumps(V2))}
    typing = IcebergTyping(writers, {}, {}, RESERVED)
    decode_s = cpu(lambda: typing.decode(framed))
    cols = typing.decode(framed)
    assert cols["decode_error"].null_count == n and cols["qty"].null_count == 0
    scan_framed_s = cpu(lambda: seen_ids(framed))
    scan_plain_s = cpu(lambda: seen_ids(plain))
    result = {
        "records": n,
        "decode_cpu_us_per_record": decode_s / n * 1e6,
        "seen_ids_framed_cpu_us_per_record": scan_framed_s / n * 1e6,
        "seen_ids_unframed_cpu_us_per_record": scan_plain_s / n * 1e6,
    }
    print(f"{'step':<44} {'CPU µs/record':>14}")
    print(f"{'decode into typed columns (IcebergTyping)':<44} {result['decode_cpu_us_per_record']:>14.2f}")
    print(f"{'schema-id scan, framed values (seen_ids)':<44} {result['seen_ids_framed_cpu_us_per_record']:>14.3f}")
    print(f"{'schema-id scan, unframed values':<44} {result['seen_ids_unframed_cpu_us_per_record']:>14.3f}")
    out = Path(__file__).parent / "results" / "iceberg_typed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
