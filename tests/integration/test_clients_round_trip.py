"""Three independent clients produce to and consume from real broker processes."""

from __future__ import annotations

import json
import subprocess
import time

from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer

from tests.conftest import require_tool


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0, **conf) -> list:
    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{topic}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    settings.update(conf)
    c = Consumer(settings)
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
    finally:
        c.close()
    return out


def test_confluent_kafka_round_trip_keys_values_headers_timestamps(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=3)
    p = Producer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "enable.idempotence": True,
            "compression.type": "lz4",
        }
    )
    sent = []
    for i in range(300):
        key = f"user-{i % 17}".encode()
        value = json.dumps({"i": i, "text": "é" * (i % 5)}).encode()
        headers = [("trace", f"t{i}".encode()), ("empty", None)]
        ts = 1_700_000_000_000 + i
        p.produce(topic_name, value=value, key=key, headers=headers, timestamp=ts)
        sent.append((key, value, ts))
    assert p.flush(30) == 0
    msgs = consume_all(cluster.bootstrap_servers, topic_name, len(sent))
    got = sorted((m.key(), m.value(), m.timestamp()[1]) for m in msgs)
    assert got == sorted(sent)
    m = msgs[0]
    assert dict(m.headers())["trace"].startswith(b"t")
    assert dict(m.headers())["empty"] is None
    # Offsets within each partition are dense and start at 0.
    by_partition: dict[int, list[int]] = {}
    for m in msgs:
        by_partition.setdefault(m.partition(), []).append(m.offset())
    for offsets in by_partition.values():
        assert sorted(offsets) == list(range(len(offsets)))


def test_every_compression_codec_is_accepted(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    total = 0
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "compression.type": codec})
        for i in range(50):
            p.produce(topic_name, value=f"{codec}-{i}".encode() * 10)
        assert p.flush(30) == 0
        total += 50
    msgs = consume_all(cluster.bootstrap_servers, topic_name, total)
    assert len(msgs) == total
    assert {m.value().split(b"-")[0] for m in msgs} == {b"none", b"gzip", b"snappy", b"lz4", b"zstd"}


def test_kafka_python_with_its_defaults_idempotent_acks_all(cluster, topic_name):
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers)  # idempotent, acks=all by default
    assert producer.config["enable_idempotence"] is True
    futures = [
        producer.send(
            topic_name,
            key=f"k{i}".encode(),
            value=f"v{i}".encode(),
            headers=[("h", b"x")],
            timestamp_ms=1_600_000_000_000 + i,
        )
        for i in range(200)
    ]
    metas = [f.get(timeout=30) for f in futures]
    producer.close()
    assert all(m.offset >= 0 for m in metas)
    consumer = KafkaConsumer(
        topic_name,
        bootstrap_servers=cluster.bootstrap_servers,
        group_id=f"g-{topic_name}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
    )
    got = []
    for msg in consumer:
        got.append((msg.key, msg.value, msg.timestamp, msg.headers))
        if len(got) == 200:
            break
    consumer.close()
    assert sorted(got) == sorted(
        (f"k{i}".encode(), f"v{i}".encode(), 1_600_000_000_000 + i, [("h", b"x")]) for i in range(200)
    )


def test_kcat_produces_and_consumes(cluster, topic_name):
    kcat = require_tool("kcat")
    lines = "\n".join(f"key{i}:value {i}" for i in range(50)) + "\n"
    subprocess.run(
        [kcat, "-b", cluster.bootstrap_servers, "-P", "-t", topic_name, "-K:"],
        input=lines.encode(),
        check=True,
        timeout=60,
    )
    out = subprocess.run(
        [
            kcat,
            "-b",
            cluster.bootstrap_servers,
            "-C",
            "-t",
            topic_name,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k=%s\n",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    got = sorted(out.stdout.decode().splitlines())
    assert got == sorted(f"key{i}=value {i}" for i in range(50))
    meta = subprocess.run(
        [kcat, "-b", cluster.bootstrap_servers, "-L", "-J"], capture_output=True, check=True, timeout=60
    )
    listing = json.loads(meta.stdout)
    assert sorted(b["id"] for b in listing["brokers"]) == [1, 2, 3]
    assert topic_name in {t["topic"] for t in listing["topics"]}


def test_kcat_sees_records_from_confluent_and_kafka_python(cluster, topic_name):
    kcat = require_tool("kcat")
    cluster.create_topic(topic_name, partitions=2)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    p.produce(topic_name, key=b"a", value=b"from-confluent")
    p.flush(10)
    kp = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers)
    kp.send(topic_name, key=b"b", value=b"from-kafka-python").get(timeout=30)
    kp.close()
    out = subprocess.run(
        [
            kcat,
            "-b",
            cluster.bootstrap_servers,
            "-C",
            "-t",
            topic_name,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%s\n",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert sorted(out.stdout.decode().split()) == ["from-confluent", "from-kafka-python"]
