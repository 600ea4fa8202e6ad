"""The servers' HTTP front: a request head must arrive in time and within its size, so
clients that send slowly cannot hold sockets open without end."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request

from tresen.cli.common import start_server


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


@contextlib.asynccontextmanager
async def served(head_timeout_s: float = 0.3, max_head_bytes: int = 2048) -> AsyncIterator[int]:
    server, task, url = await start_server(
        echo_app(),
        "127.0.0.1",
        0,
        head_timeout_s=head_timeout_s,
        max_head_bytes=max_head_bytes,
    )
    try:
        yield int(url.rsplit(":", 1)[1])
    finally:
        server.should_exit = True
        await task


async def answer_of(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, object]]:
    """The status line and JSON body of an answer after which the server closes."""
    raw = await asyncio.wait_for(reader.read(), 10)
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


async def test_an_unfinished_request_head_is_answered_408_and_closed() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        status, body = await answer_of(reader)
        writer.close()
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert body["error"] == {
        "code": 100,
        "message": "request head not received in time",
        "details": {},
    }


async def test_a_connection_that_sends_nothing_is_closed() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        status, _ = await answer_of(reader)
        writer.close()
    assert status == b"HTTP/1.1 408 Request Timeout"


async def test_an_oversized_request_head_is_answered_431() -> None:
    async with served(head_timeout_s=30) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096)
        await writer.drain()
        status, body = await answer_of(reader)
        writer.close()
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert body["error"]["code"] == 100


async def test_timely_requests_are_served_also_on_a_kept_alive_connection() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        big = b"x" * 100_000  # a body in the same chunk as the head does not count as head
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + str(len(big)).encode()
            + b"\r\n\r\n"
            + big
        )
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"}"), 10)
        assert first.startswith(b"HTTP/1.1 200 OK")
        assert first.endswith(b'{"size":100000}')

        # The next request on the same connection gets a deadline of its own.
        writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        status, _ = await answer_of(reader)
        writer.close()
    assert status == b"HTTP/1.1 408 Request Timeout"
