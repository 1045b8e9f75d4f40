"""Kafka's topic name rule (`org.apache.kafka.common.internals.Topic.validate`), defined once.

A topic name is 1 to 249 ASCII letters, digits, '.', '_' or '-', and neither "." nor "..".
(249 because a partition directory is `<topic>-<partition>` and most file systems allow 255
bytes per name.) The controller refuses other names with INVALID_TOPIC_EXCEPTION, the client
façade raises ValueError before sending anything, and the producer panel shows the reason:
all three ask `topic_name_problem`.
"""

from __future__ import annotations

import string

MAX_TOPIC_NAME_LENGTH = 249
TOPIC_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._-")


def topic_name_problem(name: object) -> str | None:
    """Why `name` is not a legal topic name, in one sentence saying what to change; None if it is."""
    if not isinstance(name, str) or not name:
        return f"topic name must be a non-empty string, not {name!r}"
    if name in (".", ".."):
        return f"topic name {name!r} is not allowed; use letters, digits, '.', '_' or '-'"
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        return f"topic name is {len(name)} characters long; Kafka allows at most {MAX_TOPIC_NAME_LENGTH}"
    bad = sorted(set(name) - TOPIC_NAME_CHARS)
    if bad:
        suggestion = "".join(c if c in TOPIC_NAME_CHARS else "-" for c in name)
        return (
            f"topic name {name!r} contains {''.join(bad)!r}; topic names may only use ASCII "
            f"letters, digits, '.', '_' and '-' (for example {suggestion!r})"
        )
    return None
