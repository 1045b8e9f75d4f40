"""Protocol fuzzing against a running broker, with real clients working throughout.

Hypothesis throws frames at the broker (see fuzzlib: random bytes, lying sizes,
unknown API keys and versions, schema-driven requests with nonsense fields,
absurd array counts, mutated encodings, Produce requests with corrupted
batches). After every input the broker must still answer a healthy connection
promptly; meanwhile a confluent-kafka producer and consumer keep producing and
consuming, and at the end every acknowledged record has been consumed, nothing
else, and the broker's RSS stayed bounded.

Budget: WORKBENCH_FUZZ_EXAMPLES inputs (default 2000, about 20 s);
`WORKBENCH_FUZZ_EXAMPLES=20000 pytest tests/hardening/test_fuzz_protocol.py -s`
for a long campaign. The number of inputs tried is printed.
"""

from __future__ import annotations

import collections
import os
import struct
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer
from hypothesis import HealthCheck, given, settings
from kafka.protocol.metadata import ApiVersionsRequest

from tests.hardening.fuzzlib import any_frame, corrupted_batches, exchange
from workbench.protocol.blocking_client import WireClient

EXAMPLES = int(os.environ.get("WORKBENCH_FUZZ_EXAMPLES", "2000"))
RSS_GROWTH_LIMIT = 200 * 1024 * 1024


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Traffic:
    """A real producer and consumer on a topic, in background threads, counting what works."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.acked: list[bytes] = []
        self.errors: list[str] = []
        self.consumed: list[bytes] = []
        self._stop = threading.Event()
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "fuzz-health",
                "auto.offset.reset": "earliest",
                "check.crcs": True,
            }
        )
        self.consumer.subscribe([topic])
        self.threads = [
            threading.Thread(target=self._produce, daemon=True),
            threading.Thread(target=self._consume, daemon=True),
        ]

    def start(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.errors.append(err.str())
        else:
            self.acked.append(msg.value())

    def _produce(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.producer.produce(self.topic, value=b"health-%d" % i, on_delivery=self._on_delivery)
            self.producer.poll(0.02)
            i += 1
        self.producer.flush(30)

    def _consume(self) -> None:
        producer_thread = self.threads[0]
        while producer_thread.is_alive() or len(self.consumed) < len(self.acked):
            msg = self.consumer.poll(0.2)
            if msg is not None and not msg.error():
                self.consumed.append(msg.value())
            if self._stop.is_set() and time.monotonic() > self._deadline:
                break
        self.consumer.close()

    def stop(self) -> None:
        self._deadline = time.monotonic() + 30
        self._stop.set()
        for t in self.threads:
            t.join(40)


def healthy(client: WireClient, limit: float = 3.0) -> float:
    start = time.monotonic()
    client.sock.settimeout(limit)
    assert client.request(ApiVersionsRequest(), 0).error_code == 0
    return time.monotonic() - start


def test_fuzz_campaign_keeps_broker_and_clients_alive(fresh_cluster, topic_name):
    cluster = fresh_cluster(brokers=1)
    cluster.create_topic(topic_name, partitions=1)
    target = topic_name + "-fuzz"  # fuzzed Produce requests go here, not into the health topic
    cluster.create_topic(target, partitions=1)
    [pid] = [p for p in cluster.broker_pids().values()]
    port = next(iter(cluster.brokers.values())).port
    traffic = Traffic(cluster.bootstrap_servers, topic_name).start()
    probe = WireClient.to(cluster.bootstrap_servers)
    healthy(probe)
    time.sleep(1.0)
    rss_before = rss(pid)
    outcomes: collections.Counter[str] = collections.Counter()
    slowest = [0.0]
    acked_at_start = len(traffic.acked)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=False,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frame=any_frame(target))
    def campaign(frame: bytes) -> None:
        outcomes[exchange(port, frame)] += 1
        assert cluster.brokers[1].alive, "the broker process died"
        slowest[0] = max(slowest[0], healthy(probe))

    started = time.monotonic()
    try:
        campaign()
    finally:
        elapsed = time.monotonic() - started
        tried = sum(outcomes.values())
        print(
            f"\nfuzz: {tried} inputs in {elapsed:.1f}s: {dict(outcomes)}; slowest health probe "
            f"{slowest[0] * 1000:.0f} ms; broker RSS {rss_before >> 20} -> {rss(pid) >> 20} MiB"
        )
    acked_during = len(traffic.acked) - acked_at_start
    traffic.stop()
    probe.close()
    assert rss(pid) - rss_before < RSS_GROWTH_LIMIT
    assert not traffic.errors, traffic.errors[:5]
    assert acked_during > 10, "the real producer made no progress during the campaign"
    # Exactly what was acknowledged was consumed, each once (the idempotent producer never duplicates).
    assert sorted(traffic.consumed) == sorted(traffic.acked)
    assert len(set(traffic.consumed)) == len(traffic.consumed)


def test_corrupted_batches_are_refused_and_never_served(fresh_cluster, topic_name):
    """Every damaged batch is refused with a Kafka error, and what is stored still decodes with good CRCs."""
    from kafka.protocol.producer import ProduceRequest

    from workbench.protocol.records import batch_crc_ok, decode_records, iter_batch_headers

    cluster = fresh_cluster(brokers=1)
    cluster.create_topic(topic_name, partitions=1)
    client = WireClient.to(cluster.bootstrap_servers)
    codes: collections.Counter[int] = collections.Counter()

    @settings(
        max_examples=max(60, EXAMPLES // 3),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=corrupted_batches())
    def refuse(batch: bytes) -> None:
        req = ProduceRequest(
            transactional_id=None,
            acks=1,
            timeout_ms=2000,
            topic_data=[
                ProduceRequest.TopicProduceData(
                    name=topic_name,
                    partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=batch)],
                )
            ],
        )
        resp = client.request(req, 9)
        part = resp.responses[0].partition_responses[0]
        codes[part.error_code] += 1
        if part.error_code == 0:
            # Accepted: then it really was a valid batch (e.g. a flipped timestamp byte) and must decode.
            decode_records(batch, verify_crc=True)

    refuse()
    print(f"\ncorrupted batches: error codes {dict(codes)}")
    # Whatever is in the log decodes and every CRC holds.
    cluster.stop()
    part_dir = cluster.data_dir / "broker-1" / "topics" / topic_name / "partition=0"
    for path in part_dir.glob("*.log"):
        data = path.read_bytes()
        end = 0
        for h in iter_batch_headers(data):
            assert batch_crc_ok(data, h)
            end = h.end
        assert end == len(data)
        decode_records(data, verify_crc=True)


@pytest.mark.parametrize("count", [1 << 20, (1 << 31) - 1])
def test_absurd_partition_counts_are_refused(fresh_cluster, count):
    """CreateTopics/CreatePartitions with millions of partitions: an error, not a broker stuck planning them."""
    from kafka.protocol.admin import CreateTopicsRequest

    cluster = fresh_cluster(brokers=1)
    client = WireClient.to(cluster.bootstrap_servers)
    client.sock.settimeout(10)
    req = CreateTopicsRequest(
        topics=[
            CreateTopicsRequest.CreatableTopic(
                name="huge", num_partitions=count, replication_factor=1, assignments=[], configs=[]
            )
        ],
        timeout_ms=5000,
        validate_only=False,
    )
    resp = client.request(req, 5)
    assert resp.topics[0].error_code != 0, "a topic with an absurd partition count was created"
    healthy(WireClient.to(cluster.bootstrap_servers))  # answers ApiVersions within its socket timeout


def test_size_limit_closes_only_that_connection(fresh_cluster):
    cluster = fresh_cluster(brokers=1, config={"socket_request_max_bytes": 4096, "group_initial_rebalance_delay_ms": 0})
    port = next(iter(cluster.brokers.values())).port
    assert exchange(port, struct.pack(">i", 4097) + b"x" * 4097) == "closed"
    assert exchange(port, struct.pack(">i", -1)) == "closed"
    healthy(WireClient.to(cluster.bootstrap_servers))  # answers ApiVersions within its socket timeout
