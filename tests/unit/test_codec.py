"""The request/response codec, with byte strings only (no sockets)."""

from __future__ import annotations

import struct

import pytest
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse
from kafka.protocol.producer import ProduceRequest

from workbench.broker.apis import SUPPORTED_APIS
from workbench.protocol.codec import decode_request, encode_response, encode_unsupported_api_versions
from workbench.protocol.errors import MalformedRequestError


def frame_of(request, version: int, correlation_id: int = 7, client_id: str = "test") -> bytes:
    """What a client puts on the wire, minus the 4-byte size prefix."""
    request.API_VERSION = version
    request.with_header(correlation_id=correlation_id, client_id=client_id)
    return bytes(request.encode(header=True))


@pytest.mark.parametrize("version", [0, 4, 9, 11])
def test_metadata_request_round_trip_flexible_and_not(version):
    raw = frame_of(
        MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="orders")], allow_auto_topic_creation=False),
        version,
    )
    req = decode_request(raw, SUPPORTED_APIS)
    assert (req.api_key, req.api_version, req.correlation_id, req.client_id) == (3, version, 7, "test")
    assert [t.name for t in req.body.topics] == ["orders"]
    if version >= 4:
        assert req.body.allow_auto_topic_creation is False


def test_produce_request_records_are_opaque_bytes():
    batch = b"\x00" * 70
    r = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="t",
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=2, records=batch)],
            )
        ],
    )
    req = decode_request(frame_of(r, 9), SUPPORTED_APIS)
    pd = req.body.topic_data[0].partition_data[0]
    assert pd.index == 2 and bytes(pd.records) == batch


def test_api_versions_response_header_has_no_tagged_fields_even_at_v3():
    body = {
        "error_code": 0,
        "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 3}],
        "throttle_time_ms": 0,
    }
    out = encode_response(18, 3, 42, body)
    size, correlation_id = struct.unpack_from(">ii", out)
    assert size == len(out) - 4 and correlation_id == 42
    # Body starts right after the correlation id: error_code int16 = 0, then a compact array.
    assert out[8:10] == b"\x00\x00"
    decoded = ApiVersionsResponse.decode(out[8:], version=3)
    assert decoded.api_keys[0].max_version == 3


def test_flexible_response_header_carries_empty_tag_section():
    out = encode_response(3, 9, 5, {"brokers": [], "topics": [], "cluster_id": "c", "controller_id": 1})
    assert out[8] == 0  # empty tagged-field section of response header v1
    decoded = MetadataResponse.decode(out[9:], version=9)
    assert decoded.cluster_id == "c"


def test_unsupported_api_versions_version_answers_in_v0_with_error_35():
    raw = struct.pack(">hhih", 18, 99, 11, 4) + b"test" + b"\x00"  # header v2: empty tag section
    req = decode_request(raw, SUPPORTED_APIS)
    assert req.body is None and req.api_version == 99
    out = encode_unsupported_api_versions(req.correlation_id, SUPPORTED_APIS)
    decoded = ApiVersionsResponse.decode(out[8:], version=0)
    assert decoded.error_code == 35
    assert {k.api_key for k in decoded.api_keys} == set(SUPPORTED_APIS)


def test_unknown_api_key_decodes_header_only():
    req = decode_request(struct.pack(">hhih", 9999, 0, 3, -1), SUPPORTED_APIS)
    assert req.body is None and req.correlation_id == 3 and req.client_id is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # nothing at all
        b"\x00\x03\x00",  # shorter than a header
        struct.pack(">hhih", 3, 1, 1, 200) + b"ab",  # client id longer than the frame
        struct.pack(">hhih", 3, 1, 1, -5),  # negative client id length
        struct.pack(">hhih", 1, 11, 1, -1) + b"\xff\xff\xff\xff\xff\xff",  # fetch body of garbage
    ],
)
def test_malformed_frames_raise_one_error(raw):
    with pytest.raises(MalformedRequestError):
        decode_request(raw, SUPPORTED_APIS)


def test_fetch_request_v12_flexible_decodes():
    r = FetchRequest(
        replica_id=-1,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=[
            FetchRequest.FetchTopic(
                topic="t",
                partitions=[
                    FetchRequest.FetchTopic.FetchPartition(partition=0, fetch_offset=5, partition_max_bytes=100)
                ],
            )
        ],
        forgotten_topics_data=[],
        rack_id="",
    )
    req = decode_request(frame_of(r, 12), SUPPORTED_APIS)
    assert req.body.topics[0].partitions[0].fetch_offset == 5
    assert req.body.max_wait_ms == 500


def test_api_versions_request_v3_decodes():
    r = ApiVersionsRequest(client_software_name="librdkafka", client_software_version="2.6.0")
    req = decode_request(frame_of(r, 3), SUPPORTED_APIS)
    assert req.body.client_software_name == "librdkafka"
