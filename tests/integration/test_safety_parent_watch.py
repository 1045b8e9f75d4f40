"""Issue 12, item 9: a broker dies with its parent even while it waits for the controller quorum."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import wait_until
from workbench.cluster import _free_port

# The broker's parent: starts one broker of a three-voter quorum whose other voters never run
# (so the broker waits in Broker.start for a majority), prints the broker's pid, then waits.
PARENT = """
import json, subprocess, sys, time
cmd = json.loads(sys.argv[1])
child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has exited (its new parent may not have reaped it yet)


def _wait_gone(pid: int, timeout: float) -> bool:
    return wait_until(lambda: _gone(pid), timeout, 0.1, fail=False)


def test_broker_waiting_for_a_quorum_majority_exits_when_its_parent_is_killed(tmp_path):
    ports = {n: (_free_port(), _free_port()) for n in (1, 2, 3)}
    voters = {str(n): ["127.0.0.1", kp, rp] for n, (kp, rp) in ports.items()}
    cmd = [
        sys.executable,
        "-m",
        "workbench.broker",
        "--node-id",
        "1",
        "--cluster-dir",
        str(tmp_path),
        "--port",
        str(ports[1][0]),
        "--raft-port",
        str(ports[1][1]),
        "--voters",
        json.dumps(voters),
    ]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, json.dumps(cmd)], stdout=subprocess.PIPE, start_new_session=True
    )
    broker_pid = None
    try:
        broker_pid = int(parent.stdout.readline())
        # The broker is up and waiting for the quorum (its log says so) before the parent dies.
        log_file = tmp_path / "broker-1" / "broker.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "waiting for the controller quorum" not in (
            log_file.read_text() if log_file.exists() else ""
        ):
            time.sleep(0.1)
        assert not _gone(broker_pid), "the broker exited before its parent was killed"
        assert "waiting for the controller quorum" in log_file.read_text()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # Without the watch armed first, the broker would sit in Broker.start for its 60 s quorum timeout.
        assert _wait_gone(broker_pid, 20), "the broker outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if broker_pid is not None and not _gone(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)
