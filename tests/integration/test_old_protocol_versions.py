"""Old request versions, served the way Kafka 3.x serves them (issue 13).

Each test speaks one old version on the wire with kafka-python's schema classes
(the codec) and checks what Kafka answers at that version. The Go clients in
tests/interop/ show the same versions working end to end.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from kafka.protocol.admin import CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest
from kafka.protocol.consumer import ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest
from kafka.protocol.metadata import FindCoordinatorRequest, MetadataRequest

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
    resp = c.request(v0, 0)
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
    resp = c.request(v1, 1)
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
