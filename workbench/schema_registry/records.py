"""The `_schemas` topic's records, in Confluent Schema Registry's JSON formats.

Keys (`SchemaRegistryKey` subclasses, `magic` 1 for schemas and 0 otherwise):

    {"keytype":"SCHEMA","subject":"orders-value","version":1,"magic":1}
    {"keytype":"CONFIG","subject":null,"magic":0}          global (or per subject) compatibility
    {"keytype":"MODE","subject":null,"magic":0}            global (or per subject) mode
    {"keytype":"DELETE_SUBJECT","subject":"orders-value","magic":0}
    {"keytype":"CLEAR_SUBJECT","subject":"orders-value","magic":0}
    {"keytype":"NOOP","magic":0}

Values: `SchemaValue` `{"subject","version","id","schemaType"?,"references"?,"schema","deleted"}`,
`ConfigValue` `{"compatibilityLevel": ...}`, `ModeValue` `{"mode": ...}`, `DeleteSubjectValue`
`{"subject","version"}` (soft-deletes every version up to it). A hard delete is a tombstone
(null value) on the key, so compaction forgets it. The topic is compacted: only the latest
value per key matters, which is why each key names exactly what it sets.
"""

from __future__ import annotations

import json
from typing import Any


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def schema_key(subject: str, version: int) -> bytes:
    return _dump({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1})


def config_key(subject: str | None) -> bytes:
    return _dump({"keytype": "CONFIG", "subject": subject, "magic": 0})


def mode_key(subject: str | None) -> bytes:
    return _dump({"keytype": "MODE", "subject": subject, "magic": 0})


def delete_subject_key(subject: str) -> bytes:
    return _dump({"keytype": "DELETE_SUBJECT", "subject": subject, "magic": 0})


def clear_subject_key(subject: str) -> bytes:
    return _dump({"keytype": "CLEAR_SUBJECT", "subject": subject, "magic": 0})


NOOP_KEY = _dump({"keytype": "NOOP", "magic": 0})


def schema_value(
    subject: str, version: int, schema_id: int, schema_type: str, schema: str, references: list, deleted: bool
) -> bytes:
    value: dict[str, Any] = {"subject": subject, "version": version, "id": schema_id}
    if schema_type != "AVRO":
        value["schemaType"] = schema_type
    if references:
        value["references"] = references
    value["schema"] = schema
    value["deleted"] = deleted
    return _dump(value)


def config_value(level: str) -> bytes:
    return _dump({"compatibilityLevel": level})


def mode_value(mode: str) -> bytes:
    return _dump({"mode": mode})


def delete_subject_value(subject: str, version: int) -> bytes:
    return _dump({"subject": subject, "version": version})


def clear_subject_value(subject: str) -> bytes:
    return _dump({"subject": subject})


def decode(data: bytes | None) -> dict[str, Any] | None:
    """A key or value as a dict; None for a tombstone. Raises ValueError on bytes that are not a JSON object."""
    if data is None:
        return None
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object: {data[:80]!r}")
    return obj
