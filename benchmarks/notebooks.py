"""How long each notebook takes top to bottom (README's promise: well under a minute each).

    python benchmarks/notebooks.py                    # every notebook in notebooks/
    python benchmarks/notebooks.py 01-quickstart      # the ones whose name starts so

Runs each notebook with nbclient on this interpreter's kernel, in a temporary copy of the
notebooks folder, and times it including the kernel start. tests/notebooks/ checks that the
notebooks run and print what they should; this script holds the timing claim. Prints a table
and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="notebook name prefixes")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if any(p.stem.startswith(o) for o in args.only)]
    rows = []
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_path if env_path else "")
    for path in notebooks:
        with tempfile.TemporaryDirectory(prefix="nbbench-") as tmp:
            work = Path(tmp) / "notebooks"
            shutil.copytree(ROOT / "notebooks", work)
            shutil.copytree(ROOT / "data", Path(tmp) / "data")
            nb = nbformat.read(work / path.name, as_version=4)
            started = time.perf_counter()
            NotebookClient(
                nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}
            ).execute()
            elapsed = time.perf_counter() - started
        rows.append({"notebook": path.stem, "seconds": round(elapsed, 1), "within_budget": elapsed < BUDGET_S})
        print(f"{path.stem:<36}{elapsed:>8.1f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "budget_s": BUDGET_S}
    target = out / f"{time.strftime('%Y%m%d-%H%M%S')}-notebooks.json"
    target.write_text(json.dumps({"meta": meta, "notebooks": rows}, indent=2))
    print(f"wrote {target}")
    sys.exit(0)


if __name__ == "__main__":
    main()
