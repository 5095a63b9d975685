"""CLIP end to end with a tiny, randomly initialised CLIP model built here (nothing is downloaded):
images embedded at ingest (`--embed clip:PATH`), text embedded at query time, the text search
answering exactly what the model itself ranks; and with a builtin column beside it, text search
picks the CLIP column by itself."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import lightbox
from app.store import Store
from tests.conftest import InProcess
from tests.helpers import run_cli

WORDS = ["a", "photo", "of", "cat", "dog", "digit", "three"]


def byte_chars() -> list[str]:
    """CLIP's byte-to-unicode table (the alphabet of its byte-level BPE)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def build_tiny_clip(folder: Path) -> Path:
    """A CLIP model with 32-wide layers and a 16-d projection, its BPE tokenizer written from a small
    vocabulary, saved with ``save_pretrained``: a folder sentence-transformers loads as image+text."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for c in byte_chars():
            vocab[c + suffix] = len(vocab)
    merges = []
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    torch.manual_seed(0)
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"]}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=images, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def model_ranking(clip_dir: Path, store: Store, table: str, column: str, text: str, k: int) -> list[str]:
    """The k nearest ids by the model itself: its text vector against the stored image vectors."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(clip_dir), device="cpu", local_files_only=True)
    query = model.encode([text], normalize_embeddings=True)[0]
    rows = store.latest(table).to_table(columns=["id", column]).to_pylist()
    scores = [(1 - float(np.dot(query, r[column])), r["id"]) for r in rows]
    return [row_id for _, row_id in sorted(scores)[:k]]


def test_ingest_with_clip_and_search_by_text(in_process: Callable[..., InProcess], clip_dir: Path,
                                             digits_dir: Path, tmp_path: Path) -> None:
    uri = str(tmp_path / "data")
    done = run_cli("ingest", digits_dir / "images", "--table", "digits", "--uri", uri, "--labels-from-dirs",
               "--embed", f"clip:{clip_dir}", "--no-progress", "--workers", "1")
    assert done.returncode == 0, done.stderr
    store = Store(uri)
    field = store.latest("digits").schema.field("clip_vector")
    assert field.type.list_size == 16
    assert field.metadata[b"lightbox:model"] == f"clip:{clip_dir}".encode()
    with in_process(uri).sdk() as client:
        hits = client.table("digits").search("a photo of a cat", k=5, columns=["id"])
        assert hits.column("id").to_pylist() == model_ranking(clip_dir, store, "digits", "clip_vector",
                                                              "a photo of a cat", 5)
        other = client.table("digits").search("digit three", k=5, columns=["id"]).column("id").to_pylist()
        assert other == model_ranking(clip_dir, store, "digits", "clip_vector", "digit three", 5)
        by_image = client.table("digits").search(image=digits_dir / "images" / "3/00003.png", k=1, columns=["id"])
        assert by_image.column("id").to_pylist() == ["3/00003.png"]  # the same image, embedded the same way


def test_embed_clip_beside_builtin_and_text_picks_it(in_process: Callable[..., InProcess], clip_dir: Path,
                                                      digits_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    uri = str(tmp_path / "data")
    assert run_cli("ingest", digits_dir / "images", "--table", "digits", "--uri", uri, "--embed", "builtin",
               "--no-progress", "--workers", "1").returncode == 0
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))  # no CLIP in the cache either
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache" / "hub"))  # (read at import)
    missing = run_cli("embed", "digits", "--model", "clip", "--uri", uri)
    assert missing.returncode == 2 and "LIGHTBOX_CLIP_MODEL" in missing.stderr  # one line, no traceback
    monkeypatch.setenv("LIGHTBOX_CLIP_MODEL", str(clip_dir))
    done = run_cli("embed", "digits", "--model", "clip", "--uri", uri)
    assert done.returncode == 0, done.stderr
    assert "clip_vector" in done.stdout
    with in_process(uri).sdk() as client:
        t = client.table("digits")
        hits = t.search("a photo of a dog", k=3, columns=["id"]).column("id").to_pylist()
        assert hits == model_ranking(clip_dir, Store(uri), "digits", "clip_vector", "a photo of a dog", 3)
        with pytest.raises(lightbox.LightboxError, match="several vector columns"):
            t.search(image=digits_dir / "images" / "3/00003.png", k=3)  # builtin and CLIP both embed images
        named = t.search(image=digits_dir / "images" / "3/00003.png", k=1, column="vector", columns=["id"])
        assert named.column("id").to_pylist() == ["3/00003.png"]
    assert os.environ["LIGHTBOX_CLIP_MODEL"] == str(clip_dir)
