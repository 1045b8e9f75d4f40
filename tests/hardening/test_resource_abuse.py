"""Resource abuse: many idle connections, a slow-loris client sending one byte per second, and a
client that pipelines Fetch requests and never reads the responses. A real producer and consumer
must be unaffected throughout (latency of a produce round trip stays low)."""

from __future__ import annotations

import resource
import socket
import time

from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import ApiVersionsRequest

from workbench.protocol.blocking_client import WireClient

IDLE = 1000


def test_idle_slow_and_unread_connections_leave_others_unaffected(fresh_cluster, topic_name):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, IDLE + 500), hard))
    cluster = fresh_cluster(brokers=1)
    cluster.create_topic(topic_name)
    producer = cluster.producer(linger_ms=0)
    for i in range(50):
        producer.send(topic_name, {"i": i, "pad": "x" * 1000})
    producer.flush()
    port = next(iter(cluster.brokers.values())).port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE)]
    slow = socket.create_connection(("127.0.0.1", port))
    frame = ApiVersionsRequest()
    frame.API_VERSION = 0
    frame.with_header(correlation_id=1, client_id="slow")
    slow_bytes = bytes(frame.encode(header=True, framed=True))
    # A client that asks for data again and again and never reads: the broker must not buffer
    # without bound or block its event loop on it.
    hog = socket.create_connection(("127.0.0.1", port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    fetch = FetchRequest(
        replica_id=-1,
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=[
            FetchRequest.FetchTopic(
                topic=topic_name,
                partitions=[
                    FetchRequest.FetchTopic.FetchPartition(
                        partition=0,
                        current_leader_epoch=-1,
                        fetch_offset=0,
                        log_start_offset=-1,
                        partition_max_bytes=1 << 20,
                    )
                ],
            )
        ],
        forgotten_topics_data=[],
        rack_id="",
    )
    fetch.API_VERSION = 11
    fetch.with_header(correlation_id=2, client_id="hog")
    fetch_bytes = bytes(fetch.encode(header=True, framed=True))
    hog.setblocking(False)
    sent_fetches = 0
    worst = 0.0
    try:
        for i in range(6):
            slow.send(slow_bytes[i : i + 1])  # one byte per second
            for _ in range(50):
                try:
                    hog.send(fetch_bytes)
                    sent_fetches += 1
                except BlockingIOError:
                    break
            start = time.monotonic()
            producer.send_and_wait(topic_name, {"probe": i}, timeout=10)
            probe = WireClient.to(cluster.bootstrap_servers)
            assert probe.request(ApiVersionsRequest(), 0).error_code == 0
            probe.close()
            worst = max(worst, time.monotonic() - start)
            time.sleep(1.0)
        consumer = cluster.consumer(None, topic_name)
        assert len(consumer.read(100, timeout=15)) == 56
        consumer.close()
        assert cluster.brokers[1].alive
    finally:
        print(
            f"\nresource abuse: {IDLE} idle connections, slow-loris, {sent_fetches} unread fetches; "
            f"worst produce+probe round trip {worst * 1000:.0f} ms"
        )
        for s in [*idle, slow, hog]:
            s.close()
    assert worst < 2.0
