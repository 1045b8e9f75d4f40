"""ListOffsets (earliest, latest, by timestamp) and Fetch long polling."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.protocol.consumer import FetchRequest

from tests.integration.test_wire_protocol import leader_client


def produce_with_timestamps(bootstrap: str, topic: str, timestamps: list[int]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    for i, ts in enumerate(timestamps):
        p.produce(topic, value=str(i).encode(), timestamp=ts, partition=0)
        p.flush(10)  # one batch per record, so the time index has an entry per record


def test_offsets_for_times_earliest_and_latest(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    base = 1_700_000_000_000
    timestamps = [base + 1000 * i for i in range(20)]
    produce_with_timestamps(cluster.bootstrap_servers, topic_name, timestamps)
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"ts-{topic_name}"})
    try:
        found = c.offsets_for_times([TopicPartition(topic_name, 0, base + 5500)], timeout=10)
        assert found[0].offset == 6  # first record at or after the timestamp
        found = c.offsets_for_times([TopicPartition(topic_name, 0, base)], timeout=10)
        assert found[0].offset == 0
        found = c.offsets_for_times([TopicPartition(topic_name, 0, base + 10**9)], timeout=10)
        assert found[0].offset == -1  # nothing that late: "end"
        assert c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10) == (0, 20)
    finally:
        c.close()


def test_kafka_python_offsets_for_times(cluster, topic_name):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    cluster.create_topic(topic_name, partitions=1)
    base = 1_650_000_000_000
    produce_with_timestamps(cluster.bootstrap_servers, topic_name, [base + 10 * i for i in range(10)])
    kc = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers)
    try:
        tp = KTP(topic_name, 0)
        result = kc.offsets_for_times({tp: base + 35})
        assert result[tp].offset == 4 and result[tp].timestamp == base + 40
        assert kc.beginning_offsets([tp])[tp] == 0
        assert kc.end_offsets([tp])[tp] == 10
    finally:
        kc.close()


def test_list_offsets_max_timestamp_kip_734(cluster, topic_name):
    """OffsetSpec.max_timestamp(): the offset and timestamp of the record with the largest
    timestamp (the first of equals), not the last record, through confluent-kafka's admin client."""
    from confluent_kafka.admin import OffsetSpec

    cluster.create_topic(topic_name, partitions=2)
    base = 1_700_000_000_000
    produce_with_timestamps(
        cluster.bootstrap_servers, topic_name, [base, base + 9000, base + 3000, base + 9000, base + 1]
    )
    admin = cluster.admin()
    tps = [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)]
    futures = admin.list_offsets({tp: OffsetSpec.max_timestamp() for tp in tps}, request_timeout=10)
    results = {tp.partition: f.result(timeout=15) for tp, f in futures.items()}
    assert (results[0].offset, results[0].timestamp) == (1, base + 9000)
    assert results[1].offset == -1  # an empty partition has no such record


def fetch_request(topic: str, offset: int, max_wait_ms: int, min_bytes: int) -> FetchRequest:
    return FetchRequest(
        replica_id=-1,
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=[
            FetchRequest.FetchTopic(
                topic=topic,
                partitions=[
                    FetchRequest.FetchTopic.FetchPartition(
                        partition=0, fetch_offset=offset, log_start_offset=-1, partition_max_bytes=1 << 20
                    )
                ],
            )
        ],
        forgotten_topics_data=[],
        rack_id="",
    )


def test_fetch_waits_up_to_max_wait_then_returns_empty(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    c = leader_client(cluster, topic_name)
    t0 = time.monotonic()
    resp = c.request(fetch_request(topic_name, 0, 400, 1), 11)
    waited = time.monotonic() - t0
    part = resp.responses[0].partitions[0]
    assert part.error_code == 0 and not part.records
    assert waited >= 0.35
    c.close()


def test_fetch_long_poll_returns_as_soon_as_data_arrives(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    c = leader_client(cluster, topic_name)

    def produce_later():
        time.sleep(0.3)
        p = Producer({"bootstrap.servers": cluster.bootstrap_servers})
        p.produce(topic_name, b"wake up", partition=0)
        p.flush(10)

    threading.Thread(target=produce_later).start()
    # max_wait is ten minutes and the socket gives up after one: only a fetch woken by the
    # append can answer in time.
    c.sock.settimeout(60)
    resp = c.request(fetch_request(topic_name, 0, 600_000, 1), 11)
    part = resp.responses[0].partitions[0]
    assert part.error_code == 0 and part.records and b"wake up" in bytes(part.records)
    assert part.high_watermark == 1
    c.close()


def test_fetch_out_of_range_offset(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    c = leader_client(cluster, topic_name)
    resp = c.request(fetch_request(topic_name, 50, 0, 1), 11)
    assert resp.responses[0].partitions[0].error_code == 1  # OFFSET_OUT_OF_RANGE
    c.close()


def test_auto_create_can_be_turned_off(fresh_cluster, topic_name):
    cluster = fresh_cluster(1, config={"auto_create_topics_enable": False})
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "message.timeout.ms": 2000})
    errors = []
    p.produce(topic_name, b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None
    assert topic_name not in cluster.topics()
