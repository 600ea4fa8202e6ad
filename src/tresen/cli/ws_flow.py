"""uvicorn's sans-I/O WebSocket protocol, with the relay's flow control and a short path for
the frames a device sends and receives all the time.

**Flow control.** uvicorn's protocol stops reading a WebSocket's socket as soon as one received
frame waits for the application, and reads again when the application has taken it: a device
that sends three frames per message (its send and two acks) costs six ``epoll_ctl`` system
calls and the transport's bookkeeping around them, ~10 % of the relay's CPU per message
(docs/benchmarks.md). Here reading stops once :data:`QUEUED_FRAMES` frames wait, and goes on
when the application has taken them all. A device that sends faster than the relay takes its
frames is stopped as before, a few frames later; the relay's own bound on frames in progress
(``limits.pipeline_per_connection``) is unchanged. uvicorn checks its ``read_paused`` flag
before it pauses a socket and before it resumes one; the flag reads as set while fewer than
:data:`QUEUED_FRAMES` frames wait, so uvicorn neither pauses the socket nor resumes it (which
asyncio does without a system call when it is not paused).

**Binary frames.** Almost every frame on a device's socket is one whole binary message: a
client's masked frame in, an unmasked one out. uvicorn hands each to the ``websockets``
library's protocol, whose parser is a chain of generators and whose writer builds a frame
object per message: together ~15 % of the relay's CPU per message at full load. On an open
connection :class:`FramesProtocol` reads such a frame's header itself, unmasks the payload
with ``websockets``' own C routine and queues it for the application as uvicorn does; it
writes an outgoing binary message as its two-to-ten-byte header and the payload. Every other
frame (ping, pong, close, text, a fragment) goes to ``websockets`` whole, so its parser
always starts at a frame's first byte; anything it must refuse (an unmasked or oversized
frame, reserved bits, a fragmented message) hands the connection to ``websockets`` for good,
which fails it as before. The application sees the same ASGI messages either way. It may
also write several binary messages in one system call through the scope's
``WRITE_FRAMES_EXTENSION``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State
from websockets.speedups import apply_mask

from tresen.core.http import WRITE_FRAMES_EXTENSION

__all__ = ["QUEUED_FRAMES", "FramesProtocol", "QueuedFramesProtocol"]

QUEUED_FRAMES = 8
"""Received frames that may wait for the application before the socket is no longer read."""

_FIN_BINARY = 0x82
_OPCODE_BINARY = 0x2
_CONTROL_OPCODES = frozenset({0x8, 0x9, 0xA})  # close, ping, pong
_KNOWN_OPCODES = _CONTROL_OPCODES | {0x1, _OPCODE_BINARY}  # and text
_MAX_CONTROL_PAYLOAD = 125
_LENGTH_16 = struct.Struct("!H")
_LENGTH_64 = struct.Struct("!Q")
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


class QueuedFramesProtocol(WebSocketsSansIOProtocol):
    _paused = False

    @property
    def read_paused(self) -> bool:
        return self._paused or self.queue.qsize() < QUEUED_FRAMES

    @read_paused.setter
    def read_paused(self, value: bool) -> None:
        self._paused = value


class FramesProtocol(QueuedFramesProtocol):
    """:class:`QueuedFramesProtocol` that reads and writes whole binary frames itself."""

    _requested = False
    """The handshake's request has arrived (the first data on the connection)."""
    _passed_on = False
    """Everything received goes to ``websockets`` from now on."""
    _pending: bytearray | None = None
    """The start of a frame whose end has not arrived yet."""

    def data_received(self, data: bytes) -> None:
        if self._passed_on:
            super().data_received(data)
            return
        if not self._requested:
            # uvicorn passes the upgrade request on alone; were anything to follow it, the
            # frames after it would be websockets' to read.
            self._requested = True
            self._passed_on = not data.endswith(b"\r\n\r\n")
            super().data_received(data)
            return
        if self._pending is not None:
            # Appended to in place: a large frame arriving in many pieces is copied once.
            self._pending += data
            self._read_frames(self._pending)
        else:
            self._read_frames(data)

    def _frames_are_ours(self) -> bool:
        return (
            self.handshake_complete
            and not self.close_sent
            and self.conn.state is State.OPEN
            and not self.conn.extensions
        )

    def _read_frames(self, data: bytes | bytearray) -> None:
        start = 0
        end = len(data)
        while start < end:
            if not self._frames_are_ours():
                self._pass_on(data[start:])
                return
            if end - start < 2:
                break
            head1 = data[start]
            head2 = data[start + 1]
            length = head2 & 0x7F
            at = start + 2
            if length == 126:
                if end - at < 2:
                    break
                (length,) = _LENGTH_16.unpack_from(data, at)
                at += 2
            elif length == 127:
                if end - at < 8:
                    break
                (length,) = _LENGTH_64.unpack_from(data, at)
                at += 8
            opcode = head1 & 0x0F
            whole = head1 & 0x80
            if not head2 & 0x80 or head1 & 0x70 or not whole:
                # Unmasked, reserved bits, or a fragment: websockets refuses or joins it.
                self._pass_on(data[start:])
                return
            limit = (
                _MAX_CONTROL_PAYLOAD if opcode in _CONTROL_OPCODES else self.conn.max_message_size
            )
            if opcode not in _KNOWN_OPCODES or (limit is not None and length > limit):
                # A reserved opcode, or more than may be held: never buffered here, websockets
                # fails it.
                self._pass_on(data[start:])
                return
            payload_at = at + 4
            frame_end = payload_at + length
            if frame_end > end:
                break
            if opcode != _OPCODE_BINARY:
                # A text or control frame, whole: websockets reads it and stays at a frame's
                # start; uvicorn answers it as always.
                super().data_received(bytes(data[start:frame_end]))
                start = frame_end
                continue
            self.frames = [apply_mask(data[payload_at:frame_end], data[at:payload_at])]
            self.curr_msg_data_type = "bytes"
            self.send_receive_event_to_app()
            start = frame_end
        if start == end:
            self._pending = None
        elif start or data is not self._pending:
            self._pending = bytearray(data[start:])

    def _pass_on(self, data: bytes | bytearray) -> None:
        self._passed_on = True
        self._pending = None
        if data:
            super().data_received(data)  # type: ignore[arg-type]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the application's task starts with this scope, not yet run
            scope["extensions"][WRITE_FRAMES_EXTENSION] = self.write_frames

    def _writes_now(self) -> bool:
        return (
            self.writable.is_set()
            and not self.disconnected
            and self.initial_response is None
            and self._frames_are_ours()
        )

    def write_frames(self, messages: Sequence[bytes]) -> bool:
        """Write ``messages`` as binary frames in one go (see ``WRITE_FRAMES_EXTENSION``)."""
        if not self._writes_now():
            return False
        parts: list[bytes] = []
        for data in messages:
            parts.append(_binary_header(len(data)))
            parts.append(data)
        self.transport.write(b"".join(parts))
        return True

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.send" and self._writes_now():
            data = message.get("bytes")
            if data is not None:
                self.transport.write(_binary_header(len(data)) + data)
                return
        await super().send(message)


def _binary_header(length: int) -> bytes:
    """The header of a whole, unmasked binary frame of ``length`` bytes."""
    if length < 126:
        return bytes((_FIN_BINARY, length))
    if length < 65536:
        return _HEADER_16.pack(_FIN_BINARY, 126, length)
    return _HEADER_64.pack(_FIN_BINARY, 127, length)
