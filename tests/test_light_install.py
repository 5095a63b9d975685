"""``pip install lightbox`` without the ``server`` extra: the SDK and the command line against a service
need none of the service's packages, and a command on a data root says in one line what to install.

Without a second install, a child process is made unable to import the ``server`` extra's packages
(a meta path finder installed by ``sitecustomize``) and then used as a light install is: ``import
lightbox``, SDK calls and ``lightbox --server URL`` commands against a live server.
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image

import lightbox
from tests.conftest import REPO_ROOT, LiveServer, cli_command, cli_env

# what `pip install 'lightbox[server]'` brings (pyproject.toml), by import name
SERVER_PACKAGES = ("fastapi", "starlette", "uvicorn", "lance", "lancedb", "pydantic", "pydantic_settings", "orjson",
                   "prometheus_client", "multipart", "python_multipart", "tifffile", "tqdm")
FINDER = f'''
import sys

class NotInstalled:
    """Every package of the server extra is missing, as in a light install."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_PACKAGES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
'''


def light_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "light"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(FINDER)
    env = cli_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    return env


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (8, 8), value).save(out, format="PNG")
    return out.getvalue()


def test_no_module_of_the_service_imports_the_sdk() -> None:
    """The service, ingest and the embedders stand on their own: the SDK is a client of theirs."""
    found = []
    for package in ("app", "ingest", "embeddings"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                found += [f"{path.relative_to(REPO_ROOT)}:{node.lineno} {n}" for n in names
                          if n == "lightbox" or n.startswith("lightbox.")]
    assert not found, found


# Where a command may run the service's own code rather than SDK calls: the data-root-only commands
# (serve, demo, doctor, --engine ray) and the ingest on a data root, until ingest is an SDK call too.
SERVICE_CODE_ALLOWED: dict[str, set[str] | None] = {"local.py": None}


def test_commands_reach_the_service_only_through_the_sdk() -> None:
    """Every other command is SDK calls, and no module of the command line reaches back into its entry
    module (``lightbox.cli``), so the package has no import circle."""
    found = []
    for path in sorted((REPO_ROOT / "lightbox" / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            function, up = None, parents.get(node)
            while up is not None and function is None:
                function = up.name if isinstance(up, ast.FunctionDef) else None
                up = parents.get(up)
            for name in names:
                where = f"{path.name}:{node.lineno} {name}"
                if name == "lightbox.cli" and path.name not in ("__init__.py", "__main__.py"):
                    found.append(f"{where} (the entry module)")
                if name.split(".")[0] in ("app", "ingest", "embeddings"):
                    allowed = SERVICE_CODE_ALLOWED.get(path.name, set())
                    if allowed is not None and function not in allowed:
                        found.append(f"{where} (in {function})")
    assert not found, found


LIGHT_SCRIPT = '''
import sys
import lightbox
from lightbox.cli import main

url = sys.argv[1]
with lightbox.Client(url) as client:
    t = client.table("t")
    assert t.count() == 2 and t.count("label = 2") == 1
    assert t.query("label = 1", columns=["id"]).column("id").to_pylist() == ["a.png"]
    assert t.image("b.png").getpixel((0, 0)) == 2
    t.update("a.png", {"label": 5}, message="light")
    assert t.describe()["versions"] == 3
codes = [main([*argv, "--server", url]) for argv in (
    ["tables"], ["describe", "t"], ["query", "t", "-f", "label = 5"], ["count", "t"], ["row", "t", "a.png"],
    ["log", "t", "--oneline"], ["tags", "t", "create", "light"], ["diff", "t", "1"], ["branch", "t", "b"],
    ["export", "t", sys.argv[2]], ["clone", "t", "t2", "--at", "light"], ["drop", "t2", "--yes"],
)]
try:
    lightbox.connect(sys.argv[3])
except ImportError as exc:
    print("CONNECT", type(exc).__name__, exc)
print("CODES", codes)
print("LOADED", sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[4].split(","))))
'''


def test_the_sdk_and_the_command_line_need_no_server_package(tmp_path: Path,
                                                             live_server: Callable[[str], LiveServer]) -> None:
    root = str(tmp_path / "data")
    with lightbox.connect(root) as client:  # this process has everything: it makes the served table
        client.create_table("t", [{"name": "label", "type": "int64"}])
        client.table("t").add([png(1), png(2)], ids=["a.png", "b.png"], metadata=[{"label": 1}, {"label": 2}])
    server = live_server(root)
    done = subprocess.run([sys.executable, "-c", LIGHT_SCRIPT, server.url, str(tmp_path / "t.parquet"), root,
                           ",".join(SERVER_PACKAGES)], capture_output=True, text=True, env=light_env(tmp_path),
                          cwd=REPO_ROOT, timeout=180)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "CONNECT MissingExtra a data root served in this process needs 'fastapi', which is not installed: " \
           "pip install 'lightbox[server]'" in lines
    assert "CODES [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]" in lines, done.stdout + done.stderr
    assert lines[-1] == "LOADED []"
    assert (tmp_path / "t.parquet").stat().st_size > 0


def test_a_data_root_without_the_server_extra_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    env = light_env(tmp_path)
    for argv in (["tables", "--uri", str(root)], ["query", "t", "--uri", str(root)], ["doctor", "--uri", str(root)],
                 ["ingest", str(tmp_path), "--table", "t", "--uri", str(root)], ["serve", "--uri", str(root)]):
        done = subprocess.run(cli_command(*argv), capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 2 and done.stdout == "", (argv, done.stdout, done.stderr)
        line = done.stderr.strip()
        assert len(line.splitlines()) == 1 and line.startswith("lightbox: error: "), (argv, line)
        assert "which is not installed: pip install 'lightbox[server]'" in line, (argv, line)
