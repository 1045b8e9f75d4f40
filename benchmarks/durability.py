"""What fsync-before-acknowledge (`flush.messages=1`, group-committed) costs: records/s and latency.

    python benchmarks/durability.py                    # RF=1 and RF=3, flush.messages default vs 1
    python benchmarks/durability.py --seconds 3 --rate 500

For each (RF, durability) a fresh cluster, one topic of 6 partitions, a
confluent-kafka producer (idempotent acks=all for RF=3, acks=1 for RF=1, linger.ms=5, 100-byte values):

* throughput: produce as fast as the producer can for `--seconds`, count acknowledgments;
* latency: produce at a fixed `--rate` records/s for `--seconds`, time each record from
  `produce()` to its delivery report (p50/p99).

Prints a table and writes `results/durability-<ts>.json`. The figures depend on the disk:
tmpfs or a disk with a write cache makes fsync nearly free; a real SSD costs ~0.1-2 ms each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from confluent_kafka import Producer

from workbench import Cluster

HERE = Path(__file__).resolve().parent
VALUE = b"x" * 100


def producer(cluster: Cluster, rf: int) -> Producer:
    return Producer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "acks": "all" if rf > 1 else "1",
            "enable.idempotence": rf > 1,  # idempotence needs acks=all
            "linger.ms": 5,
        }
    )


def throughput(p: Producer, seconds: float) -> float:
    acked = 0

    def done(err, _msg):
        nonlocal acked
        if err is None:
            acked += 1

    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            p.produce("bench", VALUE, on_delivery=done)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    p.flush(60)
    return acked / (time.monotonic() - t0)


def latency(p: Producer, seconds: float, rate: int) -> list[float]:
    lat: list[float] = []

    def make_cb(sent: float):
        def cb(err, _msg):
            if err is None:
                lat.append((time.perf_counter() - sent) * 1000)

        return cb

    interval = 1.0 / rate
    t0 = time.perf_counter()
    n = int(seconds * rate)
    for i in range(n):
        target = t0 + i * interval
        while (now := time.perf_counter()) < target:
            p.poll(min(0.001, target - now))
        p.produce("bench", VALUE, on_delivery=make_cb(time.perf_counter()))
        p.poll(0)
    p.flush(60)
    return lat


def measure(rf: int, durable: bool, seconds: float, rate: int, data_root: Path | None) -> dict:
    config = {"flush.messages": "1"} if durable else {}
    data_dir = None if data_root is None else data_root / f"rf{rf}-{'durable' if durable else 'default'}"
    with Cluster(brokers=rf, data_dir=data_dir) as cluster:
        cluster.create_topic("bench", partitions=6, replication_factor=rf, config=config)
        time.sleep(1.5)  # followers join the ISR
        # One producer for the three phases, warmed up first: a new idempotent librdkafka producer
        # waits ~0.5 s for its producer id (its PID timer fires after the bootstrap connections are
        # replaced by the brokers' own; the mock cluster shows the same 506 ms), which had put the
        # RF=3 p99 at ~430 ms in both modes (2 December).
        p = producer(cluster, rf)
        latency(p, 1.0, rate)  # warm-up
        rps = throughput(p, seconds)
        lat = sorted(latency(p, seconds, rate))
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    return {
        "rf": rf,
        "flush_messages": "1" if durable else "default",
        "records_per_s": round(rps),
        "latency_p50_ms": round(statistics.median(lat), 2) if lat else None,
        "latency_p99_ms": round(p99, 2),
        "latency_rate": rate,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=1000, help="records/s for the latency run")
    ap.add_argument("--rf", default="1,3")
    ap.add_argument("--data-root", type=Path, default=None, help="where the clusters keep data (default: a tmp dir)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    rows = []
    for rf in [int(x) for x in args.rf.split(",")]:
        for durable in (False, True):
            rows.append(measure(rf, durable, args.seconds, args.rate, args.data_root))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(f"{'RF':>3} {'flush.messages':>15} {'records/s':>10} {'p50 ms':>8} {'p99 ms':>8}  (latency at {args.rate}/s)")
    for r in rows:
        print(
            f"{r['rf']:>3} {r['flush_messages']:>15} {r['records_per_s']:>10} "
            f"{r['latency_p50_ms']:>8} {r['latency_p99_ms']:>8}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"durability-{time.strftime('%Y%m%d-%H%M%S')}.json"
    data_fs = os.statvfs(str(args.data_root or "/tmp"))
    path.write_text(
        json.dumps(
            {
                "meta": {"cpus": os.cpu_count(), "seconds": args.seconds, "fs_block": data_fs.f_bsize},
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
