"""The tree reads as the data flow: imports point down it, modules stay small, no cycles.

decode (``engine.dbn``) -> ``engine.pipeline`` -> sinks with their readers (``engine.lake``,
``engine.questdb``, ``engine.book``) -> ``service``; ``engine.synth`` is a side branch that
only knows the record layout; ``engine.cluster`` drives the sinks on Dask workers (only the CLIs
import it). The command-line modules sit on top of the engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.samples import ROOT

SHARED = {
    "engine", "engine._lazy", "engine.cli", "engine.errors", "engine.progress", "engine.inputs", "engine.tempfiles",
    "engine.timeparse", "engine.defaults", "engine.stages",
}  # fmt: skip
CLIS = {"engine.ingest", "engine.query", "engine.export", "engine.inspect", "engine.synth.__main__", "engine.book.__main__"}
ALLOWED = {
    "shared": {"shared"},
    "dbn": {"shared", "dbn"},
    "pipeline": {"shared", "dbn", "pipeline"},
    "synth": {"shared", "dbn", "synth"},
    "lake": {"shared", "dbn", "pipeline", "lake"},
    "questdb": {"shared", "dbn", "pipeline", "lake", "questdb"},
    "book": {"shared", "dbn", "pipeline", "lake", "questdb", "book"},
    # issue 16: a driver of the sinks on a Dask cluster; beside book, above the sinks, below the CLIs
    "cluster": {"shared", "dbn", "pipeline", "lake", "questdb", "cluster"},
    "cli": {"shared", "dbn", "pipeline", "synth", "lake", "questdb", "book", "cluster", "cli"},
    "service": {"shared", "dbn", "pipeline", "lake", "questdb", "book", "service"},
}
MAX_LINES = 500


def group(module: str) -> str | None:
    """The concern a module belongs to, or None outside the product."""
    if module in CLIS:
        return "cli"
    if module in SHARED:
        return "shared"
    parts = module.split(".")
    if parts[0] == "service":
        return "service"
    if parts[0] == "engine" and len(parts) > 1 and parts[1] in ALLOWED:
        return parts[1]
    return None


def modules() -> dict[str, Path]:
    out = {}
    for top in ("engine", "service"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """Every engine/service module ``path`` imports (module level or inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    known = modules()
    return [(line, name) for line, name in found if name in known]


MODULES = modules()


def test_every_module_belongs_to_a_concern() -> None:
    assert MODULES
    assert [m for m in MODULES if group(m) is None] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_flow(module: str) -> None:
    mine = group(module)
    assert mine is not None
    wrong = [
        f"{MODULES[module].relative_to(ROOT)}:{line} imports {name} ({group(name)})"
        for line, name in imports(MODULES[module], module)
        if group(name) not in ALLOWED[mine]
    ]
    assert wrong == [], f"{module} ({mine}) may import only {sorted(ALLOWED[mine])}"


def test_the_direction_check_catches_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from engine.lake.sink import ParquetSink\n")
    found = imports(bad, "engine.dbn.bad")
    assert found and all(group(name) not in ALLOWED["dbn"] for _, name in found)


def test_no_import_cycles() -> None:
    """Module-level imports form a DAG (function-level imports may not close a cycle either)."""
    graph = {m: {n for _, n in imports(p, m) if n != m} for m, p in MODULES.items()}
    # a package's __init__ importing its own submodules lazily is not an edge back
    for m in graph:
        graph[m] = {n for n in graph[m] if not (MODULES[m].name == "__init__.py" and n.startswith(m + "."))}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


BOOK_GLUE = {"engine.book.rows", "engine.book.index", "engine.book.snapshot", "engine.book.derive", "engine.book.__main__"}


def test_book_kernels_import_only_errors_from_the_engine() -> None:
    """engine.book's kernel modules stay free of the engine (engine/book/__init__.py); only its lake glue reads the lake."""
    kernels = [m for m in MODULES if m.startswith("engine.book") and m not in BOOK_GLUE]
    wrong = [
        f"{m} imports {name}"
        for m in kernels
        for _, name in imports(MODULES[m], m)
        if (name != "engine.errors" and not name.startswith("engine.book")) or name in BOOK_GLUE
    ]
    assert kernels and wrong == []


def test_modules_stay_small() -> None:
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}


def test_test_modules_do_not_import_each_other() -> None:
    offenders = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            name = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if name.startswith("tests.") and name.rpartition(".")[2].startswith(("test_", "conftest")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert offenders == []


def test_no_test_double_ships_in_the_product() -> None:
    assert not (ROOT / "service" / "testing.py").exists()
    assert [m for m in MODULES if "fake" in m or "testing" in m] == []


def test_no_test_plays_a_server() -> None:
    """Issue 10: the real QuestDB answers the tests; faults come from the one TCP proxy in
    tests/support/faultproxy.py, which knows HTTP framing only. No test module serves HTTP (a fake
    of /exec, /exp, ILP or QWP) by itself."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] in ("http", "socketserver") and n != "http.client" for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
