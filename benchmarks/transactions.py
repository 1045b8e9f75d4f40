"""What a transaction costs (issue 14): commit latency and throughput of a transactional
confluent-kafka producer, and read_committed vs read_uncommitted consumer throughput.

    python benchmarks/transactions.py                    # 1 and 3 brokers, 200 transactions of 100 records
    python benchmarks/transactions.py --brokers 3 --txns 100 --records 1000

For each cluster size: a 3-partition topic (RF = min(3, brokers)); `--txns` transactions of
`--records` records each spread over the partitions, timing `commit_transaction()` (the broker
answers once the markers are written); then one consumer of each isolation level reads everything.
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


def one_size(brokers: int, txns: int, records: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="txnbench-") as tmp:
        cluster = Cluster(brokers=brokers, data_dir=tmp).start()
        try:
            cluster.create_topic("events", partitions=3, replication_factor=min(3, brokers))
            p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": "bench", "linger.ms": 5})
            t0 = time.perf_counter()
            p.init_transactions(30)
            init_s = time.perf_counter() - t0
            commits = []
            payload = b"x" * 100
            started = time.perf_counter()
            for t in range(txns):
                p.begin_transaction()
                for i in range(records):
                    p.produce("events", value=payload, partition=(t + i) % 3)
                c0 = time.perf_counter()
                p.commit_transaction(30)
                commits.append(time.perf_counter() - c0)
            total = time.perf_counter() - started
            committed, rc_s = _read_all(cluster.bootstrap_servers, "events", 3, "read_committed")
            uncommitted, ru_s = _read_all(cluster.bootstrap_servers, "events", 3, "read_uncommitted")
            assert committed == uncommitted == txns * records, (committed, uncommitted)
            commits.sort()
            return {
                "brokers": brokers,
                "txns": txns,
                "records_per_txn": records,
                "init_transactions_ms": round(init_s * 1000, 1),
                "txn_per_s": round(txns / total, 1),
                "records_per_s": round(txns * records / total),
                "commit_p50_ms": round(statistics.median(commits) * 1000, 1),
                "commit_p99_ms": round(commits[int(len(commits) * 0.99) - 1] * 1000, 1),
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
    args = ap.parse_args()
    rows = [one_size(b, args.txns, args.records) for b in args.brokers]
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
