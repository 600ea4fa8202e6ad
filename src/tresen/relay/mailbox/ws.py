"""``/v1/ws``: the device's live connection (binary msgpack frames, see ``wire.relay``).

The device's frames are read in order, and answered in that order once their writes are
durable; its mailbox is sent in ``seq`` order (the stored backlog first, then whatever
arrives); one writer owns the socket's send side. Each of these runs only while it has work,
so an idle connection costs little more than its socket (``DeviceConnection``).

Everything waiting for the writer is bounded (``max_outbox_frames``, ``max_outbox_bytes``).
Mailbox entries wait for room (they fill at most half the outbox, the rest is for answers), so
they never trip the bound; answers and pushes do not wait: a device that keeps sending frames
without reading the answers is disconnected with 4008 instead of growing the relay's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tresen.core.errors import ErrorCode, TresenError
from tresen.core.http import (
    WRITE_FRAMES_EXTENSION,
    WS_SUBPROTOCOL,
    bearer_token,
    subprotocol_token,
)
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


async def device_socket(websocket: WebSocket) -> None:
    ctx: RelayContext = websocket.app.state.relay
    offered: list[str] = list(websocket.scope.get("subprotocols") or [])
    await websocket.accept(subprotocol=WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)
    token = bearer_token(websocket.headers.get("authorization")) or subprotocol_token(offered)
    try:
        principal = await ctx.accounts.authenticate(token)
    except TresenError as exc:
        ctx.metrics.refused(exc, "ws")
        await websocket.send_bytes(wire.encode(_error_frame(exc)))
        await websocket.close(CLOSE_UNAUTHORIZED, "unauthorized")
        return
    connection = DeviceConnection(websocket, ctx, principal)
    await connection.run()


# A plain Starlette route: the socket needs no dependency injection, and FastAPI's would keep
# its exit stacks and frames for as long as the connection lasts.
router.add_websocket_route("/v1/ws", device_socket)


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
    """The pending answer to one client frame: what its work resolves to, and how that
    becomes the frame sent back (``answer``; none for acks and receipts)."""

    result: Awaitable[Any]
    client_msg_id: str | None = None
    acked: tuple[int, ...] = ()
    answer: Callable[[_Reply, Any], wire.ServerFrame | None] | None = None


def _discard(reply: _Reply) -> None:
    """Drop an answer that will never be sent (the connection is ending)."""
    if asyncio.iscoroutine(reply.result):
        reply.result.close()


async def _resolved(frame: wire.ServerFrame) -> wire.ServerFrame:
    return frame


async def _after(earlier: list[asyncio.Future[Any]], frame: wire.ServerFrame) -> wire.ServerFrame:
    """``frame`` once the work of ``earlier`` frames is done (their own replies report how)."""
    if earlier:
        await asyncio.wait(earlier)
    return frame


def _nothing(_reply: _Reply, _done: object) -> None:
    return None


def _accepted(reply: _Reply, accepted: AcceptedSend) -> wire.Accepted:
    assert reply.client_msg_id is not None
    return wire.Accepted(
        client_msg_id=reply.client_msg_id,
        message_id=accepted.message_id,
        server_ms=accepted.server_ms,
        duplicate=accepted.duplicate,
        pricing=None if accepted.pricing is None else pricing_facts(accepted.pricing),
    )


def _resent(reply: _Reply, resent: AcceptedResend) -> wire.Resent:
    assert reply.client_msg_id is not None
    return wire.Resent(
        client_msg_id=reply.client_msg_id,
        message_id=resent.message_id,
        device_id=resent.device_id,
        resends=resent.resends,
    )


class DeviceConnection:
    """One device's live connection.

    An idle connection runs no task of its own: ``run()`` reads the device's frames in the
    server's task for the socket, and the writer, the answers and the mailbox delivery each
    run in a task only while they have work, started by whatever gives them some. A relay
    node holds many idle devices this way (``bench/connections.py``).
    """

    __slots__ = (
        "_answerer",
        "_closed",
        "_closer",
        "_cursor",
        "_delivery",
        "_drained",
        "_entry_max",
        "_entry_room",
        "_inflight",
        "_loop",
        "_outbox",
        "_outbox_bytes",
        "_outbox_frames",
        "_replies",
        "_reply_room",
        "_reports",
        "_reports_answerer",
        "_room",
        "_started",
        "_woken",
        "_writer",
        "ctx",
        "limits",
        "metrics",
        "outbox_peak_bytes",
        "principal",
        "too_slow",
        "websocket",
    )

    def __init__(self, websocket: WebSocket, ctx: RelayContext, principal: Principal) -> None:
        self.websocket = websocket
        self.ctx = ctx
        self.principal = principal
        self.limits = ctx.settings.limits
        self.metrics = ctx.metrics
        self._loop = asyncio.get_running_loop()
        # Encoded frames waiting for the writer, which takes them a list at a time; a frame
        # counts until it has been written.
        self._outbox: list[bytes] = []
        self._outbox_frames = 0
        self._outbox_bytes = 0
        # Mailbox entries fill at most this much of the outbox; answers have the rest.
        self._entry_room = self.limits.max_outbox_bytes // 2
        self._entry_max = self.limits.max_ciphertext_bytes + ENTRY_OVERHEAD_BYTES
        self.too_slow = asyncio.Event()
        """Set when the device stopped reading and is being disconnected (close 4008)."""
        self.outbox_peak_bytes = 0
        """The most bytes the outbox has held (for tests and metrics)."""
        # Answers to the device's frames, in the order the frames came in (a short list:
        # at most pipeline_per_connection + 1).
        self._replies: list[_Reply] = []
        # Acks and read receipts have no answer frame: they wait in a line of their own, so
        # that a send's ``accepted`` never waits for an earlier ack. With two group commits an
        # ack can still be uncommitted when the send is stored and pushed to its recipient,
        # whose delivery receipt would then reach this device before the ``accepted``.
        self._reports: list[_Reply] = []
        self._reports_answerer: asyncio.Task[None] | None = None
        self._inflight: set[int] = set()
        self._cursor = 0
        self._drained = False  # the stored backlog has been sent once (QueueEmpty)
        self._woken = False  # new entries may be waiting since the last mailbox read
        self._started = False  # Hello is in the outbox: the writer and delivery may run
        self._closed = False
        # The tasks that run while there is work, and what a waiting one waits for.
        self._writer: asyncio.Task[None] | None = None
        self._answerer: asyncio.Task[None] | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._room: asyncio.Future[None] | None = None  # outbox or delivery window
        self._reply_room: asyncio.Future[None] | None = None  # pipeline_per_connection

    @property
    def log(self) -> structlog.stdlib.BoundLogger:
        """The relay's logger bound to this device (bound when something is logged)."""
        return log.bind(account_id=self.principal.account_id, device_id=self.principal.device_id)

    # --- Hub's view ----------------------------------------------------------------------

    def wake(self) -> None:
        self._woken = True
        if self._delivery is None and self._started and not self._closed:
            self._delivery = self._spawn(self._deliver())

    def push(self, frame: wire.ServerFrame) -> None:
        if self._closed or self.too_slow.is_set():
            return
        self.metrics.frame_sent(frame)
        data = wire.encode(frame)
        frames, size = self._outbox_frames + 1, self._outbox_bytes + len(data)
        if frames > self.limits.max_outbox_frames or size > self.limits.max_outbox_bytes:
            # The device does not read what it is sent: disconnect it with 4008 rather than
            # hold more; whatever was not acked is sent again next time.
            self.log.warning(
                "device too slow; disconnecting",
                outbox_frames=self._outbox_frames,
                outbox_bytes=self._outbox_bytes,
            )
            self.too_slow.set()
            self._closer = self._loop.create_task(self.close(CLOSE_TOO_SLOW, "too slow"))
            return
        self._outbox.append(data)
        self._outbox_frames = frames
        self._outbox_bytes = size
        self.outbox_peak_bytes = max(self.outbox_peak_bytes, size)
        if self._writer is None and self._started:
            self._writer = self._spawn(self._write())

    @property
    def outbox_bytes(self) -> int:
        """Bytes of encoded frames waiting to be written (or being written)."""
        return self._outbox_bytes

    def offer(self, after_seq: int, entries: list[MailboxEntry]) -> None:
        """Send just-committed entries straight away when nothing older is still unsent.

        Before these entries the device's mailbox held none after ``after_seq``; if this
        connection has already sent up to there, the entries are next in line and need no
        database read. Otherwise the delivery task fetches them in order.
        """
        fits = len(self._inflight) + len(entries) <= self.limits.inflight_per_connection
        size = sum(len(e.payload) + ENTRY_OVERHEAD_BYTES for e in entries)
        fits = fits and self._outbox_bytes + size <= self._entry_room
        if not (self._drained and after_seq <= self._cursor and fits):
            self.wake()
            return
        for entry in entries:
            self._send_entry(entry)

    @property
    def sent_up_to(self) -> int:
        return self._cursor

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
        # The writer may be waiting for a socket that is not read: it stops here.
        for task in (self._writer, self._delivery):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        _resolve(self._room)
        _resolve(self._reply_room)
        with contextlib.suppress(Exception):
            if self.websocket.application_state is WebSocketState.CONNECTED:
                await self.websocket.close(code, reason)

    # --- life cycle ----------------------------------------------------------------------

    async def run(self) -> None:
        hub = self.ctx.hub
        previous = hub.register(self.principal.device_pk, self)
        if previous is not None:
            await previous.close(CLOSE_REPLACED, "connected elsewhere")
        # At debug level: with timestamps, one line per connection and disconnection would
        # record when each person is online (the metrics count connections instead).
        self.log.debug("device connected")
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
            self._started = True
            if self._outbox and self._writer is None:
                self._writer = self._spawn(self._write())
            self.wake()  # the stored backlog
            await self._read()
        except WebSocketDisconnect:
            pass
        except Exception as exc:
            self.log.error("connection failed", error=repr(exc))
        finally:
            hub.unregister(self.principal.device_pk, self)
            running = (self._writer, self._answerer, self._reports_answerer, self._delivery)
            tasks = [t for t in running if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for reply in [*self._replies, *self._reports]:
                _discard(reply)
            self._replies.clear()
            self._reports.clear()
            if self.too_slow.is_set():
                await self.close(CLOSE_TOO_SLOW, "too slow")
            else:
                await self.close(1000, "bye")
            if self._closer is not None:
                await asyncio.gather(self._closer, return_exceptions=True)
            self._outbox.clear()
            self._outbox_frames = self._outbox_bytes = 0
            self.log.debug("device disconnected", unacked=len(self._inflight))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(work)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or self._closed:
            return
        if not isinstance(exc, WebSocketDisconnect):
            self.log.error("connection failed", error=repr(exc))
        # The connection cannot go on without this part: end it (run() then cleans up).
        self._closer = self._loop.create_task(self.close(1000, "bye"))

    async def _write(self) -> None:
        """Write the outbox until it is empty."""
        extensions = self.websocket.scope.get("extensions") or {}
        write_frames = extensions.get(WRITE_FRAMES_EXTENSION)
        try:
            while self._outbox and not self._closed:
                frames, self._outbox = self._outbox, []
                if write_frames is not None and write_frames(frames):
                    # All of them into the socket's buffer at once, in one system call.
                    self._outbox_frames -= len(frames)
                    self._outbox_bytes -= sum(map(len, frames))
                    _resolve(self._room)
                    continue
                for data in frames:
                    # Blocks while the socket's buffers are full; the frame counts until then.
                    await self.websocket.send_bytes(data)
                    self._outbox_frames -= 1
                    self._outbox_bytes -= len(data)
                    _resolve(self._room)
        finally:
            self._writer = None

    async def _read(self) -> None:
        """Handle the device's frames in order until it disconnects (or is disconnected)."""
        pipeline = self.limits.pipeline_per_connection
        while not self._closed:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect" or self._closed:
                return
            raw = message.get("bytes")
            if raw is None:
                self.metrics.frame_invalid()
                reply = self._rejected(
                    TresenError(ErrorCode.INVALID_PARAMETER, "frames must be binary msgpack")
                )
            else:
                reply = self._dispatch(raw)
            if reply.answer is _nothing:
                self._reports.append(reply)
                if self._reports_answerer is None:
                    self._reports_answerer = self._spawn(self._answer(self._reports))
            else:
                self._replies.append(reply)
                if self._answerer is None:
                    self._answerer = self._spawn(self._answer(self._replies))
            # Bounded: a device that does not read its answers stops being read from.
            while len(self._replies) + len(self._reports) > pipeline and not self._closed:
                self._reply_room = self._loop.create_future()
                await self._reply_room

    async def _answer(self, replies: list[_Reply]) -> None:
        """Answers go out in the order the frames came in, each once its write is durable
        (``replies``: the answers with frames, or the acks' and receipts' own line)."""
        try:
            while replies:
                reply = replies[0]
                try:
                    done = await reply.result
                    frame = done if reply.answer is None else reply.answer(reply, done)
                except TresenError as exc:
                    self.metrics.refused(exc, "ws")
                    frame = _error_frame(exc, reply.client_msg_id)
                except Exception as exc:
                    # A failure while handling one frame must not take the connection down.
                    self.log.error("frame handling failed", error=repr(exc))
                    internal = TresenError(ErrorCode.INTERNAL, "internal error; try again")
                    self.metrics.refused(internal, "ws")
                    frame = _error_frame(internal, reply.client_msg_id)
                del replies[0]
                _resolve(self._reply_room)
                if reply.acked:
                    self._inflight.difference_update(reply.acked)
                    _resolve(self._room)
                if frame is not None:
                    self.push(frame)
        finally:
            if replies is self._replies:
                self._answerer = None
            else:
                self._reports_answerer = None

    def _rejected(self, exc: TresenError, client_msg_id: str | None = None) -> _Reply:
        self.metrics.refused(exc, "ws")
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
                self.metrics.frame_invalid()
                client_msg_id = wire.rejected_send_id(raw)
                raise
            self.metrics.frame_received(frame)
            if frame.v != wire.PROTOCOL_VERSION:
                raise TresenError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    "unsupported protocol version",
                    supported=[wire.PROTOCOL_VERSION],
                    got=frame.v,
                )
            mailbox = self.ctx.mailbox
            # The mailbox's futures are answered as they resolve, in order (_answer).
            if isinstance(frame, wire.Send):
                client_msg_id = frame.client_msg_id
                sent = mailbox.submit_send(self.principal, frame)
                return _Reply(sent, client_msg_id, answer=_accepted)
            if isinstance(frame, wire.Resend):
                client_msg_id = frame.client_msg_id
                resent = mailbox.submit_resend(self.principal, frame)
                return _Reply(resent, client_msg_id, answer=_resent)
            if isinstance(frame, wire.Ack):
                done = mailbox.submit_ack(self.principal, frame.ids, frame.undecryptable)
                return _Reply(done, None, acked=tuple(frame.ids), answer=_nothing)
            if isinstance(frame, wire.Receipt):
                read = mailbox.submit_read(self.principal, frame.message_ids)
                return _Reply(read, answer=_nothing)
            # A pong follows everything before its ping, acks included: a device may use it
            # to learn that its acks are written.
            earlier = [r.result for r in self._reports if isinstance(r.result, asyncio.Future)]
            return _Reply(_after(earlier, wire.Pong(nonce=frame.nonce)))
        except TresenError as exc:
            return self._rejected(exc, client_msg_id)
        except Exception as exc:
            # Whatever a frame makes fail is answered to its sender alone.
            self.log.error("frame dispatch failed", error=repr(exc))
            return self._rejected(
                TresenError(ErrorCode.INTERNAL, "internal error; try again"), client_msg_id
            )

    async def _deliver(self) -> None:
        """Send the mailbox in ``seq`` order until nothing more is waiting."""
        try:
            window = self.limits.inflight_per_connection
            while not self._closed:
                # A device that reads slowly is sent no more than its socket takes.
                full = len(self._inflight) >= window or (
                    self._outbox_bytes and self._entry_room - self._outbox_bytes < self._entry_max
                )
                if full:
                    self._room = self._loop.create_future()
                    await self._room
                    continue
                room = max(1, (self._entry_room - self._outbox_bytes) // self._entry_max)
                self._woken = False
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
                if not self._woken:
                    # Woken again by this node's commits (Hub.offer, Hub.wake) and by the
                    # mailbox's watch for entries that another relay process stored.
                    return
        finally:
            self._delivery = None


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
