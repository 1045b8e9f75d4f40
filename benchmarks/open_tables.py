"""Ack -> visible in the open tables (issue 17): plain DuckDB over the files, and pyiceberg; the
converter's CPU per record and peak RSS.

    python benchmarks/open_tables.py                  # 10 and 10,000 rec/s, both modes, 20 s each, ~4 min
    python benchmarks/open_tables.py --seconds 10 --rates 10000 --modes default

For each mode and rate a one-broker cluster (RF=1, one partition) gets records from
confluent-kafka; a delivery callback notes each record's ack time. Modes: ``default`` (default
settings: tail files every second, no Iceberg committer) and ``iceberg`` (``iceberg_commit_ms``
1000: also an Iceberg commit at most every second). Watchers poll every 50 ms:

* **plain DuckDB**: a fresh ``duckdb.connect('<data_dir>/workbench.duckdb', read_only=True)``
  and ``SELECT max("offset") FROM <topic>`` (the catalog's view over the brokers' Parquet files,
  `workbench.sql.open_views`; `cluster.sql` ran once beforehand to write the catalog);
* **pyiceberg** (iceberg mode): ``catalog.load_table(...)`` and the current snapshot's ``workbench.to-offset``
  (what a scan of that snapshot returns: tests/integration/test_open_tables.py checks that a
  snapshot is exactly that prefix).

A record is visible at the first poll that reaches its offset. Converter: the broker's
converter child processes (found under the broker's pid in /proc), CPU seconds (utime+stime)
over the run divided by records, and the largest VmHWM. Prints a table and writes
``results/open_tables-<ts>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import duckdb
from confluent_kafka import Producer
from proc_stats import children, cpu_s

from workbench import Cluster
from workbench.open_tables import NAMESPACE, iceberg_root, open_catalog


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class ConverterWatch:
    """CPU seconds and peak RSS of a broker's converter children (each pid sampled until it goes)."""

    def __init__(self, broker_pid: int) -> None:
        self.broker_pid = broker_pid
        self.cpu: dict[int, float] = {}
        self.start_cpu: dict[int, float] = {}
        self.hwm = 0.0
        self.committer: set[int] = set()  # the Iceberg committer runs at nice 10, the tail converter at 0

    def sample(self) -> None:
        for pid in children(self.broker_pid):
            c = cpu_s(pid)
            if c is None:
                continue
            self.start_cpu.setdefault(pid, c if not self.cpu else 0.0)
            self.cpu[pid] = c
            self.hwm = max(self.hwm, _hwm_mb(pid) or 0.0)
            if _nice(pid) == 10:  # ParquetConverter(nice=10) in the broker
                self.committer.add(pid)

    def cpu_seconds(self, committer: bool | None = None) -> float:
        return sum(
            self.cpu[p] - self.start_cpu.get(p, 0.0)
            for p in self.cpu
            if committer is None or (p in self.committer) == committer
        )


def _nice(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return 0


def run(rate: int, seconds: float, iceberg: bool) -> dict:
    config = {"iceberg_commit_ms": 1000} if iceberg else {}
    with tempfile.TemporaryDirectory() as d, Cluster(brokers=1, data_dir=d, config=config) as c:
        topic = "fresh"
        c.create_topic(topic, partitions=1, replication_factor=1)
        warm = Producer({"bootstrap.servers": c.bootstrap_servers})
        warm.produce(topic, value=b'{"n": -1}', partition=0)  # offset 0: table and catalog exist
        warm.flush(10)
        c.sql(f"SELECT count(*) FROM {topic}")  # writes workbench.duckdb
        catalog_path = Path(d) / "workbench.duckdb"
        catalog = open_catalog(iceberg_root(Path(d))) if iceberg else None
        deadline = time.monotonic() + 120
        while iceberg and time.monotonic() < deadline:  # the first commit (converter start, pyiceberg import)
            try:
                snap = catalog.load_table((NAMESPACE, topic)).current_snapshot()
                if snap is not None:
                    break
            except Exception:
                pass
            time.sleep(0.2)
        [broker_pid] = [p for p in c.broker_pids().values() if p]
        conv = ConverterWatch(broker_pid)
        conv.sample()
        acks: dict[int, float] = {}
        seen: dict[str, dict[int, float]] = {"duckdb": {}, "pyiceberg": {}} if iceberg else {"duckdb": {}}
        stop = threading.Event()
        stop_at = [0.0]

        def done(name: str, top: int) -> bool:
            return stop.is_set() and (top >= max(acks, default=-1) or time.monotonic() > stop_at[0] + 60)

        def mark(name: str, top: int, last: int) -> int:
            now = time.monotonic()
            for o in range(last + 1, top + 1):
                seen[name][o] = now
            return max(top, last)

        def watch_duckdb() -> None:
            last = 0
            while not done("duckdb", last):
                conv.sample()
                con = duckdb.connect(str(catalog_path), read_only=True)
                try:
                    top = con.execute(f'SELECT max("offset") FROM {topic}').fetchone()[0]
                finally:
                    con.close()
                if top is not None and top > last:
                    last = mark("duckdb", top, last)
                time.sleep(0.05)

        def watch_iceberg() -> None:
            last = 0
            while not done("pyiceberg", last):
                snap = catalog.load_table((NAMESPACE, topic)).current_snapshot()
                if snap is not None:
                    top = int(snap.summary.additional_properties["workbench.to-offset"]) - 1
                    if top > last:
                        last = mark("pyiceberg", top, last)
                conv.sample()
                time.sleep(0.05)

        watchers = (watch_duckdb, watch_iceberg) if iceberg else (watch_duckdb,)
        threads = [threading.Thread(target=f, daemon=True) for f in watchers]
        for t in threads:
            t.start()
        p = Producer({"bootstrap.servers": c.bootstrap_servers, "linger.ms": 5, "acks": "all"})

        def cb(err, msg) -> None:
            if err is None:
                acks[msg.offset()] = time.monotonic()

        t0 = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            p.produce(
                topic,
                value=b'{"n": %d, "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}' % i,
                partition=0,
                on_delivery=cb,
            )
            p.poll(0)
        p.flush(30)
        stop_at[0] = time.monotonic()
        stop.set()
        for t in threads:
            t.join(90)
        conv.sample()
        out: dict = {"mode": "iceberg" if iceberg else "default", "rate": rate, "records": len(acks)}
        for name, vis in seen.items():
            lat = [vis[o] - acks[o] for o in acks if o in vis]
            out[name] = {
                "visible": len(lat),
                "p50_s": round(_pct(lat, 0.5), 3),
                "p99_s": round(_pct(lat, 0.99), 3),
                "max_s": round(max(lat), 3) if lat else None,
            }
        out["snapshots"] = len(catalog.load_table((NAMESPACE, topic)).snapshots()) if iceberg else 0
        out["data_files"] = len(list((Path(d) / "iceberg" / topic / "data").glob("p*.parquet")))
        cpu = conv.cpu_seconds()
        out["converter_cpu_s"] = round(cpu, 2)
        out["converter_cpu_us_per_record"] = round(cpu / max(1, len(acks)) * 1e6, 1)
        out["tail_cpu_us_per_record"] = round(conv.cpu_seconds(False) / max(1, len(acks)) * 1e6, 1)
        out["commit_cpu_us_per_record"] = round(conv.cpu_seconds(True) / max(1, len(acks)) * 1e6, 1)
        out["loadavg_1m"] = os.getloadavg()[0]
        out["converter_peak_rss_mb"] = round(conv.hwm, 1)
        return out


def trickle(seconds: float, speedup: float, rate: float, simulated_minutes: float = 0) -> dict:
    """Small-file merging (issue 17): trickle traffic into one partition with the commit interval,
    merge age and snapshot expiry all ``speedup`` times shorter than the defaults (a commit every
    1 s, merge after 60 s, snapshots kept 10 min), so each commit stands for one second of real
    trickle traffic (a loaded machine commits less often than asked: the commits are counted, as
    the one-commit data files seen). Prints the table's current data files, the files on disk
    (merged members wait for the snapshots that reference them to expire) and the commit count
    (what one file per commit would have left).

    Simulated time is what the commits covered, never the wall clock times the speedup: each commit
    stands for one second at the defaults, so ``simulated_s`` is the commit count. With
    ``simulated_minutes`` the traffic runs until that many commits happened (``seconds`` is then a
    wall-clock cap); ``commit_rate_ratio`` is commits per wall second over the ``speedup`` asked (1.0:
    the commits kept up, so merge age and expiry, scaled in wall time, covered as many commits as at
    the defaults; below 1, fewer commits than at the defaults fell inside each age: fewer young files
    than a real trickle would leave)."""
    from workbench.storage.iceberg_tables import MAX_SNAPSHOT_AGE, _partition_files

    config = {
        "iceberg_commit_ms": int(1000 / speedup),
        "iceberg_merge_age_ms": int(60_000 / speedup),
        "iceberg_merge_min_files": 10,
    }
    with tempfile.TemporaryDirectory() as d, Cluster(brokers=1, data_dir=d, config=config) as c:
        topic = "trickle"
        c.create_topic(topic, partitions=1, replication_factor=1)
        p = Producer({"bootstrap.servers": c.bootstrap_servers, "linger.ms": 0, "acks": "all"})
        p.produce(topic, value=b"first", partition=0)
        p.flush(30)
        catalog = open_catalog(iceberg_root(Path(d)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                table = catalog.load_table((NAMESPACE, topic))
                break
            except Exception:
                time.sleep(0.2)
        table.transaction().set_properties({MAX_SNAPSHOT_AGE: str(int(600_000 / speedup))}).commit_transaction()
        acked = [1]

        def cb(err, msg) -> None:
            if err is None:
                acked[0] += 1

        data = Path(d) / "iceberg" / topic / "data"
        commits: set[str] = set()  # one-commit data files ever seen (members go only after expiry)
        peak = [0]

        def count_files() -> None:
            names = [p.name for p in data.glob("p*.parquet")]
            commits.update(n for n in names if n.count("-") == 1)
            peak[0] = max(peak[0], len(names))

        t0 = time.monotonic()
        i = 0
        next_count = t0
        target = int(simulated_minutes * 60)
        while time.monotonic() - t0 < seconds and (not target or len(commits) < target):
            if time.monotonic() >= next_count:
                count_files()
                next_count = time.monotonic() + 0.5
            p.produce(topic, value=b'{"n": %d}' % i, partition=0, on_delivery=cb)
            p.poll(0)
            i += 1
            time.sleep(1 / (rate * speedup))
        wall = time.monotonic() - t0
        p.flush(30)
        time.sleep(3 * config["iceberg_commit_ms"] / 1000 + 2)
        count_files()
        table = catalog.load_table((NAMESPACE, topic))
        summaries = [s.summary.additional_properties for s in table.snapshots()]
        rows = table.scan(selected_fields=("offset",)).to_arrow().column("offset").to_pylist()
        return {
            "seconds": seconds,
            "speedup": speedup,
            "commits": len(commits),
            "wall_s": round(wall, 1),
            "simulated_s": round(len(commits) * 1.0),  # the defaults commit once a second
            "simulated_minutes": round(len(commits) / 60, 1),
            "commit_rate_ratio": round(len(commits) / wall / speedup, 2),
            "records": acked[0],
            "snapshots_kept": len(summaries),
            "merges_in_kept_snapshots": sum(1 for s in summaries if s.get("workbench.operation") == "merge"),
            "current_data_files": len(_partition_files(table, 0)),
            "data_files_on_disk": len(list(data.glob("p*.parquet"))),
            "peak_data_files_on_disk": peak[0],
            "rows": len(rows),
            "distinct_offsets": len(set(rows)),
            "loadavg_1m": os.getloadavg()[0],
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of traffic per rate")
    ap.add_argument("--rates", type=int, nargs="+", default=[10, 10_000])
    ap.add_argument("--modes", nargs="+", choices=("default", "iceberg"), default=["default", "iceberg"])
    ap.add_argument("--trickle-seconds", type=float, default=0, help="only the small-file merge run, this long")
    ap.add_argument("--speedup", type=float, default=12, help="trickle run: commit, merge and expiry times / this")
    ap.add_argument("--trickle-rate", type=float, default=2, help="trickle run: records per simulated second")
    ap.add_argument(
        "--simulated-minutes",
        type=float,
        default=0,
        help="trickle run: go on until the commits cover this many simulated minutes (--trickle-seconds: wall cap)",
    )
    args = ap.parse_args()
    if args.trickle_seconds:
        r = trickle(args.trickle_seconds, args.speedup, args.trickle_rate, args.simulated_minutes)
        print(json.dumps(r), flush=True)
        print(
            f"trickle: {r['commits']} commits = {r['simulated_minutes']} simulated minutes of 1-commit/s trickle "
            f"({r['wall_s']} s wall at x{r['speedup']:g}; "
            f"commits kept {r['commit_rate_ratio']:.0%} of the asked rate), "
            f"{r['records']} records: {r['current_data_files']} data files in the current "
            f"snapshot, {r['data_files_on_disk']} on disk (peak {r['peak_data_files_on_disk']}; one per commit "
            f"would be {r['commits']}); rows {r['rows']}, distinct offsets "
            f"{r['distinct_offsets']}; load average {r['loadavg_1m']:.1f}",
            flush=True,
        )
        out = HERE / "results" / f"open_tables_trickle-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(r, indent=2))
        print(f"wrote {out}")
        return 0
    results = []
    for mode, rate in [(m, r) for m in args.modes for r in args.rates]:
        r = run(rate, args.seconds, mode == "iceberg")
        results.append(r)
        for name in ("duckdb", "pyiceberg"):
            if name not in r:
                continue
            v = r[name]
            print(
                f"{mode:<7} {rate:>6} rec/s  ack->visible in {name:<9}: "
                f"p50 {v['p50_s']:.3f} s  p99 {v['p99_s']:.3f} s  "
                f"max {v['max_s']} s  ({v['visible']}/{r['records']})",
                flush=True,
            )
        print(
            f"{mode:<7} {rate:>6} rec/s  converter: {r['converter_cpu_us_per_record']} us CPU/record "
            f"({r['converter_cpu_s']} s: tails {r['tail_cpu_us_per_record']}, "
            f"Iceberg commits {r['commit_cpu_us_per_record']} us/record), peak RSS {r['converter_peak_rss_mb']} MB; "
            f"{r['snapshots']} snapshots, {r['data_files']} data files; load average {r['loadavg_1m']:.1f}",
            flush=True,
        )
    out = HERE / "results" / f"open_tables-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"seconds": args.seconds, "runs": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
