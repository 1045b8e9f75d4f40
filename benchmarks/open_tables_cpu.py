"""CPU per record of the open-tables work, in one process (robust on a loaded machine, unlike
ack -> visible latency): an Iceberg commit (`iceberg_tables.publish`) of 10,000 new records from
a tail file growing to 130,000 rows (a 16 MiB segment of ~100-byte records), and the tail
rewrite itself, for the tail file layout before issue 17's change (122,880-row groups,
dictionary) and after (16,384-row groups, no dictionary).

    python benchmarks/open_tables_cpu.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests" / "unit"))

from test_iceberg_tables import tier_rows

from workbench.storage import iceberg_tables, parquet_tier

ROWS = 10_000  # records per commit (one second at 10k records/s)


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def run(row_groups: int, dictionary: bool) -> tuple[float, float]:
    parquet_tier.TAIL_ROW_GROUP_ROWS, parquet_tier.TAIL_DICTIONARY = row_groups, dictionary
    d = Path(tempfile.mkdtemp())
    src = d / "partition=0"
    src.mkdir()
    job = {"root": str(d / "iceberg"), "topic": "t", "partition": 0, "directory": str(src)}
    tail = src / f"{0:020d}.parquet"
    parquet_tier.write_table_file(tail, 0, ROWS, tier_rows(0, ROWS), 0, topic="t", tail=True)
    iceberg_tables.publish(job)  # the table exists, imports are warm
    commit = rewrite = 0.0
    for i in range(1, 13):
        hi = (i + 1) * ROWS
        rows = tier_rows(0, hi)
        c0 = cpu()
        parquet_tier.write_table_file(tail, 0, hi, rows, 0, topic="t", tail=True)
        rewrite += cpu() - c0
        c0 = cpu()
        answer = iceberg_tables.publish(job)
        commit += cpu() - c0
        assert answer["rows"] == ROWS, answer
    n = 12 * ROWS
    return commit / n * 1e6, rewrite / n * 1e6


def main() -> int:
    for rnd in range(2):
        for name, layout in (("before", (122_880, True)), ("after", (16_384, False))):
            commit, rewrite = run(*layout)
            print(
                f"round {rnd} {name:<6} (row groups {layout[0]}, dictionary {layout[1]}): "
                f"Iceberg commit {commit:.2f} us CPU/record, tail rewrite {rewrite:.2f} us CPU/record",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
