"""Exact protocol behaviour: malformed input, unsupported requests, idempotent retries."""

from __future__ import annotations

import struct
import time

from confluent_kafka import Producer
from kafka.protocol.metadata import ApiVersionsRequest, MetadataRequest
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest

from workbench.protocol.blocking_client import WireClient, make_batch


def leader_client(cluster, topic: str, partition: int = 0, timeout: float = 10.0) -> WireClient:
    """A connection to the partition's leader, once that leader itself knows it leads it
    (metadata reaches brokers a few milliseconds apart, as in Kafka)."""
    deadline = time.monotonic() + timeout
    while True:
        c = WireClient.to(cluster.bootstrap_servers)
        md = c.request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic)]), 9)
        c.close()
        leader = next(p.leader_id for t in md.topics for p in t.partitions if p.partition_index == partition)
        broker = next(b for b in md.brokers if b.node_id == leader)
        client = WireClient(broker.host, broker.port)
        own = client.request(
            MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False),
            9,
        )
        if any(p.leader_id == leader for t in own.topics for p in t.partitions if p.partition_index == partition):
            return client
        client.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"broker {leader} never learned it leads {topic}-{partition}")
        time.sleep(0.05)


def produce(client: WireClient, topic: str, batch: bytes, acks: int = -1):
    req = ProduceRequest(
        transactional_id=None,
        acks=acks,
        timeout_ms=5000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=batch)],
            )
        ],
    )
    resp = client.request(req, 9)
    return resp.responses[0].partition_responses[0]


def test_api_versions_v3_and_unknown_version(cluster):
    c = WireClient.to(cluster.bootstrap_servers)
    resp = c.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
    keys = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
    assert keys[0] == (0, 9) and keys[1] == (0, 12) and keys[18] == (0, 3)
    # ApiVersions at a version we do not support: a v0 answer with UNSUPPORTED_VERSION and our ranges.
    c.send_raw(struct.pack(">ihhih", 10 + 1, 18, 77, 99, 1) + b"x" + b"\x00")
    frame = c.recv_frame()
    cid, error = struct.unpack_from(">ih", frame)
    assert (cid, error) == (99, 35)
    c.close()


def test_unknown_api_key_or_version_closes_that_connection_as_kafka_does(cluster):
    # Kafka's RequestContext.parseRequest raises InvalidRequestException for a request it cannot
    # parse at its version, and SocketServer closes the channel: no response, certainly not a
    # 6-byte body that is valid in no response layout.
    healthy = WireClient.to(cluster.bootstrap_servers)
    for api_key, version in ((9999, 0), (3, 99), (8, 77)):
        c = WireClient.to(cluster.bootstrap_servers)
        # An answered request first: its response is still written before the close.
        c.send_raw(struct.pack(">ihhih", 10, 18, 0, 1, -1))
        c.send_raw(struct.pack(">ihhih", 10, api_key, version, 5, -1))
        assert struct.unpack_from(">ih", c.recv_frame()) == (1, 0)
        assert c.is_closed(), f"api {api_key} v{version} left the connection open"
    assert healthy.request(ApiVersionsRequest(), 0).error_code == 0
    healthy.close()


def test_malformed_frame_closes_only_that_connection(cluster, topic_name):
    healthy = WireClient.to(cluster.bootstrap_servers)
    bad = WireClient.to(cluster.bootstrap_servers)
    bad.send_raw(struct.pack(">i", 12) + struct.pack(">hhi", 1, 11, 1) + b"\xff\xff\xff\xff")
    assert bad.is_closed()
    huge = WireClient.to(cluster.bootstrap_servers)
    huge.send_raw(struct.pack(">i", 2_000_000_000))
    assert huge.is_closed()
    negative = WireClient.to(cluster.bootstrap_servers)
    negative.send_raw(struct.pack(">i", -7))
    assert negative.is_closed()
    # Everyone else carries on: the healthy connection and a real producer.
    assert healthy.request(ApiVersionsRequest(), 0).error_code == 0
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    p.produce(topic_name, b"still here")
    assert p.flush(15) == 0


def test_corrupt_batch_is_rejected_with_corrupt_message(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    c = leader_client(cluster, topic_name)
    batch = bytearray(make_batch([b"hello"]))
    batch[-1] ^= 0xFF  # flip a bit covered by the CRC
    result = produce(c, topic_name, bytes(batch), acks=1)
    assert result.error_code == 2  # CORRUPT_MESSAGE
    ok = produce(c, topic_name, make_batch([b"fine"]), acks=1)
    assert ok.error_code == 0 and ok.base_offset == 0
    c.close()


def test_idempotent_retry_is_deduplicated_and_gaps_are_rejected(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=1)
    c = leader_client(cluster, topic_name)
    init = c.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000), 4)
    assert init.error_code == 0
    pid, epoch = init.producer_id, init.producer_epoch
    first = make_batch([b"a", b"b", b"c"], producer_id=pid, producer_epoch=epoch, base_sequence=0)
    r1 = produce(c, topic_name, first)
    assert (r1.error_code, r1.base_offset) == (0, 0)
    # The same batch again, as a producer retrying after a lost response: same offset, nothing appended.
    r2 = produce(c, topic_name, first)
    assert (r2.error_code, r2.base_offset) == (0, 0)
    # A gap in sequence numbers is refused.
    gap = make_batch([b"x"], producer_id=pid, producer_epoch=epoch, base_sequence=10)
    assert produce(c, topic_name, gap).error_code == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    nxt = make_batch([b"d"], producer_id=pid, producer_epoch=epoch, base_sequence=3)
    r3 = produce(c, topic_name, nxt)
    assert (r3.error_code, r3.base_offset) == (0, 3)
    c.close()


def test_a_pipelining_client_gets_requests_read_past_the_ones_still_waiting(cluster, topic_name):
    """librdkafka pipelines up to `max.in.flight` requests (1,000,000 by default) on a connection;
    the broker keeps reading them while earlier ones wait (acks=all, long polls), up to
    `MAX_IN_FLIGHT_PER_CONNECTION`. Here 40 long-poll fetches wait on an empty partition and the
    41st request, on the same connection, is the produce that wakes them: with a window of 16
    the produce was never read until the fetches timed out (two minutes), so nothing came back."""
    from kafka.protocol.consumer import FetchResponse
    from kafka.protocol.producer import ProduceResponse

    from tests.integration.test_offsets_and_fetch import fetch_request

    cluster.create_topic(topic_name, partitions=1)
    c = leader_client(cluster, topic_name, timeout=15.0)
    c.sock.settimeout(30.0)
    frames = []
    for cid in range(1, 41):
        req = fetch_request(topic_name, 0, 120_000, 1)
        req.API_VERSION = 11
        req.with_header(correlation_id=cid, client_id="pipeline-test")
        frames.append(bytes(req.encode(header=True, framed=True)))
    produce_req = ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout_ms=5000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic_name,
                partition_data=[
                    ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=make_batch([b"wake"]))
                ],
            )
        ],
    )
    produce_req.API_VERSION = 9
    produce_req.with_header(correlation_id=41, client_id="pipeline-test")
    c.send_raw(b"".join(frames) + bytes(produce_req.encode(header=True, framed=True)))
    for cid in range(1, 41):
        frame = c.recv_frame()
        assert struct.unpack_from(">i", frame)[0] == cid  # answered in request order
        part = FetchResponse.decode(frame[4:], version=11).responses[0].partitions[0]
        assert part.error_code == 0 and part.records, f"fetch {cid} returned no records"
    frame = c.recv_frame()
    assert struct.unpack_from(">i", frame)[0] == 41
    produced = ProduceResponse.decode(frame[5:], version=9).responses[0].partition_responses[0]
    assert produced.error_code == 0 and produced.base_offset == 0
    c.close()
