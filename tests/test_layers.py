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
