"""Small produce requests that hold enormous batches (issue 12, item 7).

Sent over a raw socket to a real broker: a 33 KB zstd batch holding one 1 GiB record,
a batch of 60 million empty records, and gzip/lz4 batches that inflate past the cap.
Before the fix the broker decompressed each one whole (seconds of event loop, gigabytes
of memory; fenced by the controller meanwhile). Now each is refused while it is being
decompressed, with the error Kafka gives, the broker's peak RSS stays flat, and the
broker keeps serving and stays in the cluster.
"""

from __future__ import annotations

import struct
import time
import zlib

import lz4.frame
import pytest
import zstandard
from crc32c import crc32c
from kafka.protocol.producer import ProduceRequest

from workbench.protocol.blocking_client import WireClient
from workbench.protocol.errors import ErrorCode
from workbench.protocol.records import MAX_RECORDS_PER_BATCH

GZIP, LZ4, ZSTD = 1, 3, 4
MiB = 1 << 20
EMPTY_RECORD = b"\x0c\x00\x00\x00\x01\x01\x00"  # length 6, attrs, ts delta 0, offset delta 0, null key and value


def varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def one_record_head(value_len: int) -> bytes:
    """Everything of a record with a `value_len`-byte value except the value and headers count."""
    body_len = 1 + 1 + 1 + 1 + len(varint(value_len)) + value_len + 1
    return varint(body_len) + b"\x00\x00\x00" + varint(-1) + varint(value_len)


def compress(codec: int, pieces) -> bytes:
    if codec == ZSTD:
        c = zstandard.ZstdCompressor(level=1).compressobj()
        return b"".join([*(c.compress(p) for p in pieces), c.flush()])
    if codec == GZIP:
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join([*(c.compress(p) for p in pieces), c.flush()])
    c = lz4.frame.LZ4FrameCompressor()
    return b"".join([c.begin(), *(c.compress(p) for p in pieces), c.flush()])


def batch(payload: bytes, count: int, codec: int) -> bytes:
    """A v2 batch with a correct CRC around an already compressed `payload`."""
    now = int(time.time() * 1000)
    body = struct.pack(">hiqqqhii", codec, count - 1, now, now, -1, -1, -1, count) + payload
    length = 4 + 1 + 4 + len(body)
    return struct.pack(">qiibI", 0, length, -1, 2, crc32c(body)) + body


def huge_record(codec: int, size: int) -> bytes:
    zeros = bytes(MiB)
    return batch(compress(codec, [one_record_head(size), *([zeros] * (size // MiB)), b"\x00"]), 1, codec)


def many_records(count: int, header_count: int) -> bytes:
    chunk = EMPTY_RECORD * MiB
    pieces = [chunk] * (count // MiB) + [EMPTY_RECORD * (count % MiB)]
    return batch(compress(ZSTD, pieces), header_count, ZSTD)


def produce(client: WireClient, topic: str, records: bytes):
    req = ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout_ms=5000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=records)],
            )
        ],
    )
    return client.request(req, 9).responses[0].partition_responses[0]


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def hostile_cluster(tmp_path_factory):
    from workbench import Cluster

    with Cluster(brokers=3, data_dir=tmp_path_factory.mktemp("hostile")) as c:
        yield c


HOSTILE = {
    # name: (builder, expected error)
    "zstd: one 1 GiB record in 33 KB": (lambda: huge_record(ZSTD, 1024 * MiB), ErrorCode.MESSAGE_TOO_LARGE),
    "gzip: one 64 MiB record": (lambda: huge_record(GZIP, 64 * MiB), ErrorCode.MESSAGE_TOO_LARGE),
    "lz4: one 64 MiB record": (lambda: huge_record(LZ4, 64 * MiB), ErrorCode.MESSAGE_TOO_LARGE),
    "zstd: 60 million empty records": (lambda: many_records(60_000_000, 60_000_000), ErrorCode.INVALID_RECORD),
    "zstd: 60 million records under a header that says one": (
        lambda: many_records(60_000_000, 1),
        ErrorCode.MESSAGE_TOO_LARGE,
    ),
}


# Topics whose configs make the broker decode records before appending (LogValidator's rules).
TOPIC_RULES = {
    "plain": {},
    "compression.type=lz4": {"compression.type": "lz4"},
    "LogAppendTime": {"message.timestamp.type": "LogAppendTime"},
}


CASES = [(name, "plain") for name in HOSTILE] + [
    ("zstd: one 1 GiB record in 33 KB", rules) for rules in TOPIC_RULES if rules != "plain"
]


@pytest.mark.parametrize(("name", "rules"), CASES)
def test_a_hostile_batch_is_refused_and_the_broker_keeps_serving(hostile_cluster, topic_name, name, rules):
    build, expected = HOSTILE[name]
    records = build()
    assert len(records) < 1_000_000  # small on the wire: under max.message.bytes
    cluster = hostile_cluster
    cluster.create_topic(topic_name, 1, replication_factor=3, config=TOPIC_RULES[rules])
    producer = cluster.producer(linger_ms=0)
    producer.send(topic_name, "before")
    assert producer.flush() == 0
    leader = cluster.admin().list_topics(topic_name, timeout=10).topics[topic_name].partitions[0].leader
    pid = cluster.broker_pids()[leader]
    rss_before = peak_rss_mb(pid)

    client = WireClient("127.0.0.1", cluster.brokers[leader].port, timeout=60)
    r = produce(client, topic_name, records)
    assert r.error_code == expected, (r.error_code, r.error_message)
    assert peak_rss_mb(pid) - rss_before < 150, "the broker decompressed the batch in memory"
    # The same connection and the broker still serve, and the broker is still in the cluster.
    r = produce(client, topic_name, batch(compress(ZSTD, [one_record_head(2) + b"ok\x00"]), 1, ZSTD))
    assert r.error_code == 0, r
    client.close()
    producer.send(topic_name, "after")
    assert producer.flush() == 0
    metadata = cluster.admin().list_topics(topic_name, timeout=10)
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert sorted(metadata.topics[topic_name].partitions[0].isrs) == [1, 2, 3]
    assert cluster.brokers[leader].alive


def test_the_record_count_cap_is_above_what_clients_send():
    # librdkafka's batch.num.messages tops out at 1,000,000; Kafka's producer has no count limit
    # but its batch.size (16 KB default) keeps batches far below this.
    assert MAX_RECORDS_PER_BATCH >= 1_000_000
