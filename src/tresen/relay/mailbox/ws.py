"""``/v1/ws``: the device's live connection (binary msgpack frames, see ``wire.relay``).

Three tasks serve one connection: a reader that handles the device's frames in order, a
delivery loop that sends the device's mailbox in ``seq`` order (the stored backlog first, then
whatever arrives), and a writer that owns the socket's send side.

Everything waiting for the writer is bounded (``max_outbox_frames``, ``max_outbox_bytes``).
Mailbox entries wait for room (they fill at most half the outbox, the rest is for answers), so
they never trip the bound; answers and pushes do not wait: a device that keeps sending frames
without reading the answers is disconnected with 4008 instead of growing the relay's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import msgspec
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tresen.core.errors import ErrorCode, TresenError
from tresen.core.http import WS_SUBPROTOCOL, bearer_token, subprotocol_token
from tresen.core.logging import get_logger
from tresen.relay.accounts.service import Principal
from tresen.relay.context import RelayContext
from tresen.relay.mailbox.hub import CLOSE_REPLACED
from tresen.relay.mailbox.payloads import failure_of, pricing_facts
from tresen.relay.mailbox.repo import EntryKind, MailboxEntry
from tresen.relay.mailbox.service import AcceptedResend, AcceptedSend
from tresen.wire import relay as wire

__all__ = ["DeviceConnection", "router"]

log = get_logger("tresen.relay.ws")

router = APIRouter()

CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_SLOW = 4008
# What a mailbox entry's frame adds to its payload (ids, names, tags), with room to spare.
ENTRY_OVERHEAD_BYTES = 1024


@router.websocket("/v1/ws")
async def device_socket(websocket: WebSocket) -> None:
    ctx: RelayContext = websocket.app.state.relay
    offered: list[str] = list(websocket.scope.get("subprotocols") or [])
    await websocket.accept(subprotocol=WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)
    token = bearer_token(websocket.headers.get("authorization")) or subprotocol_token(offered)
    try:
        principal = await ctx.accounts.authenticate(token)
    except TresenError as exc:
        await websocket.send_bytes(wire.encode(_error_frame(exc)))
        await websocket.close(CLOSE_UNAUTHORIZED, "unauthorized")
        return
    connection = DeviceConnection(websocket, ctx, principal)
    await connection.run()


def _error_frame(exc: TresenError, client_msg_id: str | None = None) -> wire.ErrorFrame:
    return wire.ErrorFrame(
        code=int(exc.code), message=exc.message, details=exc.details, client_msg_id=client_msg_id
    )


def entry_frame(entry: MailboxEntry) -> wire.ServerFrame:
    if entry.kind is EntryKind.MESSAGE:
        return wire.MessageFrame(
            id=entry.seq,
            message_id=entry.message_id,
            sender=entry.peer_account,
            sender_device=entry.peer_device,
            klass=wire.MessageClass(entry.klass),
            type=entry.olm_type,
            body=entry.payload,
            server_ms=entry.server_ms,
            template_ref=None if entry.template_id is None else str(entry.template_id),
        )
    if entry.kind is EntryKind.DELIVERED:
        return wire.Delivered(
            id=entry.seq,
            message_id=entry.message_id,
            recipient=entry.peer_account,
            recipient_device=entry.peer_device,
            server_ms=entry.server_ms,
            pricing=wire.decode_pricing(entry.payload),
        )
    if entry.kind is EntryKind.FAILED:
        failure = failure_of(entry.payload)
        return wire.Failed(
            id=entry.seq,
            message_id=entry.message_id,
            recipient=entry.peer_account,
            code=failure.code,
            reason=failure.reason,
            server_ms=entry.server_ms,
        )
    return wire.Read(
        id=entry.seq,
        message_id=entry.message_id,
        recipient=entry.peer_account,
        recipient_device=entry.peer_device,
        server_ms=entry.server_ms,
    )


def _decoded(raw: bytes) -> wire.ClientFrame:
    """``raw`` as a client frame, or error 100 that says what is wrong and where."""
    try:
        return wire.decode_client_frame(raw)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: first
        reason = str(exc)
        problem, _, where = reason.rpartition(" - at `")
        if not where:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER, "frame does not match the protocol", reason=reason
            ) from None
        field = where.rstrip("`")
        raise TresenError(
            ErrorCode.INVALID_PARAMETER,
            f"frame does not match the protocol: invalid {field}",
            reason=reason,
            field=field,
            problem=problem,
        ) from None
    except msgspec.DecodeError as exc:
        raise TresenError(
            ErrorCode.INVALID_PARAMETER, "frame is not valid msgpack", reason=str(exc)
        ) from None
    except RecursionError:
        # msgspec gives up on very deep nesting (in an unknown field, say) this way.
        raise TresenError(
            ErrorCode.INVALID_PARAMETER, "frame is nested too deeply", reason="recursion limit"
        ) from None


@dataclass(slots=True)
class _Reply:
    """The pending answer to one client frame."""

    result: Awaitable[wire.ServerFrame | None]
    client_msg_id: str | None = None
    acked: tuple[int, ...] = ()


def _discard(reply: _Reply) -> None:
    """Drop an answer that will never be sent (the connection is ending)."""
    if asyncio.iscoroutine(reply.result):
        reply.result.close()


async def _resolved(frame: wire.ServerFrame) -> wire.ServerFrame:
    return frame


async def _silent(done: Awaitable[object]) -> None:
    await done


async def _accepted(frame: wire.Send, done: Awaitable[AcceptedSend]) -> wire.Accepted:
    accepted = await done
    return wire.Accepted(
        client_msg_id=frame.client_msg_id,
        message_id=accepted.message_id,
        server_ms=accepted.server_ms,
        duplicate=accepted.duplicate,
        pricing=None if accepted.pricing is None else pricing_facts(accepted.pricing),
    )


async def _resent(frame: wire.Resend, done: Awaitable[AcceptedResend]) -> wire.Resent:
    resent = await done
    return wire.Resent(
        client_msg_id=frame.client_msg_id,
        message_id=resent.message_id,
        device_id=resent.device_id,
        resends=resent.resends,
    )


class DeviceConnection:
    def __init__(self, websocket: WebSocket, ctx: RelayContext, principal: Principal) -> None:
        self.websocket = websocket
        self.ctx = ctx
        self.principal = principal
        self.limits = ctx.settings.limits
        # Encoded frames waiting for the writer; a frame counts until it has been written.
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._outbox_ready = asyncio.Event()
        self._outbox_room = asyncio.Event()
        # Mailbox entries fill at most this much of the outbox; answers have the rest.
        self._entry_room = self.limits.max_outbox_bytes // 2
        self._entry_max = self.limits.max_ciphertext_bytes + ENTRY_OVERHEAD_BYTES
        self.too_slow = asyncio.Event()
        """Set when the device stopped reading and is being disconnected (close 4008)."""
        self.outbox_peak_bytes = 0
        """The most bytes the outbox has held (for tests and metrics)."""
        self._replies: asyncio.Queue[_Reply] = asyncio.Queue(self.limits.pipeline_per_connection)
        self._wake = asyncio.Event()
        self._window_open = asyncio.Event()
        self._window_open.set()
        self._inflight: set[int] = set()
        self._cursor = 0
        self._drained = False  # the stored backlog has been sent once (QueueEmpty)
        self._closed = False
        self.log = log.bind(account_id=principal.account_id, device_id=principal.device_id)

    # --- Hub's view ----------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def push(self, frame: wire.ServerFrame) -> None:
        if self._closed or self.too_slow.is_set():
            return
        data = wire.encode(frame)
        frames, size = len(self._outbox) + 1, self._outbox_bytes + len(data)
        if frames > self.limits.max_outbox_frames or size > self.limits.max_outbox_bytes:
            # The device does not read what it is sent: disconnect it (run() closes with
            # 4008) rather than hold more; whatever was not acked is sent again next time.
            self.log.warning(
                "device too slow; disconnecting",
                outbox_frames=len(self._outbox),
                outbox_bytes=self._outbox_bytes,
            )
            self.too_slow.set()
            return
        self._outbox.append(data)
        self._outbox_bytes = size
        self.outbox_peak_bytes = max(self.outbox_peak_bytes, size)
        self._outbox_ready.set()

    @property
    def outbox_bytes(self) -> int:
        """Bytes of encoded frames waiting to be written (or being written)."""
        return self._outbox_bytes

    def offer(self, after_seq: int, entries: list[MailboxEntry]) -> None:
        """Send just-committed entries straight away when nothing older is still unsent.

        ``after_seq`` is where the device's mailbox ended before these entries; if this
        connection has already sent up to there, the entries are next in line and need no
        database read. Otherwise the delivery loop fetches them in order.
        """
        fits = len(self._inflight) + len(entries) <= self.limits.inflight_per_connection
        size = sum(len(e.payload) + ENTRY_OVERHEAD_BYTES for e in entries)
        fits = fits and self._outbox_bytes + size <= self._entry_room
        if not (self._drained and after_seq <= self._cursor and fits):
            self.wake()
            return
        for entry in entries:
            self._send_entry(entry)

    def _send_entry(self, entry: MailboxEntry) -> None:
        # Entries can be both offered and fetched; each goes out once per connection.
        if entry.seq <= self._cursor:
            return
        self._cursor = entry.seq
        self._inflight.add(entry.seq)
        self.push(entry_frame(entry))

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._outbox_ready.set()
        with contextlib.suppress(Exception):
            if self.websocket.application_state is WebSocketState.CONNECTED:
                await self.websocket.close(code, reason)

    # --- life cycle ----------------------------------------------------------------------

    async def run(self) -> None:
        hub = self.ctx.hub
        previous = hub.register(self.principal.device_pk, self)
        if previous is not None:
            await previous.close(CLOSE_REPLACED, "connected elsewhere")
        self.log.info("device connected")
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self.ctx.accounts.touch(self.principal)
            count = await self.ctx.keys.one_time_key_count(self.principal.device_pk)
            self.push(
                wire.Hello(
                    account_id=self.principal.account_id,
                    device_id=self.principal.device_id,
                    server_ms=self.ctx.clock.now_ms(),
                    one_time_keys=count,
                )
            )
            if count < self.limits.one_time_keys_low:
                self.push(
                    wire.KeysLow(
                        one_time_keys=count, max_one_time_keys=self.limits.max_one_time_keys
                    )
                )
            tasks = [
                asyncio.create_task(self._write_loop()),
                asyncio.create_task(self._read_loop()),
                asyncio.create_task(self._reply_loop()),
                asyncio.create_task(self._delivery_loop()),
                asyncio.create_task(self.too_slow.wait()),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = None if task.cancelled() else task.exception()
                if exc is not None and not isinstance(exc, WebSocketDisconnect):
                    self.log.error("connection failed", error=repr(exc))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            hub.unregister(self.principal.device_pk, self)
            while not self._replies.empty():
                _discard(self._replies.get_nowait())
            if self.too_slow.is_set():
                await self.close(CLOSE_TOO_SLOW, "too slow")
            else:
                await self.close(1000, "bye")
            self._outbox.clear()
            self._outbox_bytes = 0
            self.log.info("device disconnected", unacked=len(self._inflight))

    async def _write_loop(self) -> None:
        while not self._closed:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            data = self._outbox[0]
            # Blocks while the socket's buffers are full; the frame counts until then.
            await self.websocket.send_bytes(data)
            self._outbox.popleft()
            self._outbox_bytes -= len(data)
            self._outbox_room.set()

    async def _read_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("bytes")
            if raw is None:
                reply = self._rejected(
                    TresenError(ErrorCode.INVALID_PARAMETER, "frames must be binary msgpack")
                )
            else:
                reply = self._dispatch(raw)
            # Bounded: a device that does not read its answers stops being read from.
            try:
                await self._replies.put(reply)
            except asyncio.CancelledError:
                _discard(reply)
                raise

    async def _reply_loop(self) -> None:
        """Answers go out in the order the frames came in, each once its write is durable."""
        while True:
            reply = await self._replies.get()
            try:
                frame = await reply.result
            except TresenError as exc:
                frame = _error_frame(exc, reply.client_msg_id)
            except Exception as exc:
                # A failure while handling one frame must not take the connection down.
                self.log.error("frame handling failed", error=repr(exc))
                frame = _error_frame(
                    TresenError(ErrorCode.INTERNAL, "internal error; try again"),
                    reply.client_msg_id,
                )
            if reply.acked:
                self._inflight.difference_update(reply.acked)
                self._window_open.set()
            if frame is not None:
                self.push(frame)

    def _rejected(self, exc: TresenError, client_msg_id: str | None = None) -> _Reply:
        return _Reply(_resolved(_error_frame(exc, client_msg_id)), client_msg_id)

    def _dispatch(self, raw: bytes) -> _Reply:
        """Decode one frame and start its work; never raises."""
        client_msg_id: str | None = None
        try:
            if len(raw) > self.limits.max_frame_bytes:
                raise TresenError(
                    ErrorCode.FRAME_TOO_LARGE,
                    "frame too large",
                    max_bytes=self.limits.max_frame_bytes,
                    size=len(raw),
                )
            try:
                frame = _decoded(raw)
            except TresenError:
                client_msg_id = wire.rejected_send_id(raw)
                raise
            if frame.v != wire.PROTOCOL_VERSION:
                raise TresenError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    "unsupported protocol version",
                    supported=[wire.PROTOCOL_VERSION],
                    got=frame.v,
                )
            mailbox = self.ctx.mailbox
            if isinstance(frame, wire.Send):
                client_msg_id = frame.client_msg_id
                return _Reply(
                    _accepted(frame, mailbox.submit_send(self.principal, frame)), client_msg_id
                )
            if isinstance(frame, wire.Resend):
                client_msg_id = frame.client_msg_id
                return _Reply(
                    _resent(frame, mailbox.submit_resend(self.principal, frame)), client_msg_id
                )
            if isinstance(frame, wire.Ack):
                done = mailbox.submit_ack(self.principal, frame.ids, frame.undecryptable)
                return _Reply(_silent(done), None, acked=tuple(frame.ids))
            if isinstance(frame, wire.Receipt):
                return _Reply(_silent(mailbox.submit_read(self.principal, frame.message_ids)))
            return _Reply(_resolved(wire.Pong(nonce=frame.nonce)))
        except TresenError as exc:
            return self._rejected(exc, client_msg_id)
        except Exception as exc:
            # Whatever a frame makes fail is answered to its sender alone.
            self.log.error("frame dispatch failed", error=repr(exc))
            return self._rejected(
                TresenError(ErrorCode.INTERNAL, "internal error; try again"), client_msg_id
            )

    async def _delivery_loop(self) -> None:
        window = self.limits.inflight_per_connection
        while True:
            while len(self._inflight) >= window:
                self._window_open.clear()
                await self._window_open.wait()
            # A device that reads slowly is sent no more than its socket takes.
            while self._outbox_bytes and self._entry_room - self._outbox_bytes < self._entry_max:
                self._outbox_room.clear()
                await self._outbox_room.wait()
            room = max(1, (self._entry_room - self._outbox_bytes) // self._entry_max)
            self._wake.clear()
            batch = await self.ctx.mailbox.pending(
                self.principal.device_pk,
                after_seq=self._cursor,
                limit=min(window - len(self._inflight), room),
            )
            for entry in batch:
                self._send_entry(entry)
            if batch:
                continue
            if not self._drained:
                self._drained = True
                self.push(wire.QueueEmpty())
            # Woken by this process's commits; the timeout also catches entries that another
            # relay process stored for this device.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.limits.delivery_poll_s)
