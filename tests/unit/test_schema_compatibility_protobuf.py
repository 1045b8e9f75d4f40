"""Protobuf compatibility as Confluent documents it: fields by number, kinds, labels, messages."""

from __future__ import annotations

import base64

import pytest
from google.protobuf import descriptor_pb2

from workbench.schema_registry import protobuf
from workbench.schema_registry.avro import InvalidSchema
from workbench.schema_registry.compatibility import incompatibilities

V1 = 'syntax = "proto3"; package ex; message User { string name = 1; int32 age = 2; }'


def backward(new: str, old: str) -> bool:
    return not incompatibilities("BACKWARD", protobuf.can_read, protobuf.parse(new), [protobuf.parse(old)])


@pytest.mark.parametrize(
    ("change", "new", "compatible"),
    [
        (
            "add a field",
            'syntax = "proto3"; package ex; message User { string name = 1; int32 age = 2; bool x = 3; }',
            True,
        ),
        ("remove a field", 'syntax = "proto3"; package ex; message User { string name = 1; }', True),
        (
            "rename a field",
            'syntax = "proto3"; package ex; message User { string full_name = 1; int32 age = 2; }',
            True,
        ),
        ("int32 to int64", 'syntax = "proto3"; package ex; message User { string name = 1; int64 age = 2; }', True),
        ("int32 to string", 'syntax = "proto3"; package ex; message User { string name = 1; string age = 2; }', False),
        (
            "make repeated",
            'syntax = "proto3"; package ex; message User { string name = 1; repeated int32 age = 2; }',
            False,
        ),
        ("change package", 'syntax = "proto3"; package other; message User { string name = 1; int32 age = 2; }', False),
        ("remove the message", 'syntax = "proto3"; package ex; message Person { string name = 1; }', False),
        (
            "move two fields into a oneof",
            'syntax = "proto3"; package ex; message User { oneof o { string name = 1; int32 age = 2; } }',
            False,
        ),
    ],
)
def test_protobuf_rules(change, new, compatible):
    assert backward(new, V1) is compatible, change


def test_a_base64_file_descriptor_parses_like_the_text():
    fd = descriptor_pb2.FileDescriptorProto(name="user.proto", package="ex", syntax="proto3")
    m = fd.message_type.add(name="User")
    m.field.add(name="name", number=1, type=9, label=1)
    m.field.add(name="age", number=2, type=5, label=1)
    encoded = base64.b64encode(fd.SerializeToString()).decode()
    parsed = protobuf.parse(encoded)
    assert parsed.messages == protobuf.parse(V1).messages
    assert protobuf.can_read(parsed, protobuf.parse(V1)) == []


def test_invalid_protobuf_is_refused():
    with pytest.raises(InvalidSchema):
        protobuf.parse("message {")
    with pytest.raises(InvalidSchema):
        protobuf.parse("not-base64!!")
