"""Helpers shared by the tests (import as `from tests.support import wait_until`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 15.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
    *,
    fail: bool = True,
) -> T:
    """Call `predicate` every `interval` seconds until it returns something truthy, and return that.

    After `timeout` seconds: raise AssertionError naming `message` (or what `message()` says
    then) and the last value, or with
    `fail=False` return the last (falsy) value. The timeout is a bound on waiting for a behaviour
    to show, never an assertion about speed (those belong in benchmarks/)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not value and fail:
        what = message() if callable(message) else message
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
    return value
