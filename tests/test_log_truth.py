"""The version log tells the truth, through the service and `lightbox log`: a merge shows the
branch's own versions under it; embed, restore, clone and optimize record their author, message
and operation; and every version's counts agree with ``diff`` against its parent."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import lightbox
from app.store.writes import default_author
from tests.helpers import run_cli

T = "/api/v1/tables/t"


@pytest.fixture
def served(tmp_path: Path, samples_dir: Path, in_process, live_server
           ) -> Iterator[tuple[lightbox.Client, httpx.Client, str, str]]:
    """The SDK and raw HTTP on the app in this process, and the URL of a real server over the same root
    for the command line's ``--server`` (its own HTTP client, over a socket)."""
    uri = str(tmp_path / "data")
    app = in_process(uri)
    client = app.sdk()
    t = client.create_table("t", [{"name": "label", "type": "int64"}])
    files = sorted(p for p in samples_dir.iterdir() if p.suffix in (".png", ".jpg"))[:6]
    t.add(files, ids=[f"r{i}" for i in range(len(files))], metadata=[{"label": i} for i in range(len(files))],
          message="first load", author="ada")
    with app.http(timeout=120) as http:
        yield client, http, uri, live_server(uri).url
    client.close()


def versions(http: httpx.Client, table: str = "t") -> list[dict]:
    response = http.get(f"/api/v1/tables/{table}/versions")
    assert response.status_code == 200, response.text
    return response.json()


def diff_counts(http: httpx.Client, a: int, b: int) -> dict[str, int]:
    response = http.get(f"{T}/diff", params={"from": str(a), "to": str(b)})
    assert response.status_code == 200, response.text
    return response.json()["counts"]


def logged_counts(entry: dict) -> dict[str, int]:
    return {"added": entry["rows_added"], "removed": entry["rows_removed"], "changed": entry["rows_updated"]}


def assert_counts_agree_with_diff(http: httpx.Client) -> None:
    log = versions(http)[::-1]
    pairs = [(p, e) for p, e in itertools.pairwise(log) if e["version"] == p["version"] + 1]  # not across pruning
    assert pairs
    for parent, entry in pairs:
        assert logged_counts(entry) == diff_counts(http, parent["version"], entry["version"]), entry


def test_a_merge_shows_the_branch_versions_under_it(served) -> None:
    client, http, uri, url = served
    t = client.table("t")
    branched = http.post(f"{T}/branches", json={"name": "feat"})
    assert branched.status_code == 201, branched.text
    feat = t.branch("feat")
    assert feat.update("r1", {"label": 11}, message="relabel r1", author="carol")["updated"] == 1
    assert feat.delete("label = 2", message="drop r2", author="dave")["deleted"] == 1
    merged = t.merge("feat", author="erin")
    assert merged["merged"] is True

    entry = versions(http)[0]
    assert (entry["operation"], entry["author"], entry["message"]) == ("merge", "erin", "merge feat into main")
    under = entry["merged"]
    assert [(e["message"], e["author"], e["branch"]) for e in under] == [
        ("drop r2", "dave", "feat"), ("relabel r1", "carol", "feat")]
    assert [logged_counts(e) for e in under] == [{"added": 0, "removed": 1, "changed": 0},
                                                 {"added": 0, "removed": 0, "changed": 1}]
    assert under[0]["version"] > under[1]["version"]
    assert logged_counts(entry) == diff_counts(http, entry["version"] - 1, entry["version"])

    # merging again lists only what is new on the branch
    assert feat.update("r4", {"label": 44}, message="relabel r4", author="carol")["updated"] == 1
    assert t.merge("feat", message="more from feat")["merged"] is True
    assert [e["message"] for e in versions(http)[0]["merged"]] == ["relabel r4"]

    # the branch's versions stay on main's log after the branch is deleted
    assert http.delete(f"{T}/branches/feat").status_code == 204
    assert [e["message"] for e in versions(http)[1]["merged"]] == ["drop r2", "relabel r1"]

    for target in (["--server", url], ["--uri", uri]):
        out = run_cli("log", "t", *target)
        assert out.returncode == 0, out.stderr
        text = out.stdout
        assert "merge feat into main" in text and "Author: erin" in text
        assert "    | Author: carol" in text and "    |     relabel r1" in text
        assert "    | Author: dave" in text and "    |     drop r2" in text
        assert text.index("more from feat") < text.index("relabel r4") < text.index("merge feat into main")
        assert text.index("merge feat into main") < text.index("relabel r1") < text.index("first load")


def test_embed_restore_clone_optimize_record_author_message_and_operation(served) -> None:
    client, http, _, url = served
    t = client.table("t")
    me = default_author()

    embedded = http.post(f"{T}/embeddings", json={"model": "builtin"}, params={"author": "grace"})
    assert embedded.status_code == 201, embedded.text
    entry = versions(http)[0]
    assert entry["version"] == embedded.json()["version"]
    assert (entry["operation"], entry["author"]) == ("embed", "grace")
    assert "embed image" in entry["message"] and "builtin" in entry["message"]

    # a restore that adds one row, removes several and changes one, as diff sees it
    base = versions(http)[0]["version"]
    t.update("r0", {"label": -1})
    t.delete("label >= 3")
    assert t.add([_png_bytes()], ids=["extra"], metadata=[{"label": 7}])["inserted"] == 1
    restored = http.post(f"{T}/restore", params={"version": base})
    assert restored.status_code == 200, restored.text
    entry = versions(http)[0]
    assert (entry["operation"], entry["author"], entry["message"]) == ("restore", me, f"restore version {base}")
    counts = logged_counts(entry)
    assert counts == diff_counts(http, entry["version"] - 1, entry["version"])
    assert counts == {"added": 3, "removed": 1, "changed": 1}  # r3-r5 back, extra gone, r0 relabelled

    assert t.restore(version=base + 1, message="back again", author="hal")["restored"] == base + 1  # the SDK
    entry = versions(http)[0]
    assert (entry["operation"], entry["author"], entry["message"]) == ("restore", "hal", "back again")
    assert_counts_agree_with_diff(http)

    assert client.clone("t", "copy", version=base, author="ivy").name == "copy"
    entry = versions(http, "copy")[0]
    assert (entry["operation"], entry["author"]) == ("clone", "ivy")
    assert entry["message"] == f"clone of t at version {base}"

    for _ in range(3):
        t.update("r1", {"label": 5})
        t.update("r1", {"label": 1})
    before = versions(http)[0]["version"]
    optimized = http.post(f"{T}/optimize")
    assert optimized.status_code == 200, optimized.text
    made = [e for e in versions(http) if e["version"] > before][::-1]
    assert made, "compaction committed no version"
    # Lance's compaction commits twice; each version says what it did, and no row changed
    assert [(e["operation"], e["message"]) for e in made] == [
        ("compact", "optimize: reserve fragment ids for the compaction"),
        ("compact", f"optimize: compact data files ({optimized.json()['fragments_removed']} fragments into "
                    f"{optimized.json()['fragments_added']})")]
    for entry in made:
        assert entry["author"] == me
        assert logged_counts(entry) == {"added": 0, "removed": 0, "changed": 0}
    assert_counts_agree_with_diff(http)
    out = run_cli("log", "t", "--server", url)
    assert out.returncode == 0, out.stderr
    assert "Op:     compact" in out.stdout and "Op:     restore" in out.stdout and "Op:     embed" in out.stdout
    assert "(no message)" not in out.stdout and "Author: unknown" not in out.stdout, out.stdout

    pruned = http.post(f"{T}/optimize", params={"retention_seconds": 0, "author": "kim"})
    assert pruned.status_code == 200, pruned.text
    newest = versions(http)[0]  # its note outlives the cleanup that pruned every older version
    assert newest["operation"] == "compact" and newest["author"] in (me, "kim")



def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (9, 7), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_cli_writes_are_logged_with_the_users_name_and_message(served) -> None:
    client, http, uri, url = served
    client.table("t").update("r0", {"label": 9})
    restored = run_cli("restore", "t", "2", "--server", url, "-m", "undo the relabel")
    assert restored.returncode == 0, restored.stderr
    entry = versions(http)[0]
    assert (entry["operation"], entry["author"], entry["message"]) == ("restore", default_author(), "undo the relabel")
    cloned = run_cli("clone", "t", "t2", "--uri", uri, "--author", "zed")
    assert cloned.returncode == 0, cloned.stderr
    entry = versions(http, "t2")[0]
    assert (entry["operation"], entry["author"], entry["message"]) == ("clone", "zed", "clone of t at version 4")
    out = run_cli("log", "t2", "--uri", uri)
    assert out.returncode == 0 and "Author: zed" in out.stdout and "Op:     clone" in out.stdout, out.stdout
