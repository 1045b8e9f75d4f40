"""The Parquet converter child whose broker died mid-job exits quietly (no traceback in the
broker's stderr.log, which the chaos harness reads as a sign of a crash)."""

from __future__ import annotations

import subprocess
import sys


def test_the_converter_exits_quietly_when_its_broker_is_gone():
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.storage.converter"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.close()  # the broker is gone: nobody reads the answer
    proc.stdin.write(b'{"id": 1}\n')  # a job it cannot do: it answers with an error at once
    proc.stdin.close()
    assert proc.stderr is not None
    proc.wait(timeout=60)
    err = proc.stderr.read()
    assert b"Traceback" not in err, err.decode(errors="replace")
    assert proc.returncode == 0
