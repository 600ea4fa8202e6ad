"""The WebSocket connection to the relay: kept open, read, acknowledged.

``Connection`` reconnects with jittered back-off until closed, hands every frame it reads to
the receiving side (``Receiving``), acknowledges what was handled, and matches the relay's
answers to the requests this device sent over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Protocol

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection

from tresen.client.api import RelayError
from tresen.client.events import Connected, Disconnected, Drained, Event
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.wire import relay as wire

__all__ = ["MAX_ACKS_PER_FRAME", "Connection", "NotConnected", "Receiving", "Report"]

log = get_logger("tresen.client")

MAX_ACKS_PER_FRAME = 256
"""Within the relay's ``max_acks_per_frame`` (1,024 by default)."""
RECONNECT_MAX_S = 30.0
ANSWER_TIMEOUT_S = 30.0

# The relay's reports on a message this account sent.
Report = wire.Delivered | wire.Read | wire.Failed


class NotConnected(ConnectionError):
    """There is no live connection to send over (or it closed before the answer came)."""


class Receiving(Protocol):
    async def on_message(self, frame: wire.MessageFrame) -> bool:
        """Handle (store) a message; False if this device could not decrypt it."""

    def on_report(self, frame: Report) -> None: ...

    def on_keys(self, one_time_keys: int) -> None:
        """The relay holds this many one-time keys of this device."""

    def on_connected(self) -> None:
        """The backlog the relay held at connection time is handled."""

    def after_handled(self, acknowledge: Callable[[], None]) -> None:
        """Call ``acknowledge`` once the application is done with the envelope just handled
        (at once, unless it confirms events: see :mod:`tresen.client.confirmations`)."""


class Connection:
    def __init__(
        self,
        relay_url: str,
        token: Callable[[], str | None],
        clock: Clock,
        emit: Callable[[Event], None],
        receiving: Receiving,
    ) -> None:
        self.ws_url = relay_url.replace("http", "ws", 1) + "/v1/ws"
        self._token = token
        self.clock = clock
        self.emit = emit
        self.receiving = receiving
        self.ws: ClientConnection | None = None
        self.relay_offset_ms = 0
        """The relay's clock minus ours, as of the last hello."""
        self.drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._pending: dict[str, asyncio.Future[wire.ServerFrame]] = {}
        # Answers read whose request has not resumed yet (see ``answers_taken``).
        self._untaken: set[asyncio.Future[wire.ServerFrame]] = set()
        self._taken = asyncio.Event()
        self._acks: list[int] = []
        self._unreadable: list[int] = []
        self._ack_tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        await self.flush_acks()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.ws is not None:
            await self.ws.close()

    async def request(self, frame: wire.Send | wire.Resend) -> wire.ServerFrame:
        """Send ``frame`` and wait for the relay's answer naming its ``client_msg_id``.

        Raises ``NotConnected`` without a live connection or when it closes (or the answer
        does not come) before the answer; ``RelayError`` for an error frame.
        """
        ws = self.ws
        if ws is None:
            raise NotConnected("no connection to the relay")
        future: asyncio.Future[wire.ServerFrame] = asyncio.get_running_loop().create_future()
        self._pending[frame.client_msg_id] = future
        try:
            await ws.send(wire.encode(frame))
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                return await asyncio.shield(future)
        except (websockets.ConnectionClosed, TimeoutError):
            raise NotConnected("the connection closed before the relay answered") from None
        finally:
            self._pending.pop(frame.client_msg_id, None)
            self._untaken.discard(future)
            if not self._untaken:
                self._taken.set()

    async def answers_taken(self) -> None:
        """Return once every answer read so far has reached the request that waits for it.

        Reading goes on while a request's task waits to resume, so a frame read after an
        answer can be handled before the sender has kept what the answer names (a customer's
        delivery receipt for a message whose ``accepted`` came just before it). Such a frame
        waits here; the request's task records the message before it next yields.
        """
        while self._untaken:
            self._taken.clear()
            await self._taken.wait()

    async def _run(self) -> None:
        backoff = 0.5
        while not self._closing:
            reason = "closed"
            try:
                async with websockets.connect(
                    self.ws_url,
                    additional_headers={"Authorization": f"Bearer {self._token()}"},
                    compression=None,
                    max_size=None,
                ) as ws:
                    self.ws = ws
                    backoff = 0.5
                    self.emit(Connected())
                    async for raw in ws:
                        if isinstance(raw, bytes):
                            await self.on_frame(ws, raw)
                    reason = f"closed by relay ({ws.close_code})"
                    if ws.close_code in (4401, 4409, 1008):
                        self._closing = True  # replaced, removed or logged out: stop
            except (OSError, websockets.WebSocketException) as exc:
                reason = type(exc).__name__
            finally:
                self.ws = None
                self.drained.clear()
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(websockets.ConnectionClosed(None, None))
            self.emit(Disconnected(reason))
            if self._closing:
                return
            await asyncio.sleep(backoff * (0.5 + secrets.randbelow(1000) / 1000))
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def on_frame(self, ws: ClientConnection, raw: bytes) -> None:
        try:
            frame = wire.decode_server_frame(raw)
        except (msgspec.DecodeError, RecursionError) as exc:
            # A frame of a newer protocol revision, or garbage: skipped, so one frame the
            # client cannot read never takes its connection (and every later message) down.
            log.warning("relay frame not understood", error=type(exc).__name__, size=len(raw))
            return
        if isinstance(frame, wire.MessageFrame):
            readable = await self.receiving.on_message(frame)
            self._ack_when_handled(ws, frame.id, readable)
        elif isinstance(frame, wire.Delivered | wire.Read | wire.Failed):
            self.receiving.on_report(frame)
            self._ack_when_handled(ws, frame.id, True)
        elif isinstance(frame, wire.Accepted | wire.Resent):
            self._answer(frame.client_msg_id, frame)
        elif isinstance(frame, wire.ErrorFrame):
            if not self._answer(frame.client_msg_id or "", frame):
                log.warning("relay error", code=frame.code, message=frame.message)
        elif isinstance(frame, wire.Hello | wire.KeysLow):
            if isinstance(frame, wire.Hello):
                self.relay_offset_ms = frame.server_ms - self.clock.now_ms()
            self.receiving.on_keys(frame.one_time_keys)
        elif isinstance(frame, wire.QueueEmpty):
            self.drained.set()
            self.emit(Drained())
            self.receiving.on_connected()

    def _answer(self, client_msg_id: str, frame: wire.ServerFrame) -> bool:
        future = self._pending.get(client_msg_id)
        if future is None or future.done():
            return False
        if isinstance(frame, wire.ErrorFrame):
            future.set_exception(RelayError(frame.code, frame.message, frame.details))
        else:
            future.set_result(frame)
        self._untaken.add(future)
        return True

    def _ack_when_handled(self, ws: ClientConnection, envelope_id: int, readable: bool) -> None:
        def acknowledge() -> None:
            # On a connection that closed meanwhile the relay hands the envelope over again.
            if self.ws is ws:
                self._ack(ws, envelope_id, readable)

        self.receiving.after_handled(acknowledge)

    def _ack(self, ws: ClientConnection, envelope_id: int, readable: bool) -> None:
        """Acknowledge a stored envelope. The acks of every frame handled in one turn of the
        event loop go out together in one ``ack`` frame (fewer frames, and fewer operations
        in the relay's group commit, under load); an ack lost with the connection only means
        the relay sends the envelope again, which is recognized as stored."""
        self._acks.append(envelope_id)
        if not readable:
            self._unreadable.append(envelope_id)
        if len(self._acks) == 1:
            asyncio.get_running_loop().call_soon(self._flush_acks, ws)

    async def flush_acks(self) -> None:
        """Send the acks that wait for the end of this turn of the event loop now, and wait
        (up to 5 s) until every ack is written (``close`` does this first)."""
        if self._acks and self.ws is not None:
            self._flush_acks(self.ws)
        if self._ack_tasks:
            await asyncio.wait(set(self._ack_tasks), timeout=5)

    def _flush_acks(self, ws: ClientConnection) -> None:
        ids, self._acks = self._acks, []
        unreadable, self._unreadable = set(self._unreadable), []
        for start in range(0, len(ids), MAX_ACKS_PER_FRAME):
            chunk = ids[start : start + MAX_ACKS_PER_FRAME]
            failed = [i for i in chunk if i in unreadable]
            frame = wire.encode(wire.Ack(ids=chunk, undecryptable=failed))
            task = asyncio.get_running_loop().create_task(self._send_quietly(ws, frame))
            self._ack_tasks.add(task)
            task.add_done_callback(self._ack_tasks.discard)

    async def _send_quietly(self, ws: ClientConnection, frame: bytes) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(frame)
