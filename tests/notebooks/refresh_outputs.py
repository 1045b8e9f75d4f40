"""Re-run the notebooks and store only their checked outputs (what nbval compares).

    python tests/notebooks/refresh_outputs.py                      # every notebook
    python tests/notebooks/refresh_outputs.py notebooks/04-*.ipynb # some

Each notebook is executed top to bottom in its own directory (as JupyterLab and nbval do). Then
every output is cleared except those of cells marked `# NBVAL_CHECK_OUTPUT`, which hold
deterministic text (counts, sums, sorted listings); those keep an execution count equal to their
position among the code cells, the others none, so the stored notebooks stay small and diffs show
only real changes. Run it after editing a checked cell (`--strip-only` renumbers without running).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.notebooks.support import kernel_env  # (run as a script: the repo root is on sys.path now)
from tests.notebooks.test_notebooks import KERNEL

CHECK = "# NBVAL_CHECK_OUTPUT"


def strip(nb: nbformat.NotebookNode) -> None:
    """Keep the outputs of checked cells only, numbered by position (nbval skips a cell with outputs
    but no execution count); drop every other output, count and per-run metadata."""
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for n, cell in enumerate(code_cells, start=1):
        cell.metadata.pop("execution", None)
        if CHECK not in cell.source:
            cell.execution_count = None
            cell.outputs = []
            continue
        cell.execution_count = n
        cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
        for out in cell.outputs:
            if "execution_count" in out:
                out.execution_count = n
    nb.metadata.pop("widgets", None)


def refresh(path: Path, *, allow_errors: bool = False, timeout: int = 120) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL,
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - started
    strip(nb)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--allow-errors", action="store_true", help="keep going after a failing cell")
    parser.add_argument("--strip-only", action="store_true", help="do not execute, only clean up")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    # The kernel nbval uses in the tests: this interpreter, librdkafka's fd-level logs not captured.
    os.environ.update(
        kernel_env(
            Path(tempfile.mkdtemp(prefix="workbench-kernels-")),
            KERNEL,
            extra_argv=("--IPKernelApp.capture_fd_output=False",),
        )
    )
    for path in paths:
        if args.strip_only:
            nb = nbformat.read(path, as_version=4)
            strip(nb)
            nbformat.write(nb, path)
            continue
        print(f"{path.name}: {refresh(path.resolve(), allow_errors=args.allow_errors):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
