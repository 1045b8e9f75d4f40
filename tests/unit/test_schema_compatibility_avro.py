"""Avro compatibility as Confluent documents it ("Schema Evolution and Compatibility", the
compatibility-types table) and the Avro specification's schema-resolution rules."""

from __future__ import annotations

import json

import pytest

from workbench.schema_registry import avro
from workbench.schema_registry.compatibility import incompatibilities
from workbench.schema_registry.registry import SchemaRegistry


def rec(*fields: dict, name: str = "User", **extra) -> avro.AvroSchema:
    return avro.parse(json.dumps({"type": "record", "name": name, "fields": list(fields), **extra}))


A = {"name": "a", "type": "string"}
B_DEFAULT = {"name": "b", "type": "int", "default": 0}
B = {"name": "b", "type": "int"}


def ok(level: str, new: avro.AvroSchema, *old: avro.AvroSchema) -> bool:
    return not incompatibilities(level, avro.can_read, new, list(old))


# Confluent's table: BACKWARD allows "delete fields, add optional fields"; FORWARD "add fields,
# delete optional fields"; FULL "add optional fields, delete optional fields".
@pytest.mark.parametrize(
    ("change", "old", "new", "backward", "forward"),
    [
        ("add a field with a default", rec(A), rec(A, B_DEFAULT), True, True),
        ("add a field without a default", rec(A), rec(A, B), False, True),
        ("delete a field without a default", rec(A, B), rec(A), True, False),
        ("delete a field with a default", rec(A, B_DEFAULT), rec(A), True, True),
        ("widen int to long", rec({"name": "n", "type": "int"}), rec({"name": "n", "type": "long"}), True, False),
        ("change string to int", rec({"name": "n", "type": "string"}), rec({"name": "n", "type": "int"}), False, False),
        ("string to bytes", rec({"name": "n", "type": "string"}), rec({"name": "n", "type": "bytes"}), True, True),
        (
            "make a field nullable",
            rec({"name": "n", "type": "string"}),
            rec({"name": "n", "type": ["null", "string"]}),
            True,
            False,
        ),
        (
            "add an enum symbol",
            rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}),
            rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}),
            True,
            False,
        ),
        (
            "add an enum symbol, the old enum has a default",
            rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "Z"], "default": "Z"}}),
            rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "Z", "B"], "default": "Z"}}),
            True,
            True,
        ),
        ("rename the record", rec(A), rec(A, name="Person"), False, False),
        ("rename the record, with an alias", rec(A), rec(A, name="Person", aliases=["User"]), True, False),
        (
            "array items widen",
            rec({"name": "xs", "type": {"type": "array", "items": "int"}}),
            rec({"name": "xs", "type": {"type": "array", "items": "double"}}),
            True,
            False,
        ),
        (
            "fixed size changes",
            rec({"name": "f", "type": {"type": "fixed", "name": "F", "size": 4}}),
            rec({"name": "f", "type": {"type": "fixed", "name": "F", "size": 8}}),
            False,
            False,
        ),
        (
            "a logical type annotation is added",
            rec({"name": "t", "type": "long"}),
            rec({"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}),
            True,
            True,
        ),
    ],
)
def test_avro_rules(change, old, new, backward, forward):
    assert ok("BACKWARD", new, old) is backward, change
    assert ok("FORWARD", new, old) is forward, change
    assert ok("FULL", new, old) is (backward and forward), change
    assert ok("NONE", new, old), change


def test_transitive_levels_check_every_version():
    v1 = rec(A)
    v2 = rec(A, B_DEFAULT)
    v3 = rec(A, B)  # drops b's default: readable only with data that has b
    assert ok("BACKWARD", v3, v1, v2), "BACKWARD compares with the latest version only"
    assert not ok("BACKWARD_TRANSITIVE", v3, v1, v2), "v3 cannot read v1's data, which lacks b"
    assert not ok("FULL_TRANSITIVE", v3, v1, v2)


def test_recursive_types_terminate():
    node = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"], "default": None}, {"name": "v", "type": "int"}],
    }
    s = avro.parse(json.dumps(node))
    assert avro.can_read(s, s) == []


def test_invalid_avro_is_refused():
    for text in ["{", '{"type": "record", "name": "X"}', '{"type": "nope"}', '{"type": "enum", "name": "E"}']:
        with pytest.raises(avro.InvalidSchema):
            avro.parse(text)


def test_registry_state_from_records_alone():
    """The registry's answers are a function of the `_schemas` records it applied (no store: applied directly)."""
    r = SchemaRegistry()
    one = r.register("s", "AVRO", json.dumps({"type": "record", "name": "U", "fields": [A]}), [])
    two = r.register("s", "AVRO", json.dumps({"type": "record", "name": "U", "fields": [A, B_DEFAULT]}), [])
    assert (one.version, two.version, two.id) == (1, 2, 2)
    assert r.register("other", "AVRO", one.schema, []).id == one.id
    assert r.delete_subject("s", permanent=False) == [1, 2]
    assert r.subjects() == ["other"]
    assert r.subjects(deleted=True) == ["other", "s"]
    assert r.register("s", "AVRO", one.schema, []).version == 3, "versions continue after a soft delete"
