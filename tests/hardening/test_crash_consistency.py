"""Crash consistency: SIGKILL every broker at once, repeatedly, while a producer writes, segments roll
every few KB and sealed segments are being converted to Parquet. After each restart every
acknowledged record is present exactly once, every Parquet file is whole (no half-written file is
ever picked up) and every raw batch passes its CRC."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time

import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition

from workbench.protocol.records import batch_crc_ok, iter_batch_headers

ROUNDS = int(os.environ.get("WORKBENCH_CRASH_ROUNDS", "3"))


def kill_all(cluster) -> None:
    pids = [p for p in cluster.broker_pids().values() if p]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for b in cluster.brokers.values():
        if b.process is not None:
            b.process.wait(10)


def test_repeated_sigkill_of_all_brokers(fresh_cluster, topic_name):
    cluster = fresh_cluster(brokers=3)
    cluster.create_topic(
        topic_name,
        partitions=2,
        replication_factor=3,
        config={"segment.bytes": 4096, "workbench.hot.segments": 0},
    )
    acked: list[bytes] = []
    failed = [0]

    def on_delivery(err, msg):
        if err is None:
            acked.append(msg.value())
        else:
            failed[0] += 1

    for rnd in range(ROUNDS):
        producer = Producer(
            {
                "bootstrap.servers": cluster.bootstrap_servers,
                "enable.idempotence": True,
                "linger.ms": 2,
                "message.timeout.ms": 8000,
            }
        )
        stop = threading.Event()

        def produce(rnd=rnd, producer=producer, stop=stop):
            i = 0
            while not stop.is_set():
                try:
                    producer.produce(topic_name, value=b"r%d-%06d" % (rnd, i), on_delivery=on_delivery)
                except BufferError:
                    pass
                producer.poll(0.001)
                i += 1

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        time.sleep(2.0)  # rolls every 4 KB and Parquet conversions every 0.5 s are under way
        kill_all(cluster)
        stop.set()
        t.join(10)
        producer.flush(10)  # what was not acknowledged before the kill times out: not counted
        cluster.start()

    assert len(acked) > 100, "the producer made too little progress for the test to mean anything"
    # Every Parquet file the brokers kept is whole; no temporary file is mistaken for one.
    for path in cluster.data_dir.glob(f"broker-*/topics/{topic_name}/partition=*/*.parquet"):
        pq.read_table(path)
    for path in cluster.data_dir.glob(f"broker-*/topics/{topic_name}/partition=*/*.log"):
        data = path.read_bytes()
        for h in iter_batch_headers(data):
            assert batch_crc_ok(data, h), f"{path}: CRC failure at {h.base_offset}"
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": "crash",
            "enable.auto.commit": False,
            "check.crcs": True,
        }
    )
    seen: list[bytes] = []
    highs = {}
    for p in (0, 1):
        highs[p] = consumer.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10)[1]
    consumer.assign([TopicPartition(topic_name, p, 0) for p in (0, 1)])
    done = {p: highs[p] == 0 for p in (0, 1)}
    deadline = time.monotonic() + 60
    while not all(done.values()) and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        seen.append(msg.value())
        if msg.offset() >= highs[msg.partition()] - 1:
            done[msg.partition()] = True
    consumer.close()
    counts = collections.Counter(seen)
    missing = [v for v in acked if v not in counts]
    dups = [v for v, n in counts.items() if n > 1]
    print(
        f"\ncrash consistency: {ROUNDS} rounds, {len(acked)} acknowledged, {failed[0]} not acknowledged, "
        f"{len(seen)} read, {len(missing)} missing, {len(dups)} duplicated"
    )
    assert not missing, missing[:10]
    assert not dups, dups[:10]
