"""Record serialization of the client façade: how a Python value becomes a record's bytes, and
Kafka's topic-name rule checked before anything is sent.

In a module of its own (Kafka's Serializer) so that the façade, `produce_from`
(`workbench.redrive`) and the widgets share one definition without importing each other.
`workbench.client` re-exports these names.
"""

from __future__ import annotations

import json
from typing import Any

from workbench.protocol.names import topic_name_problem

__all__ = ["check_topic_name", "encode_value"]


def _json_default(obj: Any) -> Any:
    """Types with one obvious JSON text (dates, decimals, UUIDs, paths); anything else is refused
    rather than silently sent as its repr."""
    import datetime
    import decimal
    import pathlib
    import uuid

    if isinstance(obj, datetime.datetime | datetime.date | datetime.time):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal | uuid.UUID | pathlib.PurePath):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode_value(value: Any) -> bytes | None:
    """JSON unless already bytes/str; None stays None (a Kafka null value, e.g. a tombstone).

    Values that have no JSON form (arbitrary objects, NaN and infinities) raise TypeError
    naming the type and the way out, instead of sending their repr.
    """
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return json.dumps(value, separators=(",", ":"), default=_json_default, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot encode value of type {type(value).__name__} as JSON: {exc}; "
            "convert it to a dict/list/str/number first, or pass bytes or str to send it as is"
        ) from None


def check_topic_name(name: Any) -> None:
    """Kafka's topic name rule (`workbench.protocol.names`), checked before anything is sent:
    ValueError saying what to change."""
    problem = topic_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
