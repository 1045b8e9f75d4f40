"""Protobuf schemas: `.proto` text (parsed by proto-schema-parser) or a base64 `FileDescriptorProto`
(what confluent-kafka's `ProtobufSerializer` registers), and Confluent's Protobuf compatibility rules.

Fields are identified by number, as on the wire. Incompatible, as Confluent's `ProtobufSchema`
diff decides: the package changed; a message removed; a field's scalar kind changed outside
a wire-compatible group (int32/uint32/int64/uint64/bool, sint32/sint64, fixed32/sfixed32,
fixed64/sfixed64, string/bytes); a field's named type changed; repeated <-> singular; a proto2
`required` field added or removed; several existing fields moved into a oneof. Compatible:
fields, messages and enums added; fields removed or renamed; enum constants added.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from antlr4.error.ErrorListener import ErrorListener
from google.protobuf import descriptor_pb2
from proto_schema_parser import ast
from proto_schema_parser.parser import Parser

from workbench.schema_registry.avro import InvalidSchema

COMPATIBLE_KINDS = [
    {"int32", "uint32", "int64", "uint64", "bool"},
    {"sint32", "sint64"},
    {"fixed32", "sfixed32"},
    {"fixed64", "sfixed64"},
    {"string", "bytes"},
]
SCALARS = {
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
}  # fmt: skip
_DESCRIPTOR_SCALARS = {getattr(descriptor_pb2.FieldDescriptorProto, "TYPE_" + name.upper()): name for name in SCALARS}


@dataclass
class Field:
    name: str
    kind: str  # a scalar name, or the (unqualified) name of a message or enum type
    label: str  # "optional", "repeated", "required"
    oneof: str | None = None


@dataclass
class ProtobufSchema:
    canonical: str
    package: str
    messages: dict[str, dict[int, Field]] = field(default_factory=dict)
    enums: dict[str, set[str]] = field(default_factory=dict)
    schema_type: str = "PROTOBUF"


def parse(text: str, references: list[tuple[str, str]] = ()) -> ProtobufSchema:  # type: ignore[assignment]
    stripped = text.strip()
    if stripped and "{" not in stripped and ";" not in stripped:
        return _from_descriptor(stripped)
    try:
        tree = Parser(setup_lexer=_strict, setup_parser=_strict).parse(text)
    except InvalidSchema:
        raise
    except Exception as exc:  # the AST builder raises several kinds
        raise InvalidSchema(f"not a .proto file: {exc}") from None
    out = ProtobufSchema(stripped, "")
    for element in tree.file_elements:
        if isinstance(element, ast.Package):
            out.package = element.name
    for element in tree.file_elements:
        _collect(element, out.package, out)
    if not out.messages and not out.enums:
        raise InvalidSchema("the .proto file defines no message or enum")
    return out


class _RaiseOnError(ErrorListener):
    """ANTLR recovers from syntax errors and prints them; a registry must refuse the schema instead."""

    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):
        raise InvalidSchema(f"line {line}:{column}: {msg}")


def _strict(recognizer: Any) -> None:
    recognizer.removeErrorListeners()
    recognizer.addErrorListener(_RaiseOnError())


def _collect(element: Any, scope: str, out: ProtobufSchema) -> None:
    if isinstance(element, ast.Message):
        name = f"{scope}.{element.name}" if scope else element.name
        fields: dict[int, Field] = {}
        for child in element.elements:
            if isinstance(child, ast.Field):
                fields[child.number] = _field(child, None)
            elif isinstance(child, ast.MapField):
                fields[child.number] = Field(child.name, f"map<{child.key_type},{child.value_type}>", "repeated")
            elif isinstance(child, ast.OneOf):
                for f in child.elements:
                    if isinstance(f, ast.Field):
                        fields[f.number] = _field(f, child.name)
            else:
                _collect(child, name, out)
        out.messages[name] = fields
    elif isinstance(element, ast.Enum):
        name = f"{scope}.{element.name}" if scope else element.name
        out.enums[name] = {v.name for v in element.elements if isinstance(v, ast.EnumValue)}


def _field(f: Any, oneof: str | None) -> Field:
    label = f.cardinality.value.lower() if f.cardinality is not None else "optional"
    return Field(f.name, f.type if f.type in SCALARS else f.type.rsplit(".", 1)[-1], label, oneof)


def _from_descriptor(text: str) -> ProtobufSchema:
    try:
        fd = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, Exception) as exc:
        raise InvalidSchema(f"neither .proto text nor a base64 FileDescriptorProto: {exc}") from None
    out = ProtobufSchema(text, fd.package)

    def message(m: Any, scope: str) -> None:
        name = f"{scope}.{m.name}" if scope else m.name
        fields = {}
        for f in m.field:
            kind = _DESCRIPTOR_SCALARS.get(f.type) or f.type_name.rsplit(".", 1)[-1]
            label = {1: "optional", 2: "required", 3: "repeated"}[f.label]
            oneof = m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") and not f.proto3_optional else None
            fields[f.number] = Field(f.name, kind, label, oneof)
        out.messages[name] = fields
        for nested in m.nested_type:
            if not nested.options.map_entry:
                message(nested, name)
        for e in m.enum_type:
            out.enums[f"{name}.{e.name}"] = {v.name for v in e.value}

    for m in fd.message_type:
        message(m, fd.package)
    for e in fd.enum_type:
        out.enums[f"{fd.package}.{e.name}" if fd.package else e.name] = {v.name for v in e.value}
    return out


def can_read(reader: ProtobufSchema, writer: ProtobufSchema) -> list[str]:
    out: list[str] = []
    if reader.package != writer.package:
        out.append(f"package changed from {writer.package!r} to {reader.package!r}")
    for name, wfields in writer.messages.items():
        rfields = reader.messages.get(name)
        if rfields is None:
            out.append(f"message {name} removed")
            continue
        moved = 0
        for number, wf in wfields.items():
            rf = rfields.get(number)
            if rf is None:
                if wf.label == "required":
                    out.append(f"{name}: required field {number} ({wf.name}) removed")
                continue
            if rf.kind != wf.kind and not any({rf.kind, wf.kind} <= group for group in COMPATIBLE_KINDS):
                out.append(f"{name}: field {number} ({wf.name}) changed type from {wf.kind} to {rf.kind}")
            if (rf.label == "repeated") != (wf.label == "repeated"):
                out.append(f"{name}: field {number} ({wf.name}) changed between repeated and singular")
            if (rf.label == "required") != (wf.label == "required"):
                out.append(f"{name}: field {number} ({wf.name}) changed required-ness")
            if rf.oneof is not None and wf.oneof is None:
                moved += 1
        if moved > 1:
            out.append(f"{name}: {moved} existing fields moved into a oneof")
        for number, rf in rfields.items():
            if number not in wfields and rf.label == "required":
                out.append(f"{name}: required field {number} ({rf.name}) added")
    return out
