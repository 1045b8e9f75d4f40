"""End-to-end latency against the produce rate, with the brokers' CPU: where latency turns into queueing.

    python benchmarks/latency_by_rate.py                       # RF=3 acks=all and RF=1, at 1,000 and 10,000 records/s
    python benchmarks/latency_by_rate.py --rf 3 --rates 500,2000,10000 --seconds 8

Same clients as `run_all.py`'s latency section (`perf_client.py e2e-produce` / `e2e-consume`: 6 partitions,
linger.ms=0, max.in.flight=5, fetch.wait.max.ms=10), one fresh cluster per (RF, rate); the brokers' CPU comes
from /proc over the run. Prints a table and writes `results/latency_by_rate-<ts>.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from proc_stats import cpu_s

from workbench import Cluster

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "perf_client.py"


def last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def _run_producer(
    bootstrap: str, acks: str, rate: int, seconds: float, warmup: float, max_in_flight: int = 5
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(CLIENT),
            "e2e-produce",
            "--bootstrap",
            bootstrap,
            "--topic",
            "lat",
            "--acks",
            acks,
            "--linger-ms",
            "0",
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
            "--max-in-flight",
            str(max_in_flight),
        ],
        capture_output=True,
        text=True,
        timeout=seconds * 4 + 60,
    )


def measure(
    rf: int,
    rate: int,
    seconds: float,
    warmup: float,
    config: dict | None = None,
    around: Callable[[dict[str, int]], AbstractContextManager] | None = None,
    max_in_flight: int = 5,
    fetch_wait_ms: int = 10,
) -> dict:
    """One fresh cluster of `rf` brokers (broker settings `config` on top of the defaults).

    `max_in_flight` 0 and `fetch_wait_ms` 500 are librdkafka's defaults (1,000,000 requests in
    flight per connection), `run_all.py`'s "librdkafka defaults" row.

    `around(broker_pids)`, when given, is a context manager entered while the producer runs
    (`profile_latency.py` records the brokers with py-spy there)."""
    acks = "all" if rf > 1 else "1"
    with Cluster(brokers=rf, config={"group_initial_rebalance_delay_ms": 0, **(config or {})}) as cluster:
        cluster.create_topic("lat", partitions=6, replication_factor=rf)
        time.sleep(2.0)  # followers join the ISR
        consumer = subprocess.Popen(
            [
                sys.executable,
                str(CLIENT),
                "e2e-consume",
                "--bootstrap",
                cluster.bootstrap_servers,
                "--topic",
                "lat",
                "--records",
                str(int(rate * seconds)),
                "--timeout",
                str(seconds + warmup + 60),
                "--fetch-wait-ms",
                str(fetch_wait_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert consumer.stdout.readline().strip() == "READY"
            pids = cluster.broker_pids()
            cpu0, t0 = {k: cpu_s(v) for k, v in pids.items()}, time.monotonic()
            with around(pids) if around is not None else nullcontext():
                producer = _run_producer(cluster.bootstrap_servers, acks, rate, seconds, warmup, max_in_flight)
            wall = time.monotonic() - t0
            cpu = {k: round(cpu_s(v) - cpu0[k], 2) for k, v in pids.items()}
            out, _ = consumer.communicate(timeout=seconds + 60)
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait()
    e2e, prod = last_json(out), last_json(producer.stdout)
    return {
        "rf": rf,
        "acks": acks,
        "rate": rate,
        "seconds": seconds,
        "p50_ms": e2e["p50_ms"],
        "p99_ms": e2e["p99_ms"],
        "max_ms": e2e["max_ms"],
        "ack_p50_ms": prod["ack_ms_p50"],
        "ack_p99_ms": prod["ack_ms_p99"],
        "broker_cpu_s": cpu,
        "wall_s": round(wall, 1),
        "broker_cores_busy": round(sum(cpu.values()) / wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rf", default="3,1", help="replication factors (RF=N uses N brokers)")
    parser.add_argument("--rates", default="1000,10000")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    rows = [
        measure(int(rf), int(rate), args.seconds, args.warmup)
        for rf in args.rf.split(",")
        for rate in args.rates.split(",")
    ]
    print(
        f"{'RF':>3} {'rate/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'ack p50':>8} {'ack p99':>8} "
        f"{'broker cores busy':>18}"
    )
    for r in rows:
        print(
            f"{r['rf']:>3} {r['rate']:>7} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} {r['ack_p50_ms']:>8} "
            f"{r['ack_p99_ms']:>8} {r['broker_cores_busy']:>18}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"latency_by_rate-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": rows}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
