"""Delivery of the outbox: signed POSTs, at least once, in order per conversation.

Events travel in *lanes*, one per subscription and conversation. A lane sends its events one
after another, lowest id first; different lanes run in parallel, up to ``concurrency`` POSTs
in flight. An event is delivered on a 2xx answer; anything else (another status, a timeout, a
connection error) leaves it pending and its lane waits for the retry, after
``retry_initial_s * retry_factor ** (attempts - 1)`` seconds (at most ``retry_max_s``, ±10 %
so that many lanes do not retry in step). An event still failing ``give_up_s`` after it was
made becomes dead (a dead letter; ``Outbox.dead`` lists them, ``Outbox.replay`` sends them
again) and its lane goes on with the next event.

The database stays the record: each round writes the outcomes gathered since the last one in
one transaction, then reads the next due events in one query. An event whose outcome was not
written (the process stopped mid-POST) is sent again, with the same ``X-Tresen-Event-Id`` and
the same signed body, so receivers de-duplicate by that id.

Time comes from the injected clock; waiting is for the earliest retry (at most ``poll_s``) or
a :meth:`WebhookDispatcher.wake`. One dispatcher per database.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httpx

from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.gateway.metrics import GatewayMetrics
from tresen.gateway.settings import WebhookSettings
from tresen.gateway.webhooks import repo
from tresen.gateway.webhooks.aiohttp_transport import AiohttpTransport
from tresen.gateway.webhooks.outbox import REMOVED_ERROR, USER_AGENT, Outbox, Target
from tresen.gateway.webhooks.signature import HEADER, sign

__all__ = ["ATTEMPT_HEADER", "EVENT_ID_HEADER", "WebhookDispatcher"]

log = get_logger(__name__)

EVENT_ID_HEADER = "X-Tresen-Event-Id"
ATTEMPT_HEADER = "X-Tresen-Attempt"

# POSTs go straight to httpx transports, not through an AsyncClient: the client's request
# building and cookie jar cost about as much CPU as the HTTP exchange itself, and webhooks need
# neither. httpcore's connection pool does work proportional to its size on every request
# (quadratic in places), so each of the ``concurrency`` connections gets a transport of its
# own; a transport goes back to the receiver (origin) it last talked to, keeping its
# connection alive.

# An answer's body is read (so that the connection can be reused) up to this size; a longer
# one closes the connection instead.
_MAX_ANSWER_BYTES = 64 * 1024

_NO_ORIGIN: tuple[str, str, int | None] = ("", "", None)

# A load query that scanned a large backlog is not repeated sooner than its own duration
# later: however often the dispatcher is woken, the query takes at most half the time.
_LOAD_PACING = 1.0

_JITTER = 0.1

_PRUNE_EVERY_S = 3600.0

LaneKey = tuple[int, str]
Origin = tuple[str, str, int | None]


@dataclass(slots=True)
class _Event:
    id: int
    event_id: str
    subscription_id: int
    body: bytes
    attempts: int
    created_ms: int


@dataclass(slots=True)
class _Lane:
    key: LaneKey
    events: deque[_Event] = field(default_factory=deque)


class WebhookDispatcher:
    """Sends the outbox's events to their subscribers; ``start()`` it once, ``wake()`` it
    after each commit that queued events, ``close()`` it on shutdown."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        clock: Clock | None = None,
        settings: WebhookSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        keep_delivered_s: float | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        """``keep_delivered_s``: delete delivered events made longer ago than this, once an
        hour (None keeps them)."""
        self._outcomes = (metrics or GatewayMetrics()).webhook_deliveries
        self._outbox = outbox
        self._keep_delivered_s = keep_delivered_s
        self._pruner: asyncio.Task[None] | None = None
        self._db = outbox.db
        self._clock = clock or outbox.clock
        self._settings = settings or outbox.settings
        self._transport = transport
        self._give_up_ms = int(self._settings.give_up_s * 1000)
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._task: asyncio.Task[None] | None = None
        self._transports: list[httpx.AsyncBaseTransport] = []
        self._in_flight = asyncio.Semaphore(self._settings.concurrency)
        # Transports not in use, by the origin they last posted to ("" for unused ones).
        self._spare: dict[Origin, list[httpx.AsyncBaseTransport]] = {}
        self._urls: dict[str, httpx.URL] = {}
        t_s = self._settings.timeout_s
        self._timeouts = {"connect": t_s, "read": t_s, "write": t_s, "pool": t_s}
        self._targets: dict[int, Target] = {}
        self._lanes: dict[LaneKey, _Lane] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        # Events held in memory (queued, in flight, or with an outcome not yet written); the
        # load query leaves them out.
        self._known: set[int] = set()
        # Lanes whose first event failed: their later events wait until the retry is written.
        self._blocked: set[LaneKey] = set()
        self._delivered: list[int] = []
        self._retries: list[tuple[int, int, int, str, LaneKey]] = []
        self._dead: list[tuple[int, int, str]] = []
        self._retry_times: list[int] = []
        self._load_after = 0.0
        self._load_owed = False
        self._found_nothing = False
        self._failing: dict[int, str] = {}
        self._waiters: list[asyncio.Future[None]] = []

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start sending (inside the running event loop)."""
        if self._task is not None:
            raise RuntimeError("the dispatcher is running already")
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._transports = self._make_transports()
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")
        if self._keep_delivered_s is not None:
            self._pruner = asyncio.create_task(self._prune_forever(self._keep_delivered_s))

    def wake(self) -> None:
        """Look for due events now (cheap; call it after a commit that queued events). Safe
        from any thread."""
        if self._loop is None or threading.get_ident() == self._thread_id:
            self._wakeup.set()
        else:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def settle(self) -> None:
        """Return once every event that is due has been tried and its outcome written."""
        if self._task is None or self._task.done():
            raise RuntimeError("the dispatcher is not running")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wakeup.set()
        await waiter

    async def close(self) -> None:
        """Stop. POSTs in flight are abandoned (their events are sent again next start);
        outcomes already known are written."""
        for task in (self._pruner, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task in list(self._lane_tasks):
            task.cancel()
        await asyncio.gather(*self._lane_tasks, return_exceptions=True)
        try:
            await self._flush()
        except Exception as exc:
            log.warning("webhook outcomes not written at shutdown", error=repr(exc))
        if self._transport is None:
            for transport in self._transports:
                await transport.aclose()
        self._transports = []
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters = []

    def _make_transports(self) -> list[httpx.AsyncBaseTransport]:
        """The transports to close at the end; each POST takes one of ``concurrency`` slots."""
        concurrency = self._settings.concurrency
        shared = self._transport or AiohttpTransport(limit=concurrency)
        self._in_flight = asyncio.Semaphore(concurrency)
        self._spare = {_NO_ORIGIN: [shared] * concurrency}
        return [] if self._transport is not None else [shared]

    async def _take_transport(self, origin: Origin) -> httpx.AsyncBaseTransport:
        await self._in_flight.acquire()
        for key in (origin, _NO_ORIGIN):
            idle = self._spare.get(key)
            if idle:
                return idle.pop()
        # Every idle transport last talked to another receiver: take one over.
        for idle in self._spare.values():
            if idle:
                return idle.pop()
        raise AssertionError("more POSTs in flight than transports")

    def _give_back(self, origin: Origin, transport: httpx.AsyncBaseTransport) -> None:
        self._spare.setdefault(origin, []).append(transport)
        self._in_flight.release()

    async def _prune_forever(self, keep_s: float) -> None:
        while True:
            try:
                count = await self._outbox.prune(keep_s)
            except Exception as exc:
                log.warning("delivered webhook events not pruned", error=repr(exc))
            else:
                if count:
                    log.info("delivered webhook events pruned", count=count)
            await asyncio.sleep(_PRUNE_EVERY_S)

    # --- rounds ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            waiters, self._waiters = self._waiters, []
            failed = False
            try:
                await self._round()
            except Exception as exc:
                failed = True
                self._found_nothing = False
                log.warning("webhook dispatch round failed", error=repr(exc))
            if waiters:
                if self._idle():
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
                else:
                    self._waiters = waiters + self._waiters
            if failed:
                # The database is unwell: try again soon, but not in a tight loop.
                await asyncio.sleep(min(1.0, self._settings.poll_s))
                continue
            if self._wakeup.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._wait_s()):
                    await self._wakeup.wait()

    def _idle(self) -> bool:
        return self._found_nothing and not self._lanes and not self._known

    def _room(self) -> int:
        return self._settings.batch - len(self._known)

    def _wait_s(self) -> float:
        if self._load_owed:
            return max(0.0, self._load_after - time.monotonic())
        wait = self._settings.poll_s
        if self._room() > 0 and self._retry_times:
            wait = min(wait, max(0.0, (self._retry_times[0] - self._clock.now_ms()) / 1000))
        return wait

    async def _round(self) -> None:
        await self._flush()
        self._found_nothing = False
        self._load_owed = False
        room = self._room()
        if room <= 0:
            return  # lanes that finish wake the dispatcher
        if time.monotonic() < self._load_after:
            self._load_owed = True
            return
        self._targets = dict(await self._outbox.targets())
        now = self._clock.now_ms()
        started = time.perf_counter()
        async with self._db.read() as conn:
            rows = await repo.due_events(conn, now, exclude=self._known, limit=room)
        self._load_after = time.monotonic() + (time.perf_counter() - started) * _LOAD_PACING
        while self._retry_times and self._retry_times[0] <= now:
            heapq.heappop(self._retry_times)
        if not rows:
            self._found_nothing = True
            return
        if any(row.subscription_id not in self._targets for row in rows):
            # Made by another process (the CLI) since the last look, or removed.
            self._targets = dict(await self._outbox.targets(reload=True))
        for row in rows:
            key: LaneKey = (row.subscription_id, row.conversation)
            if key in self._blocked or row.id in self._known:
                continue
            self._known.add(row.id)
            event = _Event(
                row.id, row.event_id, row.subscription_id, row.body, row.attempts, row.created_ms
            )
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(key)
                task = asyncio.create_task(self._drive(lane))
                self._lane_tasks.add(task)
                task.add_done_callback(self._lane_tasks.discard)
            lane.events.append(event)

    async def _flush(self) -> None:
        """Write the outcomes gathered since the last round, in one transaction."""
        if not (self._delivered or self._retries or self._dead):
            return
        delivered, retries, dead = self._delivered, self._retries, self._dead
        self._delivered, self._retries, self._dead = [], [], []
        try:
            async with self._db.write() as conn:
                if delivered:
                    await repo.mark_delivered(conn, delivered, self._clock.now_ms())
                if retries:
                    await repo.mark_retry(conn, (r[:4] for r in retries))
                if dead:
                    await repo.mark_dead(conn, dead)
        except BaseException:
            self._delivered[:0] = delivered
            self._retries[:0] = retries
            self._dead[:0] = dead
            raise
        self._known.difference_update(delivered)
        self._known.difference_update(r[0] for r in retries)
        self._known.difference_update(d[0] for d in dead)
        self._blocked.difference_update(r[4] for r in retries)
        if dead:
            log.warning("webhook events given up (dead letters)", count=len(dead))

    # --- lanes -------------------------------------------------------------------------------

    async def _drive(self, lane: _Lane) -> None:
        try:
            while lane.events:
                event = lane.events[0]
                if not await self._attempt(lane, event):
                    break
                lane.events.popleft()
        except Exception as exc:
            # A bug, not a receiver's failure: the events stay pending and are sent again.
            log.error("webhook lane failed", error=repr(exc), subscription_id=lane.key[0])
            self._known.difference_update(e.id for e in lane.events)
            lane.events.clear()
        finally:
            if self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]
            self._wakeup.set()

    async def _attempt(self, lane: _Lane, event: _Event) -> bool:
        """POST one event; False when the lane must wait for its retry."""
        attempt = event.attempts + 1
        target = self._targets.get(event.subscription_id)
        if target is None:
            self._dead.append((event.id, event.attempts, REMOVED_ERROR))
            self._outcomes["dead"].inc()
            return True
        url = self._urls.get(target.url)
        if url is None:
            url = self._urls[target.url] = httpx.URL(target.url)
        origin = (url.scheme, url.host, url.port)
        transport = await self._take_transport(origin)
        try:
            error = await self._post(transport, url, target, event, attempt)
        finally:
            self._give_back(origin, transport)
        now = self._clock.now_ms()
        if error is None:
            self._delivered.append(event.id)
            self._outcomes["delivered"].inc()
            if self._failing.pop(target.id, None) is not None:
                log.info("webhook receiver answers again", subscription_id=target.id)
            return True
        if target.id not in self._failing:
            self._failing[target.id] = error
            log.warning(
                "webhook receiver failing; retrying with backoff",
                subscription_id=target.id,
                url=target.url,
                error=error,
            )
        give_up_at = event.created_ms + self._give_up_ms
        if now >= give_up_at:
            self._dead.append((event.id, attempt, error))
            self._outcomes["dead"].inc()
            return True
        self._outcomes["retry"].inc()
        retry_at = min(now + self._backoff_ms(attempt), give_up_at)
        self._retries.append((event.id, attempt, retry_at, error, lane.key))
        heapq.heappush(self._retry_times, retry_at)
        self._blocked.add(lane.key)
        # The lane's later events go back to the database; they follow after the retry.
        for later in list(lane.events)[1:]:
            self._known.discard(later.id)
        lane.events.clear()
        return False

    def _backoff_ms(self, attempt: int) -> int:
        s = self._settings
        try:
            base = s.retry_initial_s * s.retry_factor ** (attempt - 1)
        except OverflowError:
            base = math.inf
        delay = min(s.retry_max_s, base * random.uniform(1 - _JITTER, 1 + _JITTER))
        return max(1, round(delay * 1000))

    async def _post(
        self,
        transport: httpx.AsyncBaseTransport,
        url: httpx.URL,
        target: Target,
        event: _Event,
        attempt: int,
    ) -> str | None:
        """None when the receiver took the event (2xx), else why not. Never the body: it
        holds message plaintext."""
        if target.app_secret is None:
            return "the app secret does not open with this gateway's key; add the URL again"
        request = httpx.Request(
            "POST",
            url,
            content=event.body,
            headers=[
                ("User-Agent", USER_AGENT),
                ("Content-Type", "application/json"),
                (HEADER, sign(target.app_secret, event.body)),
                (EVENT_ID_HEADER, event.event_id),
                (ATTEMPT_HEADER, str(attempt)),
            ],
            extensions={"timeout": self._timeouts},
        )
        timeout_s = self._settings.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                response = await transport.handle_async_request(request)
                try:
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > _MAX_ANSWER_BYTES:
                            break
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return f"no answer within {timeout_s:g} s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"
