"""Timestamps of the stages of an acknowledged produce, for `benchmarks/round_trace.py` (issue 19).

Off unless the environment variable `WORKBENCH_ROUND_TRACE` names a directory when the broker
starts; then each broker appends one line per event to `<dir>/<pid>.trace` (`CLOCK_MONOTONIC`
nanoseconds, which all processes of the machine share, then the event's fields as JSON), and
the benchmark lines the brokers' events up per batch: leader receive → append → follower fetch
answered → follower received → follower appended → follower's next fetch → leader saw it → high
watermark → acknowledgement. The call sites test `ON` (a module constant) first, so the broker
pays one global lookup per site when tracing is off.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from typing import IO, Any

_DIR = os.environ.get("WORKBENCH_ROUND_TRACE", "")
ON = bool(_DIR)
_FLUSH_EVERY = 2000  # events kept before a write: the write stays off most rounds
_FLUSH_NS = 200_000_000  # ... or after 0.2 s (idle followers' long polls keep marking)

_events: list[tuple[Any, ...]] = []
_file: IO[str] | None = None
_flushed_at = 0


def mark(*fields: Any) -> None:
    """Record one event now: `fields` are the event's name and keys (JSON-serialisable)."""
    now = time.monotonic_ns()
    _events.append((now, *fields))
    if len(_events) >= _FLUSH_EVERY or now - _flushed_at > _FLUSH_NS:
        flush()


def flush() -> None:
    global _file, _flushed_at
    _flushed_at = time.monotonic_ns()
    if not _events:
        return
    if _file is None:
        _file = open(os.path.join(_DIR, f"{os.getpid()}.trace"), "a", encoding="utf-8")
    _file.write("".join(json.dumps(e) + "\n" for e in _events))
    _file.flush()
    _events.clear()


if ON:
    atexit.register(flush)
