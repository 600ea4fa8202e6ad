"""A client that does not read, or sends slowly, holds a socket, never the relay's memory."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

from support import Device, MakeRelay, RunningRelay, receiving_device, send_frame

from tresen.relay.mailbox.ws import CLOSE_TOO_SLOW, DeviceConnection
from tresen.wire import relay as wire

OUTBOX_BYTES = 262_144
CIPHERTEXT = b"\x01" * 60_000


class NonReadingSocket:
    """A WebSocket client that completes the handshake, then sends and never reads."""

    def __init__(
        self, sock: socket.socket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.sock = sock
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, relay: RunningRelay, device: Device) -> NonReadingSocket:
        host, port = relay.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /v1/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {device.token}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(sock, reader, writer)

    async def send(self, frame: wire.Frame) -> None:
        payload = wire.encode(frame)
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x82, 0x80 | len(payload)]) + mask + masked)
        await self.writer.drain()

    async def close_code(self) -> tuple[int, str]:
        """Read everything the relay sent, up to its close frame: the code and reason.

        The relay waits a few seconds for the client to answer its close frame, then cuts the
        connection, and what it had not yet sent is lost: the frames ahead of the close must
        be read faster than the 4 KB receive buffer lets a busy machine read them.
        """
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.reader._limit = 1 << 20  # the stream stops taking data at twice this
        buffer = b""
        while True:
            chunk = await asyncio.wait_for(self.reader.read(65_536), 30)
            buffer += chunk
            while len(buffer) >= 2:
                opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
                if length == 126:
                    length, start = int.from_bytes(buffer[2:4]), 4
                elif length == 127:
                    length, start = int.from_bytes(buffer[2:10]), 10
                if len(buffer) < start + length:
                    break
                payload, buffer = buffer[start : start + length], buffer[start + length :]
                if opcode == 0x8:
                    self.writer.close()
                    return int.from_bytes(payload[:2]), payload[2:].decode()
            if not chunk:
                raise AssertionError("the connection ended without a close frame")


async def test_a_device_that_does_not_read_is_disconnected_as_too_slow(
    make_relay: MakeRelay,
) -> None:
    async with make_relay(limits={"max_outbox_bytes": OUTBOX_BYTES}) as relay:
        alice = await relay.register()
        bob = await receiving_device(relay)
        a = await relay.connect(alice)
        b = await NonReadingSocket.connect(relay, bob)
        await b.send(wire.Ping(nonce=1))  # answered once Bob's connection is set up
        principal = await relay.ctx.accounts.authenticate(bob.token)

        # 6 MB for Bob, far more than his socket's buffers and the relay's outbox hold: the
        # relay sends him what his socket takes, and keeps the rest in the database.
        for i in range(100):
            await a.send(send_frame(bob, f"m{i}", {1: CIPHERTEXT}))
        for _ in range(100):
            await a.expect(wire.Accepted)
        connection = relay.ctx.hub.connection(principal.device_pk)
        assert isinstance(connection, DeviceConnection)
        assert connection.outbox_bytes <= OUTBOX_BYTES // 2
        assert not connection.too_slow.is_set()

        # Bob pipelines pings and reads no pong: the answers pile up until he is cut off
        # (then the relay stops reading him too).
        async def ping() -> None:
            for nonce in range(100_000):
                await b.send(wire.Ping(nonce=nonce))

        pinging = asyncio.create_task(ping())
        await asyncio.wait_for(connection.too_slow.wait(), 30)
        pinging.cancel()

        assert await b.close_code() == (CLOSE_TOO_SLOW, "too slow")
        assert 0 < connection.outbox_peak_bytes <= OUTBOX_BYTES
        assert connection.outbox_bytes == 0
        assert not relay.ctx.hub.is_connected(principal.device_pk)

        # Nothing is lost: a new connection gets every message that was not acked.
        again = await relay.connect(bob)
        ids = set()
        while len(ids) < 100:
            message = await again.expect(wire.MessageFrame)
            ids.add(message.message_id)
            await again.send(wire.Ack(ids=[message.id]))
        await again.close()
        await a.close()


async def test_a_body_that_does_not_arrive_in_time_is_answered_408(make_relay: MakeRelay) -> None:
    async with make_relay(limits={"body_read_timeout_s": 0.2}) as relay:
        device = await relay.register()
        host, port = relay.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/messages/ack HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {device.token}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"ids": [1'
        )
        await writer.drain()
        # The client sends nothing more; the relay answers and closes the connection.
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert json.loads(body)["error"]["code"] == 100

        # A body that arrives in time is served as before.
        r = await relay.http.post("/v1/messages/ack", json={"ids": [1]}, headers=device.auth)
        assert r.status_code == 200, r.text
