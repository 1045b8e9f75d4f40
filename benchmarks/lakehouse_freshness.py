"""Ack -> visible in plain DuckDB over the broker's Parquet files (issue 17), and its cost.

    python benchmarks/lakehouse_freshness.py                 # idle trickle + 10k rec/s, ~1.5 min
    python benchmarks/lakehouse_freshness.py --seconds 10

For each case a one-broker cluster (RF=1, default 16 MiB segments, so nothing seals) gets
records from confluent-kafka at a fixed rate; a delivery callback notes each record's ack time,
and a watcher polls ``SELECT max("offset") FROM read_parquet('<partition dir>/*.parquet')`` in
plain DuckDB every 50 ms; a record is visible at the first poll whose max offset reaches it.
Cases: ``idle`` (10 rec/s) and ``10k`` (10,000 rec/s) with tail files on (`parquet_tail_ms`
1000, the default), and a flat-out produce run with tail files on and off, side by side, for
the throughput cost. Prints a table and writes ``results/lakehouse_freshness-<ts>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import duckdb
from confluent_kafka import Producer

from workbench import Cluster


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def freshness(rate: int, seconds: float, tail_ms: int) -> dict:
    with tempfile.TemporaryDirectory() as d, Cluster(brokers=1, data_dir=d, config={"parquet_tail_ms": tail_ms}) as c:
        topic = "fresh"
        c.create_topic(topic, partitions=1, replication_factor=1)
        pdir = next(Path(d).glob(f"broker-*/topics/{topic}/partition=0"), None)
        acks: dict[int, float] = {}
        visible: dict[int, float] = {}
        stop = threading.Event()

        def watch() -> None:
            con = duckdb.connect()
            seen = -1
            while not stop.is_set() or seen < max(acks, default=-1):
                nonlocal pdir
                if pdir is None:
                    pdir = next(Path(d).glob(f"broker-*/topics/{topic}/partition=0"), None)
                if pdir is not None and any(pdir.glob("*.parquet")):
                    top = con.execute(f"select max(\"offset\") from read_parquet('{pdir}/*.parquet')").fetchone()[0]
                    now = time.monotonic()
                    if top is not None and top > seen:
                        for o in range(seen + 1, top + 1):
                            visible[o] = now
                        seen = top
                if stop.is_set() and time.monotonic() > stop_at[0] + 30:
                    break
                time.sleep(0.05)

        stop_at = [0.0]
        w = threading.Thread(target=watch, daemon=True)
        w.start()
        p = Producer({"bootstrap.servers": c.bootstrap_servers, "linger.ms": 5, "acks": "all"})

        def cb(err, msg) -> None:
            if err is None:
                acks[msg.offset()] = time.monotonic()

        t0 = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.monotonic()
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
        w.join(40)
        lat = [visible[o] - acks[o] for o in acks if o in visible]
        files = len(list(pdir.glob("*.parquet"))) if pdir else 0
        return {
            "rate": rate,
            "records": len(acks),
            "visible": len(lat),
            "p50_s": round(_pct(lat, 0.5), 3),
            "p99_s": round(_pct(lat, 0.99), 3),
            "max_s": round(max(lat), 3) if lat else None,
            "files": files,
        }


def throughput(records: int, tail_ms: int) -> dict:
    with tempfile.TemporaryDirectory() as d, Cluster(brokers=1, data_dir=d, config={"parquet_tail_ms": tail_ms}) as c:
        c.create_topic("tp", partitions=1, replication_factor=1)
        p = Producer({"bootstrap.servers": c.bootstrap_servers, "linger.ms": 5, "acks": "all"})
        value = b"x" * 100
        t0 = time.monotonic()
        for _ in range(records):
            while True:
                try:
                    p.produce("tp", value=value, partition=0)
                    break
                except BufferError:
                    p.poll(0.01)
            p.poll(0)
        p.flush(60)
        elapsed = time.monotonic() - t0
        return {"tail_ms": tail_ms, "records": records, "rec_per_s": round(records / elapsed)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of traffic per freshness case")
    ap.add_argument("--records", type=int, default=1_000_000, help="records in each throughput run")
    args = ap.parse_args()
    results: dict = {"freshness": [], "throughput": []}
    for rate in (10, 10_000):
        r = freshness(rate, args.seconds, 1000)
        results["freshness"].append(r)
        print(
            f"ack->visible at {rate:>6} rec/s: p50 {r['p50_s']:.3f} s  p99 {r['p99_s']:.3f} s  "
            f"max {r['max_s']} s  ({r['visible']}/{r['records']} visible, {r['files']} files)",
            flush=True,
        )
    for tail_ms in (0, 1000, 0, 1000):
        r = throughput(args.records, tail_ms)
        results["throughput"].append(r)
        print(f"produce flat out, parquet_tail_ms={tail_ms:>4}: {r['rec_per_s']:>7} rec/s", flush=True)
    out = HERE / "results" / f"lakehouse_freshness-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
