"""The __consumer_offsets record format: Kafka's own key/value schemas, byte for byte."""

from __future__ import annotations

import ast
import asyncio
import struct
from pathlib import Path

import pytest

import workbench
from workbench.broker.group_offsets import (
    GroupKey,
    GroupRecord,
    InMemoryOffsetStore,
    MemberRecord,
    OffsetKey,
    decode_group_value,
    decode_key,
    decode_offset_value,
    encode_group_key,
    encode_group_value,
    encode_offset_key,
    encode_offset_value,
    java_string_hash,
    partition_for,
)


def test_offset_key_is_kafka_offset_commit_key_v1():
    key = encode_offset_key("g", "topic", 3)
    assert key == b"\x00\x01" + b"\x00\x01g" + b"\x00\x05topic" + b"\x00\x00\x00\x03"
    assert decode_key(key) == OffsetKey("g", "topic", 3)


def test_group_key_is_kafka_group_metadata_key_v2():
    key = encode_group_key("grp")
    assert key == b"\x00\x02\x00\x03grp"
    assert decode_key(key) == GroupKey("grp")


def test_unknown_key_version_is_rejected():
    with pytest.raises(ValueError):
        decode_key(b"\x00\x07\x00\x01g")


def test_offset_value_is_kafka_offset_commit_value_v3():
    value = encode_offset_value(42, 7, "meta", 1234)
    assert value == struct.pack(">hqi", 3, 42, 7) + b"\x00\x04meta" + struct.pack(">q", 1234)
    v = decode_offset_value(value)
    assert (v.offset, v.leader_epoch, v.metadata, v.commit_timestamp_ms) == (42, 7, "meta", 1234)


def test_offset_value_metadata_none_is_stored_as_empty_string():
    assert decode_offset_value(encode_offset_value(1, -1, None, 0)).metadata == ""


def test_offset_value_unicode_metadata_round_trips():
    assert decode_offset_value(encode_offset_value(1, -1, "héllo ✓ 🎉", 0)).metadata == "héllo ✓ 🎉"


def test_older_offset_value_versions_decode():
    v0 = struct.pack(">hq", 0, 5) + b"\x00\x01m" + struct.pack(">q", 99)
    v1 = struct.pack(">hq", 1, 6) + b"\x00\x00" + struct.pack(">qq", 100, 200)
    assert decode_offset_value(v0).offset == 5 and decode_offset_value(v0).leader_epoch == -1
    assert decode_offset_value(v1).commit_timestamp_ms == 100


def test_group_value_v3_round_trips():
    rec = GroupRecord(
        "consumer",
        4,
        "range",
        "m1",
        1700,
        [
            MemberRecord("m1", None, "c1", "/h1", 30000, 10000, b"sub1", b"asg1"),
            MemberRecord("m2", "inst-2", "c2", "/h2", 30000, 10000, b"", b""),
        ],
    )
    data = encode_group_value(rec)
    assert data[:2] == b"\x00\x03"
    assert decode_group_value(data) == rec


def test_empty_group_value_round_trips():
    rec = GroupRecord("consumer", 9, None, None, 5, [])
    assert decode_group_value(encode_group_value(rec)) == rec


def test_partition_for_matches_kafka():
    # The function the broker routes groups with (GroupCoordinatorManager), not a copy.
    from workbench.broker.groups_manager import partition_for as routed_by_broker

    assert routed_by_broker is partition_for
    assert java_string_hash("hello") == 99162322
    assert routed_by_broker("hello", 50) == 22
    # Integer.MIN_VALUE hash: Kafka's Utils.abs maps it to 0.
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert routed_by_broker("polygenelubricants", 50) == 0


def test_group_partition_rule_has_one_definition():
    """`abs(groupId.hashCode) % partitions` is defined once in workbench/ (issue 11: it was twice)."""
    root = Path(workbench.__file__).parent
    defs = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and node.name in {"java_string_hash", "partition_for_group"}:
                defs.append(f"{path.relative_to(root)}:{node.name}")
    assert defs == ["broker/group_offsets.py:java_string_hash"]


def test_in_memory_store_replays_in_order():
    store = InMemoryOffsetStore()
    asyncio.run(store.append([(b"a", b"1"), (b"b", None)]))
    asyncio.run(store.append([(b"c", b"3")]))
    assert list(store.replay()) == [(b"a", b"1"), (b"b", None), (b"c", b"3")]
