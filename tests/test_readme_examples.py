"""The README's "Python SDK" section runs as written against the demo tables on a live server.

Every ```python block under the heading is executed in order in one namespace, with the URL
pointed at the test server. A top-level expression whose comment starts with a Python literal
(``t.count("label = 9")  # 0``) must evaluate to that literal, so the comments stay true.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.store import Store
from lightbox.demo import build_demo
from tests.conftest import REPO_ROOT, LiveServer

URL = "http://127.0.0.1:8000"


def sdk_blocks(heading: str = "Python SDK") -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def claimed(comment: str) -> tuple[bool, Any]:
    """The literal a comment starts with (the whole comment, or its part before ": ", or its first word)."""
    for text in (comment, comment.split(": ")[0], (comment.split() or [""])[0]):
        try:
            return True, ast.literal_eval(text)
        except (ValueError, SyntaxError):
            continue
    return False, None


def check(value: Any, expected: Any, where: str) -> None:
    if isinstance(expected, list) and expected and expected[-1] is Ellipsis:  # "['a', ...]": a prefix
        expected = expected[:-1]
        value = list(value)[: len(expected)]
    assert value == expected, f"README line {where!r} gives {value!r}"


def run_block(code: str, namespace: dict[str, Any]) -> int:
    """Run one block statement by statement; returns how many comment claims were checked."""
    lines = code.splitlines()
    checked = 0
    for node in ast.parse(code).body:
        line = lines[node.end_lineno - 1] if node.end_lineno else ""
        comment = line.split("  # ", 1)[1].strip() if "  # " in line else ""
        if isinstance(node, ast.Expr) and comment:
            value = eval(compile(ast.Expression(node.value), "README.md", "eval"), namespace)
            found, expected = claimed(comment)
            if found:
                check(value, expected, line.strip())
                checked += 1
        else:
            exec(compile(ast.Module([node], type_ignores=[]), "README.md", "exec"), namespace)
    return checked


# the server under test runs in this process, so Lance is loaded here; DataLoader workers never use it
@pytest.mark.filterwarnings("ignore:lance is not fork-safe")
def test_python_sdk_section_runs(tmp_path: Path, live_server: Callable[[str], LiveServer]) -> None:
    store = Store(str(tmp_path / "data"), refresh_seconds=0.0)
    build_demo(store, workdir=tmp_path / "sources")
    server = live_server(store.uri)
    blocks = sdk_blocks()
    assert len(blocks) >= 6 and any("torch_dataset" in b for b in blocks) and any("AsyncClient" in b for b in blocks)
    namespace: dict[str, Any] = {"__name__": "readme"}
    checked = 0
    try:
        for block in blocks:
            checked += run_block(block.replace(URL, server.url), namespace)
    finally:
        if "client" in namespace:
            namespace["client"].close()
    assert checked >= 7  # the literal claims in the comments were compared, not just run
    assert store.latest("digits-copy").count_rows("label = 9") == 0


def test_use_it_from_lancedb_section_runs(tmp_path: Path, live_server: Callable[[str], LiveServer]) -> None:
    """The README's LanceDB example, with the official client, after ``lightbox embed digits``."""
    from app.services.embed import embed_table
    from embeddings.registry import load

    store = Store(str(tmp_path / "data"), refresh_seconds=0.0)
    build_demo(store, workdir=tmp_path / "sources")
    embed_table(store, "digits", load("builtin"))
    server = live_server(store.uri)
    blocks = sdk_blocks("Use it from LanceDB")
    assert len(blocks) == 1
    checked = run_block(blocks[0].replace(URL, server.url), {"__name__": "readme"})
    assert checked >= 6
