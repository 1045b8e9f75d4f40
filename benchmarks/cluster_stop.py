"""How long `cluster.stop()` takes (issue 18: it was 5–7 s for three brokers, the slowest cell of
most notebooks; the goal is under a second).

    python benchmarks/cluster_stop.py                  # 3 brokers, 5 runs
    python benchmarks/cluster_stop.py --brokers 1 3 5 --runs 3

Each run starts a cluster, creates a replicated topic, produces a few thousand records (so
brokers have leaderships, segments and groups to close), then times `stop()` until every broker
process has exited. Prints a table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's workbench

from workbench import Cluster


def one_run(brokers: int, records: int) -> float:
    with tempfile.TemporaryDirectory(prefix="stopbench-") as tmp:
        cluster = Cluster(brokers=brokers, data_dir=tmp)
        try:
            cluster.create_topic("events", partitions=6, replication_factor=min(3, brokers))
            producer = cluster.producer()
            for i in range(records):
                producer.send("events", {"i": i}, key=str(i % 97))
            producer.flush()
            consumer = cluster.consumer("bench", "events")
            consumer.read(100, timeout=10)
            consumer.close()
            pids = [p for p in cluster.broker_pids().values() if p]
            started = time.perf_counter()
            cluster.stop()
            elapsed = time.perf_counter() - started
            assert all(not Path(f"/proc/{p}").exists() or _zombie(p) for p in pids), "a broker outlived stop()"
            return elapsed
        finally:
            cluster.stop()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", type=int, nargs="+", default=[3])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    rows = []
    for n in args.brokers:
        times = [one_run(n, args.records) for _ in range(args.runs)]
        rows.append(
            {
                "brokers": n,
                "runs": len(times),
                "median_s": statistics.median(times),
                "max_s": max(times),
                "min_s": min(times),
                "all_s": times,
            }
        )
    print(f"{'brokers':>7} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7}")
    for r in rows:
        print(f"{r['brokers']:>7} {r['runs']:>4} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}-cluster-stop.json"
    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), "records": args.records}
    path.write_text(json.dumps({"meta": meta, "cluster_stop": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
