"""What a share group (KIP-932 queue) delivers: records/s for 1 and 3 confluent-kafka `ShareConsumer`s
on one partition, against one classic consumer reading the same records.

    python benchmarks/share_groups.py                      # 3 brokers, 20000 records of 100 bytes
    python benchmarks/share_groups.py --brokers 1 --records 50000

Each share consumer acknowledges implicitly (a poll accepts what the previous one returned), so
every record costs the partition leader an acquisition and an acceptance, and each ShareFetch and
ShareAcknowledge writes the share-partition state to `__share_group_state` with acks=all before
it answers. Prints a table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's workbench

from confluent_kafka import Consumer, KafkaError, Producer, ShareConsumer, TopicPartition

from workbench import Cluster


def _share(bootstrap: str, topic: str, consumers: int, total: int, timeout_s: float = 300) -> tuple[int, float]:
    group = f"bench-{uuid.uuid4().hex[:6]}"
    cs = [ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group}) for _ in range(consumers)]
    for c in cs:
        c.subscribe([topic])
    seen: set[int] = set()
    started = time.perf_counter()
    while len(seen) < total and time.perf_counter() - started < timeout_s:
        for c in cs:
            for m in c.poll(0.1):
                if m.error() is None:
                    seen.add(m.offset())
    elapsed = time.perf_counter() - started
    for c in cs:
        c.close()
    return len(seen), elapsed


def _classic(bootstrap: str, topic: str) -> tuple[int, float]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    n, started = 0, time.perf_counter()
    while True:
        msgs = c.consume(10_000, 1.0)
        if any(m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF for m in msgs):
            n += sum(1 for m in msgs if m.error() is None)
            break
        n += sum(1 for m in msgs if m.error() is None)
    elapsed = time.perf_counter() - started
    c.close()
    return n, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sharebench-") as tmp:
        config = {"group_initial_rebalance_delay_ms": 0, "group_share_auto_offset_reset": "earliest"}
        with Cluster(brokers=args.brokers, data_dir=tmp, config=config) as cluster:
            topic = "queue"
            cluster.create_topic(topic, partitions=1)
            p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 5})
            payload = b"x" * 100
            for _ in range(args.records):
                p.produce(topic, payload)
                p.poll(0)
            p.flush(60)
            n, s = _classic(cluster.bootstrap_servers, topic)
            rows.append({"reader": "classic consumer (assign, no commits)", "records": n, "seconds": s})
            for consumers in (1, 3):
                n, s = _share(cluster.bootstrap_servers, topic, consumers, args.records)
                rows.append({"reader": f"{consumers} share consumer(s), implicit acks", "records": n, "seconds": s})
    print(f"{args.records} records of 100 B on one partition, {args.brokers} broker(s), RF={min(3, args.brokers)}")
    print(f"{'reader':42} {'records':>8} {'seconds':>8} {'records/s':>10}")
    for r in rows:
        r["records_per_s"] = r["records"] / r["seconds"] if r["seconds"] else 0.0
        print(f"{r['reader']:42} {r['records']:>8} {r['seconds']:>8.2f} {r['records_per_s']:>10.0f}")
    out = Path(__file__).resolve().parent / "results" / f"share-groups-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "meta": {"cpus": os.cpu_count(), "python": platform.python_version(), **vars(args)},
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
