"""What a transaction costs (issue 14): commit latency and throughput of a transactional
confluent-kafka producer, and read_committed vs read_uncommitted consumer throughput.

    python benchmarks/transactions.py                    # 1 and 3 brokers, 200 transactions of 100 records
    python benchmarks/transactions.py --brokers 3 --txns 100 --records 1000
    python benchmarks/transactions.py --brokers 3 --verification on off   # KIP-890 part 1's cost

For each cluster size: a 3-partition topic (RF = min(3, brokers)); `--txns` transactions of
`--records` records each spread over the partitions, timing `commit_transaction()` (the broker
answers once the markers are written); then one consumer of each isolation level reads everything.
`broker_cpu_ms_per_txn` is the brokers' user+system CPU over the transactions (from /proc), which
unlike the latencies means something on a loaded machine; `..._less_idle` subtracts what they burn
idle (measured for 5 s first) over the same wall time, since a slower run pays more idle CPU;
`--verification` runs each size with ``transaction_partition_verification_enable`` on and/or off
(KIP-890 part 1, default on).
Prints a table and writes JSON to benchmarks/results/.
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
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's workbench

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from workbench import Cluster


def _read_all(bootstrap: str, topic: str, partitions: int, isolation: str) -> tuple[int, float]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    c.assign([TopicPartition(topic, p) for p in range(partitions)])
    n, eof = 0, set()
    started = time.perf_counter()
    while len(eof) < partitions:
        for m in c.consume(10_000, 1.0):
            if m.error() is None:
                n += 1
            elif m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
    elapsed = time.perf_counter() - started
    c.close()
    return n, elapsed


IDLE_S = 5.0


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of the processes so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def one_size(brokers: int, txns: int, records: int, verification: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="txnbench-") as tmp:
        config = {"transaction_partition_verification_enable": verification}
        cluster = Cluster(brokers=brokers, data_dir=tmp, config=config).start()
        try:
            cluster.create_topic("events", partitions=3, replication_factor=min(3, brokers))
            p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": "bench", "linger.ms": 5})
            t0 = time.perf_counter()
            p.init_transactions(30)
            init_s = time.perf_counter() - t0
            commits = []
            payload = b"x" * 100
            pids = [pid for pid in cluster.broker_pids().values() if pid is not None]
            idle0, idle_t0 = _cpu_s(pids), time.perf_counter()
            time.sleep(IDLE_S)  # what the brokers burn doing nothing (fetchers, heartbeats, maintenance)
            idle_rate = (_cpu_s(pids) - idle0) / (time.perf_counter() - idle_t0)
            cpu0 = _cpu_s(pids)
            started = time.perf_counter()
            for t in range(txns):
                p.begin_transaction()
                for i in range(records):
                    p.produce("events", value=payload, partition=(t + i) % 3)
                c0 = time.perf_counter()
                p.commit_transaction(30)
                commits.append(time.perf_counter() - c0)
            total = time.perf_counter() - started
            cpu = _cpu_s(pids) - cpu0
            committed, rc_s = _read_all(cluster.bootstrap_servers, "events", 3, "read_committed")
            uncommitted, ru_s = _read_all(cluster.bootstrap_servers, "events", 3, "read_uncommitted")
            assert committed == uncommitted == txns * records, (committed, uncommitted)
            commits.sort()
            return {
                "brokers": brokers,
                "verification": "on" if verification else "off",
                "txns": txns,
                "records_per_txn": records,
                "init_transactions_ms": round(init_s * 1000, 1),
                "txn_per_s": round(txns / total, 1),
                "records_per_s": round(txns * records / total),
                "commit_p50_ms": round(statistics.median(commits) * 1000, 1),
                "commit_p99_ms": round(commits[int(len(commits) * 0.99) - 1] * 1000, 1),
                "broker_cpu_ms_per_txn": round(cpu * 1000 / txns, 2),
                "broker_idle_cpu_ms_per_s": round(idle_rate * 1000, 1),
                "broker_cpu_ms_per_txn_less_idle": round((cpu - idle_rate * total) * 1000 / txns, 2),
                "read_committed_records_per_s": round(committed / rc_s),
                "read_uncommitted_records_per_s": round(uncommitted / ru_s),
            }
        finally:
            cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--txns", type=int, default=200)
    ap.add_argument("--records", type=int, default=100)
    ap.add_argument("--verification", choices=["on", "off"], nargs="+", default=["on"])
    args = ap.parse_args()
    rows = [one_size(b, args.txns, args.records, v == "on") for b in args.brokers for v in args.verification]
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    out = Path(__file__).resolve().parent / "results" / "transactions.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"host": platform.node(), "cpus": os.cpu_count(), "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
