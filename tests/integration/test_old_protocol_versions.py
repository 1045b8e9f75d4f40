"""Old request versions, served the way Kafka 3.x serves them (issue 13).

Each test speaks one old version on the wire with kafka-python's schema classes
(the codec) and checks what Kafka answers at that version. The Go clients in
tests/interop/ show the same versions working end to end.
"""

from __future__ import annotations

import struct
import time
import uuid

from confluent_kafka import Consumer, Producer
from kafka.protocol.admin import CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest
from kafka.protocol.consumer import FetchRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest
from kafka.protocol.metadata import FindCoordinatorRequest, MetadataRequest
from kafka.protocol.producer import ProduceRequest
from kafka.record.legacy_records import LegacyRecordBatch, LegacyRecordBatchBuilder

from workbench.protocol.blocking_client import WireClient

LATEST, EARLIEST = -1, -2


def _produce(cluster, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), partition=0)
    assert p.flush(15) == 0


def _leader(cluster, topic: str) -> WireClient:
    c = WireClient.to(cluster.bootstrap_servers)
    md = c.request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic)]), 1)
    c.close()
    leader = md.topics[0].partitions[0].leader_id
    b = next(b for b in md.brokers if b.node_id == leader)
    return WireClient(b.host, b.port)


def _coordinator(cluster, group: str) -> WireClient:
    c = WireClient.to(cluster.bootstrap_servers)
    fc = c.request(FindCoordinatorRequest(key=group), 0)
    c.close()
    assert fc.error_code == 0
    return WireClient(fc.host, fc.port)


#: Errors a client retries: the coordinator is still loading or just moved (the offsets topic is created
#: on the first FindCoordinator, so the first commit can meet it before its partition is loaded).
_RETRIABLE_COORDINATOR = {14, 15, 16}


def _commit(c: WireClient, req, version: int):
    deadline = time.monotonic() + 20
    while True:
        resp = c.request(req, version)
        codes = {p.error_code for t in resp.topics for p in t.partitions}
        if not codes & _RETRIABLE_COORDINATOR or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def test_list_offsets_v0_old_style_offsets(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    _produce(cluster, topic_name, 3)
    c = _leader(cluster, topic_name)

    def ask(timestamp: int, max_num: int) -> list[int]:
        req = ListOffsetsRequest(
            replica_id=-1,
            topics=[
                ListOffsetsRequest.ListOffsetsTopic(
                    name=topic_name,
                    partitions=[
                        ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition(
                            partition_index=0, timestamp=timestamp, max_num_offsets=max_num
                        )
                    ],
                )
            ],
        )
        part = c.request(req, 0).topics[0].partitions[0]
        assert part.error_code == 0
        return list(part.old_style_offsets)

    assert ask(LATEST, 1) == [3]  # what Burrow asks: the high watermark
    assert ask(EARLIEST, 1) == [0]
    assert ask(LATEST, 10) == [3, 0]  # newest first, as Kafka lists them
    c.close()


def test_offset_commit_v0_v1_and_offset_fetch_v0_round_trip(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = _coordinator(cluster, group)
    Topic = OffsetCommitRequest.OffsetCommitRequestTopic
    Part = Topic.OffsetCommitRequestPartition
    # v0: no generation, no member: a simple (standalone) commit.
    v0 = OffsetCommitRequest(
        group_id=group,
        topics=[
            Topic(name=topic_name, partitions=[Part(partition_index=0, committed_offset=5, committed_metadata="m0")])
        ],
    )
    resp = _commit(c, v0, 0)
    assert [(p.partition_index, p.error_code) for p in resp.topics[0].partitions] == [(0, 0)]
    # v1: generation -1 / empty member (sarama's default for a standalone commit) and a commit timestamp.
    v1 = OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=[
            Topic(
                name=topic_name,
                partitions=[Part(partition_index=1, committed_offset=7, commit_timestamp=-1, committed_metadata="m1")],
            )
        ],
    )
    resp = _commit(c, v1, 1)
    assert [(p.partition_index, p.error_code) for p in resp.topics[0].partitions] == [(1, 0)]
    fetch = OffsetFetchRequest(
        group_id=group,
        topics=[OffsetFetchRequest.OffsetFetchRequestTopic(name=topic_name, partition_indexes=[0, 1])],
    )
    got = c.request(fetch, 0)
    rows = sorted((p.partition_index, p.committed_offset, p.metadata, p.error_code) for p in got.topics[0].partitions)
    assert rows == [(0, 5, "m0", 0), (1, 7, "m1", 0)]
    c.close()


def test_offset_commit_to_an_unknown_topic_is_refused_per_partition(cluster):
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = _coordinator(cluster, group)
    Topic = OffsetCommitRequest.OffsetCommitRequestTopic
    req = OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=[
            Topic(
                name=f"no-such-{uuid.uuid4().hex[:6]}",
                partitions=[Topic.OffsetCommitRequestPartition(partition_index=0, committed_offset=1)],
            )
        ],
    )
    for version in (1, 8):
        resp = c.request(req, version)
        assert [p.error_code for p in resp.topics[0].partitions] == [3]  # UNKNOWN_TOPIC_OR_PARTITION
    c.close()


def test_describe_configs_v0_reports_is_default(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1, config={"retention.ms": "123456"})
    c = WireClient.to(cluster.bootstrap_servers)
    req = DescribeConfigsRequest(
        resources=[
            DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=2, resource_name=topic_name, configuration_keys=None
            )
        ]
    )
    res = c.request(req, 0).results[0]
    assert res.error_code == 0
    entries = {e.name: e for e in res.configs}
    assert entries["retention.ms"].value == "123456" and not entries["retention.ms"].is_default
    assert entries["cleanup.policy"].is_default
    c.close()


def test_create_topics_v0_v1_and_delete_topics_v0(cluster):
    c = WireClient.to(cluster.bootstrap_servers)
    md = c.request(MetadataRequest(topics=[]), 1)
    controller = next(b for b in md.brokers if b.node_id == md.controller_id)
    c.close()
    c = WireClient(controller.host, controller.port)
    name = f"old-{uuid.uuid4().hex[:8]}"
    Creatable = CreateTopicsRequest.CreatableTopic

    def create(version: int, **kw):
        req = CreateTopicsRequest(
            topics=[Creatable(name=name, num_partitions=2, replication_factor=1, assignments=[], configs=[])],
            timeout_ms=10000,
            **kw,
        )
        return c.request(req, version).topics[0]

    assert create(1, validate_only=True).error_code == 0  # v1: validate only, nothing created
    md = c.request(
        MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=name)], allow_auto_topic_creation=False), 4
    )
    assert md.topics[0].error_code == 3
    assert create(0).error_code == 0
    assert create(0).error_code == 36  # TOPIC_ALREADY_EXISTS
    # Metadata v0: an empty topic list means every topic (from v1 on it means none).
    md0 = c.request(MetadataRequest(topics=[]), 0)
    assert name in {t.name for t in md0.topics}
    resp = c.request(DeleteTopicsRequest(topic_names=[name], timeout_ms=10000), 0)
    assert [(r.name, r.error_code) for r in resp.responses] == [(name, 0)]
    c.close()


def _message_set(magic: int, values: list[bytes], codec: int = 0, ts0: int = 1_600_000_000_000) -> bytes:
    b = LegacyRecordBatchBuilder(magic=magic, compression_type=codec, batch_size=1 << 24)
    for i, v in enumerate(values):
        b.append(i, timestamp=ts0 + i, key=None, value=v)
    return bytes(b.build())


def _produce_old(c: WireClient, topic: str, version: int, records: bytes):
    req = ProduceRequest(
        acks=-1,
        timeout_ms=10000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=records)],
            )
        ],
    )
    return c.request(req, version).responses[0].partition_responses[0]


def _fetch_old(c: WireClient, topic: str, version: int, offset: int) -> list[tuple[int, int | None, bytes]]:
    req = FetchRequest(
        replica_id=-1,
        max_wait_ms=100,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[
            FetchRequest.FetchTopic(
                topic=topic,
                partitions=[
                    FetchRequest.FetchTopic.FetchPartition(
                        partition=0, fetch_offset=offset, partition_max_bytes=1 << 20
                    )
                ],
            )
        ],
    )
    part = c.request(req, version).responses[0].partitions[0]
    assert part.error_code == 0
    magic = 0 if version < 2 else 1
    out, data, pos = [], bytes(part.records), 0
    while pos < len(data):
        (size,) = struct.unpack_from(">i", data, pos + 8)
        assert data[pos + 16] == magic
        msg = LegacyRecordBatch(data[pos : pos + 12 + size], magic)
        assert msg.validate_crc()
        out += [(r.offset, r.timestamp, r.value) for r in msg]
        pos += 12 + size
    return out


def test_produce_v0_v2_message_sets_and_fetch_v0_v3_down_conversion(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    c = _leader(cluster, topic_name)
    r0 = _produce_old(c, topic_name, 0, _message_set(0, [b"m0-a", b"m0-b"]))
    assert (r0.error_code, r0.base_offset) == (0, 0)
    r1 = _produce_old(c, topic_name, 1, _message_set(1, [b"m1-a"], codec=1))  # a gzip wrapper message
    assert (r1.error_code, r1.base_offset) == (0, 2)
    r2 = _produce_old(c, topic_name, 2, _message_set(1, [b"m1-b", b"m1-c"], codec=2))  # snappy
    assert (r2.error_code, r2.base_offset, r2.log_append_time_ms) == (0, 3, -1)  # CreateTime topic
    bad = bytearray(_message_set(1, [b"broken"]))
    bad[-1] ^= 1
    assert _produce_old(c, topic_name, 2, bytes(bad)).error_code == 2  # CORRUPT_MESSAGE
    # A current consumer sees v2 records with the producer's timestamps (none for magic 0).
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": f"g-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic_name])
    seen = []
    while len(seen) < 5:
        m = consumer.poll(10)
        assert m is not None, f"only {seen} consumed"
        assert m.error() is None
        seen.append((m.offset(), m.value(), m.timestamp()[1]))
    consumer.close()
    assert [(o, v) for o, v, _ in seen] == [(0, b"m0-a"), (1, b"m0-b"), (2, b"m1-a"), (3, b"m1-b"), (4, b"m1-c")]
    assert [ts for *_, ts in seen][2:] == [1_600_000_000_000, 1_600_000_000_000, 1_600_000_000_001]
    # Old consumers get message format v0 (Fetch v0-1) or v1 (v2-3), with absolute offsets.
    for version in (0, 1, 2, 3):
        got = _fetch_old(c, topic_name, version, 1)
        assert [(o, v) for o, _, v in got] == [(1, b"m0-b"), (2, b"m1-a"), (3, b"m1-b"), (4, b"m1-c")]
        if version >= 2:
            assert got[1][1] == 1_600_000_000_000
    c.close()


def test_fetch_before_v10_cannot_get_zstandard(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "compression.type": "zstd"})
    p.produce(topic_name, b"z" * 500, partition=0)
    assert p.flush(15) == 0
    c = _leader(cluster, topic_name)

    def fetch(version: int):
        req = FetchRequest(
            replica_id=-1,
            max_wait_ms=100,
            min_bytes=1,
            max_bytes=1 << 20,
            topics=[
                FetchRequest.FetchTopic(
                    topic=topic_name,
                    partitions=[
                        FetchRequest.FetchTopic.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
                    ],
                )
            ],
        )
        return c.request(req, version).responses[0].partitions[0]

    old = fetch(9)
    assert old.error_code == 76 and not old.records  # UNSUPPORTED_COMPRESSION_TYPE (KIP-110)
    new = fetch(10)
    assert new.error_code == 0 and new.records
    assert [v for _, _, v in _fetch_old(c, topic_name, 3, 0)] == [b"z" * 500]  # v0-3: down-converted, readable
    c.close()
