"""The installed package wins over a folder named `workbench/` next to a user's script.

A user who clones this repository as `workbench/` and runs a script (or `python -c`) from the folder
above it puts that folder first on `sys.path`. The clone's root has no `__init__.py`, so Python can take
it as an empty namespace package named `workbench` (`module 'workbench' has no attribute 'connect'`).
That happens when the editable install is an import hook appended to `sys.meta_path`: the path finder
settles on the namespace portion before the hook is asked. pyproject's explicit `package-dir` makes the
editable install a plain path entry, searched in `sys.path` order, where a regular package beats a
namespace portion. CI installs with the README's command, so this test checks that install.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_folder_named_workbench_in_the_working_directory_does_not_shadow_the_package(tmp_path: Path) -> None:
    (tmp_path / "workbench").mkdir()  # what a clone's root looks like to the importer: no __init__.py
    (tmp_path / "workbench" / "README.md").write_text("a clone\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", "import workbench; print(workbench.__file__); print(callable(workbench.connect))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    file, has_connect = out.stdout.split()
    assert file.endswith(os.path.join("workbench", "__init__.py")), f"imported {file!r}, a namespace package"
    assert has_connect == "True"
