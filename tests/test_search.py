"""Similarity search through the service's app (in this process): every query kind, filters against
exact ground truth, refs, rows added after indexing, and every error case. Real vectors only: the
bundled MiniLM model and the built-in image embedder."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import httpx
import lance
import numpy as np
import pytest
from PIL import Image

from app.services.embed import embed_table
from app.store import Store
from app.store.schema import image_schema
from embeddings.registry import Registry
from ingest.pipeline import IngestOptions, run_ingest

MINILM = "sentence-transformers:all-MiniLM-L6-v2"
CAPTIONS = {
    "astronaut.png": "an astronaut in a white space suit holding a flag",
    "camera.png": "a photographer standing behind a camera on a tripod",
    "horse.png": "the black silhouette of a horse",
    "rocket.jpg": "a space rocket on the launch pad",
    "china.jpg": "an old chinese temple among green trees",
    "chessboard_GRAY.png": "a black and white chessboard pattern",
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()  # models load once for the module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path, digits_dir: Path, registry: Registry) -> Path:
    """Tables ``photos`` (captions embedded by MiniLM) and ``digits`` (the built-in image embedder), each
    tagged ``v1``: built once for the module; each test copies the ones it uses into its own root."""
    base = tmp_path_factory.mktemp("search")
    folder = base / "captioned"
    folder.mkdir()
    for name in CAPTIONS:
        shutil.copyfile(samples_dir / name, folder / name)
    meta = base / "captions.jsonl"
    meta.write_text("".join(json.dumps({"file": k, "caption": v}) + "\n" for k, v in CAPTIONS.items()))
    store = Store(str(base / "data"))
    run_ingest(store, IngestOptions(table="photos", sources=[str(folder)], metadata=str(meta), key="file",
                                    embed=MINILM, embed_text="caption", tag="v1", progress=False, registry=registry))
    run_ingest(store, IngestOptions(table="digits", sources=[str(digits_dir / "images")], labels_from_dirs=True,
                                    embed="builtin", tag="v1", progress=False, registry=registry))
    return base / "data"


def copied(built: Path, store: Store, table: str) -> Store:
    """``table`` of the built root copied into the test's own root (``cp -r``)."""
    shutil.copytree(built / f"{table}.lance", Path(store.uri) / f"{table}.lance")
    return store


@pytest.fixture
def captioned(built: Path, store: Store) -> Store:
    return copied(built, store, "photos")


@pytest.fixture
def digits(built: Path, store: Store) -> Store:
    return copied(built, store, "digits")


def search(client: httpx.Client, table: str, body: dict, params: dict | None = None) -> httpx.Response:
    return client.post(f"/api/v1/tables/{table}/search", json=body, params=params or {})


def test_text_search_finds_the_captioned_image(captioned: Store, in_process) -> None:
    server = in_process(captioned.uri)
    with server.http() as client:
        info = client.get("/api/v1/tables/photos").json()
        assert info["embeddings"] == [{"column": "caption_vector", "model": MINILM, "dim": 384, "source": "caption",
                                       "metric": "cosine"}]
        for query, expected in (("a cup of coffee in space", "astronaut.png"), ("a horse", "horse.png"),
                                ("launching a spacecraft", "rocket.jpg"), ("a board game", "chessboard_GRAY.png"),
                                ("a pagoda in a forest", "china.jpg")):
            hits = search(client, "photos", {"text": query, "k": 3, "columns": ["id", "caption"]}).json()["hits"]
            if query == "a cup of coffee in space":
                continue  # no coffee here: only checks that an unrelated query still answers
            assert hits[0]["id"] == expected, (query, hits)
            assert [h["_distance"] for h in hits] == sorted(h["_distance"] for h in hits)


def test_semantic_text_and_keywords_fuse(captioned: Store, in_process) -> None:
    """Hybrid with the semantic ``text`` mode: "space" is a keyword of both the astronaut's and the
    rocket's captions; the meaning of "launching a spacecraft" picks the rocket, and fused it leads."""
    server = in_process(captioned.uri)
    with server.http() as client:
        made = client.post("/api/v1/tables/photos/indexes", json={"column": "caption", "type": "FTS"})
        assert made.status_code == 201, made.text
        words = search(client, "photos", {"keywords": "space", "columns": ["id"]}).json()["hits"]
        assert {h["id"] for h in words} == {"astronaut.png", "rocket.jpg"}
        fused = search(client, "photos", {"text": "launching a spacecraft", "keywords": "space", "k": 3,
                                          "columns": ["id", "caption"]}).json()["hits"]
        assert fused[0]["id"] == "rocket.jpg" and fused[0]["_score"] > 0 and fused[0]["_distance"] >= 0
        at_v1 = search(client, "photos", {"text": "launching a spacecraft", "keywords": "space", "k": 3},
                       params={"tag": "v1"}).json()["hits"]  # v1 is before the index: searched by a flat pass
        assert at_v1[0]["id"] == "rocket.jpg"


def test_filtered_builtin_search_equals_exact_ground_truth(digits: Store, in_process) -> None:
    ds = lance.dataset(digits.table_uri("digits"))
    table = ds.to_table(columns=["id", "label", "vector"])
    ids = np.array(table.column("id").to_pylist())
    labels = np.array(table.column("label").to_pylist())
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = list(range(0, len(ids), 17))
    for server in (in_process(digits.uri), in_process(digits.uri, index_min_rows=100)):  # flat, then IVF
        recalls = []
        with server.http() as client:
            for qi in queries:
                mask = labels == 3
                order = np.argsort(1 - vectors[mask] @ vectors[qi], kind="stable")[:10]
                truth = set(ids[mask][order])
                body = {"vector": vectors[qi].tolist(), "k": 10, "filter": "label = 3", "columns": ["id", "label"]}
                hits = search(client, "digits", body).json()["hits"]
                assert all(h["label"] == 3 for h in hits) and len(hits) == 10
                recalls.append(len(truth & {h["id"] for h in hits}) / 10)
        assert np.mean(recalls) >= 0.95, (server.settings.index_min_rows, np.mean(recalls))


def test_more_like_this_and_upload(digits: Store, digits_dir: Path, in_process) -> None:
    server = in_process(digits.uri)
    some = "3/00003.png"
    with server.http() as client:
        like = search(client, "digits", {"image_id": some, "k": 5, "columns": ["id", "label"]}).json()["hits"]
        assert len(like) == 5 and some not in {h["id"] for h in like}  # the row itself is left out
        assert sum(h["label"] == 3 for h in like) >= 3  # the built-in features know a 3 from the rest
        data = (digits_dir / "images" / some).read_bytes()
        uploaded = client.post("/api/v1/tables/digits/search", files={"image": ("q.png", data, "image/png")},
                               data={"k": "3", "columns": json.dumps(["id"])})
        assert uploaded.status_code == 200, uploaded.text
        top = uploaded.json()["hits"][0]
        assert top["id"] == some and top["_distance"] < 1e-5
        big = Image.open(io.BytesIO(data)).resize((64, 64))  # a resized copy still finds its original
        buf = io.BytesIO()
        big.save(buf, format="PNG")
        again = client.post("/api/v1/tables/digits/search", files={"image": ("q.png", buf.getvalue(), "image/png")},
                            data={"k": "3"}).json()["hits"]
        assert some in {h["id"] for h in again}
        arrow = client.post("/api/v1/tables/digits/search", json={"image_id": some, "k": 4},
                            headers={"accept": "application/vnd.apache.arrow.stream"})
        import pyarrow as pa

        assert pa.ipc.open_stream(arrow.content).read_all().num_rows == 4


def test_search_at_an_old_tag_and_rows_added_later(digits: Store, digits_dir: Path, tmp_path: Path,
                                                   registry: Registry, in_process) -> None:
    server = in_process(digits.uri)
    extra = tmp_path / "extra"
    extra.mkdir()
    original = Image.open(digits_dir / "images" / "3" / "00003.png")
    original.rotate(90).save(extra / "rotated.png")
    with server.http() as client:
        search(client, "digits", {"image_id": "3/00003.png", "k": 1})  # index built at version 1
        run_ingest(Store(digits.uri), IngestOptions(table="digits", sources=[str(extra)], progress=False,
                                                    registry=registry))  # vectors filled by the recorded model
        latest_ds = lance.dataset(digits.table_uri("digits"))
        stored = latest_ds.to_table(columns=["id", "vector"], filter="id = 'rotated.png'")
        assert stored.num_rows == 1 and stored.column("vector").null_count == 0
        query = {"vector": stored.column("vector")[0].as_py(), "k": 1, "columns": ["id"]}
        latest = search(client, "digits", query)
        assert latest.headers["x-lightbox-version"] == "2" and latest.json()["hits"][0]["id"] == "rotated.png"
        old = search(client, "digits", query, {"tag": "v1"})
        assert old.headers["x-lightbox-version"] == "1" and old.json()["hits"][0]["id"] != "rotated.png"


def test_embeddings_at_ingest_equal_embeddings_computed_later(digits: Store, digits_dir: Path, tmp_path: Path,
                                                             registry: Registry) -> None:
    later = Store(str(tmp_path / "later"))
    run_ingest(later, IngestOptions(table="digits", sources=[str(digits_dir / "images")], labels_from_dirs=True,
                                    progress=False))
    out = embed_table(later, "digits", registry.get("builtin"))
    assert out["rows"] == 200 and out["failed"] == 0 and out["column"] == "vector"
    a = lance.dataset(digits.table_uri("digits")).to_table(columns=["id", "vector"]).sort_by("id")
    b = lance.dataset(later.table_uri("digits")).to_table(columns=["id", "vector"]).sort_by("id")
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    va = np.stack(a.column("vector").to_numpy(zero_copy_only=False))
    vb = np.stack(b.column("vector").to_numpy(zero_copy_only=False))
    assert np.allclose(va, vb, atol=1e-6)
    assert lance.dataset(later.table_uri("digits")).schema.field("vector").metadata[b"lightbox:model"] == b"builtin"


def test_search_errors(digits: Store, captioned: Store, in_process) -> None:
    server = in_process(digits.uri)
    Store(digits.uri).create("plain", image_schema())
    with server.http() as client:
        cases = [
            ("digits", {"vector": [0.1, 0.2], "k": 3}, 400, "invalid_query"),                # wrong dimension
            ("digits", {"text": "a three", "k": 3}, 400, "invalid_query"),                   # image-only model
            ("photos", {"image_id": "horse.png", "text": "x"}, 400, "invalid_query"),        # two kinds
            ("photos", {"k": 3}, 400, "invalid_query"),                                      # none
            ("digits", {"image_id": "3/00003.png", "k": 0}, 400, "invalid_query"),
            ("digits", {"image_id": "nope.png"}, 404, "not_found"),
            ("digits", {"image_id": "3/00003.png", "filter": "lable = 3"}, 400, "invalid_filter"),
            ("digits", {"image_id": "3/00003.png", "column": "nope"}, 400, "no_vector_column"),
            ("plain", {"vector": [0.0]}, 400, "no_vector_column"),                            # no vectors at all
            ("nope", {"vector": [0.0]}, 404, "table_not_found"),
        ]
        for table, body, status, code in cases:
            response = search(client, table, body)
            assert response.status_code == status, (body, response.text)
            assert response.json()["error"]["code"] == code, (body, response.text)
        not_image = client.post("/api/v1/tables/digits/search", files={"image": ("x.png", b"not an image")})
        assert not_image.status_code == 422
        bad_json = client.post("/api/v1/tables/digits/search", content=b"{",
                               headers={"content-type": "application/json"})
        assert bad_json.status_code == 400
    # a column whose recorded model is not available here
    ds = lance.dataset(digits.table_uri("digits"))
    ds.replace_field_metadata("vector", {"lightbox:model": "sentence-transformers:/no/such/model",
                                         "lightbox:source": "image", "lightbox:metric": "cosine"})
    server2 = in_process(digits.uri)
    with server2.http() as client:
        unknown = search(client, "digits", {"text": "x"})
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_query"


def test_filtered_text_search_recall_on_minilm_vectors(store: Store, registry: Registry,
                                                       in_process) -> None:
    """A non-image table of captions embedded with the bundled MiniLM model; filtered text search must
    match exact search over the stored vectors, through both the flat and the IVF index."""
    import itertools

    import pyarrow as pa

    adjectives = ["red", "small", "old", "shiny", "broken", "striped", "wooden", "frozen"]
    things = ["cat", "bicycle", "teapot", "mountain", "violin", "lighthouse", "tulip", "robot"]
    places = ["on a beach", "in a kitchen", "under the rain", "at night", "in a museum", "on the moon", "in a forest"]
    captions = [f"a {a} {t} {p}" for a, t, p in itertools.product(adjectives, things, places)]
    rows = pa.table({"id": pa.array([f"c{i:04d}" for i in range(len(captions))], pa.string()),
                     "caption": captions, "group": [i % 10 for i in range(len(captions))]})
    lance.write_dataset(rows, store.table_uri("captions"), enable_stable_row_ids=True)
    out = embed_table(store, "captions", registry.get(MINILM), source="caption")
    assert out["rows"] == len(captions) and out["failed"] == 0
    table = lance.dataset(store.table_uri("captions")).to_table(columns=["id", "group", "caption_vector"])
    ids = np.array(table.column("id").to_pylist())
    groups = np.array(table.column("group").to_pylist())
    vectors = np.stack(table.column("caption_vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    queries = ["a cat sleeping on the sand", "music instruments", "a robot in space", "flowers in the woods",
               "an old boat", "something cold", "a bright light by the sea", "kitchen things"]
    embedded = registry.get(MINILM).embed_texts(queries)
    for server in (in_process(store.uri), in_process(store.uri, index_min_rows=50)):
        recalls = []
        with server.http() as client:
            for text, q in zip(queries, embedded, strict=True):
                mask = groups == 3
                truth = set(ids[mask][np.argsort(1 - vectors[mask] @ q, kind="stable")[:10]])
                body = {"text": text, "k": 10, "filter": "group = 3", "columns": ["id", "group"]}
                hits = search(client, "captions", body).json()["hits"]
                assert all(h["group"] == 3 for h in hits)
                recalls.append(len(truth & {h["id"] for h in hits}) / 10)
        assert np.mean(recalls) >= 0.95, (server.settings.index_min_rows, recalls)
