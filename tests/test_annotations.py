"""COCO and YOLO annotations into list columns of matching rows: one version, unmatched images and
annotations reported, through the CLI (data root and server), the SDK and HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import InProcess
from tests.helpers import arrow_stream, run_cli


@pytest.fixture
def root(tmp_path: Path, digits_dir: Path) -> str:
    uri = str(tmp_path / "data")
    run_ingest(Store(uri), IngestOptions(table="digits", sources=[str(digits_dir / "images")], progress=False,
                                         workers=1))
    return uri


def coco_file(path: Path) -> Path:
    """Three images: two in the table (by file name only, as COCO writes them), one not; four
    annotations, one of them on an image id the file does not list."""
    doc = {
        "images": [{"id": 1, "file_name": "00003.png", "width": 8, "height": 8},
                   {"id": 2, "file_name": "3/00013.png", "width": 8, "height": 8},
                   {"id": 3, "file_name": "elsewhere/missing.png", "width": 8, "height": 8}],
        "categories": [{"id": 7, "name": "stroke"}, {"id": 9, "name": "loop"}],
        "annotations": [
            {"id": 100, "image_id": 1, "category_id": 7, "bbox": [1, 2, 3, 4],
             "segmentation": [[1, 2, 4, 2, 4, 6]], "area": 6, "iscrowd": 0},
            {"id": 101, "image_id": 1, "category_id": 9, "bbox": [0, 0, 8, 8], "segmentation": []},
            {"id": 102, "image_id": 3, "category_id": 7, "bbox": [0, 0, 1, 1]},
            {"id": 103, "image_id": 42, "category_id": 7, "bbox": [0, 0, 1, 1]},
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def test_coco_by_cli_into_one_version(root: str, tmp_path: Path) -> None:
    before = Store(root).latest("digits").version
    done = run_cli("import-annotations", "digits", coco_file(tmp_path / "instances.json"), "--uri", root, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rows_updated"] == 2 and report["annotations"] == 2
    assert report["unmatched_images"] == 1 and report["unmatched_image_names"] == ["elsewhere/missing.png"]
    assert report["unmatched_annotations"] == 2  # one on the unmatched image, one on an unknown image id
    ds = Store(root).latest("digits")
    assert ds.version == before + 1 == report["version"]
    rows = {r["id"]: r for r in ds.to_table(columns=["id", "boxes", "categories", "category_ids", "segmentation",
                                                     "annotation_ids"]).to_pylist()}
    three = rows["3/00003.png"]
    assert three["boxes"] == [[1, 2, 3, 4], [0, 0, 8, 8]]
    assert three["categories"] == ["stroke", "loop"] and three["category_ids"] == [7, 9]
    assert three["segmentation"] == [[[1, 2, 4, 2, 4, 6]], []] and three["annotation_ids"] == [100, 101]
    assert rows["3/00013.png"]["boxes"] == []  # listed, matched, no annotations
    assert rows["0/00000.png"]["boxes"] is None  # not in the file: untouched
    assert sum(r["boxes"] is not None for r in rows.values()) == 2


def test_coco_then_yolo_through_sdk_and_http(root: str, in_process: Callable[..., InProcess],
                                             tmp_path: Path) -> None:
    server = in_process(root)
    with server.sdk() as client:
        t = client.table("digits")
        t.import_annotations(coco_file(tmp_path / "instances.json"), message="coco boxes")
        labels = tmp_path / "labels"
        labels.mkdir()
        (labels / "00003.txt").write_text("1 0.5 0.5 0.25 0.5\n0 0.1 0.1 0.6 0.1 0.6 0.6\n")
        (labels / "nomatch.txt").write_text("0 0.5 0.5 1 1\n")
        (labels / "classes.txt").write_text("loop\nstroke\n")
        out = t.import_annotations(labels, "yolo", message="yolo boxes")
        assert out["rows_updated"] == 1 and out["unmatched_image_names"] == ["nomatch"]
        row = t.query("id = '3/00003.png'", columns=["boxes", "categories", "segmentation"]).to_pylist()[0]
        assert row["categories"] == ["stroke", "loop"]
        assert row["boxes"][0] == pytest.approx([3.0, 2.0, 2.0, 4.0])  # centre 4,4; 2x4 pixels on an 8x8 image
        assert row["boxes"][1] == pytest.approx([0.8, 0.8, 4.0, 4.0])
        assert row["segmentation"][1] == [pytest.approx([0.8, 0.8, 4.8, 0.8, 4.8, 4.8])]
        assert [v["message"] for v in t.versions()][-2:] == ["coco boxes", "yolo boxes"]  # one version each
    with server.http(base_url=f"{server.url}/api/v1/tables/digits") as http:
        for params, body in (({"format": "coco"}, b"[1, 2]"), ({"format": "coco"}, b"{not json"),
                             ({"format": "yolo"}, b'{"labels": {"a": "x y z"}}'), ({"format": "voc"}, b"{}")):
            bad = http.post("/annotations", params=params, content=body, headers={"content-type": "application/json"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_annotations", (params, body)
        assert http.post("/annotations", params={"match": "nope"}, json={"images": []}).status_code == 400
        # a table with no image sizes (made through the LanceDB protocol) cannot take YOLO's fractions
        made = client_create_plain(server.http())
        assert made.status_code == 200, made.text
        bad = server.http().post("/api/v1/tables/plain/annotations", params={"format": "yolo"},
                                 json={"labels": {"r0": "0 0.5 0.5 1 1"}})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_annotations", bad.text
        assert "width" in bad.json()["error"]["message"]
        assert http.post("/api/v1/tables/none/annotations".removeprefix("/api/v1/tables/digits"),
                         json={"images": []}).status_code in (404, 405)


def client_create_plain(http: httpx.Client) -> httpx.Response:
    """A table of plain rows (``id``, ``label``) made through the LanceDB protocol: no width or height."""
    import pyarrow as pa

    rows = pa.table({"id": ["r0", "r1"], "label": [0, 1]})
    return http.post("/v1/table/plain/create", content=arrow_stream(rows),
                     headers={"content-type": "application/vnd.apache.arrow.stream"})


def test_annotation_bodies_are_bounded_and_checked(root: str) -> None:
    """Misspelt YOLO fields, ids past int64 and more annotations than a row may hold are 4xx answers
    that write nothing (not a 500, and not 3.3 M boxes in one row)."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.services.annotations import MAX_PER_IMAGE
    from app.settings import Settings

    with TestClient(create_app(Settings(uri=root, warm_on_start=False))) as http:
        url = "/api/v1/tables/digits/annotations"
        before = http.get("/api/v1/tables/digits").json()["version"]

        def refused(status: int, code: str, body: Any, format: str = "coco") -> dict[str, Any]:
            answer = http.post(url, params={"format": format}, json=body)
            assert answer.status_code == status, answer.text[:300]
            assert answer.json()["error"]["code"] == code, answer.text[:300]
            return answer.json()["error"]

        typo = refused(422, "unknown_field", {"labels": {"00003": "0 .5 .5 .1 .1"}, "clases": ["x"]}, "yolo")
        assert typo["detail"]["suggestions"] == {"clases": "classes"}
        refused(400, "invalid_annotations", {"labels": {"00003": "1" * 23 + " .5 .5 .1 .1"}}, "yolo")
        image = {"id": 1, "file_name": "00003.png"}
        for field in ("category_id", "id"):
            for value in (2**63, 2**64 - 1, 10**30):
                ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], field: value}
                error = refused(400, "invalid_annotations", {"images": [image], "annotations": [ann]})
                assert "64-bit" in error["message"]
        lines = "\n".join(["0 .5 .5 .1 .1"] * (MAX_PER_IMAGE + 1))
        too_many = refused(422, "too_many_annotations", {"labels": {"00003": lines}}, "yolo")
        assert too_many["detail"]["limit"] == MAX_PER_IMAGE
        # two file names that match one row add up: the row, not each file, is bounded
        half = MAX_PER_IMAGE // 2 + 1
        doc = {"images": [image, {"id": 2, "file_name": "3/00003.png"}],
               "annotations": [{"id": i, "image_id": 1 + i % 2, "category_id": 1, "bbox": [0, 0, 1, 1]}
                               for i in range(2 * half)]}
        assert refused(422, "too_many_annotations", doc)["detail"]["id"] == "3/00003.png"
        assert http.get("/api/v1/tables/digits").json()["version"] == before  # nothing was written
        ok = http.post(url, params={"format": "yolo"}, json={"labels": {"00003": lines.split("\n", 1)[1]}})
        assert ok.status_code == 200 and ok.json()["annotations"] == MAX_PER_IMAGE, ok.text[:300]
