"""The seams stay seams: nobody reaches into another object's private locks or probes its class.

Checked on the source with `ast`, like the import graph (tests/unit/test_import_graph.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "workbench"

# SqlEngine's locks and DDL cursor: other modules use converting(), reading_files(),
# install_tables() and fresh_rows().
ENGINE_PRIVATE = {"_mutex", "_convert_lock", "_files", "_ddl", "_parser_lock", "_close_lock"}


def foreign_private_uses(path: Path, names: set[str]) -> list[str]:
    """`x.<name>` where x is not `self`/`cls`: a private member of someone else."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in names:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: .{node.attr}")
    return found


def test_only_the_engine_touches_its_locks():
    uses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != PACKAGE / "sql" / "engine.py":
            uses += foreign_private_uses(path, ENGINE_PRIVATE)
    assert not uses, "use SqlEngine's public methods instead:\n" + "\n".join(uses)


def test_the_notebook_side_asks_is_embedded():
    """One notion of an embedded cluster (`workbench.embedded`): no isinstance(conn, Cluster) and no
    probing for `broker_pids`/`stopped` outside `cluster.py` and `embedded.py`."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("cluster.py", "embedded.py") and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            fn, args = node.func.id, node.args
            second = args[1] if len(args) >= 2 else None
            if fn == "isinstance" and isinstance(second, ast.Name) and second.id == "Cluster":
                offenders.append(f"{path.name}:{node.lineno}: isinstance(..., Cluster)")
            probed = ("broker_pids", "stopped", "data_dir")
            if fn in ("hasattr", "getattr") and isinstance(second, ast.Constant) and second.value in probed:
                offenders.append(f"{path.name}:{node.lineno}: {fn}(..., {second.value!r})")
    assert not offenders, "ask workbench.embedded.is_embedded(conn) instead:\n" + "\n".join(offenders)
