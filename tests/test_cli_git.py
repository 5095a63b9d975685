"""``lightbox log | diff | branch | merge | clone | optimize``: the real command, on a data root
(``--uri``) and against a live server (``--server``), with the same outputs either way."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import lance
import pytest

from app.services import writes
from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest

FILES = {"1/horse.png": "horse.png", "2/board.png": "chessboard_GRAY.png", "3/pages.tif": "multipage.tif"}


@pytest.fixture
def folders(samples_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Three real images in label folders, and a fourth for later."""
    first, later = tmp_path / "first", tmp_path / "later"
    for rel, name in FILES.items():
        (first / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples_dir / name, first / rel)
    (later / "4").mkdir(parents=True)
    shutil.copyfile(samples_dir / "no_time_for_that_tiny.gif", later / "4" / "anim.gif")
    return first, later


def ingest(store: Store, folder: Path, **options: object) -> None:
    run_ingest(store, IngestOptions(table="pics", sources=[str(folder)], labels_from_dirs=True, progress=False,
                                    **options))  # type: ignore[arg-type]


def ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("mode", ["uri", "server"])
def test_git_commands(mode: str, store: Store, folders: tuple[Path, Path], cli, live_server) -> None:
    first, later = folders
    ingest(store, first, tag="v1", message="first load", author="ada")
    v1 = store.latest("pics").version
    writes.delete_rows(store, "pics", ids=["3/pages.tif"], message="drop the tiff", author="bob")
    target = ["--uri", store.uri] if mode == "uri" else ["--server", live_server(store.uri).url]

    # branch from a tag; the listing shows where it forked
    out = ok(cli("branch", "pics", "feat", "--at", "v1", *target))
    assert re.search(rf"^feat\tversion {v1}\tfrom main@{v1}\t3 rows$", out, re.M), out

    # work on the branch (one new row, two relabels), then diff it against the tag
    ingest(store, later, branch="feat", message="a gif")
    writes.patch_row(store, "pics", "1/horse.png", {"label": 10}, branch="feat")
    writes.patch_row(store, "pics", "2/board.png", {"label": 21}, branch="feat")
    out = ok(cli("diff", "pics", "v1", "feat", "--ids", *target))
    assert out.splitlines() == ["1 added, 0 removed, 2 changed", "+ 4/anim.gif", "~ 1/horse.png (label)",
                                "~ 2/board.png (label)"]

    # main relabels the board too: merging fails, naming the id, and changes nothing
    writes.patch_row(store, "pics", "2/board.png", {"label": 20})
    before = store.latest("pics").version
    clash = cli("merge", "pics", "feat", *target)
    assert clash.returncode == 2 and clash.stdout == ""
    assert "lightbox: error:" in clash.stderr and "changed on both" in clash.stderr
    assert Store(store.uri).latest("pics").version == before

    # --on-conflict theirs: the branch's add and changes land on main as one version; main's delete stays
    out = ok(cli("merge", "pics", "feat", "--on-conflict", "theirs", "-m", "bring feat in", *target))
    assert out.strip() == f"merged feat into main as version {before + 1}: 3 added or changed, 0 removed"
    main = Store(store.uri).latest("pics")
    rows = dict(zip(*main.to_table(columns=["id", "label"]).to_pydict().values(), strict=True))
    assert rows == {"1/horse.png": 10, "2/board.png": 21, "4/anim.gif": 4}
    assert main.version == before + 1

    # clone at the tag: a new table, no data files of its own
    out = ok(cli("clone", "pics", "pics-v1", "--at", "v1", *target))
    assert out.strip() == f"cloned pics@{v1} as pics-v1 (3 rows, no bytes copied)"  # the same either way
    clone_dir = Path(store.uri) / "pics-v1.lance"
    assert clone_dir.is_dir() and not list(clone_dir.glob("data/*.lance"))
    assert sorted(lance.dataset(str(clone_dir)).to_table(columns=["id"]).column("id").to_pylist()) == sorted(FILES)

    # optimize with the default retention: compacts, prunes nothing recent
    writes.patch_row(store, "pics", "4/anim.gif", {"label": 40}, message="relabel the gif")
    fragments = len(lance.dataset(store.table_uri("pics")).get_fragments())
    assert fragments >= 2
    out = ok(cli("optimize", "pics", *target))
    latest = Store(store.uri).latest("pics").version
    assert out.strip() == f"optimized pics: version {latest}, 0 old versions pruned"
    assert len(lance.dataset(store.table_uri("pics")).get_fragments()) < fragments

    # delete the branch; the listing is then empty
    out = ok(cli("branch", "pics", "feat", "--delete", *target))
    assert out == ""
    assert "feat" not in Store(store.uri).latest("pics").branches.list()

    # the log, newest first, like git log
    out = ok(cli("log", "pics", "-n", "50", *target))
    entries = out.split("\nversion ")
    assert out.startswith(f"version {latest}\n")
    by_message = {re.search(r"\n\n    (.*)", e).group(1): e for e in entries}  # type: ignore[union-attr]
    first_load = by_message["first load"]
    assert first_load.startswith(f"{v1} (tag: ") and "tag: v1" in first_load
    assert "tag: lightbox-clone-pics-v1" in first_load  # the clone's protecting tag shows too
    assert "\nAuthor: ada\n" in first_load and "  +3 -0 ~0  (3 rows)" in first_load
    assert re.search(r"\nDate:   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", first_load)
    assert re.search(r"\nOp:     \w+  \+3 -0", first_load)
    dropped = by_message["drop the tiff"]
    assert "\nAuthor: bob\n" in dropped and "  +0 -1 ~0  (2 rows)" in dropped
    merged = by_message["bring feat in"]
    assert merged.startswith(f"{before + 1}\n") and "  +1 -0 ~2  (3 rows)" in merged
    relabel = next(e for e in entries if e.startswith(f"{before}\n"))
    assert "  +0 -0 ~1  (2 rows)" in relabel and relabel.endswith("    update 1 row\n")  # no message given: what it did
