"""uvicorn's HTTP protocol with a deadline and a size cap on every request head.

uvicorn times out idle keep-alive connections and the relay times out bodies
(``limits.body_read_timeout_s``), but nothing bounds a request head that arrives a byte at a
time: a client could hold sockets open forever with unfinished heads. Here a head must be
complete within ``head_timeout_s`` of the connection (or of its first byte, for the next
request on a kept-alive connection) and within ``max_head_bytes``; otherwise the client gets
408 or 431 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["bounded_head_protocol"]


def _answer(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": 100, "message": message, "details": {}}}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class _BoundedHeadProtocol(HttpToolsProtocol):
    head_timeout_s = 10.0
    max_head_bytes = 16 * 1024

    _head_timer: asyncio.TimerHandle | None = None
    _head_pending = False
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counted = self._head_pending
        if counted:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_pending and not counted:
            self._head_bytes = len(data)  # the next request's head began in this chunk
        # Checked after parsing: a chunk that completes the head may carry body bytes too.
        if self._head_pending and self._head_bytes > self.max_head_bytes:
            self._refuse(431, "Request Header Fields Too Large", "request head too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._expect_head()

    def on_headers_complete(self) -> None:
        self._head_pending = False
        self._stop_head_timer()
        super().on_headers_complete()

    def _expect_head(self) -> None:
        if not self._head_pending:
            self._head_pending = True
            self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_overdue)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self._head_pending:
            self._refuse(408, "Request Timeout", "request head not received in time")

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._head_pending = False
        self._stop_head_timer()
        if not self.transport.is_closing():
            self.transport.write(_answer(status, reason, message))
            self.transport.close()


def bounded_head_protocol(head_timeout_s: float, max_head_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these bounds."""
    return type(
        "BoundedHeadProtocol",
        (_BoundedHeadProtocol,),
        {"head_timeout_s": head_timeout_s, "max_head_bytes": max_head_bytes},
    )
