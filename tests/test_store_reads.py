"""Store-level point reads: the one-pread path for small inline images, and its fallback."""

from __future__ import annotations

from pathlib import Path

from app.store import Ref, RowReader, Store
from ingest.pipeline import IngestOptions, run_ingest


def test_inline_images_are_read_with_one_pread_and_checked(store: Store, samples_dir: Path,
                                                           digits_dir: Path) -> None:
    run_ingest(store, IngestOptions(table="t", sources=[str(samples_dir)], progress=False))
    run_ingest(store, IngestOptions(table="t", sources=[str(digits_dir / "images")], progress=False))
    reader = RowReader()
    snap = store.snapshot("t", Ref())
    index = reader.index(snap)
    assert index.inline is not None and len(index.inline.files) >= 2  # two commits, two data files
    files = {**{p.name: p for p in samples_dir.iterdir()}, **{f"{p.parent.name}/{p.name}": p
                                                              for p in (digits_dir / "images").rglob("*.png")}}
    inline = 0
    for key, path in files.items():
        ref = reader.image_ref(snap, key)
        fast = reader.inline_bytes(snap, ref)
        if fast is not None:
            inline += 1
            assert fast == path.read_bytes(), key
        assert reader.image_bytes(snap, ref) == path.read_bytes(), key
    assert inline >= 200  # every digit is small enough to be stored inline
    assert reader.inline_bytes(snap, reader.image_ref(snap, "astronaut.png")) is None  # 790 KB: not inline


def test_a_layout_that_does_not_match_falls_back_for_good(store: Store, digits_dir: Path) -> None:
    run_ingest(store, IngestOptions(table="t", sources=[str(digits_dir / "images")], progress=False))
    reader = RowReader()
    snap = store.snapshot("t", Ref())
    index = reader.index(snap)
    assert index.inline is not None
    index.inline.offsets = [o + 1 for o in index.inline.offsets]  # what a changed file layout would look like
    ref = reader.image_ref(snap, "3/00003.png")
    assert reader.inline_bytes(snap, ref) is None and index.inline.trusted is False
    assert reader.image_bytes(snap, ref) == (digits_dir / "images" / "3" / "00003.png").read_bytes()


def test_branch_rows_are_found_in_the_branch_tree(store: Store, digits_dir: Path, samples_dir: Path,
                                                  tmp_path: Path) -> None:
    run_ingest(store, IngestOptions(table="t", sources=[str(digits_dir / "images")], progress=False))
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "tiny.png").write_bytes((samples_dir / "chessboard_GRAY.png").read_bytes())
    run_ingest(store, IngestOptions(table="t", sources=[str(extra)], branch="b", progress=False))
    reader = RowReader()
    snap = store.snapshot("t", Ref(branch="b"))
    for key, path in (("tiny.png", extra / "tiny.png"), ("3/00003.png", digits_dir / "images" / "3" / "00003.png")):
        ref = reader.image_ref(snap, key)
        assert reader.inline_bytes(snap, ref) == path.read_bytes(), key  # branch tree and inherited files
    assert reader.index(snap).inline.trusted


def test_a_table_dropped_and_created_again_is_not_answered_from_old_caches(store: Store, samples_dir: Path,
                                                                          digits_dir: Path) -> None:
    run_ingest(store, IngestOptions(table="t", sources=[str(samples_dir)], progress=False))
    reader = RowReader()
    first = store.snapshot("t", Ref())
    assert reader.image_bytes(first, reader.image_ref(first, "camera.png")) == (samples_dir / "camera.png").read_bytes()
    store.drop("t")
    run_ingest(store, IngestOptions(table="t", sources=[str(digits_dir / "images")], progress=False))
    again = store.snapshot("t", Ref())
    assert again.version == first.version and again.key != first.key
    ref = reader.image_ref(again, "3/00003.png")
    assert reader.image_bytes(again, ref) == (digits_dir / "images" / "3" / "00003.png").read_bytes()


def test_cached_snapshots_come_from_memory_only(data_uri: str, digits_dir: Path, samples_dir: Path) -> None:
    store = Store(data_uri, refresh_seconds=60.0)
    for source in (digits_dir / "images", samples_dir):  # versions 1 and 2
        run_ingest(store, IngestOptions(table="t", sources=[str(source)], progress=False))
    fresh = Store(data_uri, refresh_seconds=60.0)  # another process: nothing cached yet
    assert fresh.cached_snapshot("t") is None and fresh.cached_snapshot("nope") is None
    latest = fresh.snapshot("t")
    assert fresh.cached_snapshot("t") == latest and latest.version == 2
    assert fresh.cached_snapshot("t", Ref(version=2)) == latest
    assert fresh.cached_snapshot("t", Ref(version=1)) is None  # not opened yet
    hits = fresh.stats.hits
    pinned = fresh.snapshot("t", Ref(version=1))
    assert fresh.cached_snapshot("t", Ref(version=1)) == pinned and fresh.stats.hits == hits + 1
    fresh.tags("t").create("v1", 1)
    assert fresh.cached_snapshot("t", Ref(tag="v1")) is None  # a tag is read from the store
    assert fresh.cached_snapshot("t", Ref(branch="b")) is None
    stale = Store(data_uri, refresh_seconds=0.0)  # the latest is always due for its refresh
    stale.snapshot("t")
    assert stale.cached_snapshot("t") is None
