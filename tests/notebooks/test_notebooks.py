"""Every notebook runs top to bottom under nbval, in well under a minute.

Each notebook gets its own `pytest --nbval-lax` in a subprocess, so the main test run needs no
nbval configuration and one failing notebook reports on its own. `--nbval-lax` runs every cell
and fails on any error; cells marked `# NBVAL_CHECK_OUTPUT` must also print exactly their stored
output (refresh those with `python tests/notebooks/refresh_outputs.py`).

The kernel is this interpreter with `capture_fd_output` off: librdkafka writes its connection
log lines (a broker being killed, a cluster stopping) straight to file descriptor 2, and captured
they would land, at random moments, in the outputs nbval compares.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.notebooks.support import ROOT, kernel_env, require_module

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "workbench-nbval"
# Each notebook's run is bounded (a hung cell fails the test) but its speed is not asserted here:
# benchmarks/notebooks.py measures the "well under a minute" promise.
BUDGET_S = 60
OVERHEAD_S = 30  # pytest and kernel start-up on a slow CI machine, on top of the budget


@pytest.fixture(scope="module")
def nbval_env(tmp_path_factory) -> dict[str, str]:
    """Environment whose JUPYTER_PATH holds the test kernel (this interpreter, fd capture off)."""
    require_module("nbval")
    require_module("ipykernel")
    return kernel_env(tmp_path_factory.mktemp("jupyter"), KERNEL, extra_argv=("--IPKernelApp.capture_fd_output=False",))


def test_every_notebook_is_listed():
    assert [p.name for p in NOTEBOOKS] == [
        "01-quickstart.ipynb",
        "02-producers-consumers-groups.ipynb",
        "03-replication-and-failover.ipynb",
        "04-sql-on-streams.ipynb",
        "05-ecommerce-story.ipynb",
        "06-connect-to-a-cluster.ipynb",
        "07-exactly-once.ipynb",
        "08-schemas.ipynb",
        "09-changelog-tables.ipynb",
        "10-share-groups.ipynb",
        "11-open-tables.ipynb",
    ]


def test_notebooks_are_stored_without_run_state():
    """Only checked cells keep outputs and an execution count (diffs show real changes only)."""
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        for cell in nb["cells"]:
            if cell["cell_type"] == "code" and "# NBVAL_CHECK_OUTPUT" not in "".join(cell["source"]):
                assert cell["outputs"] == [], (path.name, "".join(cell["source"])[:80])
                assert cell["execution_count"] is None, (path.name, "".join(cell["source"])[:80])
        last = "".join([c for c in nb["cells"] if c["cell_type"] == "code"][-1]["source"])
        assert "cluster.stop()" in last or "server.send_signal" in last, f"{path.name} does not clean up"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_under_nbval(notebook: Path, nbval_env, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(notebook),
        "--nbval-lax",
        "--nbval-kernel-name",
        KERNEL,
        "--nbval-cell-timeout",
        "120",
        "-p",
        "no:cacheprovider",
        "-q",
        "--rootdir",
        str(ROOT),
        "--junitxml",
        str(tmp_path / "report.xml"),
    ]
    started = time.monotonic()
    proc = subprocess.run(
        cmd,
        check=False,
        cwd=ROOT,
        env=nbval_env,
        capture_output=True,
        text=True,
        timeout=BUDGET_S * 3 + OVERHEAD_S,
    )
    elapsed = time.monotonic() - started
    report = (tmp_path / "report.xml").read_text() if (tmp_path / "report.xml").exists() else ""
    cells = report.count("<testcase ")
    print(f"{notebook.name}: {elapsed:.1f} s for {cells} cells (nbval, including kernel start)")
    assert proc.returncode == 0, f"nbval failed for {notebook.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
