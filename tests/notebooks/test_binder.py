"""The Binder spec is enough: a fresh virtual environment built the way Binder builds it runs the quickstart.

Binder (repo2docker) installs `binder/requirements.txt`, runs `binder/postBuild` from the repository
root, and opens JupyterLab on `notebooks/01-quickstart.ipynb`. This test does the same in an empty
venv, on a copy of the repository (as Binder has its own checkout), and executes the quickstart
there with `jupyter nbconvert --execute` on that venv's kernel. It needs PyPI (pip's cache makes
reruns quick) and nothing else from the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.notebooks.support import ROOT, kernel_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "demo",
    ".pytest_cache",
    ".ruff_cache",
    "docs",
    "benchmarks",
)


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_quickstart_runs_in_a_fresh_binder_environment(tmp_path):
    timings = {}
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=IGNORE)
    venv = tmp_path / "venv"
    started = time.monotonic()
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    run(
        [python, "-m", "pip", "install", "-q", "-r", str(repo / "binder" / "requirements.txt")],
        env=env,
        cwd=repo,
    )
    run(["bash", str(repo / "binder" / "postBuild")], env=env, cwd=repo)
    timings["install"] = time.monotonic() - started

    # The workbench in the venv is the installed copy, not this checkout.
    where = run([python, "-c", "import workbench, ipywidgets; print(workbench.__file__)"], env=env, cwd=tmp_path)
    assert str(venv) in where.stdout, where.stdout

    kenv = kernel_env(tmp_path / "jupyter", "python3", python=str(python))
    kenv.update({k: env[k] for k in ("PATH", "VIRTUAL_ENV")})
    kenv.pop("PYTHONPATH", None)
    notebook = repo / "notebooks" / "01-quickstart.ipynb"
    executed = tmp_path / "executed.ipynb"
    started = time.monotonic()
    run(
        [
            python,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            str(notebook),
            "--output",
            str(executed),
            "--ExecutePreprocessor.timeout=120",
            "--ExecutePreprocessor.kernel_name=python3",
        ],
        env=kenv,
        cwd=repo / "notebooks",
        timeout=300,
    )
    timings["quickstart"] = time.monotonic() - started

    nb = json.loads(executed.read_text())
    stored = json.loads(notebook.read_text())
    for cell, ref in zip(nb["cells"], stored["cells"], strict=True):
        if cell["cell_type"] != "code":
            continue
        assert not [o for o in cell["outputs"] if o["output_type"] == "error"], cell["source"]
        if "# NBVAL_CHECK_OUTPUT" in "".join(cell["source"]):
            text = "".join("".join(o["text"]) for o in cell["outputs"] if o.get("name") == "stdout")
            want = "".join("".join(o["text"]) for o in ref["outputs"] if o.get("name") == "stdout")
            assert text == want, (cell["source"], text, want)
    widgets = [c for c in nb["cells"] if "application/vnd.jupyter.widget-view+json" in json.dumps(c.get("outputs", []))]
    assert len(widgets) == 7, "the seven widget cells should each display a widget"
    print("binder timings (s):", {k: round(v, 1) for k, v in timings.items()})
