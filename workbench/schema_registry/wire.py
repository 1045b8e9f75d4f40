"""Confluent's wire format on the notebook side: `SchemaCodec` serializes with confluent-kafka's
own serializers (registering the schema) and decodes any framed value by its writer schema.

Framing (Confluent "Wire format"): byte 0 is the magic 0, bytes 1-4 the big-endian schema id,
then the Avro binary / JSON text / Protobuf message-index array and message.
"""

from __future__ import annotations

import io
import json
from typing import Any

MAGIC = 0


def schema_id(data: bytes | None) -> int | None:
    """The schema id of a Confluent-framed value, or None if it is not one."""
    if not isinstance(data, bytes | bytearray) or len(data) < 5 or data[0] != MAGIC:
        return None
    return int.from_bytes(data[1:5], "big")


def _kind(schema: Any) -> str:
    if isinstance(schema, dict) and ("$schema" in schema or "properties" in schema or schema.get("type") == "object"):
        return "JSON"
    return "AVRO"


class SchemaCodec:
    """Serialize and decode values of Confluent's wire format against the registry at `url`."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.url = url
        self.client = SchemaRegistryClient({"url": url})
        self._serializers: dict[tuple, Any] = {}
        self._readers: dict[int, tuple[str, Any]] = {}

    def serialize(self, topic: str, value: Any, schema: Any, *, key: bool = False) -> bytes:
        """`value` framed with `schema` (an Avro schema or JSON Schema as a dict or JSON text), registered
        under `<topic>-value` (or `-key`) as confluent-kafka's serializers do."""
        from confluent_kafka.serialization import MessageField, SerializationContext

        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except ValueError:
                raise ValueError(
                    f"schema must be an Avro schema or a JSON Schema (dict or JSON text), not {schema!r}"
                ) from None
        if not isinstance(schema, dict | list):
            raise ValueError(
                f"schema must be an Avro schema or a JSON Schema (dict or JSON text), not {type(schema).__name__}"
            )
        text = json.dumps(schema)
        cache_key = (topic, key, text)
        ser = self._serializers.get(cache_key)
        if ser is None:
            # Imported only when needed: confluent-kafka's JSON serializer imports jsonschema, whose
            # format checkers compile dozens of grammars (tens of seconds of CPU on a busy machine).
            if _kind(schema) == "JSON":
                from confluent_kafka.schema_registry.json_schema import JSONSerializer

                ser = JSONSerializer(text, self.client)
            else:
                from confluent_kafka.schema_registry.avro import AvroSerializer

                ser = AvroSerializer(self.client, text)
            self._serializers[cache_key] = ser
        field = MessageField.KEY if key else MessageField.VALUE
        return ser(value, SerializationContext(topic, field))

    def decode(self, data: bytes) -> Any:
        """A framed value as Python objects (Avro records as dicts, logical types as Python types);
        a Protobuf value stays bytes (decoding it needs its message class)."""
        sid = schema_id(data)
        if sid is None:
            raise ValueError("not a Confluent wire-format value (magic byte 0 and a schema id)")
        reader = self._readers.get(sid)
        if reader is None:
            import fastavro

            registered = self.client.get_schema(sid)
            kind = registered.schema_type or "AVRO"
            parsed: Any = None
            if kind == "AVRO":
                parsed = fastavro.parse_schema(json.loads(registered.schema_str or "null"))
            reader = self._readers[sid] = (kind, parsed)
        kind, parsed = reader
        if kind == "AVRO":
            import fastavro

            return fastavro.schemaless_reader(io.BytesIO(data[5:]), parsed, None)  # writer schema = reader
        if kind == "JSON":
            return json.loads(data[5:])
        return bytes(data)
