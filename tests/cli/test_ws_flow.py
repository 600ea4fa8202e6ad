"""A WebSocket's socket stops being read once several received frames wait for the relay,
and is read again once the relay has taken them all (uvicorn's own code, with the relay's
threshold)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from support import serve_asgi
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from tresen.cli.ws_flow import QUEUED_FRAMES, QueuedFramesProtocol
from tresen.core.http import WRITE_FRAMES_EXTENSION


class Transport:
    """The part of an asyncio transport that flow control touches."""

    def __init__(self) -> None:
        self.reading = True
        self.pauses = 0

    def pause_reading(self) -> None:
        self.pauses += 1
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def receiving_protocol() -> tuple[QueuedFramesProtocol, Transport]:
    # Only the state that receiving frames uses (no handshake, no server).
    protocol = QueuedFramesProtocol.__new__(QueuedFramesProtocol)
    transport = Transport()
    protocol.transport = transport  # type: ignore[assignment]
    protocol.queue = asyncio.Queue()
    protocol.read_paused = False
    protocol.close_sent = False
    protocol.curr_msg_data_type = "bytes"
    return protocol, transport


def frame_arrives(protocol: QueuedFramesProtocol, data: bytes) -> None:
    protocol.frames = [data]
    protocol.send_receive_event_to_app()


async def test_the_socket_is_read_until_several_frames_wait_and_again_once_all_are_taken() -> None:
    protocol, transport = receiving_protocol()
    for i in range(QUEUED_FRAMES - 1):
        frame_arrives(protocol, bytes([i]))
    assert transport.reading
    assert transport.pauses == 0

    frame_arrives(protocol, b"last")
    assert not transport.reading
    assert transport.pauses == 1

    taken = [await protocol.receive() for _ in range(QUEUED_FRAMES - 1)]
    assert not transport.reading  # one frame still waits
    taken.append(await protocol.receive())
    assert transport.reading
    assert [m.get("bytes") for m in taken] == [bytes([i]) for i in range(QUEUED_FRAMES - 1)] + [
        b"last"
    ]

    # A frame that the relay takes at once never pauses the socket.
    for _ in range(3 * QUEUED_FRAMES):
        frame_arrives(protocol, b"x")
        await protocol.receive()
    assert transport.reading
    assert transport.pauses == 1


# --- binary frames read and written without websockets' parser ----------------------------------

MAX_SIZE = 100_000


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every message with itself, as text or bytes as it came; notes how it ended."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            disconnect_codes.append(message.get("code"))
            return
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


disconnect_codes: list[int | None] = []


class RawSocket:
    """A WebSocket client that writes frames as bytes, cut wherever the test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def write(self, data: bytes, piece: int | None = None) -> None:
        step = piece or len(data)
        for at in range(0, len(data), step):
            self.writer.write(data[at : at + step])
            await self.writer.drain()

    async def frame(self) -> Frame:
        """The next frame from the server (unmasked, as a server's are)."""
        head = await self.reader.readexactly(2)
        assert not head[1] & 0x80, "a server's frame is not masked"
        length = head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return Frame(
            Opcode(head[0] & 0x0F), await self.reader.readexactly(length), bool(head[0] & 0x80)
        )


def client_frame(opcode: Opcode, data: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    return Frame(opcode, data, fin).serialize(mask=mask)


@asynccontextmanager
async def raw_socket(app: Any = echo) -> AsyncIterator[RawSocket]:
    disconnect_codes.clear()
    async with serve_asgi(app, lifespan="off", ws_max_size=MAX_SIZE) as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        try:
            yield RawSocket(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


SIZES = [0, 5, 125, 126, 300, 65535, 65536, 70_000]
"""Payloads whose lengths take each of the three forms of a frame's length."""


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1000, None])
async def test_binary_messages_arrive_whole_however_the_stream_is_cut(
    piece: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What websockets' parser is given, and what its writer makes: the handshake only.
    parsed: list[bytes] = []
    written: list[Frame] = []
    receive_data = ServerProtocol.receive_data
    send_frame = ServerProtocol.send_frame

    def parse(self: ServerProtocol, data: bytes) -> None:
        parsed.append(bytes(data))
        receive_data(self, data)

    def write(self: ServerProtocol, frame: Frame) -> None:
        written.append(frame)
        send_frame(self, frame)

    monkeypatch.setattr(ServerProtocol, "receive_data", parse)
    monkeypatch.setattr(ServerProtocol, "send_frame", write)
    messages = [os.urandom(n) for n in (SIZES if piece is None or piece >= 7 else SIZES[:5])]
    async with raw_socket() as ws:
        await ws.write(b"".join(client_frame(Opcode.BINARY, m) for m in messages), piece)
        echoed = [await asyncio.wait_for(ws.frame(), 10) for _ in messages]
    assert [(f.opcode, f.fin) for f in echoed] == [(Opcode.BINARY, True)] * len(messages)
    assert [f.data for f in echoed] == messages
    assert len(parsed) == 1
    assert parsed[0].startswith(b"GET /echo HTTP/1.1")
    assert all(f.opcode is not Opcode.BINARY for f in written)


async def test_pings_text_and_fragments_between_binary_frames_are_answered_as_before() -> None:
    async with raw_socket() as ws:
        await ws.write(
            client_frame(Opcode.BINARY, b"one")
            + client_frame(Opcode.PING, b"are you there")
            + client_frame(Opcode.TEXT, "zwei 👋".encode())
            + client_frame(Opcode.BINARY, b"three")
        )
        frames = [await asyncio.wait_for(ws.frame(), 10) for _ in range(4)]
        pongs = [f for f in frames if f.opcode is Opcode.PONG]
        assert [f.data for f in pongs] == [b"are you there"]
        assert [(f.opcode, f.data) for f in frames if f.opcode is not Opcode.PONG] == [
            (Opcode.BINARY, b"one"),
            (Opcode.TEXT, "zwei 👋".encode()),
            (Opcode.BINARY, b"three"),
        ]

        # A message in fragments is joined, and the messages after it still arrive.
        await ws.write(
            client_frame(Opcode.BINARY, b"fo", fin=False)
            + client_frame(Opcode.CONT, b"ur", fin=True)
            + client_frame(Opcode.BINARY, b"five")
        )
        frames = [await asyncio.wait_for(ws.frame(), 10) for _ in range(2)]
        assert [f.data for f in frames] == [b"four", b"five"]


async def test_a_closing_client_is_answered_and_the_application_told() -> None:
    async with raw_socket() as ws:
        await ws.write(client_frame(Opcode.BINARY, b"last"))
        echoed = await asyncio.wait_for(ws.frame(), 10)
        await ws.write(client_frame(Opcode.CLOSE, b"\x03\xe8"))
        closing = await asyncio.wait_for(ws.frame(), 10)
        assert await asyncio.wait_for(ws.reader.read(), 10) == b""  # and the socket closed
    assert echoed.data == b"last"
    assert (closing.opcode, closing.data) == (Opcode.CLOSE, b"\x03\xe8")
    assert disconnect_codes == [1000]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(Opcode.BINARY, b"x" * (MAX_SIZE + 1)), 1009),
        # A text frame that claims a terabyte: refused at its header, not awaited.
        (bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2**40) + b"\x01\x02\x03\x04x", 1009),
        (client_frame(Opcode.BINARY, b"plain", mask=False), 1002),
        (bytes([0x80 | 0x40 | 0x2, 0x80 | 1]) + b"\x01\x02\x03\x04x", 1002),
        (bytes([0x80 | 0x3, 0x80 | 1]) + b"\x01\x02\x03\x04x", 1002),
    ],
    ids=["too big", "text too big", "not masked", "a reserved bit", "a reserved opcode"],
)
async def test_frames_websockets_refuses_end_the_connection_with_its_code(
    frame: bytes, code: int
) -> None:
    async with raw_socket() as ws:
        await ws.write(client_frame(Opcode.BINARY, b"before"))
        echoed = await asyncio.wait_for(ws.frame(), 10)
        rest = b""
        with contextlib.suppress(ConnectionError):
            await ws.write(frame)
            rest = await asyncio.wait_for(ws.reader.read(), 10)
    assert echoed.data == b"before"
    # A close frame with the code, when the socket was not reset first; then the end.
    if rest:
        assert rest[0] == 0x88
        assert struct.unpack("!H", rest[2:4]) == (code,)
    assert disconnect_codes == [code]


async def test_an_application_writes_several_messages_at_once_until_it_closes() -> None:
    written: list[bool] = []

    async def batches(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        write_frames = scope["extensions"][WRITE_FRAMES_EXTENSION]
        message = await receive()
        written.append(write_frames([message["bytes"], b"", b"y" * 70_000]))
        await send({"type": "websocket.close", "code": 1000})
        written.append(write_frames([b"too late"]))

    async with raw_socket(batches) as ws:
        await ws.write(client_frame(Opcode.BINARY, b"x"))
        frames = [await asyncio.wait_for(ws.frame(), 10) for _ in range(4)]
    assert [(f.opcode, f.data) for f in frames] == [
        (Opcode.BINARY, b"x"),
        (Opcode.BINARY, b""),
        (Opcode.BINARY, b"y" * 70_000),
        (Opcode.CLOSE, b"\x03\xe8"),
    ]
    assert written == [True, False]
