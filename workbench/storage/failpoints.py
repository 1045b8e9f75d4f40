"""Failpoints: named places where a test makes the storage layer "crash" between two steps.

``WORKBENCH_FAILPOINT`` holds comma-separated names. When execution reaches a listed
`failpoint`, it raises `FailpointCrash` (a BaseException, so no ``except Exception`` on the way
swallows it), or, with ``WORKBENCH_FAILPOINT_EXIT=1`` (a broker process under test), the process
exits at once with status 75 as a ``kill -9`` would leave it: no close, no flush, no cleanup.
Unset (always, outside tests), a failpoint is one dictionary lookup.
"""

from __future__ import annotations

import os

ENV = "WORKBENCH_FAILPOINT"
EXIT_ENV = "WORKBENCH_FAILPOINT_EXIT"
EXIT_STATUS = 75


class FailpointCrash(BaseException):
    """Raised at an enabled failpoint (in-process crash tests reopen the log from its files)."""


def failpoint(name: str) -> None:
    armed = os.environ.get(ENV)
    if not armed or name not in armed.split(","):
        return
    if os.environ.get(EXIT_ENV) == "1":
        os._exit(EXIT_STATUS)
    raise FailpointCrash(name)


__all__ = ["ENV", "EXIT_ENV", "FailpointCrash", "failpoint"]
