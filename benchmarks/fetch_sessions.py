"""Fetch sessions (KIP-227) on and off: RF=3 acks=all end-to-end latency at 10k records/s.

    python benchmarks/fetch_sessions.py                    # 10,000 records/s, 8 s, sessions on/off, twice each
    python benchmarks/fetch_sessions.py --rate 2000 --repeats 1 --seconds 5

The switch is the broker config Kafka has for it, `max.incremental.fetch.session.cache.slots`
(`max_incremental_fetch_session_cache_slots`; 0 turns sessions off: every Fetch is a full,
sessionless one). The followers' replica fetchers open sessions when the leader admits them, so
"off" means each follower fetch names every partition it follows and each answer carries every
partition. The consumer is librdkafka's (`perf_client.py e2e-consume`), which fetches sessionless
either way, so what changes is replication: the path acks=all waits on.

Same clients and cluster as `latency_by_rate.py` (6 partitions, RF=3, linger.ms=0, max.in.flight=5,
fetch.wait.max.ms=10), one fresh cluster per run, the runs of both settings interleaved so that a
change in the machine's load hits both. Prints a table with the load average and writes
`results/fetch_sessions-<ts>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from latency_by_rate import measure

HERE = Path(__file__).resolve().parent

SETTINGS = {
    "on": {"max_incremental_fetch_session_cache_slots": 1000},  # Kafka's default
    "off": {"max_incremental_fetch_session_cache_slots": 0},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=10000)
    parser.add_argument("--rf", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    runs = []
    for i in range(args.repeats):
        for name in ("on", "off") if i % 2 == 0 else ("off", "on"):
            load_before = os.getloadavg()
            row = measure(args.rf, args.rate, args.seconds, args.warmup, SETTINGS[name])
            row.update(sessions=name, repeat=i, loadavg_before=[round(x, 2) for x in load_before])
            row["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
            runs.append(row)
    print(
        f"{'sessions':>8} {'run':>3} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'ack p50':>8} {'ack p99':>8} "
        f"{'cores busy':>10} {'load 1m':>8}"
    )
    for r in runs:
        print(
            f"{r['sessions']:>8} {r['repeat']:>3} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} "
            f"{r['ack_p50_ms']:>8} {r['ack_p99_ms']:>8} {r['broker_cores_busy']:>10} {r['loadavg_before'][0]:>8}"
        )
    summary = {}
    for name in SETTINGS:
        mine = [r for r in runs if r["sessions"] == name]
        summary[name] = {
            k: round(statistics.median(r[k] for r in mine), 2)
            for k in ("p50_ms", "p99_ms", "ack_p50_ms", "ack_p99_ms", "broker_cores_busy")
        }
        print(f"median, sessions {name}: {summary[name]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"fetch_sessions-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "rate": args.rate,
                "rf": args.rf,
                "cpus": os.cpu_count(),
                "runs": runs,
                "median": summary,
            },
            indent=1,
        )
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
