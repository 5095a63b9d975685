"""Ingest end to end: real files in, a real Lance table out, checked byte for byte.

Library calls (``run_ingest``) cover the options; the real ``lightbox ingest`` command runs in a
child process where its exit code, summary, report file or terminal behaviour is the point.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from app.errors import Conflict
from app.services.history import list_versions
from app.store import Ref, RowReader, Store
from ingest.pipeline import IngestError, IngestOptions, run_ingest
from ingest.report import IngestReport
from lightbox.cli.summaries import ingest_summary
from tests.conftest import REPO_ROOT, cli_command, cli_env
from tests.helpers import on_terminal
from tests.test_probe import bomb_png

MIME_BY_SUFFIX = {".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif", ".tif": "image/tiff",
                  ".webp": "image/webp", ".bmp": "image/bmp"}


# -- helpers -----------------------------------------------------------------------------------
def ingest(store: Store, table: str, *sources: str | Path, **options: Any) -> IngestReport:
    opts = IngestOptions(table=table, sources=[str(s) for s in sources], progress=False, **options)
    return run_ingest(store, opts)


def table_rows(store: Store, table: str, version: int | None = None) -> dict[str, dict[str, Any]]:
    """Every row's scalar columns (no image bytes), keyed by id; fails on a repeated id."""
    ds = store.latest(table)
    if version is not None:
        ds = ds.checkout_version(version)
    names = [n for n in ds.schema.names if n != "image"]
    rows = ds.to_table(columns=names).to_pylist()
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows), "duplicate ids in the table"
    return by_id


def stored_images(store: Store, table: str) -> dict[str, bytes]:
    """Every row's image bytes as Lance returns them from the blob column, keyed by id."""
    ds = store.latest(table)
    ids = ds.to_table(columns=["id"], with_row_id=True)
    row_ids = ids.column("_rowid").to_pylist()
    blobs = dict(ds.read_blobs("image", ids=row_ids))
    return {key: blobs[rid] for key, rid in zip(ids.column("id").to_pylist(), row_ids, strict=True)}


def version_log(store: Store, table: str) -> list[dict[str, Any]]:
    """The version log oldest first, as ``lightbox versions`` and the history API show it."""
    page, _ = list_versions(store, table, limit=1000, ascending=True)
    return page


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tiny_png(value: int, size: int = 6) -> bytes:
    """A small PNG whose bytes differ for every ``value`` below 65536."""
    img = Image.new("L", (size, size), value % 256)
    img.putpixel((0, 0), (value // 256) % 256)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def write_pngs(folder: Path, names: list[str], start: int = 0) -> dict[str, bytes]:
    written = {}
    for i, name in enumerate(names, start):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tiny_png(i))
        written[name] = path.read_bytes()
    return written


@pytest.fixture
def sample_tree(samples_dir: Path, tmp_path: Path) -> Path:
    """The samples in nested folders, so ids are real relative paths."""
    root = tmp_path / "tree"
    for path in sorted(samples_dir.iterdir()):
        sub = root / path.suffix.lstrip(".")
        if path.name == "horse.png":
            sub = sub / "deep" / "er"
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, sub / path.name)
    return root


# -- byte identity and the standard columns ----------------------------------------------------
def test_every_format_is_stored_byte_for_byte(store: Store, sample_tree: Path) -> None:
    started = datetime.now(UTC)
    report = ingest(store, "samples", sample_tree)
    files = files_under(sample_tree)
    assert report.added == len(files) == 12 and report.skipped == []
    assert report.bytes == sum(len(b) for b in files.values())

    images = stored_images(store, "samples")
    assert sorted(images) == sorted(files)
    for key, data in files.items():
        assert images[key] == data, key

    rows = table_rows(store, "samples")
    for key, data in files.items():
        row = rows[key]
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["size_bytes"] == len(data)
        assert row["mime"] == MIME_BY_SUFFIX[Path(key).suffix]
        assert row["source"] == f"{sample_tree}/{key}"
        assert started - timedelta(seconds=1) <= row["ingested_at"] <= datetime.now(UTC)
    assert "png/deep/er/horse.png" in rows and "\\" not in "".join(rows)
    assert rows["tif/multipage.tif"]["frames"] == 2
    assert rows["tif/camera16.tif"]["mode"] == "uint16"
    assert rows["gif/no_time_for_that_tiny.gif"]["frames"] == 24
    assert (rows["png/astronaut.png"]["width"], rows["png/astronaut.png"]["height"]) == (512, 512)
    assert (rows["jpg/china.jpg"]["width"], rows["jpg/china.jpg"]["height"]) == (640, 427)

    schema = store.latest("samples").schema
    assert schema.field("width").type == pa.int32() and schema.field("frames").type == pa.int32()
    assert schema.field("size_bytes").type == pa.int64()
    assert schema.field("ingested_at").type == pa.timestamp("us", tz="UTC")


def test_images_read_back_through_the_store_row_reader(store: Store, sample_tree: Path) -> None:
    ingest(store, "samples", sample_tree)
    snap, reader = store.snapshot("samples"), RowReader()
    for key, data in files_under(sample_tree).items():
        ref = reader.image_ref(snap, key)
        assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size == len(data)
        assert reader.image_bytes(snap, ref) == data
        assert reader.image_range(snap, ref, 3, 20) == data[3:23]
        assert reader.row(snap, key)["mime"] == ref.mime


def test_mime_comes_from_the_bytes_not_the_name(store: Store, samples_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "liars"
    src.mkdir()
    shutil.copyfile(samples_dir / "camera.png", src / "photo.jpg")
    shutil.copyfile(samples_dir / "china.jpg", src / "scan.tif")
    shutil.copyfile(samples_dir / "camera16.tif", src / "no_extension")
    ingest(store, "liars", src)
    rows = table_rows(store, "liars")
    assert {k: r["mime"] for k, r in rows.items()} == {
        "photo.jpg": "image/png", "scan.tif": "image/jpeg", "no_extension": "image/tiff"}


# -- labels and metadata -----------------------------------------------------------------------
def test_labels_from_digit_folders_are_int64(store: Store, digits_dir: Path) -> None:
    report = ingest(store, "digits", digits_dir / "images", labels_from_dirs=True)
    assert report.added == 200
    assert store.latest("digits").schema.field("label").type == pa.int64()
    rows = table_rows(store, "digits")
    assert len(rows) == 200
    for key, row in rows.items():
        assert row["label"] == int(key.split("/")[0])
    assert {r["label"] for r in rows.values()} == set(range(10))


def test_labels_from_named_folders_are_strings(store: Store, tmp_path: Path) -> None:
    write_pngs(tmp_path / "pets", ["cat/a.png", "cat/b.png", "dog/c.png", "loose.png"])
    ingest(store, "pets", tmp_path / "pets", labels_from_dirs=True)
    assert store.latest("pets").schema.field("label").type == pa.string()
    rows = table_rows(store, "pets")
    assert {k: r["label"] for k, r in rows.items()} == {
        "cat/a.png": "cat", "cat/b.png": "cat", "dog/c.png": "dog", "loose.png": None}


def _digit_metadata(digits_dir: Path) -> tuple[list[dict[str, Any]], set[str], list[str]]:
    """digits.csv as typed records plus an int column, minus three files, plus two phantom keys."""
    lines = (digits_dir / "digits.csv").read_text().splitlines()[1:]
    records = []
    for i, line in enumerate(lines):
        name, split, ink = line.split(",")
        records.append({"file": name, "split": split, "ink": float(ink), "plate": i % 7})
    dropped = {records[i]["file"] for i in (3, 50, 199)}
    kept = [r for r in records if r["file"] not in dropped]
    phantoms = ["88888.png", "99999.png"]
    kept += [{"file": p, "split": "train", "ink": 1.5, "plate": 99} for p in phantoms]
    return kept, dropped, phantoms


def _write_metadata(records: list[dict[str, Any]], path: Path) -> None:
    columns = list(records[0])
    if path.suffix in (".csv", ".tsv"):
        sep = "\t" if path.suffix == ".tsv" else ","
        body = [sep.join(columns)] + [sep.join(str(r[c]) for c in columns) for r in records]
        path.write_text("\n".join(body) + "\n")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        pq.write_table(pa.Table.from_pylist(records), path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_metadata_join_keeps_types_and_reports_mismatches(
    store: Store, digits_dir: Path, tmp_path: Path, suffix: str
) -> None:
    records, dropped, phantoms = _digit_metadata(digits_dir)
    meta = tmp_path / f"meta{suffix}"
    _write_metadata(records, meta)
    report = ingest(store, "digits", digits_dir / "images", labels_from_dirs=True, metadata=meta, key="file")
    assert report.added == 200

    schema = store.latest("digits").schema
    assert schema.field("split").type == pa.string()
    assert schema.field("ink").type == pa.float64()
    assert schema.field("plate").type == pa.int64()
    assert schema.field("label").type == pa.int64()
    assert "file" not in schema.names

    by_name = {r["file"]: r for r in records}
    rows = table_rows(store, "digits")
    for key, row in rows.items():
        name = key.split("/")[1]
        if name in dropped:
            assert (row["split"], row["ink"], row["plate"]) == (None, None, None)
            continue
        expected = by_name[name]
        assert (row["split"], row["ink"], row["plate"]) == (expected["split"], expected["ink"], expected["plate"])
        assert type(row["plate"]) is int and type(row["ink"]) is float
    assert sorted(report.missing_metadata) == sorted(k for k in rows if k.split("/")[1] in dropped)
    assert sorted(report.unmatched_metadata) == phantoms
    summary = ingest_summary(report.to_dict())
    assert "files with no metadata row: 3" in summary and "metadata rows matching no file: 2" in summary


def test_metadata_keys_by_id_and_by_zero_padded_stem(store: Store, digits_dir: Path, tmp_path: Path) -> None:
    """A CSV of stems like ``00012`` must join ``00012.png``: the key column is never read as a number."""
    ids = sorted(files_under(digits_dir / "images"))
    by_stem = tmp_path / "stems.csv"
    by_stem.write_text("stem,weight\n" + "".join(f"{Path(k).stem},{i}\n" for i, k in enumerate(ids)))
    report = ingest(store, "stems", digits_dir / "images", metadata=by_stem, key="stem")
    assert report.missing_metadata == [] and report.unmatched_metadata == []
    assert {k: r["weight"] for k, r in table_rows(store, "stems").items()} == {k: i for i, k in enumerate(ids)}

    by_id = tmp_path / "ids.csv"
    by_id.write_text("id,note\n" + "".join(f"{k},n{i}\n" for i, k in enumerate(ids)))
    report = ingest(store, "ids", digits_dir / "images", metadata=by_id, key="id")
    assert report.missing_metadata == [] and report.unmatched_metadata == []
    assert {k: r["note"] for k, r in table_rows(store, "ids").items()} == {k: f"n{i}" for i, k in enumerate(ids)}


def test_metadata_joins_by_file_name_when_ids_are_digests(store: Store, digits_dir: Path) -> None:
    report = ingest(store, "digests", digits_dir / "images", id_mode="sha256",
                    metadata=digits_dir / "digits.csv", key="file")
    assert report.added == 200 and report.missing_metadata == [] and report.unmatched_metadata == []
    assert all(r["split"] in ("train", "test") for r in table_rows(store, "digests").values())


def test_metadata_is_not_unmatched_on_a_rerun(store: Store, digits_dir: Path) -> None:
    """Re-running adds nothing; the files are still there, so no metadata row is 'matching no file'."""
    kw: dict[str, Any] = {"metadata": digits_dir / "digits.csv", "key": "file", "labels_from_dirs": True}
    first = ingest(store, "digits", digits_dir / "images", **kw)
    assert first.unmatched_metadata == [] and first.missing_metadata == []
    again = ingest(store, "digits", digits_dir / "images", **kw)
    assert again.added == 0
    assert again.unmatched_metadata == [] and again.missing_metadata == []


def test_metadata_needs_a_key_and_new_columns_come_with_rows(store: Store, digits_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="needs --key"):
        ingest(store, "digits", digits_dir / "images", metadata=digits_dir / "digits.csv")
    assert not store.exists("digits")
    ingest(store, "digits", digits_dir / "images")
    version = store.latest("digits").version
    extra = tmp_path / "extra.csv"
    extra.write_text("file,brand_new\n00001.png,1\n")
    # every file is already stored (an insert skips them): no rows, so no version and no new column
    again = ingest(store, "digits", digits_dir / "images", metadata=extra, key="file")
    assert again.added == 0 and {s.reason for s in again.skipped} == {"duplicate_id"}
    assert store.latest("digits").version == version and "brand_new" not in store.latest("digits").schema.names


# -- other sources -----------------------------------------------------------------------------
def test_manifest_of_relative_paths_with_extra_columns(store: Store, samples_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "imgs" / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "a_folder.png").mkdir()
    shutil.copyfile(samples_dir / "camera.png", root / "imgs" / "a.png")
    shutil.copyfile(samples_dir / "china.jpg", root / "imgs" / "sub" / "b.jpg")
    shutil.copyfile(samples_dir / "multipage.tif", root / ".hidden" / "c.tif")
    shutil.copyfile(samples_dir / "rocket.jpg", root / "imgs" / "not_listed.jpg")
    manifest = root / "list.csv"
    manifest.write_text(
        "path,caption,score,count\n"
        "imgs/a.png,a camera,0.5,1\n"
        "./imgs/sub/b.jpg,a palace,1.25,2\n"
        ".hidden/c.tif,pages,2.0,3\n"
        "imgs/missing.png,gone,3.0,4\n"
        "a_folder.png,a directory,4.0,5\n"
    )
    report = ingest(store, "listed", manifest)
    assert report.added == 3
    assert {(s.file, s.reason) for s in report.skipped} == {
        ("imgs/missing.png", "unreadable"), ("a_folder.png", "unreadable")}

    schema = store.latest("listed").schema
    assert schema.field("caption").type == pa.string()
    assert schema.field("score").type == pa.float64()
    assert schema.field("count").type == pa.int64()
    assert "path" not in schema.names
    rows = table_rows(store, "listed")
    assert {k: (r["caption"], r["score"], r["count"]) for k, r in rows.items()} == {
        "imgs/a.png": ("a camera", 0.5, 1), "imgs/sub/b.jpg": ("a palace", 1.25, 2),
        ".hidden/c.tif": ("pages", 2.0, 3)}
    images = stored_images(store, "listed")
    for key in rows:
        assert images[key] == (root / key).read_bytes()
    assert rows[".hidden/c.tif"]["frames"] == 2


def test_parquet_of_image_bytes_like_hugging_face(store: Store, samples_dir: Path, tmp_path: Path) -> None:
    cells = [
        ({"bytes": (samples_dir / "camera.png").read_bytes(), "path": "camera.png"}, 3),
        ({"bytes": (samples_dir / "china.jpg").read_bytes(), "path": "train/china.jpg"}, 1),
        ({"bytes": (samples_dir / "camera16.tif").read_bytes(), "path": None}, 4),
        ({"bytes": b"this is not an image at all", "path": "broken.png"}, 0),
        ({"bytes": (samples_dir / "no_time_for_that_tiny.gif").read_bytes(), "path": "anim.gif"}, 2),
    ]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "image": pa.array([c for c, _ in cells], type=image_type),
        "label": pa.array([lbl for _, lbl in cells], type=pa.int64()),
    })
    source = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(table, source, row_group_size=2)

    report = ingest(store, "hf", source)
    assert report.added == 4
    assert [(s.file, s.reason) for s in report.skipped] == [(f"{source}#3", "not_an_image")]
    assert store.latest("hf").schema.field("label").type == pa.int64()
    rows, images = table_rows(store, "hf"), stored_images(store, "hf")
    no_path_id = "train-00000-of-00001/00000002"
    assert {k: r["label"] for k, r in rows.items()} == {
        "camera.png": 3, "train/china.jpg": 1, no_path_id: 4, "anim.gif": 2}
    for key, (cell, _) in zip(["camera.png", "train/china.jpg", no_path_id], cells, strict=False):
        assert images[key] == cell["bytes"]
        assert rows[key]["sha256"] == hashlib.sha256(cell["bytes"]).hexdigest()
    assert rows[no_path_id]["mime"] == "image/tiff" and rows[no_path_id]["source"] == f"{source}#2"
    assert rows["anim.gif"]["frames"] == 24


# -- re-runs, dedup and ids --------------------------------------------------------------------
def test_reingest_is_idempotent(store: Store, sample_tree: Path) -> None:
    first = ingest(store, "samples", sample_tree)
    versions = len(store.latest("samples").versions())
    again = ingest(store, "samples", sample_tree)
    assert again.added == 0 and again.version is None and again.previous_version == first.version
    assert {s.reason for s in again.skipped} == {"duplicate_id"}
    ds = store.latest("samples")
    assert ds.version == first.version and len(ds.versions()) == versions
    assert len(table_rows(store, "samples")) == 12
    assert "nothing new to add" in ingest_summary(again.to_dict())

    shutil.copyfile(sample_tree / "png" / "camera.png", sample_tree / "png" / "camera_again.png")
    third = ingest(store, "samples", sample_tree)
    assert third.added == 1 and third.version == first.version + 1
    assert len(table_rows(store, "samples")) == 13


def test_dedup_content_skips_identical_bytes_under_another_name(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = write_pngs(src, ["a.png", "b.png"])
    (src / "copies").mkdir()
    (src / "copies" / "a_copy.png").write_bytes(files["a.png"])
    report = ingest(store, "dedup", src, dedup="content")
    assert report.added == 2
    assert [(s.file, s.reason) for s in report.skipped] == [(f"{src}/copies/a_copy.png", "duplicate_content")]
    assert sorted(table_rows(store, "dedup")) == ["a.png", "b.png"]

    (src / "later").mkdir()
    (src / "later" / "b_again.png").write_bytes(files["b.png"])
    write_pngs(src, ["later/new.png"], start=50)
    report = ingest(store, "dedup", src, dedup="content")  # copies are checked against the table too
    assert report.added == 1
    assert sorted(table_rows(store, "dedup")) == ["a.png", "b.png", "later/new.png"]
    assert {Path(s.file).relative_to(src).as_posix(): s.reason for s in report.skipped} == {
        "a.png": "duplicate_id", "b.png": "duplicate_id",
        "copies/a_copy.png": "duplicate_content", "later/b_again.png": "duplicate_content"}

    report = ingest(store, "by_id", src)  # the default: ids unique, copies kept
    assert report.added == 5


def test_id_by_name_and_by_sha256(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = write_pngs(src, ["x/a.png", "y/a.png", "y/b.png"])
    (src / "y" / "b_copy.png").write_bytes(files["y/b.png"])

    report = ingest(store, "names", src, id_mode="name")
    assert sorted(table_rows(store, "names")) == ["a.png", "b.png", "b_copy.png"]
    assert [(s.file, s.reason) for s in report.skipped] == [(f"{src}/y/a.png", "duplicate_id")]
    assert stored_images(store, "names")["a.png"] == files["x/a.png"]

    report = ingest(store, "digests", src, id_mode="sha256")
    rows = table_rows(store, "digests")
    assert sorted(rows) == sorted({hashlib.sha256(b).hexdigest() for b in files.values()})
    assert all(key == row["sha256"] for key, row in rows.items())
    assert [(s.file, s.reason) for s in report.skipped] == [(f"{src}/y/b_copy.png", "duplicate_id")]


# -- bad files ---------------------------------------------------------------------------------
GOOD = ("camera.png", "china.jpg", "camera16.tif", "no_time_for_that_tiny.gif")
BAD = {
    "empty.png": "empty",
    "truncated.png": "truncated",
    "truncated.jpg": "truncated",
    "truncated.tif": "truncated",
    "truncated.gif": "truncated",
    "text.png": "not_an_image",
    "random.png": "not_an_image",
    "bomb.png": "decompression_bomb",
    "dangling.png": "unreadable",
}


@pytest.fixture
def bad_tree(samples_dir: Path, tmp_path: Path) -> Path:
    """Good images next to one file of every kind of damage."""
    root = tmp_path / "mixed"
    (root / "bad").mkdir(parents=True)
    for name in GOOD:
        shutil.copyfile(samples_dir / name, root / name)
    bad = root / "bad"
    (bad / "empty.png").write_bytes(b"")
    png = (samples_dir / "astronaut.png").read_bytes()
    (bad / "truncated.png").write_bytes(png[: len(png) // 2])
    jpg = (samples_dir / "rocket.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(jpg[: len(jpg) * 2 // 3])
    tif = (samples_dir / "multipage.tif").read_bytes()
    (bad / "truncated.tif").write_bytes(tif[: len(tif) // 2])
    gif = (samples_dir / "no_time_for_that_tiny.gif").read_bytes()
    (bad / "truncated.gif").write_bytes(gif[: len(gif) // 2])
    (bad / "text.png").write_text("this is a README, renamed\n" * 40)
    (bad / "random.png").write_bytes(b"\x00" + np.random.default_rng(7).integers(0, 256, 5000, np.uint8).tobytes())
    (bad / "bomb.png").write_bytes(bomb_png())
    (bad / "dangling.png").symlink_to(tmp_path / "does-not-exist.png")
    return root


def _reasons(report: IngestReport | dict[str, Any]) -> dict[str, str]:
    skipped = report["skipped"] if isinstance(report, dict) else [vars_of(s) for s in report.skipped]
    return {Path(s["file"]).name: s["reason"] for s in skipped}


def vars_of(skip: Any) -> dict[str, str]:
    return {"file": skip.file, "reason": skip.reason, "message": skip.message}


def test_bad_files_are_skipped_with_reasons(store: Store, bad_tree: Path) -> None:
    report = ingest(store, "mixed", bad_tree)
    assert _reasons(report) == BAD
    assert all(s.message for s in report.skipped)
    assert report.added == len(GOOD) and report.version is not None
    assert sorted(table_rows(store, "mixed")) == sorted(GOOD)
    images = stored_images(store, "mixed")
    for name in GOOD:
        assert images[name] == (bad_tree / name).read_bytes()


def test_bad_files_through_the_cli_with_a_report_file(bad_tree: Path, tmp_path: Path, cli: Any) -> None:
    """Here a FIFO joins the bad files: opening one for reading would block forever (the child's
    timeout turns such a hang into a failure instead of a stuck test run)."""
    os.mkfifo(bad_tree / "bad" / "fifo.png")
    expected = {**BAD, "fifo.png": "unreadable"}
    report_file = tmp_path / "report.json"
    done = cli("ingest", bad_tree, "--table", "mixed", "--uri", tmp_path / "data", "--report", report_file,
               timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"added      {len(GOOD)} images" in done.stdout
    assert f"skipped    {len(expected)}: " in done.stdout
    for reason in set(expected.values()):
        assert reason in done.stdout
    saved = json.loads(report_file.read_text())
    assert _reasons(saved) == expected
    assert saved["added"] == len(GOOD) and saved["version"] == 1
    assert saved["skipped_by_reason"] == {r: list(expected.values()).count(r) for r in set(expected.values())}
    assert sorted(table_rows(Store(str(tmp_path / "data")), "mixed")) == sorted(GOOD)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_skipped(store: Store, samples_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(samples_dir / "camera.png", src / "ok.png")
    shutil.copyfile(samples_dir / "camera.png", src / "locked.png")
    (src / "locked.png").chmod(0)
    try:
        report = ingest(store, "locked", src)
    finally:
        (src / "locked.png").chmod(0o644)
    assert _reasons(report) == {"locked.png": "unreadable"}
    assert sorted(table_rows(store, "locked")) == ["ok.png"]


def test_max_pixels_skips_large_images_only(store: Store, samples_dir: Path, digits_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(digits_dir / "images" / "0", src / "small")
    shutil.copyfile(samples_dir / "camera.png", src / "camera.png")
    shutil.copyfile(samples_dir / "camera.bmp", src / "camera.bmp")
    report = ingest(store, "limited", src, max_pixels=100 * 100)
    assert _reasons(report) == {"camera.png": "decompression_bomb", "camera.bmp": "decompression_bomb"}
    assert report.added == len(list((src / "small").iterdir()))


def test_a_run_with_only_bad_files_creates_nothing(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"")
    report = ingest(store, "nothing", src, tag="v1")
    assert report.added == 0 and report.version is None and report.tag is None
    assert not store.exists("nothing")
    summary = ingest_summary(report.to_dict())
    assert "not created" in summary and "tag" not in summary


# -- versions, tags and messages ---------------------------------------------------------------
def test_tag_and_message_through_the_cli(digits_dir: Path, tmp_path: Path, cli: Any) -> None:
    uri = tmp_path / "data"
    src = tmp_path / "src"
    shutil.copytree(digits_dir / "images" / "1", src / "1")
    first_count = len(files_under(src))
    done = cli("ingest", src, "--table", "t", "--uri", uri, "--tag", "v1", "--message", "first load")
    assert done.returncode == 0, done.stderr
    assert "tag        v1" in done.stdout

    shutil.copytree(digits_dir / "images" / "2", src / "2")
    done = cli("ingest", src, "--table", "t", "--uri", uri, "--tag", "v2", "-m", "twos added")
    assert done.returncode == 0, done.stderr
    assert "version    2 (was 1)" in done.stdout and "tag        v2" in done.stdout

    store = Store(str(uri), refresh_seconds=0.0)
    history = version_log(store, "t")
    assert [(v["version"], v["message"], v["tags"]) for v in history] == [
        (1, "first load", ["v1"]), (2, "twos added", ["v2"])]
    assert history[0]["num_rows"] == first_count
    assert store.snapshot("t", Ref(tag="v1")).count() == first_count
    assert store.snapshot("t", Ref(tag="v2")).count() == len(files_under(src))
    listed = subprocess.run(cli_command("log", "t", "--oneline", "--uri", str(uri)), capture_output=True, text=True,
                            env=cli_env(), cwd=REPO_ROOT, timeout=60)
    assert "first load (v1)" in listed.stdout and "twos added (v2)" in listed.stdout


def test_a_taken_tag_fails_before_anything_is_written(store: Store, digits_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(digits_dir / "images" / "3", src / "3")
    ingest(store, "t", src, tag="v1")
    again = ingest(store, "t", src, tag="v1")  # nothing new: re-tagging the same version is fine
    assert again.added == 0 and again.tag == "v1"
    write_pngs(src, ["new.png"])
    ingest(store, "t", src)
    write_pngs(src, ["newer.png"], start=9)
    with pytest.raises(Conflict, match="already points at version 1"):  # a 409, as over HTTP
        ingest(store, "t", src, tag="v1")
    assert store.latest("t").version == 2
    assert "newer.png" not in table_rows(store, "t")


def test_commit_every_makes_one_version_per_n_rows(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_pngs(src, [f"{i:03d}.png" for i in range(25)])
    report = ingest(store, "chunks", src, commit_every=10, message="batched")
    assert report.added == 25 and report.versions == [1, 2, 3] and report.version == 3
    assert [len(table_rows(store, "chunks", v)) for v in report.versions] == [10, 20, 25]
    assert [v["message"] for v in version_log(store, "chunks")] == ["batched"] * 3


def test_commit_every_through_the_cli(tmp_path: Path, cli: Any) -> None:
    src = tmp_path / "src"
    write_pngs(src, [f"d{i // 40}/{i:03d}.png" for i in range(130)])
    uri = tmp_path / "data"
    done = cli("ingest", src, "--table", "c", "--uri", uri, "--commit-every", "50", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["added"] == 130 and result["versions"] == [1, 2, 3]
    store = Store(str(uri))
    assert [store.latest("c").checkout_version(v).count_rows() for v in (1, 2, 3)] == [50, 100, 130]


# -- the command line --------------------------------------------------------------------------
def test_cli_summary_and_no_progress_bar_in_a_pipe(digits_dir: Path, tmp_path: Path, cli: Any) -> None:
    done = cli("ingest", digits_dir / "images", "--table", "digits", "--uri", tmp_path / "data",
               "--labels-from-dirs", "--metadata", digits_dir / "digits.csv", "--key", "file", "--tag", "v1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["table", "digits"]
    assert lines[1] == f"root       {tmp_path / 'data'}"  # where it wrote, absolute
    assert lines[2].startswith("added      200 images, ") and "images/s" in lines[2]
    assert "version    1 (was none)" in lines and "tag        v1" in lines
    assert "skipped" not in done.stdout
    assert not any(mark in done.stderr for mark in ("\r", "img/s", "%|", "200/200")), done.stderr

    again = cli("ingest", digits_dir / "images", "--table", "digits", "--uri", tmp_path / "data",
                "--labels-from-dirs")
    assert again.returncode == 0, again.stderr
    assert "added      0 images" in again.stdout
    assert "unchanged at version 1" in again.stdout and "skipped    200: duplicate_id 200" in again.stdout
    assert not any(mark in again.stderr for mark in ("\r", "img/s", "%|", "200/200")), again.stderr


def test_cli_shows_a_progress_bar_on_a_terminal(digits_dir: Path, tmp_path: Path) -> None:
    """The counterpart of the pipe test: the same run on a terminal does draw the bar."""
    code, terminal, stdout = on_terminal(
        cli_command("ingest", str(digits_dir / "images"), "--table", "d", "--uri", str(tmp_path / "data")),
        env=cli_env(), cwd=REPO_ROOT)
    assert code == 0
    assert b"200/200" in terminal and b"img" in terminal
    assert "added      200 images" in stdout


def test_cli_error_exit_code(tmp_path: Path, digits_dir: Path, cli: Any) -> None:
    done = cli("ingest", digits_dir / "images", "--table", "t", "--uri", tmp_path / "data",
               "--metadata", digits_dir / "digits.csv")
    assert done.returncode == 2
    assert "--metadata needs --key" in done.stderr
    done = cli("ingest", tmp_path / "nope", "--table", "t", "--uri", tmp_path / "data")
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert not (tmp_path / "data" / "t.lance").exists()
