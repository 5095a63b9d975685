"""``lightbox.connect(data_root)``: the SDK over the service's own app in this process, no server."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

import lightbox
from lightbox._inprocess import AppThread, InProcessTransport


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (8, 8), value).save(out, format="PNG")
    return out.getvalue()


def test_a_data_root_answers_as_the_service_does(tmp_path: Path) -> None:
    with lightbox.connect(str(tmp_path / "root")) as client:
        assert client.tables() == []
        client.create_table("t", [{"name": "label", "type": "int64"}])
        table = client.table("t")
        out = table.add([png(1), png(2)], ids=["a.png", "b.png"], metadata=[{"label": 1}, {"label": 2}])
        assert out["inserted"] == 2
        assert table.count("label = 2") == 1
        assert table.image("a.png").getpixel((0, 0)) == 1
        with pytest.raises(lightbox.NotFound, match="nope"):
            client.table("nope").count()
        with pytest.raises(lightbox.BadRequest):
            table.count("label ==== 2")
    # a second process-less client on the same root sees what the first wrote
    with lightbox.connect(str(tmp_path / "root")) as again:
        assert [t.name for t in again.tables()] == ["t"]


def test_a_response_streams_in_chunks_and_close_runs_the_shutdown(tmp_path: Path) -> None:
    seen: list[str] = []
    body = b"x" * (5 * 1024 * 1024)

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                seen.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        received = b""
        while True:
            message = await receive()
            received += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-got", str(len(received)).encode())]})
        for i in range(0, len(body), 65536):
            await send({"type": "http.response.body", "body": body[i:i + 65536], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    import httpx

    with httpx.Client(transport=InProcessTransport(AppThread(app)), base_url="http://x") as client:
        with client.stream("POST", "/", content=b"y" * 3_000_000) as response:
            assert response.headers["x-got"] == "3000000"
            sizes = [len(chunk) for chunk in response.iter_raw()]
        assert sum(sizes) == len(body) and len(sizes) > 1
    assert seen == ["lifespan.startup", "lifespan.shutdown"]


def test_rows_handed_to_the_app_are_let_go_when_it_has_answered() -> None:
    """A response and its stream refer to each other, so the request lives until the cyclic collector
    runs; the rows it handed over must not live with it (an ingest kept every batch: 2.8 GB for 1.2 GB)."""
    import httpx

    from lightbox._inprocess import ARROW_ROWS

    seen: list[object] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":  # started and shut down with nothing to do
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.append(scope["extensions"][ARROW_ROWS])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    transport = InProcessTransport(AppThread(app))
    with httpx.Client(transport=transport, base_url="http://lightbox.local") as client:
        response = client.post("/rows", extensions={ARROW_ROWS: "the rows"})
        assert response.status_code == 200 and seen == ["the rows"]  # the app got them
        assert ARROW_ROWS not in response.request.extensions  # and the request no longer holds them
    transport.close()
