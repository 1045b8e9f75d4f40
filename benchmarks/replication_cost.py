"""What one acks=all round costs at RF=3: broker CPU per 1-record Produce sent one at a time.

    python benchmarks/replication_cost.py                                   # this tree, 3000 rounds, 3 runs
    python benchmarks/replication_cost.py --trees before=/tmp/base,after=.  # A/B, runs alternating (ABBA)

One round is everything the cluster does for one acks=all batch when nothing else is going on:
the leader appends it and wakes both followers' long-poll fetches, each follower appends and
fetches again (which tells the leader its new log end offset), the leader advances the high
watermark and answers. A raw socket client (`WireClient`, no client library) sends pre-encoded
Produce v7 frames to the leader of a 1-partition RF=3 topic and waits for each answer, so the
number of requests every broker handles per round is fixed by the protocol, not by how a loaded
machine happens to batch: the figure (CPU seconds from /proc, summed over the three brokers, per
round) is the one to compare between code versions on a shared machine. The brokers' idle CPU
(Raft ticks, heartbeats, maintenance loops), measured for a few seconds before, is reported apart
and subtracted in `us_per_round_net`. A "tree" is a directory holding a `workbench/` package
(brokers run `python -m workbench.broker` from it; see `broker_cpu.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from broker_cpu import SAMPLER, summarize
from kafka.protocol.producer import ProduceRequest
from proc_stats import cpu_s

from workbench import Cluster
from workbench.protocol.blocking_client import WireClient, make_batch

HERE = Path(__file__).resolve().parent


def produce_frame(topic: str, batch: bytes, correlation_id: int, acks: int) -> bytes:
    request = ProduceRequest(
        transactional_id=None,
        acks=acks,
        timeout_ms=10000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=batch)],
            )
        ],
    )
    request.API_VERSION = 7
    request.with_header(correlation_id=correlation_id, client_id="replication-cost")
    return bytes(request.encode(header=True, framed=True))


def _cpu(pids: dict) -> float:
    return sum(cpu_s(p) or 0.0 for p in pids.values() if p)


def one_run(rounds: int, idle_s: float, sample: Path | None = None) -> dict:
    with Cluster(brokers=3, config={"group_initial_rebalance_delay_ms": 0}) as cluster:
        cluster.create_topic("rt", partitions=1, replication_factor=3)
        admin = cluster.admin()
        deadline = time.monotonic() + 30
        while True:
            md = admin.list_topics("rt", timeout=10)
            p = md.topics["rt"].partitions[0]
            if len(p.isrs) == 3 and p.leader >= 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"ISR not complete: {p.isrs}")
            time.sleep(0.2)
        leader = md.brokers[p.leader]
        client = WireClient(leader.host, leader.port)
        pids = cluster.broker_pids()
        frames = [produce_frame("rt", make_batch([b"x" * 100]), i, -1) for i in range(rounds + 200)]
        for frame in frames[:200]:  # warm up: connection, code paths, the followers' sessions
            client.sock.sendall(frame)
            client.recv_frame()
        time.sleep(1.0)
        c0, t0 = _cpu(pids), time.perf_counter()
        time.sleep(idle_s)
        idle_cores = (_cpu(pids) - c0) / (time.perf_counter() - t0)
        load = os.getloadavg()[0]
        if sample is not None:
            for pid in pids.values():
                os.kill(pid, signal.SIGRTMIN)  # cpu_sampler: start
        c0, t0 = _cpu(pids), time.perf_counter()
        for frame in frames[200:]:
            client.sock.sendall(frame)
            client.recv_frame()
        seconds, cpu = time.perf_counter() - t0, _cpu(pids) - c0
        if sample is not None:
            for pid in pids.values():
                os.kill(pid, signal.SIGRTMIN + 1)  # cpu_sampler: stop and write
            time.sleep(1.0)
        client.close()
    return {
        "rounds": rounds,
        "seconds": round(seconds, 2),
        "us_per_round": round(1e6 * cpu / rounds, 1),
        "us_per_round_net": round(1e6 * (cpu - idle_cores * seconds) / rounds, 1),
        "idle_cores": round(idle_cores, 3),
        "round_trip_ms": round(1e3 * seconds / rounds, 3),
        "loadavg": round(load, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", default=f"this={HERE.parent}", help="name=dir,... (dirs holding workbench/)")
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measured before")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", action="store_true", help="CPU-time profile of the brokers (cpu_sampler/)")
    parser.add_argument("--calls", action="store_true", help="count Python calls per round instead (cProfile)")
    parser.add_argument("--profile-dir", default=str(HERE / "profiles"))
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    trees = dict(item.split("=", 1) for item in args.trees.split(","))
    cwd = os.getcwd()
    if args.calls:
        args.sample = True
        os.environ["WB_CPU_SAMPLE_CALLS"] = "1"
    if args.sample:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SAMPLER), os.environ.get("PYTHONPATH")]))
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(args.repeats):
        for name in list(trees) if i % 2 == 0 else list(reversed(trees)):
            prefix = Path(args.profile_dir) / f".samples-round-{name}-{i}"
            if args.sample:
                os.environ["WB_CPU_SAMPLE"] = str(prefix)  # read by the brokers' sitecustomize at start
            os.chdir(Path(trees[name]).resolve())
            try:
                row = one_run(args.rounds, args.idle, prefix if args.sample else None)
            finally:
                os.chdir(cwd)
            if args.calls:
                counted = [json.loads(f.read_text()) for f in sorted(prefix.parent.glob(prefix.name + ".*.calls.json"))]
                for f in prefix.parent.glob(prefix.name + ".*.calls.json"):
                    f.unlink()
                row["python_calls_per_round"] = round(sum(c["calls"] for c in counted) / args.rounds, 1)
                top: Counter[str] = Counter()
                for c in counted:
                    for n, fn in c["top"]:
                        top[fn] += n
                row["top_calls_per_round"] = [[fn, round(n / args.rounds, 1)] for fn, n in top.most_common(25)]
                print(f"{name:>8} run {i}: {row['python_calls_per_round']} Python calls per round", flush=True)
            elif args.sample:
                files = sorted(prefix.parent.glob(prefix.name + ".*.collapsed"))
                label = f"replication-round-rf3-{name}"
                row["profile"] = summarize(
                    files,
                    f"CPU samples of the 3 brokers over {args.rounds} acks=all rounds (replication_cost.py), "
                    f"tree {name}, load {row['loadavg']}",
                    Path(args.profile_dir) / f"{label}.cpu.txt",
                )
                merged: Counter[str] = Counter()
                for f in files:
                    for line in f.read_text().splitlines():
                        stack, _, n = line.rpartition(" ")
                        merged[stack] += int(n)
                    f.unlink()
                (Path(args.profile_dir) / f"{label}.cpu.collapsed.txt").write_text(
                    "".join(f"{k} {v}\n" for k, v in merged.most_common())
                )
            row.update(tree=name, repeat=i)
            runs.append(row)
            print(
                f"{name:>8} run {i}: {row['us_per_round']} us/round ({row['us_per_round_net']} net of idle "
                f"{row['idle_cores']} cores), round trip {row['round_trip_ms']} ms, load {row['loadavg']}",
                flush=True,
            )
    summary = {
        name: {
            k: round(statistics.median(r[k] for r in runs if r["tree"] == name), 2)
            for k in ("us_per_round", "us_per_round_net", "idle_cores", "round_trip_ms")
        }
        for name in trees
    }
    for name, s in summary.items():
        print(f"median, {name}: {s}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"replication_cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "trees": trees, "runs": runs, "median": summary}, indent=1
        )
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
