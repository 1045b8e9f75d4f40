"""JSON Schema compatibility as Confluent documents it (open vs closed content models)."""

from __future__ import annotations

import json

import pytest

from workbench.schema_registry import json_schema
from workbench.schema_registry.avro import InvalidSchema
from workbench.schema_registry.compatibility import incompatibilities


def obj(props: dict, required=(), closed: bool = False) -> json_schema.JsonSchema:
    s: dict = {"type": "object", "properties": props, "required": list(required)}
    if closed:
        s["additionalProperties"] = False
    return json_schema.parse(json.dumps(s))


def backward(new, old) -> bool:
    return not incompatibilities("BACKWARD", json_schema.can_read, new, [old])


NAME = {"name": {"type": "string"}}
AGE = {"age": {"type": "integer"}}


@pytest.mark.parametrize(
    ("change", "old", "new", "compatible"),
    [
        ("add an optional property, closed writer", obj(NAME, closed=True), obj({**NAME, **AGE}), True),
        ("add a property to an open content model", obj(NAME), obj({**NAME, **AGE}), False),
        ("remove a property, open reader", obj({**NAME, **AGE}), obj(NAME), True),
        ("remove a property, closed reader", obj({**NAME, **AGE}, closed=True), obj(NAME, closed=True), False),
        ("integer widened to number", obj({"n": {"type": "integer"}}), obj({"n": {"type": "number"}}), True),
        ("number narrowed to integer", obj({"n": {"type": "number"}}), obj({"n": {"type": "integer"}}), False),
        ("enum extended", obj({"e": {"enum": ["a"]}}), obj({"e": {"enum": ["a", "b"]}}), True),
        ("enum narrowed", obj({"e": {"enum": ["a", "b"]}}), obj({"e": {"enum": ["a"]}}), False),
        ("property made required", obj(NAME), obj(NAME, required=["name"]), False),
        ("required dropped", obj(NAME, required=["name"]), obj(NAME), True),
        ("content model closed", obj(NAME), obj(NAME, closed=True), False),
    ],
)
def test_json_schema_rules(change, old, new, compatible):
    assert backward(new, old) is compatible, change


def test_invalid_json_schema_is_refused():
    with pytest.raises(InvalidSchema):
        json_schema.parse('{"type": 12}')
    with pytest.raises(InvalidSchema):
        json_schema.parse("[1]")
