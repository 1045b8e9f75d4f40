"""Avro schemas: parsing (fastavro) and the Avro specification's schema-resolution rules.

`can_read(reader, writer)` answers whether data written with `writer` can be read with
`reader`, following "Schema Resolution" in the Avro 1.11 specification, as Avro's Java
`SchemaCompatibility` (which Confluent's AvroSchema.isBackwardCompatible calls) applies it:

- primitives match, or the writer's promotes to the reader's (int -> long, float, double;
  long -> float, double; float -> double; string <-> bytes);
- records match by unqualified name (or a reader alias); every reader field is in the
  writer (by name or reader alias) with a readable type, or has a default; writer fields
  the reader lacks are skipped;
- enums match by name; every writer symbol is a reader symbol, unless the reader has a default;
- fixed match by name and size; arrays by items; maps by values;
- a writer union: every branch must be readable; a reader union: some branch reads the writer.

Logical types are annotations: they do not change compatibility (as in Avro's Java).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
#: writer type -> reader types it promotes to (Avro spec, "Schema Resolution").
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


class InvalidSchema(ValueError):
    """The text is not a schema of this format (the registry answers 42201)."""


@dataclass
class AvroSchema:
    """A parsed Avro schema: `canonical` is the compact JSON the registry stores and compares."""

    canonical: str
    parsed: Any
    named: dict[str, Any] = field(default_factory=dict)
    schema_type: str = "AVRO"


def parse(text: str, references: list[tuple[str, str]] = ()) -> AvroSchema:  # type: ignore[assignment]
    """Parse `text`, with `references` as `(name, schema text)` parsed first (their named types visible)."""
    named: dict[str, Any] = {}
    try:
        for _name, ref_text in references:
            fastavro.parse_schema(json.loads(ref_text), named_schemas=named)
        raw = json.loads(text)
        _require_fields(raw)
        parsed = fastavro.parse_schema(raw, named_schemas=named)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"not JSON: {exc}") from None
    except (SchemaParseException, UnknownType, TypeError, KeyError, AttributeError, ValueError) as exc:
        raise InvalidSchema(str(exc) or type(exc).__name__) from None
    return AvroSchema(json.dumps(raw, separators=(",", ":")), parsed, named)


def _require_fields(schema: Any) -> None:
    """What fastavro lets pass but Avro's Java parser (and so Confluent) refuses: a record without fields."""
    if isinstance(schema, list):
        for branch in schema:
            _require_fields(branch)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error"):
            if not isinstance(schema.get("fields"), list):
                raise InvalidSchema(f'record {schema.get("name")!r} has no "fields" list')
            for f in schema["fields"]:
                if isinstance(f, dict):
                    _require_fields(f.get("type"))
        elif kind == "array":
            _require_fields(schema.get("items"))
        elif kind == "map":
            _require_fields(schema.get("values"))
        elif isinstance(kind, (dict, list)):
            _require_fields(kind)


def _resolve(schema: Any, named: dict[str, Any]) -> Any:
    if isinstance(schema, str) and schema not in PRIMITIVES:
        return named.get(schema, schema)
    if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
        return schema["type"]  # a primitive with a logicalType annotation
    if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        return _resolve(schema["type"], named)
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema.get("type"))


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _names_match(reader: dict, writer: dict) -> bool:
    writer_short = _short(writer["name"])
    return _short(reader["name"]) == writer_short or writer_short in {_short(a) for a in reader.get("aliases", ())}


def can_read(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """Why data written with `writer` cannot be read with `reader`; [] when it can."""
    return _Checker(reader.named, writer.named).check(reader.parsed, writer.parsed, "/")


class _Checker:
    def __init__(self, reader_named: dict[str, Any], writer_named: dict[str, Any]) -> None:
        self.rn = reader_named
        self.wn = writer_named
        self.seen: set[tuple[str, str]] = set()

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        reader = _resolve(reader, self.rn)
        writer = _resolve(writer, self.wn)
        rk, wk = _kind(reader), _kind(writer)
        if wk == "union":
            out = []
            for i, branch in enumerate(writer):
                out += self.check(reader, branch, f"{path}[{i}]")
            return out
        if rk == "union":
            for branch in reader:
                trial = _Checker(self.rn, self.wn)  # a failed branch must leave no trace
                trial.seen = set(self.seen)
                if not trial.check(branch, writer, path):
                    return []
            return [f"{path}: reader union lacks a branch for writer type {_describe(writer)}"]
        if rk in PRIMITIVES or wk in PRIMITIVES:
            if rk == wk or rk in PROMOTIONS.get(wk, ()):
                return []
            return [f"{path}: reader type {_describe(reader)} cannot read writer type {_describe(writer)}"]
        if rk != wk:
            return [f"{path}: reader type {rk} cannot read writer type {wk}"]
        if rk in ("record", "enum", "fixed"):
            if not _names_match(reader, writer):
                return [f"{path}: name {reader['name']!r} does not match writer's {writer['name']!r}"]
            pair = (reader["name"], writer["name"])
            if pair in self.seen:
                return []  # recursive type, already being compared
            self.seen.add(pair)
        if rk == "record":
            return self._record(reader, writer, path)
        if rk == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [f"{path}: reader enum {reader['name']!r} lacks symbols {missing}"]
            return []
        if rk == "fixed":
            if reader["size"] != writer["size"]:
                return [f"{path}: fixed size {reader['size']} does not match writer's {writer['size']}"]
            return []
        if rk == "array":
            return self.check(reader["items"], writer["items"], f"{path}items/")
        if rk == "map":
            return self.check(reader["values"], writer["values"], f"{path}values/")
        return [f"{path}: unknown type {rk}"]

    def _record(self, reader: dict, writer: dict, path: str) -> list[str]:
        writer_fields = {f["name"]: f for f in writer["fields"]}
        out: list[str] = []
        for rf in reader["fields"]:
            wf = writer_fields.get(rf["name"])
            if wf is None:
                wf = next((writer_fields[a] for a in rf.get("aliases", ()) if a in writer_fields), None)
            if wf is None:
                if "default" not in rf:
                    out.append(f"{path}{rf['name']}: reader field has no default and the writer lacks it")
                continue
            out += self.check(rf["type"], wf["type"], f"{path}{rf['name']}/")
        return out


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(b) for b in schema) + "]"
    return str(schema.get("name") or schema.get("type"))
