"""Schema-aware widgets: decode Confluent-framed values for display, and check and encode a value
typed by hand against a subject's latest schema (the producer panel).

Schemas are read from the connection's registry over its REST API (`workbench.sql.typed`'s
`RegistryReader`), as everything on the notebook side talks to the cluster only by protocol.
Avro and JSON Schema subjects can be typed into the producer panel; Protobuf needs a message
class, so the panel says so instead.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any

from workbench.sql.typed import RegistryReader, WriterSchema, _to_json, writer_schema

_readers: dict[str, RegistryReader] = {}
_writers: dict[tuple[str, int], WriterSchema | str] = {}
_lock = threading.Lock()


def registry_url(conn: Any) -> str | None:
    return getattr(conn, "schema_registry_url", None)


def _reader(url: str) -> RegistryReader:
    with _lock:
        return _readers.setdefault(url, RegistryReader(url, timeout=5.0))


def framed_id(data: Any) -> int | None:
    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    data = bytes(data)
    return int.from_bytes(data[1:5], "big") if len(data) >= 5 and data[0] == 0 else None


def decode_for_display(url: str | None, data: Any) -> str | None:
    """A framed value as JSON text (`None`: not framed, or no registry); errors as a short note."""
    sid = framed_id(data)
    if sid is None or not url:
        return None
    key = (url, sid)
    writer = _writers.get(key)
    if writer is None:
        try:
            found = _reader(url).by_id(sid)
            writer = (
                f"schema id {sid} is not registered"
                if found is None
                else writer_schema(sid, found["schemaType"], found["schema"])
            )
        except Exception as exc:
            writer = f"schema id {sid}: {exc}"
        _writers[key] = writer
    if isinstance(writer, str):
        return f"<{writer}>"
    try:
        return _to_json(writer.decode(bytes(data)[5:]))
    except Exception as exc:
        return f"<does not decode with schema id {sid}: {exc}>"


def subjects(url: str | None) -> list[str]:
    if not url:
        return []
    return list(_reader(url).get("/subjects") or [])


class SubjectSchema:
    """A subject's latest version, to check and encode values typed as JSON."""

    def __init__(self, url: str, subject: str) -> None:
        from urllib.parse import quote

        found = _reader(url).get(f"/subjects/{quote(subject, safe='')}/versions/latest")
        if found is None:
            raise ValueError(f"subject {subject!r} is not registered")
        self.subject = subject
        self.schema_id = int(found["id"])
        self.schema_type = found.get("schemaType", "AVRO")
        self.text = found["schema"]
        if self.schema_type == "AVRO":
            import fastavro

            self._avro = fastavro.parse_schema(json.loads(self.text))
        elif self.schema_type == "JSON":
            self._json = json.loads(self.text)
        else:
            raise ValueError(
                f"subject {subject!r} is {self.schema_type}: send Protobuf with confluent-kafka's ProtobufSerializer"
            )

    def problem(self, value: Any) -> str:
        """Why `value` does not fit the schema, naming the field ('' when it fits)."""
        if self.schema_type == "AVRO":
            from fastavro.validation import ValidationError, validate

            try:
                validate(value, self._avro, raise_errors=True)
            except ValidationError as exc:
                errors = getattr(exc, "errors", None) or []
                if errors:
                    e = errors[0]
                    return (
                        f"field {e.field!r}: {e.datum!r} is not a valid {json.dumps(e.schema)} "
                        f"(schema {self.subject} v-latest, id {self.schema_id})"
                    )
                return str(exc)
            return ""
        import jsonschema

        try:
            jsonschema.validate(value, self._json)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "(the value)"
            return f"field {where!r}: {exc.message} (schema {self.subject}, id {self.schema_id})"
        return ""

    def encode(self, value: Any) -> bytes:
        """`value` in Confluent's wire format with this version's schema id."""
        header = b"\x00" + self.schema_id.to_bytes(4, "big")
        if self.schema_type == "AVRO":
            import fastavro

            out = io.BytesIO()
            fastavro.schemaless_writer(out, self._avro, value)
            return header + out.getvalue()
        return header + json.dumps(value, separators=(",", ":")).encode()
