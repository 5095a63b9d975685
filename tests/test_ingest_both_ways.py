"""One ingest run, one version, wherever the data is: ``--uri`` (the SDK over the service in this process)
and ``--server`` (the SDK over HTTP) run the same code and give the same tables, versions and summaries."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

import lightbox
from app.store import Store
from tests.conftest import LiveServer
from tests.history_api import png


def folder_of(root: Path, count: int, start: int = 0) -> Path:
    for i in range(start, start + count):
        path = root / str(i % 2) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(i))
    return root


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("count", [300, 2000])
def test_a_run_is_one_version_in_process_and_over_a_server(count: int, tmp_path: Path,
                                                           live_server: Callable[[str], LiveServer]) -> None:
    server = live_server(str(tmp_path / "served"))
    for name, target in (("root", str(tmp_path / "root")), ("server", server.url)):
        source = folder_of(tmp_path / f"src-{name}", count)
        with lightbox.connect(target) as client:
            table = client.table("t")
            first = table.ingest(source, labels_from_dirs=True, batch_rows=64, message="first", author="ann")
            assert (first.added, first.versions, first.previous_version) == (count, [1], None), target
            folder_of(source, 10, start=count)
            more = table.ingest(source, labels_from_dirs=True, batch_rows=64)
            assert (more.added, more.versions, more.previous_version) == (10, [2], 1), target
            assert more.skipped_by_reason() == {"duplicate_id": count}
            log = table.versions()
            assert [(v["version"], v["message"], v["author"], v["rows_added"]) for v in log] == [
                (1, "first", "ann", count), (2, "insert 10 rows", log[1]["author"], 10)], target
            assert table.count("label = 1") == (count + 10) // 2


def test_every_option_works_over_a_server(tmp_path: Path, digits_dir: Path,
                                          live_server: Callable[[str], LiveServer]) -> None:
    """What a server used to refuse: a metadata side file, embeddings, a manifest, a Parquet file of image bytes,
    an upsert, content dedup and a branch, each one version."""
    server = live_server(str(tmp_path / "served"))
    manifest = tmp_path / "manifest.csv"
    files = sorted((digits_dir / "images" / "3").glob("*.png"))[:5]
    manifest.write_text("path,note\n" + "".join(f"{p},n{i}\n" for i, p in enumerate(files)))
    import pyarrow as pa

    pq.write_table(pa.table({"image": [{"bytes": png(i, (9, 9)), "path": f"hf/{i}.png"} for i in range(4)],
                             "label": [7, 7, 8, 8]}), tmp_path / "hf.parquet")
    with lightbox.connect(server.url) as client:
        digits = client.table("digits")
        report = digits.ingest(digits_dir / "images", labels_from_dirs=True, metadata=digits_dir / "digits.csv",
                               key="file", embed="builtin", tag="v1", message="digits", batch_rows=50)
        assert (report.added, report.versions, report.tag, report.missing_metadata) == (200, [1], "v1", [])
        row = digits.get("3/00003.png")
        assert row["label"] == 3 and row["split"] in ("train", "test") and isinstance(row["ink"], float)
        assert digits.search(like="3/00003.png", k=3, columns=["label"]).num_rows == 3
        notes = client.table("notes").ingest([manifest])
        assert notes.added == 5 and client.table("notes").count("note = 'n2'") == 1
        hf = client.table("hf").ingest([tmp_path / "hf.parquet"])
        assert hf.added == 4 and client.table("hf").count("label = 8") == 2
        copies = tmp_path / "copies"
        copies.mkdir()
        for i, path in enumerate(files[:2]):
            shutil.copyfile(path, copies / f"copy{i}.png")
        (copies / "fresh.png").write_bytes(png(77))
        deduped = digits.ingest(copies, dedup="content", branch="exp", message="on a branch")
        assert deduped.skipped_by_reason() == {"duplicate_content": 2} and deduped.versions == [2]
        assert any("created branch 'exp'" in w for w in deduped.warnings)
        assert digits.branch("exp").count() == 201 and digits.count() == 200
        edited = tmp_path / "edited" / "3"
        edited.mkdir(parents=True)
        for path in files:
            shutil.copyfile(path, edited / path.name)
        threes = client.table("threes")
        threes.ingest(edited.parent, labels_from_dirs=True)
        Image.open(edited / files[0].name).rotate(90).save(edited / files[0].name)  # edited in place
        (edited / "new.png").write_bytes(png(3))
        up = threes.ingest(edited.parent, mode="upsert", labels_from_dirs=True, message="edits")
        assert (up.updated, up.added, up.versions) == (1, 2, [2]) and up.skipped_by_reason() == {"unchanged": 4}


def test_a_file_over_the_servers_upload_limit_is_skipped_and_batches_stay_under_it(
        tmp_path: Path, tuned_server: Callable[..., LiveServer]) -> None:
    server = tuned_server(str(tmp_path / "served"), max_upload_bytes=3 * 1024**2)
    source = tmp_path / "src"
    source.mkdir()
    noise = Image.frombytes("L", (1600, 1600), bytes(range(256)) * 10_000)
    for i in range(4):
        noise.rotate(i * 90).save(source / f"big{i}.png")  # about 2.4 MB each: one per batch
    Image.frombytes("L", (2000, 2000), bytes(range(256)) * 15_625).save(source / "huge.tif")  # 4 MB
    with lightbox.connect(server.url) as client:
        report = client.table("t").ingest(source)
    assert report.added == 4 and report.versions == [1]
    [skip] = report.skipped
    assert (skip.reason, "LIGHTBOX_MAX_UPLOAD_BYTES" in skip.message) == ("too_large", True)


SCRIPT = [
    ("ingest", "{images}", "--table", "digits", "--labels-from-dirs", "--metadata", "{csv}", "--key", "file",
     "--embed", "builtin", "--tag", "v1", "-m", "first load", "--author", "ann", "--batch-size", "64"),
    ("ingest", "{extra}", "--table", "digits", "--dedup", "content", "--branch", "exp", "-m", "on a branch"),
    ("ingest", "{edited}", "--table", "digits", "--mode", "upsert", "--labels-from-dirs", "-m", "edits",
     "--author", "bob"),
    ("ingest", "{images}", "--table", "digits", "--labels-from-dirs"),
]


def test_the_same_cli_script_gives_the_same_tables_both_ways(tmp_path: Path, digits_dir: Path, cli: Any,
                                                             live_server: Callable[[str], LiveServer]) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    for i, path in enumerate(sorted((digits_dir / "images" / "5").glob("*.png"))[:3]):
        shutil.copyfile(path, extra / f"copy{i}.png")  # the same bytes under new names: content duplicates
    (extra / "new.png").write_bytes(png(5))
    edited = tmp_path / "edited"
    shutil.copytree(digits_dir / "images" / "7", edited / "7")
    changed = sorted((edited / "7").glob("*.png"))[0]
    Image.open(changed).rotate(90).save(changed)
    names = {"images": digits_dir / "images", "csv": digits_dir / "digits.csv", "extra": extra, "edited": edited}
    root, served = str(tmp_path / "root"), str(tmp_path / "served")
    server = live_server(served)
    outputs: dict[str, list[str]] = {"uri": [], "server": []}
    for where, target in (("uri", ("--uri", root)), ("server", ("--server", server.url))):
        for command in SCRIPT:
            args = [str(a).format(**{k: str(v) for k, v in names.items()}) for a in command]
            outputs[where].append(ok(cli(*args, *target, "--no-progress")))
        outputs[where].append(ok(cli("log", "digits", *target)))
        outputs[where].append(ok(cli("log", "digits", "--branch", "exp", *target)))
    assert [_comparable(text) for text in outputs["uri"]] == [_comparable(text) for text in outputs["server"]]
    assert any("server     " + server.url in text for text in outputs["server"])
    mine, theirs = Store(root), Store(served)
    for branch in (None, "exp"):
        a, b = mine.latest("digits", branch), theirs.latest("digits", branch)
        assert a.version == b.version
        columns = ["id", "label", "split", "ink", "sha256", "mime", "width", "source", "vector"]
        assert a.to_table(columns=columns).sort_by("id").equals(b.to_table(columns=columns).sort_by("id"))
    assert mine.latest("digits").tags.list()["v1"]["version"] == theirs.latest("digits").tags.list()["v1"]["version"]
    first = json.loads(ok(cli(*[str(a).format(**{k: str(v) for k, v in names.items()}) for a in SCRIPT[3]],
                              "--uri", root, "--json")))
    assert first["version"] is None and first["skipped_by_reason"] == {"duplicate_id": 200}


def _comparable(text: str) -> list[str]:
    """Output lines without what differs by place and time: the root or server (and the note that a new local
    root was made), seconds, rates, timestamps."""
    out = []
    for line in text.splitlines():
        if line.startswith(("root ", "server ")) or "created the data root" in line:
            continue
        line = re.sub(r"in [0-9.]+ s \([0-9,]+ images/s\)", "in T", line)
        line = re.sub(r"\d{4}-\d\d-\d\d[T ][0-9:.+]+", "TIME", line)
        out.append(line)
    return out
