"""Helpers shared by the notebook, Binder and browser tests."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require_module(name: str) -> None:
    """Skip without the Python package `name`, or fail when WORKBENCH_REQUIRE_ALL=1 (CI)."""
    if importlib.util.find_spec(name) is None:
        message = f"the Python package {name} is not installed (pip install -e '.[dev]')"
        if os.environ.get("WORKBENCH_REQUIRE_ALL") == "1":
            pytest.fail(message + "; WORKBENCH_REQUIRE_ALL=1 turns this skip into a failure")
        pytest.skip(message)


def kernel_env(
    jupyter_path: Path, name: str, *, python: str = sys.executable, extra_argv: tuple[str, ...] = ()
) -> dict[str, str]:
    """An environment in which the kernel `name` is `python` running ipykernel.

    The kernelspec goes into a directory put first on JUPYTER_PATH, so a stale `python3` kernel in
    the user's ~/.local/share/jupyter cannot hijack the tests."""
    spec_dir = jupyter_path / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}", *extra_argv],
        "display_name": f"Python 3 ({name}, workbench tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(jupyter_path), env.get("JUPYTER_PATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    # The kernel runs in a copy of notebooks/ elsewhere, where `import workbench` would find whatever
    # the interpreter has installed (an editable install of another checkout, say): put this
    # checkout first, so the notebooks test the code under test. (Not for another interpreter: the
    # Binder test checks what its own environment installed.)
    if python == sys.executable:
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
