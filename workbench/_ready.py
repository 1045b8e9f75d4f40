"""The READY handshake of the processes a `Cluster` starts (brokers, the schema registry).

Each child prints ``READY <port>`` on stdout once it serves; the parent waits for that line.
"""

from __future__ import annotations

import os
import select
import subprocess
import time


def await_ready_port(process: subprocess.Popen, timeout_s: float) -> int | None:
    """The port from the child's ``READY <port>`` line; None if it exited, closed stdout or
    said nothing within ``timeout_s``."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            buf += chunk
            if b"\n" in buf:
                line = buf.split(b"\n", 1)[0].decode()
                if line.startswith("READY "):
                    return int(line.split()[1])
        elif process.poll() is not None:
            return None
    return None
