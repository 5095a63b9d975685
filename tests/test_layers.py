"""The layering, made checkable: the store's modules form a DAG, and Lance stays inside ``app/store``.

Read from the source (``ast``), so a rule broken anywhere fails here, whether or not a test reaches the
code that breaks it.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "app" / "store"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(tree: ast.AST) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """Every import that runs (those under ``if TYPE_CHECKING:`` do not), and whether it sits in a function."""
    found: list[tuple[ast.ImportFrom | ast.Import, bool]] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                for other in child.orelse:
                    walk(other, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, in_function))
            walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    walk(tree, False)
    return found


def imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import loads (``from app.store import x`` loads ``app.store.x`` when x is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.module is None:
        return []
    out = [node.module]
    for alias in node.names:
        if (ROOT / Path(*node.module.split("."), f"{alias.name}.py")).exists():
            out.append(f"{node.module}.{alias.name}")
    return out


def store_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(STORE.glob("*.py")):
        name = module_name(path)
        deps = graph.setdefault(name, set())
        for node, _ in runtime_imports(ast.parse(path.read_text())):
            deps.update(m for m in imported_modules(node) if m.startswith("app.store") and m != name)
    return graph


def test_the_store_modules_form_a_dag() -> None:
    """``app.store``'s modules import one another without a circle, counting imports inside functions
    (an import moved into a function to dodge a circle is still the circle)."""
    graph = store_graph()
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"the store's modules import each other in a circle: {' -> '.join(exc.args[1])}")
    assert order.index("app.store.commits") < order.index("app.store.catalog")
    assert not graph["app.store.commits"] - {"app.store"}, "commits sits at the bottom of the store"


def test_no_store_module_imports_the_store_inside_a_function() -> None:
    """Function-level imports of the store's own modules exist only to dodge a circle: there are none."""
    late = []
    for path in sorted(STORE.glob("*.py")):
        for node, in_function in runtime_imports(ast.parse(path.read_text())):
            if in_function and any(m.startswith("app.store") for m in imported_modules(node)):
                late.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not late, f"imports of app.store inside functions: {late}"


FORK_EACH = """
import importlib, os, sys, traceback
import lance, numpy, pyarrow  # the heavy engines, loaded once; no module of this repository is loaded yet
failed = []
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1]:
        failed.append(module)
print(" ".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_store_module_imports_on_its_own() -> None:
    """Each module imports first in a fresh interpreter (an import circle shows as a partly initialised
    module): one child process per module, forked before any module of this repository is loaded."""
    modules = sorted(module_name(p) for p in STORE.glob("*.py"))
    done = subprocess.run([sys.executable, "-c", FORK_EACH, *modules], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"failed alone: {done.stdout.strip()}\n{done.stderr[-3000:]}"


# -- Lance stays inside app/store ----------------------------------------------------------------------------------
OUTSIDE = ["app/services", "app/routes", "app/lancedb_compat", "ingest"]
ENGINES = ("lance", "lancedb")
# The store's raw handles: a caller of these holds a pylance dataset and calls the engine on it.
RAW_HANDLES = {"latest", "fresh", "own"}
# Modules that still take a raw handle from the store, and why they may for now. Each entry must still be
# needed (the test fails when it is not), so the list only shrinks.
DOCUMENTED: dict[str, str] = {}


def outside_modules() -> list[Path]:
    return sorted(p for folder in OUTSIDE for p in (ROOT / folder).rglob("*.py"))


def engine_uses(path: Path) -> list[str]:
    """Where a module imports the engine, touches a snapshot's handle, or takes a raw handle from the store."""
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for module in imported_modules(node):
                if module.split(".")[0] in ENGINES:
                    found.append(f"{node.lineno}: imports {module}")
        elif isinstance(node, ast.Attribute) and node.attr in ("ds", "_ds"):
            found.append(f"{node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RAW_HANDLES
              and isinstance(node.func.value, ast.Name | ast.Attribute)
              and (node.func.value.id if isinstance(node.func.value, ast.Name) else node.func.value.attr) == "store"):
            found.append(f"{node.lineno}: store.{node.func.attr}()")
    return sorted(found, key=lambda use: int(use.split(":")[0]))


def test_lance_stays_inside_the_store() -> None:
    """No module of the services, the routes, the LanceDB door or ingest imports ``lance``/``lancedb``,
    touches a snapshot's dataset handle, or takes a raw handle from the store (``latest``, ``fresh``,
    ``own``): they ask the store for snapshots, rows, tags, branches and writes (documented exceptions aside)."""
    broken = {}
    for path in outside_modules():
        relative = str(path.relative_to(ROOT))
        uses = engine_uses(path)
        if relative in DOCUMENTED:
            assert uses, f"{relative} no longer takes raw handles: remove it from DOCUMENTED"
            uses = [u for u in uses if not u.endswith(("store.latest()", "store.fresh()", "store.own()"))]
        if uses:
            broken[relative] = uses
    assert not broken, f"engine calls outside app/store: {broken}"


def test_the_rule_sees_what_it_forbids(tmp_path: Path) -> None:
    """The check itself finds each kind of use (so the test above cannot pass by seeing nothing)."""
    sample = tmp_path / "sample.py"
    sample.write_text("import lance\nfrom lancedb import connect\n\n"
                      "def f(snap, store, self):\n"
                      "    snap.ds.count_rows()\n    snap._ds.schema\n"
                      "    store.latest('t')\n    self.store.fresh('t')\n")
    assert [u.split(": ")[1] for u in engine_uses(sample)] == [
        "imports lance", "imports lancedb", ".ds", "._ds", "store.latest()", "store.fresh()"]
