"""KIP-848 message classes (ConsumerGroupHeartbeat 68, ConsumerGroupDescribe 69).

kafka-python 3.0 has no classes for these APIs, so they are declared here the
way kafka-python declares its own: an `ApiMessage` subclass per message, whose
layout kafka-python's schema machinery builds from Apache Kafka's JSON message
schema (in `workbench.protocol.schemas`). I/O-free, like the rest of the codec.
"""

from __future__ import annotations

import struct
from typing import Any

from kafka.protocol.api_data import ApiData
from kafka.protocol.api_message import ApiMessage

_SCHEMAS = "workbench.protocol.schemas"

__all__ = [
    "RECORD_VALUES",
    "ConsumerGroupCurrentMemberAssignmentValue",
    "ConsumerGroupDescribeRequest",
    "ConsumerGroupDescribeResponse",
    "ConsumerGroupHeartbeatRequest",
    "ConsumerGroupHeartbeatResponse",
    "ConsumerGroupMemberMetadataValue",
    "ConsumerGroupMetadataValue",
    "ConsumerGroupTargetAssignmentMemberValue",
    "ConsumerGroupTargetAssignmentMetadataValue",
    "decode_record_key",
    "decode_record_value",
    "encode_record_key",
    "encode_record_value",
]


class ConsumerGroupHeartbeatRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ConsumerGroupHeartbeatResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ConsumerGroupDescribeRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ConsumerGroupDescribeResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


# --- KIP-848 group records in __consumer_offsets ---------------------------------------------
#
# Kafka's group coordinator persists a consumer group as keyed records in the group's
# `__consumer_offsets` partition (GroupMetadataManager's `*Record` helpers). A key is an int16
# record type followed by non-flexible strings; a value is an int16 version followed by the
# (flexible) value struct, which these classes encode with kafka-python's schema machinery.


class ConsumerGroupMetadataValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 3: the group epoch."""


class ConsumerGroupMemberMetadataValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 5: a member's subscription and identity."""


class ConsumerGroupTargetAssignmentMetadataValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 6: the epoch of the target assignment."""


class ConsumerGroupTargetAssignmentMemberValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 7: a member's target assignment."""


class ConsumerGroupCurrentMemberAssignmentValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 8: a member's epoch, owned partitions and partitions pending revocation."""


#: Record type (the key's leading int16) -> value class.
RECORD_VALUES: dict[int, type[ApiData]] = {
    3: ConsumerGroupMetadataValue,
    5: ConsumerGroupMemberMetadataValue,
    6: ConsumerGroupTargetAssignmentMetadataValue,
    7: ConsumerGroupTargetAssignmentMemberValue,
    8: ConsumerGroupCurrentMemberAssignmentValue,
}

#: Record types whose key carries a member id after the group id.
MEMBER_RECORD_TYPES = frozenset({5, 7, 8})


def encode_record_key(record_type: int, group_id: str, member_id: str | None = None) -> bytes:
    """`ConsumerGroup*Key`: int16 type, then group id (and member id) as int16-length strings."""
    out = struct.pack(">h", record_type) + _string(group_id)
    if record_type in MEMBER_RECORD_TYPES:
        out += _string(member_id or "")
    return out


def decode_record_key(data: bytes) -> tuple[int, str, str | None]:
    """(type, group id, member id or None); ValueError for a key that is not a KIP-848 record's."""
    if len(data) < 4:
        raise ValueError("truncated consumer group record key")
    (record_type,) = struct.unpack_from(">h", data)
    if record_type not in RECORD_VALUES:
        raise ValueError(f"not a consumer group record type: {record_type}")
    group, pos = _read_string(data, 2)
    member = None
    if record_type in MEMBER_RECORD_TYPES:
        member, pos = _read_string(data, pos)
    return record_type, group, member


def encode_record_value(record_type: int, **fields: Any) -> bytes:
    return bytes(RECORD_VALUES[record_type](version=0, **fields).encode())


def decode_record_value(record_type: int, data: bytes) -> Any:
    return RECORD_VALUES[record_type].decode(data)


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack(">h", len(b)) + b


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(data):
        raise ValueError("truncated consumer group record key")
    (n,) = struct.unpack_from(">h", data, pos)
    if n < 0 or pos + 2 + n > len(data):
        raise ValueError("bad string in consumer group record key")
    return data[pos + 2 : pos + 2 + n].decode("utf-8"), pos + 2 + n
