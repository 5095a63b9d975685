"""The baseline of bench/search.py: a minimal FastAPI endpoint over a faiss IVF-Flat index.

    python -m bench._faiss_server --vectors V.npy --ids IDS.txt [--nlist L] [--nprobe N] --metric l2|cosine --port P

It loads the vectors once, trains ``IndexIVFFlat`` (``--nlist`` lists, default sqrt(n)) and answers
``POST /search {"vector": [...], "k": 10}`` with ``{"hits": [{"id", "_distance"}]}``: the least a
service must do, so the ratio to it measures Lightbox's own overhead. ``POST /nprobe {"nprobe": N}``
sets the probe count (the bench tunes it to the smallest that reaches a recall target).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse


def main() -> None:
    import faiss
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", required=True)
    parser.add_argument("--ids", required=True)
    parser.add_argument("--nprobe", type=int, default=1)
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default sqrt(n))")
    parser.add_argument("--metric", default="l2")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    x = np.load(args.vectors)
    ids = Path(args.ids).read_text().split("\n")
    cosine = args.metric == "cosine"
    if cosine:
        faiss.normalize_L2(x)
    kind = faiss.METRIC_INNER_PRODUCT if cosine else faiss.METRIC_L2
    nlist = args.nlist or int(max(16, math.sqrt(len(x))))
    index = faiss.IndexIVFFlat(faiss.IndexFlat(x.shape[1], kind), x.shape[1], nlist, kind)
    index.train(x)
    index.add(x)
    index.nprobe = args.nprobe
    app = FastAPI()

    @app.get("/readyz")
    def ready() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/nprobe")
    async def set_nprobe(request: Request) -> dict[str, int]:
        index.nprobe = int((await request.json())["nprobe"])  # the bench tunes it to a recall
        return {"nprobe": index.nprobe, "nlist": index.nlist}

    @app.post("/search")
    async def search(request: Request) -> ORJSONResponse:
        body = await request.json()
        q = np.asarray(body["vector"], np.float32).reshape(1, -1)
        if cosine:
            faiss.normalize_L2(q)
        scores, found = index.search(q, int(body.get("k", 10)))
        hits = [{"id": ids[i], "_distance": float(s)} for s, i in zip(scores[0], found[0], strict=True) if i >= 0]
        return ORJSONResponse({"hits": hits})

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
