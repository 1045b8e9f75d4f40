"""What one request costs the broker: CPU per Produce, measured from /proc, with the client doing nothing else.

    python benchmarks/request_cost.py                 # prints a table, writes benchmarks/results/request_cost-<ts>.json
    python benchmarks/request_cost.py --small 20000 --large 500

The client sends pre-encoded frames over one socket (no client library in the loop) to a 1-broker
cluster and reads the answers; the broker's utime+stime before and after gives its CPU per request:

* `small sequential`: 1-record Produce (acks=1), one at a time: the per-request floor (parsing, dispatch,
  append, response, two syscalls);
* `small pipelined`: the same with 16 in flight, as librdkafka pipelines;
* `1 MB`: 10,000 records of 100 bytes per request: the per-record cost (validation, copies, the write).

This is where the issue-6 request-path numbers in the README come from.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kafka.protocol.producer import ProduceRequest
from proc_stats import cpu_s

from workbench import Cluster
from workbench.protocol.blocking_client import WireClient, make_batch

HERE = Path(__file__).resolve().parent


def produce_frame(topic: str, batch: bytes, correlation_id: int) -> bytes:
    request = ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout_ms=5000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=batch)],
            )
        ],
    )
    request.API_VERSION = 7
    request.with_header(correlation_id=correlation_id, client_id="request-cost")
    return bytes(request.encode(header=True, framed=True))


def run(client: WireClient, pid: int, frames: list[bytes], window: int) -> dict:
    c0, t0 = cpu_s(pid), time.perf_counter()
    outstanding = 0
    for frame in frames:
        client.sock.sendall(frame)
        outstanding += 1
        if outstanding >= window:
            client.recv_frame()
            outstanding -= 1
    for _ in range(outstanding):
        client.recv_frame()
    seconds, cpu = time.perf_counter() - t0, cpu_s(pid) - c0
    return {
        "requests": len(frames),
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(frames) / seconds),
        "broker_cpu_us_per_request": round(1e6 * cpu / len(frames), 1),
        "round_trip_us": round(1e6 * seconds / len(frames), 1) if window == 1 else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=10_000, help="1-record requests per small case")
    parser.add_argument("--large", type=int, default=300, help="1 MB requests")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    results: dict = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "python": sys.version.split()[0]}
    with Cluster(brokers=1) as cluster:
        cluster.create_topic("cost", partitions=1, replication_factor=1)
        pid = cluster.broker_pids()[1]
        client = WireClient.to(cluster.bootstrap_servers)
        small = [produce_frame("cost", make_batch([b"x" * 100]), i) for i in range(args.small)]
        run(client, pid, small[:500], 1)  # warm up: connection, topic, code paths
        results["small_sequential"] = run(client, pid, small, 1)
        results["small_pipelined_16"] = run(client, pid, small, 16)
        big = produce_frame("cost", make_batch([b"x" * 100] * 10_000), 1)
        large = run(client, pid, [big] * args.large, 4)
        large["broker_cpu_us_per_record"] = round(large["broker_cpu_us_per_request"] / 10_000, 3)
        large["records_per_s"] = large["requests_per_s"] * 10_000
        results["large_1mb_10k_records"] = large
        client.close()
    rows = [
        ("small, sequential (1 in flight)", results["small_sequential"]),
        ("small, pipelined (16 in flight)", results["small_pipelined_16"]),
        ("1 MB / 10,000 records (4 in flight)", results["large_1mb_10k_records"]),
    ]
    print(f"{'Produce request':40} {'req/s':>9} {'broker CPU µs/req':>18} {'round trip µs':>14}")
    for name, r in rows:
        rt = r["round_trip_us"] if r["round_trip_us"] is not None else "-"
        print(f"{name:40} {r['requests_per_s']:>9,} {r['broker_cpu_us_per_request']:>18} {rt:>14}")
    print(
        f"1 MB requests: {results['large_1mb_10k_records']['broker_cpu_us_per_record']} µs of broker CPU per record, "
        f"{results['large_1mb_10k_records']['records_per_s']:,} records/s"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"request_cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
