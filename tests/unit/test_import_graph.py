"""No import circles in `workbench/`: the layering of docs/ARCHITECTURE.md, checked.

The graph has an edge A -> B for every `import B` / `from B import ...` / `from . import B`
anywhere in module A: at module level, under `if TYPE_CHECKING:` (a lower layer never imports a
higher one, not even for types) and inside functions (a lazy import is still a dependency; it
only changes when the cost is paid). Importing a package's submodule counts as importing the
submodule; `from pkg import name` counts as importing `pkg.name` when that is a module, else
`pkg`. Importing a package runs its `__init__`, so a package re-exporting its submodules has
edges to them like any other module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workbench"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The workbench modules `name` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "workbench":
                    found.add(resolve(alias.name) or alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source.split(".")[0] != "workbench":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                target = sub if sub in known else resolve(source)
                if target is not None:
                    found.add(target)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each as one circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_circle(graph, c) for c in components]


def _one_circle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A concrete path start -> ... -> start inside a strongly connected component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return component


def test_the_graph_sees_imports_of_every_kind():
    graph = import_graph()
    # module level, relative and absolute
    assert "workbench.broker.handlers" in graph["workbench.broker.broker"]
    # a function-level import (client builds widgets lazily)
    assert "workbench.widgets" in graph["workbench.client"]
    # TYPE_CHECKING imports count too
    assert "workbench.broker.handlers.context" in graph["workbench.broker.handlers.fetch"]


def test_cycle_finder_reports_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycles_in_workbench():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles in workbench/:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_security_does_not_import_the_broker():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("workbench.security"):
            assert not {t for t in targets if t.startswith("workbench.broker")}, (name, targets)


def test_lower_layers_do_not_import_higher_ones():
    """protocol/ imports only protocol/; storage/ and controller/ never the broker or the notebook side."""
    notebook = ("workbench.sql", "workbench.widgets", "workbench.cluster", "workbench.client")
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("workbench.protocol"):
            bad = {t for t in targets if not t.startswith("workbench.protocol") and t != "workbench._lazy"}
            assert not bad, (name, bad)
        if name.startswith(("workbench.storage", "workbench.controller")):
            bad = {t for t in targets if t.startswith(("workbench.broker", *notebook))}
            assert not bad, (name, bad)


#: Notebook-side modules allowed one storage module each, and why. `materialize` makes a
#: `workbench.connect` cluster's topics the same Iceberg tables an embedded cluster's brokers commit,
#: so it runs the same committer: `iceberg_tables.publish` is a function from a directory of Parquet
#: files in the brokers' layout to an Iceberg snapshot (it imports no broker module: see
#: `test_lower_layers_do_not_import_higher_ones`), not a broker's state.
FILE_FORMAT_EXCEPTIONS = {"workbench.sql.materialize": {"workbench.storage.iceberg_tables"}}


def test_the_notebook_side_knows_brokers_only_by_the_protocol():
    """SQL, widgets, the client façade and describe() use the Kafka protocol and the brokers' files,
    never broker internals, so they work unchanged against a cluster they did not start. (`Cluster`,
    which launches broker processes, reads the broker's settings schema: it is the exception; and
    `FILE_FORMAT_EXCEPTIONS`.)"""
    notebook = ("workbench.sql", "workbench.widgets", "workbench.client", "workbench.describe", "workbench.embedded")
    internals = ("workbench.broker", "workbench.storage", "workbench.controller", "workbench.security")
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith(notebook):
            bad = {t for t in targets if t.startswith(internals)} - FILE_FORMAT_EXCEPTIONS.get(name, set())
            assert not bad, (name, bad)
