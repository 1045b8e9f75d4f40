"""KIP-932 message classes: ShareGroupHeartbeat (76), ShareGroupDescribe (77), ShareFetch (78),
ShareAcknowledge (79), and the admin APIs DescribeShareGroupOffsets (90), AlterShareGroupOffsets (91),
DeleteShareGroupOffsets (92).

Declared as `workbench.protocol.kip848` declares the KIP-848 ones: an `ApiMessage` subclass
per message, whose layout kafka-python's schema machinery builds from Apache Kafka's JSON
message schema in `workbench.protocol.schemas`. I/O-free.
"""

from __future__ import annotations

import struct
from typing import Any

from kafka.protocol.api_data import ApiData
from kafka.protocol.api_message import ApiMessage

from workbench.protocol.kip848 import _read_string, _string

_SCHEMAS = "workbench.protocol.schemas"

__all__ = [
    "SHARE_RECORD_VALUES",
    "AlterShareGroupOffsetsRequest",
    "AlterShareGroupOffsetsResponse",
    "DeleteShareGroupOffsetsRequest",
    "DeleteShareGroupOffsetsResponse",
    "DescribeShareGroupOffsetsRequest",
    "DescribeShareGroupOffsetsResponse",
    "ShareAcknowledgeRequest",
    "ShareAcknowledgeResponse",
    "ShareFetchRequest",
    "ShareFetchResponse",
    "ShareGroupDescribeRequest",
    "ShareGroupDescribeResponse",
    "ShareGroupHeartbeatRequest",
    "ShareGroupHeartbeatResponse",
    "decode_share_record_key",
    "decode_share_record_value",
    "encode_share_record_key",
    "encode_share_record_value",
]


class ShareGroupHeartbeatRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ShareGroupHeartbeatResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ShareGroupDescribeRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ShareGroupDescribeResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ShareFetchRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ShareFetchResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ShareAcknowledgeRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class ShareAcknowledgeResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class DescribeShareGroupOffsetsRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class DescribeShareGroupOffsetsResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class AlterShareGroupOffsetsRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class AlterShareGroupOffsetsResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class DeleteShareGroupOffsetsRequest(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


class DeleteShareGroupOffsetsResponse(ApiMessage, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    pass


# --- KIP-932 share group records in __consumer_offsets ---------------------------------------
#
# Kafka's group coordinator persists a share group's membership as keyed records in the
# group's `__consumer_offsets` partition (GroupCoordinatorRecordHelpers' newShareGroup*Record),
# laid out as the KIP-848 ones are (`workbench.protocol.kip848`): an int16 record type and
# non-flexible strings for the key, an int16 version and a flexible struct for the value.


class ShareGroupMemberMetadataValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 10: a member's subscription and identity."""


class ShareGroupMetadataValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 11: the group epoch."""


class ShareGroupTargetAssignmentMetadataValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 12: the epoch of the target assignment."""


class ShareGroupTargetAssignmentMemberValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 13: a member's target assignment."""


class ShareGroupCurrentMemberAssignmentValue(ApiData, load_json=_SCHEMAS):  # type: ignore[call-arg]  # a metaclass keyword
    """Record type 14: a member's epoch and the partitions it has."""


#: Record type (the key's leading int16) -> value class (Kafka's CoordinatorRecordType 10-14).
SHARE_RECORD_VALUES: dict[int, type[ApiData]] = {
    10: ShareGroupMemberMetadataValue,
    11: ShareGroupMetadataValue,
    12: ShareGroupTargetAssignmentMetadataValue,
    13: ShareGroupTargetAssignmentMemberValue,
    14: ShareGroupCurrentMemberAssignmentValue,
}

#: Record types whose key carries a member id after the group id.
SHARE_MEMBER_RECORD_TYPES = frozenset({10, 13, 14})


def encode_share_record_key(record_type: int, group_id: str, member_id: str | None = None) -> bytes:
    """`ShareGroup*Key`: int16 type, then group id (and member id) as int16-length strings."""
    out = struct.pack(">h", record_type) + _string(group_id)
    if record_type in SHARE_MEMBER_RECORD_TYPES:
        out += _string(member_id or "")
    return out


def decode_share_record_key(data: bytes) -> tuple[int, str, str | None]:
    """(type, group id, member id or None); ValueError for a key that is not a share group record's."""
    if len(data) < 4:
        raise ValueError("truncated share group record key")
    (record_type,) = struct.unpack_from(">h", data)
    if record_type not in SHARE_RECORD_VALUES:
        raise ValueError(f"not a share group record type: {record_type}")
    group, pos = _read_string(data, 2)
    member = None
    if record_type in SHARE_MEMBER_RECORD_TYPES:
        member, pos = _read_string(data, pos)
    return record_type, group, member


def encode_share_record_value(record_type: int, **fields: Any) -> bytes:
    return bytes(SHARE_RECORD_VALUES[record_type](version=0, **fields).encode())


def decode_share_record_value(record_type: int, data: bytes) -> Any:
    return SHARE_RECORD_VALUES[record_type].decode(data)
