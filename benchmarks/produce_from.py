"""Records per second of `cluster.produce_from(sql, topic=...)` (issue 18: replay and redrive).

    python benchmarks/produce_from.py                     # 100 000 JSON records, 1 broker
    python benchmarks/produce_from.py --records 20000 --brokers 3

Fills a source topic, then times `produce_from("SELECT * FROM source", topic="copy")` (query +
produce + every acknowledgement), and a paced run at `--rate` to show the rate is kept. Prints a
table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's workbench

from workbench import Cluster


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--brokers", type=int, default=1)
    ap.add_argument("--rate", type=float, default=2000.0, help="records/s of the paced run")
    ap.add_argument("--paced-records", type=int, default=4000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="redrive-") as tmp, Cluster(brokers=args.brokers, data_dir=tmp) as c:
        c.create_topic("source", partitions=4)
        producer = c.producer(linger_ms=20)
        for i in range(args.records):
            producer.send("source", {"id": i, "kind": "click", "amount": i % 1000}, key=str(i % 1000))
        producer.flush()
        for name, query, rate in (
            ("unpaced", 'SELECT * FROM "source"', None),
            ("paced", f'SELECT * FROM "source" LIMIT {args.paced_records}', args.rate),
        ):
            started = time.perf_counter()
            result = c.produce_from(query, topic=f"copy-{name}", rate=rate)
            total = time.perf_counter() - started
            rows.append(
                {
                    "run": name,
                    "records": result.records,
                    "rate_asked": rate,
                    "produce_s": result.seconds,
                    "total_s": total,
                    "records_per_s": result.records / total,
                }
            )
    print(f"{'run':>8} {'records':>8} {'asked/s':>8} {'total s':>8} {'records/s':>10}")
    for r in rows:
        asked = f"{r['rate_asked']:.0f}" if r["rate_asked"] else "-"
        print(f"{r['run']:>8} {r['records']:>8} {asked:>8} {r['total_s']:>8.2f} {r['records_per_s']:>10.0f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}-produce-from.json"
    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), "brokers": args.brokers}
    path.write_text(json.dumps({"meta": meta, "produce_from": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
