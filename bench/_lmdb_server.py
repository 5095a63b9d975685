"""The HTTP anchor of target 2: a minimal FastAPI app serving image bytes from LMDB by key.

``GET /img/{key:path}`` returns the value stored under ``key`` (an ``async def`` handler, one
uvicorn worker, the same ``uvicorn.run`` settings as ``lightbox serve``). Run it as
``python -m bench._lmdb_server --path DB --port P``; ``build_lmdb`` writes such a database from a
folder of files, keyed by their relative paths (which are also Lightbox's ids for that folder).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LMDB_MAP_SIZE = 1 << 36  # address space only; the file stays sparse


def build_lmdb(folder: Path, keys: Sequence[str], out: Path, batch: int = 1000) -> int:
    """Store every ``folder/key`` under ``key`` in a fresh LMDB at ``out``; returns the bytes stored."""
    import lmdb

    out.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(out), map_size=LMDB_MAP_SIZE, readahead=False)
    total = 0
    with env.begin(write=True) as txn:
        cursor = txn.cursor()
        for i in range(0, len(keys), batch):
            items = []
            for key in keys[i : i + batch]:
                data = (folder / key).read_bytes()
                items.append((key.encode(), data))
                total += len(data)
            cursor.putmulti(items)
    env.sync(True)
    env.close()
    return total


def create_app(path: str) -> Any:
    import lmdb
    from fastapi import FastAPI
    from fastapi.responses import Response

    env = lmdb.open(path, readonly=True, lock=False, readahead=False, max_readers=256)
    app = FastAPI(title="lmdb-anchor")

    @app.get("/img/{key:path}")
    async def get_image(key: str) -> Response:
        with env.begin(buffers=False) as txn:
            data = txn.get(key.encode())
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/png")

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="the LMDB directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvicorn

    # Exactly what ``lightbox serve`` does (lightbox/cli/local.py): one worker, defaults otherwise.
    uvicorn.run(create_app(args.path), host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
