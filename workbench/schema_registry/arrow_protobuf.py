"""Protobuf values for typed views: a registered `FileDescriptorProto` (base64, what
confluent-kafka's `ProtobufSerializer` registers) -> an Arrow column type and a decoder.

The payload after Confluent's 5-byte header starts with the message-index array (zigzag
varints: a count then the indexes; a single 0 means the file's first message), then the
message. Messages become STRUCTs, repeated fields LISTs, map fields MAPs, enums their value's
name; unset message fields are NULL, unset proto3 scalars their default (as on the wire).
Not decoded: schemas registered as `.proto` text, and references other than Google's
well-known types (such ids show a `decode_error`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory

_FD = descriptor.FieldDescriptor
_SCALARS: dict[int, pa.DataType] = {
    _FD.TYPE_DOUBLE: pa.float64(),
    _FD.TYPE_FLOAT: pa.float32(),
    _FD.TYPE_INT64: pa.int64(),
    _FD.TYPE_UINT64: pa.uint64(),
    _FD.TYPE_INT32: pa.int32(),
    _FD.TYPE_FIXED64: pa.uint64(),
    _FD.TYPE_FIXED32: pa.int64(),
    _FD.TYPE_BOOL: pa.bool_(),
    _FD.TYPE_STRING: pa.string(),
    _FD.TYPE_BYTES: pa.binary(),
    _FD.TYPE_UINT32: pa.int64(),
    _FD.TYPE_SFIXED32: pa.int32(),
    _FD.TYPE_SFIXED64: pa.int64(),
    _FD.TYPE_SINT32: pa.int32(),
    _FD.TYPE_SINT64: pa.int64(),
}


def _repeated(f: Any) -> bool:
    flag = getattr(f, "is_repeated", None)
    return bool(flag) if flag is not None else f.label == _FD.LABEL_REPEATED


def _is_map(f: Any) -> bool:
    return f.type == _FD.TYPE_MESSAGE and _repeated(f) and f.message_type.GetOptions().map_entry


def _field_type(f: Any, stack: tuple[str, ...]) -> pa.DataType:
    if _is_map(f):
        return pa.map_(pa.string(), _field_type(f.message_type.fields_by_name["value"], stack))
    if f.type == _FD.TYPE_MESSAGE:
        inner = message_type(f.message_type, stack)
    elif f.type == _FD.TYPE_ENUM:
        inner = pa.string()
    else:
        inner = _SCALARS.get(f.type, pa.string())
    return pa.list_(inner) if _repeated(f) else inner


def message_type(desc: Any, stack: tuple[str, ...] = ()) -> pa.DataType:
    """A message's Arrow type (a recursive message is JSON text: Arrow's string view, see `typed`)."""
    if desc.full_name in stack or not desc.fields:
        return pa.string_view()
    stack = (*stack, desc.full_name)
    return pa.struct([pa.field(f.name, _field_type(f, stack)) for f in desc.fields])


def _value(f: Any, v: Any) -> Any:
    if f.type == _FD.TYPE_MESSAGE:
        return to_python(v)
    if f.type == _FD.TYPE_ENUM:
        found = f.enum_type.values_by_number.get(v)
        return found.name if found is not None else str(v)
    return v


def to_python(msg: Any) -> Any:
    """A message as the dict its Arrow type expects."""
    out: dict[str, Any] = {}
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        if _is_map(f):
            value_field = f.message_type.fields_by_name["value"]
            out[f.name] = {str(k): _value(value_field, x) for k, x in v.items()}
        elif _repeated(f):
            out[f.name] = [_value(f, x) for x in v]
        elif f.type == _FD.TYPE_MESSAGE or getattr(f, "has_presence", False):
            out[f.name] = _value(f, v) if msg.HasField(f.name) else None
        else:
            out[f.name] = _value(f, v)
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated message-index varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos  # zigzag
        shift += 7
        if shift > 63:
            raise ValueError("message-index varint too long")


def message_indexes(payload: bytes) -> tuple[list[int], int]:
    """Confluent's message-index array at the start of `payload`, and where the message starts."""
    count, pos = _varint(payload, 0)
    if count == 0:
        return [0], pos
    if not 0 < count <= 100:
        raise ValueError(f"message-index count {count} is not plausible")
    indexes = []
    for _ in range(count):
        i, pos = _varint(payload, pos)
        indexes.append(i)
    return indexes, pos


def decoder(text: str) -> tuple[pa.DataType, Callable[[bytes], Any]]:
    """(column type of the file's first message, decode(payload)) for a base64 FileDescriptorProto."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError("a .proto text schema is not decoded in SQL yet (only a serialized descriptor)") from None
    fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
    pool = descriptor_pool.DescriptorPool()
    default = descriptor_pool.Default()
    for dep in fdp.dependency:  # Google's well-known types
        dep_proto = descriptor_pb2.FileDescriptorProto()
        default.FindFileByName(dep).CopyToProto(dep_proto)
        pool.Add(dep_proto)
    pool.Add(fdp)
    file = pool.FindFileByName(fdp.name)
    top = list(file.message_types_by_name.values())
    if not top:
        raise ValueError("the schema defines no message")
    classes: dict[tuple[int, ...], Any] = {}

    def cls_for(indexes: list[int]) -> Any:
        key = tuple(indexes)
        if key not in classes:
            desc = file.message_types_by_name[fdp.message_type[indexes[0]].name]
            for i in indexes[1:]:
                desc = desc.nested_types[i]
            classes[key] = message_factory.GetMessageClass(desc)
        return classes[key]

    def decode(payload: bytes) -> Any:
        indexes, pos = message_indexes(payload)
        return to_python(cls_for(indexes).FromString(payload[pos:]))

    return message_type(top[0]), decode
