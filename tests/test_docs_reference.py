"""The reference in docs/ cannot drift from the code: routes against the live ``/openapi.json``,
commands and options against the CLI's argparse parser, SDK methods against the classes, and the
plain-Lance snippet is run."""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import lightbox
from app.store import Store
from lightbox.cli import build_parser
from lightbox.cli import commands as lightbox_commands
from lightbox.demo import build_demo
from tests.conftest import REPO_ROOT, InProcess

DOCS = REPO_ROOT / "docs"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# options every table command shares, documented once under "Where a command works"
SHARED_OPTIONS = {"--uri", "--server", "--api-key", "--storage-option"}


def documented_routes(text: str) -> set[tuple[str, str]]:
    """Routes named in a heading (``### `GET /path` ``) or a table row (``| `POST /path` ...``)."""
    found: set[tuple[str, str]] = set()
    for line in text.splitlines():
        if line.startswith("### `") or line.startswith("| `"):
            for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`", line):
                found.add((method, path))
    return found


def served_routes(http: httpx.Client) -> set[tuple[str, str]]:
    spec = http.get("/openapi.json").json()
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops
            if method.upper() in METHODS}


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")  # the LanceDB GET/POST twins share a function
def test_http_reference_matches_openapi(tmp_path: Path, in_process: Callable[..., InProcess]) -> None:
    served = served_routes(in_process(str(tmp_path / "data")).http())
    documented = documented_routes((DOCS / "http.md").read_text())
    assert len(served) > 40
    undocumented = sorted(served - documented)
    assert not undocumented, f"served but not in docs/http.md: {undocumented}"
    stale = sorted(documented - served)
    assert not stale, f"in docs/http.md but not served: {stale}"


def test_http_reference_states_the_defaults() -> None:
    text = (DOCS / "http.md").read_text()
    assert "| `limit` | **100** |" in text  # the query page size, as QueryBody says
    from app.routes.query import QueryBody

    assert QueryBody.model_fields["limit"].default == 100
    assert "`order_by`" in text and '"column desc"' in text
    assert "`columns` and `vector` are JSON in a form field" in text


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Each command by its name (its aliases share its parser)."""
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: action.choices[name] for name in lightbox_commands(parser)}


def cli_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^### `lightbox ([\w-]+)`\n", text, flags=re.M)
    return {parts[i]: parts[i + 1].split("\n## ", 1)[0] for i in range(1, len(parts), 2)}


def test_cli_reference_matches_the_parser() -> None:
    sections = cli_sections((DOCS / "cli.md").read_text())
    commands = subcommands()
    assert sorted(sections) == sorted(commands), "docs/cli.md sections != lightbox subcommands"
    for name, aliases in lightbox_commands().items():
        for alias in aliases:
            assert f"`{alias}`" in sections[name] and "alias" in sections[name], f"{alias} not in {name}'s section"
    for name, parser in commands.items():
        for action in parser._actions:
            longs = [o for o in action.option_strings if o.startswith("--")] or action.option_strings
            if not longs or longs[0] in SHARED_OPTIONS or "-h" in action.option_strings:
                continue
            assert any(o in sections[name] for o in longs), f"`lightbox {name}` option {longs} not in docs/cli.md"
    assert "--version" in (DOCS / "cli.md").read_text()


def test_readme_command_line_lists_every_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in subcommands() if not re.search(rf"\b{re.escape(name)}\b", block)]
    assert not missing, f"README's Command line section does not mention {missing}"
    assert "docs/" in readme and "API.md" not in readme


def test_sdk_reference_lists_every_public_method() -> None:
    text = (DOCS / "sdk.md").read_text()
    for cls in (lightbox.Client, lightbox.Table):
        for name, member in inspect.getmembers(cls):
            if not name.startswith("_") and callable(member):
                assert f"`{name}(" in text or f"· `{name}(" in text, f"{cls.__name__}.{name} not in docs/sdk.md"


def test_plain_lance_snippet_reads_image_bytes(tmp_path: Path) -> None:
    """The docs' take_blobs example runs as written on the demo tables."""
    store = Store(str(tmp_path / "data"), refresh_seconds=0.0)
    build_demo(store, workdir=tmp_path / "sources")
    text = (DOCS / "sdk.md").read_text()
    section = text.split("## Reading the tables without Lightbox", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    namespace = {"URI": store.uri, "__name__": "docs"}
    exec(compile(code, "docs/sdk.md", "exec"), namespace)
    row_id = namespace["rows"]["id"][0].as_py()
    assert namespace["first"] == (tmp_path / "sources" / "digits" / row_id).read_bytes()


def test_readme_examples_need_only_what_make_demo_installs_or_name_their_extra() -> None:
    """``make demo`` then the README's SDK examples: each one's extra is installed by it or named beside it."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    demo_extras = set(re.search(r"\$\(VENV\)/\.demo:.*\n\t.*-e '\.\[([\w,]+)\]'", makefile).group(1).split(","))
    readme = (REPO_ROOT / "README.md").read_text()
    assert re.search(r"^demo: \$\(VENV\)/\.demo$", makefile, flags=re.M)
    section = readme.split("\n## Python SDK\n", 1)[1].split("\n## ", 1)[0]
    needs = {"pandas": "to_pandas(", "torch": "torch_dataset("}
    for extra, call in needs.items():
        if call in section:
            assert extra in demo_extras or f"pip install -e '.[{extra}]'" in section, extra
    assert "samples" in demo_extras and "pandas" in demo_extras
