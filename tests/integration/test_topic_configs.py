"""Topic configs as Kafka accepts, validates, describes and applies them (issue 13, point 5).

Includes the KIP-467 per-record produce errors that some of them cause.
"""

from __future__ import annotations

import time

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.producer import ProduceRequest

from workbench.protocol.blocking_client import WireClient
from workbench.protocol.topic_config import CATALOGUE

NON_DEFAULT = {  # one legal, non-default value for every config Kafka has
    "cleanup.policy": "compact,delete",
    "compression.type": "zstd",
    "compression.gzip.level": "5",
    "compression.lz4.level": "10",
    "compression.zstd.level": "-5",
    "confluent.key.schema.validation": "true",  # Confluent Server's
    "confluent.value.schema.validation": "true",
    "delete.retention.ms": "1000",
    "file.delete.delay.ms": "1000",
    "flush.messages": "1000",
    "flush.ms": "2000",
    "follower.replication.throttled.replicas": "0:1,1:2",
    "index.interval.bytes": "8192",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "-1",
    "local.retention.ms": "1000",
    "max.compaction.lag.ms": "60000",
    "max.message.bytes": "2000000",
    "message.downconversion.enable": "false",
    "message.format.version": "2.8",
    "message.timestamp.after.max.ms": "3600000",
    "message.timestamp.before.max.ms": "86400000",
    "message.timestamp.difference.max.ms": "86400000",
    "message.timestamp.type": "LogAppendTime",
    "min.cleanable.dirty.ratio": "0.25",
    "min.compaction.lag.ms": "10",
    "min.insync.replicas": "2",
    "preallocate": "true",
    "remote.log.copy.disable": "true",
    "remote.log.delete.on.disable": "true",
    "remote.storage.enable": "false",
    "retention.bytes": "10000000",
    "retention.ms": "3600000",
    "segment.bytes": "1048576",
    "segment.index.bytes": "1048576",
    "segment.jitter.ms": "100",
    "segment.ms": "60000",
    "unclean.leader.election.enable": "true",
    "workbench.hot.segments": "3",
}


def _admin(cluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap_servers})


def _describe(a: AdminClient, topic: str) -> dict:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return a.describe_configs([res])[res].result(15)


def test_the_catalogue_is_kafkas_list():
    assert set(NON_DEFAULT) == set(CATALOGUE)


def test_create_topics_accepts_every_kafka_topic_config_and_describe_shows_them(cluster, topic_name):
    a = _admin(cluster)
    a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=3, config=NON_DEFAULT)])[
        topic_name
    ].result(15)
    configs = _describe(a, topic_name)
    for name, value in NON_DEFAULT.items():
        assert configs[name].value == value, name
        assert not configs[name].is_default, name
        assert configs[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, name


def test_describe_gives_every_default_with_its_source(cluster, topic_name):
    a = _admin(cluster)
    a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])[topic_name].result(15)
    configs = _describe(a, topic_name)
    assert set(CATALOGUE) <= set(configs)
    for name, spec in CATALOGUE.items():
        assert configs[name].is_default, name
        assert configs[name].source == ConfigSource.DEFAULT_CONFIG.value, name
        assert configs[name].value == spec.default, name


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("segment.bytes", "abc", "32-bit integer"),
        ("segment.bytes", "99999999999", "32-bit integer"),
        ("min.insync.replicas", "0", "at least 1"),
        ("compression.type", "brotli", "must be one of"),
        ("cleanup.policy", "delete,shred", "must be one of"),
        ("min.cleanable.dirty.ratio", "1.5", "no more than 1"),
        ("preallocate", "yes", "true or false"),
        ("compression.zstd.level", "23", "no more than 22"),
        ("leader.replication.throttled.replicas", "everything", "partitionId:brokerId"),
        ("message.format.version", "latest", "Version"),
        ("no.such.config", "1", "Unknown topic config"),
    ],
)
def test_invalid_configs_are_refused_with_invalid_config(cluster, topic_name, name, value, why):
    a = _admin(cluster)
    with pytest.raises(KafkaException) as err:
        a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1, config={name: value})])[
            topic_name
        ].result(15)
    kerr = err.value.args[0]
    assert kerr.name() == "INVALID_CONFIG"
    assert why in kerr.str() and name in kerr.str()


def test_alter_and_incremental_alter_accept_kafka_configs(cluster, topic_name):
    a = _admin(cluster)
    a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])[topic_name].result(15)
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic_name,
        incremental_configs=[
            ConfigEntry("segment.jitter.ms", "500", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("message.format.version", "0.10.2", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("leader.replication.throttled.replicas", "0:1", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    a.incremental_alter_configs([res])[res].result(15)
    configs = _describe(a, topic_name)
    assert configs["segment.jitter.ms"].value == "500"
    assert configs["message.format.version"].value == "0.10.2"
    assert configs["leader.replication.throttled.replicas"].value == "0:1"


def _leader(cluster, topic: str) -> WireClient:
    deadline = time.monotonic() + 15
    while True:
        c = WireClient.to(cluster.bootstrap_servers)
        md = c.request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic)]), 9)
        c.close()
        leader = md.topics[0].partitions[0].leader_id if md.topics[0].partitions else -1
        if leader >= 0:
            b = next(b for b in md.brokers if b.node_id == leader)
            return WireClient(b.host, b.port)
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _batch(records: list[tuple[bytes | None, bytes, int]], codec: int = 0) -> bytes:
    b = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i, (key, value, ts) in enumerate(records):
        b.append(i, timestamp=ts, key=key, value=value, headers=[])
    return bytes(b.build())


def _produce(c: WireClient, topic: str, batch: bytes):
    req = ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout_ms=5000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=batch)],
            )
        ],
    )
    return c.request(req, 9).responses[0].partition_responses[0]


def _create(cluster, topic: str, config: dict) -> None:
    # Cluster.create_topic returns once every broker's metadata shows the topic with its leader.
    cluster.create_topic(topic, partitions=1, replication_factor=1, config=config)


def test_log_append_time_stamps_batches_with_the_broker_clock(cluster, topic_name):
    _create(cluster, topic_name, {"message.timestamp.type": "LogAppendTime"})
    c = _leader(cluster, topic_name)
    before = int(time.time() * 1000)
    r = _produce(c, topic_name, _batch([(b"k", b"v", 1_000_000_000_000)]))
    after = int(time.time() * 1000)
    assert r.error_code == 0 and before <= r.log_append_time_ms <= after
    c.close()
    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap_servers, "group.id": topic_name, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic_name])
    m = consumer.poll(15)
    consumer.close()
    assert m is not None and m.error() is None
    assert m.timestamp() == (TIMESTAMP_LOG_APPEND_TIME, r.log_append_time_ms)


def test_timestamps_outside_before_and_after_max_ms_get_invalid_timestamp_per_record(cluster, topic_name):
    _create(
        cluster, topic_name, {"message.timestamp.before.max.ms": "60000", "message.timestamp.after.max.ms": "60000"}
    )
    c = _leader(cluster, topic_name)
    now = int(time.time() * 1000)
    r = _produce(
        c, topic_name, _batch([(b"a", b"ok", now), (b"b", b"old", now - 3_600_000), (b"c", b"new", now + 3_600_000)])
    )
    assert r.error_code == 32  # INVALID_TIMESTAMP
    assert [e.batch_index for e in r.record_errors] == [1, 2]
    assert all("out of range" in e.batch_index_error_message for e in r.record_errors)
    assert r.error_message
    ok = _produce(c, topic_name, _batch([(b"a", b"ok", now)]))
    assert (ok.error_code, ok.base_offset) == (0, 0)  # nothing of the refused batch was appended
    c.close()


def test_compacted_topic_refuses_keyless_records_with_record_errors(cluster, topic_name):
    _create(cluster, topic_name, {"cleanup.policy": "compact"})
    c = _leader(cluster, topic_name)
    now = int(time.time() * 1000)
    r = _produce(c, topic_name, _batch([(b"k0", b"v0", now), (None, b"v1", now), (b"k2", b"v2", now)]))
    assert r.error_code == 87  # INVALID_RECORD
    assert [(e.batch_index, e.batch_index_error_message) for e in r.record_errors] == [
        (1, "Compacted topic cannot accept message without key")
    ]
    assert "Compacted topic cannot accept message without key" in r.error_message
    c.close()


@pytest.mark.parametrize(
    ("codec_name", "codec"), [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4), ("uncompressed", 0)]
)
def test_compression_type_recompresses_on_append(cluster, topic_name, codec_name, codec):
    _create(cluster, topic_name, {"compression.type": codec_name})
    source = 0 if codec else 1  # produce in some other codec
    c = _leader(cluster, topic_name)
    now = int(time.time() * 1000)
    r = _produce(c, topic_name, _batch([(b"k", b"v" * 100, now), (None, b"w", now + 1)], codec=source))
    assert r.error_code == 0
    c.close()

    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap_servers, "group.id": topic_name, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic_name])
    got = []
    while len(got) < 2:
        m = consumer.poll(15)
        assert m is not None and m.error() is None
        got.append((m.key(), m.value(), m.timestamp()[1]))
    consumer.close()
    assert got == [(b"k", b"v" * 100, now), (None, b"w", now + 1)]
    raw = _fetch_raw(cluster, topic_name)
    assert DefaultRecordBatch(raw).compression_type == codec


def _fetch_raw(cluster, topic: str) -> bytes:
    from kafka.protocol.consumer import FetchRequest

    c = _leader(cluster, topic)
    req = FetchRequest(
        replica_id=-1,
        max_wait_ms=100,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[
            FetchRequest.FetchTopic(
                topic=topic,
                partitions=[
                    FetchRequest.FetchTopic.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
                ],
            )
        ],
    )
    part = c.request(req, 12).responses[0].partitions[0]
    c.close()
    return bytes(part.records)


def test_producer_default_keeps_the_producers_codec(cluster, topic_name):
    _create(cluster, topic_name, {})
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "compression.type": "lz4"})
    p.produce(topic_name, b"x" * 1000, partition=0)
    assert p.flush(15) == 0
    assert DefaultRecordBatch(_fetch_raw(cluster, topic_name)).compression_type == 3


@pytest.mark.parametrize("config", [{"message.timestamp.type": "LogAppendTime"}, {"compression.type": "gzip"}])
def test_a_damaged_batch_is_refused_not_laundered_by_a_rewrite(cluster, topic_name, config):
    _create(cluster, topic_name, config)
    c = _leader(cluster, topic_name)
    damaged = bytearray(_batch([(b"k", b"value", int(time.time() * 1000))]))
    damaged[-1] ^= 0x01
    assert _produce(c, topic_name, bytes(damaged)).error_code == 2  # CORRUPT_MESSAGE
    c.close()
