"""Run in tests/interop/duckdb_iceberg/.venv (DuckDB 1.5.5 with its iceberg extension, from PyPI wheels):
answer each SQL query of argv[1] (a JSON list) with its rows, as one JSON line. No workbench code here."""

import glob
import importlib
import json
import os
import sys

import duckdb


def extension(name: str) -> str:
    module = importlib.import_module(f"duckdb_extension_{name}")
    return glob.glob(os.path.join(os.path.dirname(module.__file__), "extensions", "*", f"{name}.duckdb_extension"))[0]


con = duckdb.connect()
for name in ("avro", "iceberg"):  # avro first: iceberg would try to download it
    con.execute(f"LOAD '{extension(name)}'")
out = []
for sql in json.loads(sys.argv[1]):
    out.append([list(row) for row in con.execute(sql).fetchall()])
print(json.dumps({"version": duckdb.__version__, "results": out}, default=str))
