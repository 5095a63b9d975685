"""The served protocol (``app.serving``) writes each answer in one send, in order, and sends what it holds
before it closes. Driven in this process: the protocol uvicorn would run, fed bytes directly, writing to a
transport that records what reaches the socket (the number of sends is the point, which a socket hides)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from app.serving import server_config
from app.settings import Settings


class Socket(asyncio.Transport):
    """Records each send (a ``write`` or ``writelines`` call) and whether it was closed while the
    connection was up (``kept``: still open when the client went away)."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False
        self.kept = False

    def write(self, data: bytes) -> None:
        self.sends.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.sends.append(b"".join(chunks))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def small(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"image/png"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"\x89PNG!"})


def serve(requests: bytes) -> Socket:
    """Feed ``requests`` to the protocol ``lightbox serve`` runs and let it answer."""
    loop = asyncio.new_event_loop()
    try:
        config = server_config(small, Settings(uri="unused"), lifespan="off", access_log=False)
        config.load()
        protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
        socket = Socket()
        protocol.connection_made(socket)
        protocol.data_received(requests)
        loop.run_until_complete(asyncio.sleep(0.2))
        socket.kept = not socket.closed
        protocol.connection_lost(None)
        return socket
    finally:
        loop.close()


def test_an_answer_leaves_in_one_send() -> None:
    socket = serve(b"GET /image HTTP/1.1\r\nhost: x\r\n\r\n")
    assert len(socket.sends) == 1, socket.sends
    head, _, body = socket.sends[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5" in head and body == b"\x89PNG!"
    assert socket.kept  # keep-alive


def test_pipelined_and_streamed_answers_keep_their_order() -> None:
    socket = serve(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\nGET /image HTTP/1.1\r\nhost: x\r\n\r\n")
    sent = b"".join(socket.sends)
    first, second = sent.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"transfer-encoding: chunked" in first and first.endswith(b"5\r\nthree\r\n0\r\n\r\n")
    assert b"4\r\none \r\n4\r\ntwo \r\n" in first and second.endswith(b"\r\n\r\n\x89PNG!")


def test_what_is_held_is_sent_before_close() -> None:
    socket = serve(b"GET /image HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert not socket.kept and len(socket.sends) == 1 and socket.sends[0].endswith(b"\x89PNG!")
    assert b"connection: close" in socket.sends[0]


def test_uvicorn_config_uses_the_guarded_protocol() -> None:
    config = server_config(small, Settings(uri="unused"))
    assert isinstance(config, uvicorn.Config) and config.http.__name__ == "HeadDeadline"  # type: ignore[union-attr]
