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
    to show, never an assertion about speed (those belong in benchmarks/).

    A predicate that raises LookupError (an IndexError or KeyError: a row or key not there
    *yet*, such as a partition one broker's metadata does not show a moment after its creation)
    counts as falsy and is asked again; at the timeout the last such error is chained to the
    AssertionError. Any other exception propagates at once."""
    deadline = time.monotonic() + timeout
    error: LookupError | None = None
    while True:
        try:
            value = predicate()
            error = None
        except LookupError as exc:
            value, error = None, exc
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not value and fail:
        what = message() if callable(message) else message
        last = f"{type(error).__name__}: {error}" if error is not None else repr(value)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})") from error
    return value


def plain_duckdb(catalog, sql: str) -> tuple:
    """``sql`` run by plain DuckDB in a separate process (no workbench imported), the catalog file
    opened read-only; the first row, as a tuple."""
    import subprocess
    import sys

    script = (
        f"import duckdb; c = duckdb.connect({str(catalog)!r}, read_only=True); "
        f"print(repr(c.execute({sql!r}).fetchone()))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout)  # a tuple of ints printed by repr
