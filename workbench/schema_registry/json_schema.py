"""JSON Schema: validity by `jsonschema`'s meta-schema check, compatibility as Confluent documents it.

Confluent's JSON Schema rules (`JsonSchemaDiff`, "JSON Schema compatibility rules") decide
per change whether a reader can read what a writer wrote. The common cases here:

- a type narrowed (reader accepts fewer types; `integer` -> `number` is a widening) is incompatible;
- an enum narrowed is incompatible, extended is fine;
- a property the reader adds while the writer's content model is open (`additionalProperties`
  not false) is incompatible: the writer may have put anything under that name
  (PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL); added to a closed writer model it is fine;
- a property the reader removes is fine in an open reader model, incompatible in a closed one;
- a property newly required by the reader without a default is incompatible;
- `additionalProperties` turned false by the reader is incompatible;
- array `items` and nested properties are compared recursively.

Not compared: `$ref` targets, `oneOf`/`anyOf`/`allOf` branches, numeric and length bounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workbench.schema_registry.avro import InvalidSchema


@dataclass
class JsonSchema:
    canonical: str
    parsed: Any
    schema_type: str = "JSON"


def parse(text: str, references: list[tuple[str, str]] = ()) -> JsonSchema:  # type: ignore[assignment]
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"not JSON: {exc}") from None
    if not isinstance(raw, (dict, bool)):
        raise InvalidSchema("a JSON Schema is an object or a boolean")
    # Imported here: `import jsonschema` takes seconds (its optional format checkers build
    # grammars), which the registry's start should not wait for; `__main__` warms it up.
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(raw).check_schema(raw)
    except exceptions.SchemaError as exc:
        raise InvalidSchema(exc.message) from None
    return JsonSchema(json.dumps(raw, separators=(",", ":")), raw)


def can_read(reader: JsonSchema, writer: JsonSchema) -> list[str]:
    return _check(reader.parsed, writer.parsed, "#")


def _types(schema: dict) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def _open(schema: dict) -> bool:
    return schema.get("additionalProperties", True) is not False


def _check(r: Any, w: Any, path: str) -> list[str]:
    if r is True or r == {}:
        return []
    if w is False:
        return []
    if r is False:
        return [f"{path}: the reader accepts nothing"]
    if w is True:
        w = {}
    out: list[str] = []
    rt, wt = _types(r), _types(w)
    if rt is not None:
        if wt is None:
            out.append(f"{path}: type narrowed to {sorted(rt)} from any")
        else:
            lost = {t for t in wt if t not in rt and not (t == "integer" and "number" in rt)}
            if lost:
                out.append(f"{path}: type narrowed, {sorted(lost)} no longer accepted")
    if "enum" in r:
        lost_values = [v for v in w.get("enum", [None, "<any>"]) if v not in r["enum"]]
        if "enum" not in w or lost_values:
            out.append(f"{path}: enum narrowed")
    rp, wp = r.get("properties", {}), w.get("properties", {})
    for name, sub in rp.items():
        if name in wp:
            out += _check(sub, wp[name], f"{path}/properties/{name}")
        elif _open(w):
            extra = w.get("additionalProperties")
            if isinstance(extra, dict):  # partially open: what the writer may put there is known
                out += _check(sub, extra, f"{path}/properties/{name}")
            else:
                out.append(f"{path}/properties/{name}: property added to an open content model")
    for name, sub in wp.items():
        if name not in rp:
            extra = r.get("additionalProperties", True)
            if extra is False:
                out.append(f"{path}/properties/{name}: property removed from a closed content model")
            elif isinstance(extra, dict):
                out += _check(extra, sub, f"{path}/properties/{name}")
    for name in set(r.get("required", [])) - set(w.get("required", [])):
        if not (isinstance(rp.get(name), dict) and "default" in rp[name]):
            out.append(f"{path}: property {name!r} is newly required")
    if _open(w) and not _open(r):
        out.append(f"{path}: additionalProperties removed (the reader's content model is closed)")
    if isinstance(r.get("items"), dict) and isinstance(w.get("items"), dict):
        out += _check(r["items"], w["items"], f"{path}/items")
    return out
