"""A full simulated hour of trickle traffic into one partition's Iceberg table (issue 17), on a
simulated clock: how many data files the small-file merging leaves.

    python benchmarks/open_tables_hour.py                      # 60 simulated minutes, 2 records/s
    python benchmarks/open_tables_hour.py --minutes 10 --rate 5

`benchmarks/open_tables.py --trickle-seconds` runs a real broker with every interval shortened, and
counts as simulated time only the commits that happened (a loaded 2-core machine commits far less
often than asked, so its hour was minutes). Here the same code runs in one process, driven by a
clock that advances one second per step: each step appends ``rate`` records to a `PartitionLog`,
rewrites its tail file (`PartitionLog.write_tails`, as the broker's converter does every second)
and runs one Iceberg commit round (`iceberg_tables.publish`, the committer's own entry point) with
the broker's default settings: a commit every second, merge after 60 s (``iceberg_merge_age_ms``)
of runs of at least 10 files, and the table's default snapshot expiry
(`iceberg_tables.TABLE_PROPERTIES`). ``time.time`` and ``time.monotonic`` are the simulated clock
in this process (pyiceberg's snapshot timestamps included) and each new data file's mtime is set
to it (the merge's age test reads mtimes). So the figure covers exactly
``minutes`` of commits whatever the machine's load; CPU time is what it costs. Prints the data files
in the current snapshot and on disk at the end, the peak on disk, the table's metadata files on disk
(``*.metadata.json``, and Avro manifests and manifest lists) at the end and their peak, the snapshots
kept, each commit round's CPU (``time.process_time`` around `publish`: the committer's threads too)
as p50/p99 over the first and the last five simulated minutes, and rows vs distinct offsets (every
record once); writes ``results/open_tables_hour-<ts>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from workbench.open_tables import NAMESPACE, open_catalog
from workbench.storage import LogConfig, PartitionLog
from workbench.storage.iceberg_tables import MAX_SNAPSHOT_AGE, _partition_files, publish


def _batch(first: int, n: int, ts_ms: int) -> bytes:
    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
    for i in range(n):
        b.append(i, ts_ms, None, b'{"n": %d}' % (first + i), [])
    return bytes(b.build())


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run(minutes: float, rate: int) -> dict:
    real_time, real_monotonic = time.time, time.monotonic
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = real_monotonic()
    sim = [real_time()]
    time.time = lambda: sim[0]  # type: ignore[assignment]
    time.monotonic = lambda: sim[0]  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as d:
            directory = Path(d) / "broker-1" / "topics" / "trickle" / "partition=0"
            root = Path(d) / "iceberg"
            log = PartitionLog(directory, LogConfig(), topic="trickle", partition=0)
            job = {
                "iceberg": True,
                "root": str(root),
                "topic": "trickle",
                "partition": 0,
                "directory": str(directory),
                "log_start_offset": 0,
                "merge_age_ms": 60_000,  # the broker's defaults (BrokerConfig)
                "merge_min_files": 10,
                "compacted": False,
            }
            data = root / "trickle" / "data"
            metadata = root / "trickle" / "metadata"
            stamped: set[str] = set()
            commits = merges = peak = records = peak_json = peak_avro = 0
            round_cpu: list[float] = []
            for _step in range(int(minutes * 60)):
                sim[0] += 1.0
                log.append(_batch(records, rate, int(sim[0] * 1000)))
                records += rate
                log.write_tails()
                log.unlink_superseded()
                c0 = time.process_time()
                answer = publish(job)
                round_cpu.append(time.process_time() - c0)
                if not answer.get("ok"):
                    raise RuntimeError(answer)
                commits += bool(answer.get("committed"))
                merges += bool(answer.get("merged"))
                names = [p for p in data.glob("p*.parquet")]
                for p in names:
                    if p.name not in stamped:  # written in this step: its age starts now (simulated)
                        os.utime(p, (sim[0], sim[0]))
                        stamped.add(p.name)
                peak = max(peak, len(names))
                if _step % 10 == 0 or _step == int(minutes * 60) - 1:  # a listing every 10 s is enough for a peak
                    peak_json = max(peak_json, len(list(metadata.glob("*.metadata.json"))))
                    peak_avro = max(peak_avro, len(list(metadata.glob("*.avro"))))
            table = open_catalog(root).load_table((NAMESPACE, "trickle"))
            offsets = table.scan(selected_fields=("offset",)).to_arrow().column("offset").to_pylist()
            result = {
                "simulated_minutes": round(minutes, 1),
                "rate_per_s": rate,
                "records": records,
                "commits": commits,
                "merges": merges,
                "snapshots_kept": len(table.snapshots()),
                "current_data_files": len(_partition_files(table, 0)),
                "data_files_on_disk": len(list(data.glob("p*.parquet"))),
                "peak_data_files_on_disk": peak,
                "metadata_json_on_disk": len(list(metadata.glob("*.metadata.json"))),
                "peak_metadata_json_on_disk": peak_json,
                "avro_files_on_disk": len(list(metadata.glob("*.avro"))),
                "peak_avro_files_on_disk": peak_avro,
                "manifests_in_current_snapshot": len(table.current_snapshot().manifests(table.io)),
                "max_snapshot_age_ms": int(table.properties.get(MAX_SNAPSHOT_AGE, 0)),
                "commit_cpu_ms_first_5min_p50": round(_pct(round_cpu[:300], 0.5) * 1000, 1),
                "commit_cpu_ms_first_5min_p99": round(_pct(round_cpu[:300], 0.99) * 1000, 1),
                "commit_cpu_ms_last_5min_p50": round(_pct(round_cpu[-300:], 0.5) * 1000, 1),
                "commit_cpu_ms_last_5min_p99": round(_pct(round_cpu[-300:], 0.99) * 1000, 1),
                "commit_cpu_s_total": round(sum(round_cpu), 1),
                "rows": len(offsets),
                "distinct_offsets": len(set(offsets)),
            }
            log.close()
    finally:
        time.time, time.monotonic = real_time, real_monotonic
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1)
    result["wall_s"] = round(real_monotonic() - wall0, 1)
    result["loadavg_1m"] = os.getloadavg()[0]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60, help="simulated minutes (one commit round per second)")
    ap.add_argument("--rate", type=int, default=2, help="records per simulated second")
    args = ap.parse_args()
    r = run(args.minutes, args.rate)
    print(json.dumps(r), flush=True)
    print(
        f"{r['simulated_minutes']} simulated minutes, {r['records']} records at {r['rate_per_s']}/s: "
        f"{r['commits']} commits, {r['merges']} merges; {r['current_data_files']} data files in the current "
        f"snapshot, {r['data_files_on_disk']} on disk (peak {r['peak_data_files_on_disk']}; one per commit would "
        f"be {r['commits']}); rows {r['rows']}, distinct offsets {r['distinct_offsets']}; "
        f"{r['cpu_s']} s CPU, {r['wall_s']} s wall, load average {r['loadavg_1m']:.1f}",
        flush=True,
    )
    print(f"| {'':38} | end | peak |\n| --- | --- | --- |")
    print(f"| data files in the current snapshot     | {r['current_data_files']} | |")
    print(f"| data files on disk                     | {r['data_files_on_disk']} | {r['peak_data_files_on_disk']} |")
    print(f"| *.metadata.json on disk | {r['metadata_json_on_disk']} | {r['peak_metadata_json_on_disk']} |")
    print(f"| Avro manifests + manifest lists on disk | {r['avro_files_on_disk']} | {r['peak_avro_files_on_disk']} |")
    print(f"| snapshots kept                         | {r['snapshots_kept']} | |")
    print(f"| manifests in the current snapshot      | {r['manifests_in_current_snapshot']} | |")
    print(
        f"commit round CPU p50/p99: first 5 simulated minutes {r['commit_cpu_ms_first_5min_p50']:.0f}/"
        f"{r['commit_cpu_ms_first_5min_p99']:.0f} ms, last 5 {r['commit_cpu_ms_last_5min_p50']:.0f}/"
        f"{r['commit_cpu_ms_last_5min_p99']:.0f} ms (snapshot expiry {r['max_snapshot_age_ms'] / 60000:g} min); "
        f"rows == distinct offsets: {r['rows'] == r['distinct_offsets'] == r['records']}",
        flush=True,
    )
    out = HERE / "results" / f"open_tables_hour-{args.rate}rps-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(r, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
