"""The schema formats the registry knows, by Confluent's `schemaType` name.

Each format module offers `parse(text, references) -> parsed` (raising `InvalidSchema`) and
`can_read(reader, writer) -> [messages]`; a parsed schema has `canonical` and `schema_type`.
"""

from __future__ import annotations

from types import ModuleType

from workbench.schema_registry import avro, json_schema, protobuf
from workbench.schema_registry.avro import InvalidSchema

FORMATS: dict[str, ModuleType] = {"AVRO": avro, "JSON": json_schema, "PROTOBUF": protobuf}

__all__ = ["FORMATS", "InvalidSchema"]
