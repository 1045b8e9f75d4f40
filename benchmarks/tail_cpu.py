"""CPU per ingested record of the tail files (issue 17) while one segment fills, two trees side by side.

    python benchmarks/tail_cpu.py --trees before=/tmp/main,after=.          # ABBA, 2 blocks
    python benchmarks/tail_cpu.py --trees after=. --ticks 10 --per-tick 1700

One process per run (``PYTHONPATH`` = the tree), no broker: a `PartitionLog` gets ``--per-tick``
records (batches of 100 records of ~100 bytes, as librdkafka sends them) per tick, and each tick
runs the broker's tail path (`PartitionLog.pending_tails` -> `converter.convert_tail`, the
converter child's own function -> `PartitionLog.install_tail`, up to 3 rounds) in this process. The
figure is this process's CPU time (user + system) inside the tail path, per record appended, so
the machine's load does not inflate it the way it does latencies (pyarrow's import and first use
are warmed up first, untimed). The defaults are one partition
at 10,000 records/s over 6 partitions (1,700 a second) until its 16 MiB segment is nearly full
(85 ticks: ~145k records of ~115 bytes). Also reports the rows written per row ingested and the most tail files at once.
Writes ``results/tail_cpu-<ts>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def one_run(ticks: int, per_tick: int) -> dict:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    from workbench.storage import LogConfig, PartitionLog, converter

    value = b"x" * 90
    with tempfile.TemporaryDirectory() as d:  # warm-up, untimed: pyarrow's import and first use
        log = PartitionLog(Path(d), LogConfig(), topic="t", partition=0)
        b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
        b.append(0, 1_700_000_000_000, b"k", value, [])
        log.append(bytes(b.build()))
        for job in log.pending_tails():
            log.install_tail(job, Path(converter.convert_tail(log.tail_request(job))["path"]))
        log.close()
        converter._tail_cache.clear()
    with tempfile.TemporaryDirectory() as d:
        log = PartitionLog(Path(d), LogConfig(), topic="t", partition=0)
        cpu = 0.0
        rows_written = 0
        most_files = 0
        for _ in range(ticks):
            for _b in range(per_tick // 100):
                b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
                for i in range(100):
                    b.append(i, 1_700_000_000_000 + i, b"k%d" % i, value, [])
                log.append(bytes(b.build()))
            t0 = time.process_time()
            for _round in range(3):
                jobs = log.pending_tails()
                if not jobs:
                    break
                for job in jobs:
                    answer = converter.convert_tail(log.tail_request(job))
                    log.install_tail(job, Path(answer["path"]))
                    rows_written += job.next_offset - getattr(job, "first", job.segment.base_offset)
            cpu += time.process_time() - t0
            most_files = max(most_files, len(log.tail_files()))
        records = log.log_end_offset
        log.close()
    return {
        "records": records,
        "cpu_s": round(cpu, 3),
        "us_per_record": round(cpu * 1e6 / records, 2),
        "rows_written_per_record": round(rows_written / records, 2),
        "most_tail_files": most_files,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", default="after=.", help="name=path,... (each run imports that tree)")
    ap.add_argument("--ticks", type=int, default=85)
    ap.add_argument("--per-tick", type=int, default=1_700)
    ap.add_argument("--pairs", type=int, default=2, help="ABBA blocks over the first two trees")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a run, in its own process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(args.ticks, args.per_tick)))
        return 0
    trees = [tuple(t.split("=", 1)) for t in args.trees.split(",")]
    order = (trees[:1] + trees[1:2] + trees[1:2] + trees[:1]) * args.pairs if len(trees) > 1 else trees * args.pairs
    runs = []
    for name, path in order:
        root = str(Path(path).resolve())
        script = str(Path(root) / "benchmarks" / "tail_cpu.py")
        out = subprocess.run(
            [sys.executable, script, "--one", "--ticks", str(args.ticks), "--per-tick", str(args.per_tick)],
            env={**os.environ, "PYTHONPATH": root},
            capture_output=True,
            text=True,
            check=True,
        )
        r = {"tree": name, **json.loads(out.stdout.splitlines()[-1]), "loadavg_1m": round(os.getloadavg()[0], 1)}
        runs.append(r)
        print(
            f"{name:<8} {r['us_per_record']:>6} us/record  {r['rows_written_per_record']:>5} rows written/record  "
            f"{r['most_tail_files']:>3} files at most  ({r['records']} records; load {r['loadavg_1m']})",
            flush=True,
        )
    result = HERE / "results" / f"tail_cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result.write_text(json.dumps({"ticks": args.ticks, "per_tick": args.per_tick, "runs": runs}, indent=1))
    print(f"wrote {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
