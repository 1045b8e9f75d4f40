"""Compatibility levels and how they pick the schemas a new one is checked against.

Confluent's `CompatibilityLevel` and `CompatibilityChecker`: BACKWARD means the new
schema can read data written with the old (a consumer upgraded first); FORWARD, the
old schema can read data written with the new (producers upgraded first); FULL, both.
The plain levels compare with the latest live version, the `_TRANSITIVE` ones with
every live version. Each format supplies `can_read(reader, writer) -> [messages]`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)

#: Confluent's default (`schema.compatibility.level`).
DEFAULT_LEVEL = "BACKWARD"

CanRead = Callable[[Any, Any], list[str]]


def incompatibilities(level: str, can_read: CanRead, new: Any, previous: Sequence[Any]) -> list[str]:
    """Why `new` may not follow `previous` (oldest first, live versions only) under `level`; [] if it may."""
    if level == "NONE" or not previous:
        return []
    against = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    base = level.removesuffix("_TRANSITIVE")
    messages: list[str] = []
    for old in reversed(against):
        if base in ("BACKWARD", "FULL"):
            messages += [f"{m} (new schema cannot read data written with an old one)" for m in can_read(new, old)]
        if base in ("FORWARD", "FULL"):
            messages += [f"{m} (an old schema cannot read data written with the new one)" for m in can_read(old, new)]
        if messages:
            break
    return messages
