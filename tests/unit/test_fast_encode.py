"""The hand-written Produce/Fetch/Metadata response encoders write exactly kafka-python's bytes.

`workbench.protocol.fast_encode` exists for speed only; kafka-python's
schema-generated classes stay the reference. Each generated response is encoded
both ways at every version we serve and must match byte for byte, and must
decode back with kafka-python to the same values.
"""

from __future__ import annotations

import struct
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.protocol.consumer import FetchRequest

from workbench.protocol.codec import RESPONSE_CLASSES, build
from workbench.protocol.fast_encode import (
    encode_fetch_request_v12,
    encode_fetch_response,
    encode_metadata_response,
    encode_produce_response,
)

int16 = st.integers(-(2**15), 2**15 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
names = st.text(min_size=0, max_size=300)
nullable_text = st.none() | st.text(max_size=200)


def reference(api_key: int, version: int, correlation_id: int, body: dict) -> bytes:
    """kafka-python's encoding of `body`, framed with the response header."""
    cls = RESPONSE_CLASSES[api_key]
    payload = bytes(build(cls, body).encode(version=version))
    header = struct.pack(">i", correlation_id) + (b"\x00" if cls.flexible_version_q(version) else b"")
    return struct.pack(">i", len(header) + len(payload)) + header + payload


produce_partition = st.fixed_dictionaries(
    {
        "index": int32,
        "error_code": int16,
        "base_offset": int64,
        "log_append_time_ms": int64,
        "log_start_offset": int64,
        "record_errors": st.lists(
            st.fixed_dictionaries({"batch_index": int32, "batch_index_error_message": nullable_text}),
            max_size=3,
        ),
        "error_message": nullable_text,
    }
)
produce_body = st.fixed_dictionaries(
    {
        "responses": st.lists(
            st.fixed_dictionaries({"name": names, "partition_responses": st.lists(produce_partition, max_size=4)}),
            max_size=4,
        ),
        "throttle_time_ms": int32,
    }
)


@settings(max_examples=300, deadline=None)
@given(version=st.integers(3, 9), correlation_id=int32, body=produce_body)
def test_produce_response_matches_kafka_python(version, correlation_id, body):
    if version < 8:  # fields a version does not have must hold their defaults to be comparable
        for t in body["responses"]:
            for p in t["partition_responses"]:
                p["record_errors"], p["error_message"] = [], None
    ours = encode_produce_response(version, correlation_id, body)
    assert ours == reference(0, version, correlation_id, body)


fetch_partition = st.fixed_dictionaries(
    {
        "partition_index": int32,
        "error_code": int16,
        "high_watermark": int64,
        "last_stable_offset": int64,
        "log_start_offset": int64,
        "aborted_transactions": st.none() | st.just([]),
        "preferred_read_replica": int32,
        "records": st.none() | st.binary(max_size=2000),
    }
)
fetch_body = st.fixed_dictionaries(
    {
        "throttle_time_ms": int32,
        "error_code": int16,
        "session_id": int32,
        "responses": st.lists(
            st.fixed_dictionaries({"topic": names, "partitions": st.lists(fetch_partition, max_size=4)}),
            max_size=4,
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(version=st.integers(4, 12), correlation_id=int32, body=fetch_body)
def test_fetch_response_matches_kafka_python(version, correlation_id, body):
    if version < 7:
        body["error_code"], body["session_id"] = 0, 0
    for t in body["responses"]:
        for p in t["partitions"]:
            if version < 11:
                p["preferred_read_replica"] = -1
            if version < 5:
                p["log_start_offset"] = -1
    ours = encode_fetch_response(version, correlation_id, body)
    assert ours == reference(1, version, correlation_id, body)
    decoded = RESPONSE_CLASSES[1].decode(ours[8 + (version >= 12) :], version=version)
    got = [
        (t.topic, [(p.partition_index, p.high_watermark, p.records) for p in t.partitions]) for t in decoded.responses
    ]
    want = [
        (t["topic"], [(p["partition_index"], p["high_watermark"], p["records"]) for p in t["partitions"]])
        for t in body["responses"]
    ]
    assert got == want


def test_fetch_with_a_diverging_epoch_takes_the_generic_path():
    body = {
        "throttle_time_ms": 0,
        "error_code": 0,
        "session_id": 0,
        "responses": [
            {
                "topic": "t",
                "partitions": [
                    {
                        "partition_index": 0,
                        "error_code": 0,
                        "high_watermark": 5,
                        "last_stable_offset": 5,
                        "log_start_offset": 0,
                        "aborted_transactions": [],
                        "preferred_read_replica": -1,
                        "records": b"",
                        "diverging_epoch": {"epoch": 1, "end_offset": 3},
                    }
                ],
            }
        ],
    }
    assert encode_fetch_response(12, 7, body) is None
    assert encode_produce_response(10, 7, {"responses": []}) is None


fetch_request_partition = st.tuples(int32, int32, int64, int32, int64, int32)


@settings(max_examples=300, deadline=None)
@given(
    correlation_id=int32,
    client_id=st.text(max_size=50),
    replica_id=int32,
    max_wait=int32,
    min_bytes=int32,
    max_bytes=int32,
    topics=st.lists(st.tuples(names, st.lists(fetch_request_partition, max_size=4)), max_size=4),
)
def test_replica_fetch_request_matches_kafka_python(
    correlation_id, client_id, replica_id, max_wait, min_bytes, max_bytes, topics
):
    ours = encode_fetch_request_v12(
        correlation_id,
        client_id,
        replica_id=replica_id,
        max_wait_ms=max_wait,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        topics=topics,
    )
    T, P = FetchRequest.FetchTopic, FetchRequest.FetchTopic.FetchPartition
    request = FetchRequest(
        replica_id=replica_id,
        max_wait_ms=max_wait,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        forgotten_topics_data=[],
        rack_id="",
        topics=[
            T(
                topic=name,
                partitions=[
                    P(
                        partition=p[0],
                        current_leader_epoch=p[1],
                        fetch_offset=p[2],
                        last_fetched_epoch=p[3],
                        log_start_offset=p[4],
                        partition_max_bytes=p[5],
                    )
                    for p in parts
                ],
            )
            for name, parts in topics
        ],
    )
    request.API_VERSION = 12
    request.with_header(correlation_id=correlation_id, client_id=client_id)
    assert ours == bytes(request.encode(header=True, framed=True))


@settings(max_examples=200, deadline=None)
@given(
    session_id=int32,
    session_epoch=int32,
    topics=st.lists(st.tuples(names, st.lists(fetch_request_partition, max_size=3)), max_size=3),
    forgotten=st.lists(st.tuples(names, st.lists(int32, max_size=4)), max_size=3),
)
def test_replica_fetch_request_with_a_fetch_session_matches_kafka_python(session_id, session_epoch, topics, forgotten):
    """KIP-227: the follower's session id, epoch and forgotten topics, byte for byte."""
    ours = encode_fetch_request_v12(
        7,
        "f",
        replica_id=2,
        max_wait_ms=250,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=topics,
        session_id=session_id,
        session_epoch=session_epoch,
        forgotten=forgotten,
    )
    T, P = FetchRequest.FetchTopic, FetchRequest.FetchTopic.FetchPartition
    F = FetchRequest.ForgottenTopic
    request = FetchRequest(
        replica_id=2,
        max_wait_ms=250,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=session_id,
        session_epoch=session_epoch,
        forgotten_topics_data=[F(topic=name, partitions=parts) for name, parts in forgotten],
        rack_id="",
        topics=[
            T(
                topic=name,
                partitions=[
                    P(
                        partition=p[0],
                        current_leader_epoch=p[1],
                        fetch_offset=p[2],
                        last_fetched_epoch=p[3],
                        log_start_offset=p[4],
                        partition_max_bytes=p[5],
                    )
                    for p in parts
                ],
            )
            for name, parts in topics
        ],
    )
    request.API_VERSION = 12
    request.with_header(correlation_id=7, client_id="f")
    assert ours == bytes(request.encode(header=True, framed=True))


node_ids = st.lists(int32, max_size=5)
metadata_partition = st.fixed_dictionaries(
    {
        "error_code": int16,
        "partition_index": int32,
        "leader_id": int32,
        "leader_epoch": int32,
        "replica_nodes": node_ids,
        "isr_nodes": node_ids,
        "offline_replicas": node_ids,
    }
)
metadata_body = st.fixed_dictionaries(
    {
        "throttle_time_ms": int32,
        "brokers": st.lists(
            st.fixed_dictionaries({"node_id": int32, "host": names, "port": int32, "rack": nullable_text}), max_size=4
        ),
        "cluster_id": nullable_text,
        "controller_id": int32,
        "topics": st.lists(
            st.fixed_dictionaries(
                {
                    "error_code": int16,
                    "name": names,
                    "topic_id": st.uuids(),
                    "is_internal": st.booleans(),
                    "partitions": st.lists(metadata_partition, max_size=5),
                }
            ),
            max_size=4,
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(version=st.integers(1, 12), correlation_id=int32, body=metadata_body)
def test_metadata_response_matches_kafka_python(version, correlation_id, body):
    # Fields a version does not have must hold their defaults to be comparable.
    if version < 3:
        body["throttle_time_ms"] = 0
    if version < 2:
        body["cluster_id"] = None
    for t in body["topics"]:
        for p in t["partitions"]:
            if version < 7:
                p["leader_epoch"] = -1
            if version < 5:
                p["offline_replicas"] = []
    ours = encode_metadata_response(version, correlation_id, body)
    assert ours == reference(3, version, correlation_id, body)
    decoded = RESPONSE_CLASSES[3].decode(ours[8 + (version >= 9) :], version=version)
    got = [
        (t.name, [(p.partition_index, p.leader_id, list(p.replica_nodes)) for p in t.partitions])
        for t in decoded.topics
    ]
    want = [
        (t["name"], [(p["partition_index"], p["leader_id"], p["replica_nodes"]) for p in t["partitions"]])
        for t in body["topics"]
    ]
    assert got == want


def test_metadata_v12_names_an_unknown_topic_id_with_a_null_name():
    body = {
        "throttle_time_ms": 0,
        "brokers": [],
        "cluster_id": None,
        "controller_id": -1,
        "topics": [{"error_code": 100, "name": None, "topic_id": uuid.uuid4(), "is_internal": False, "partitions": []}],
    }
    assert encode_metadata_response(12, 3, body) == reference(3, 12, 3, body)
    assert encode_metadata_response(11, 3, body) is None  # a name is required before v12: the generic path
    assert encode_metadata_response(0, 3, body) is None
