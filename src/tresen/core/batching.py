"""Group commit: many small writes from many connections share one transaction.

Callers submit operations and get futures; one worker takes whatever has queued up (up to
``max_batch``), hands the list to ``process`` and resolves each future with that operation's
result or exception. Operations are processed in submission order, so one connection's writes
keep their order even when it does not wait for each answer before submitting the next.

When ``process`` raises instead of answering per operation, the batch is split in halves and
each half is processed again, recursively: one operation that makes the whole transaction fail
(a value the database refuses, say) gets the exception alone, and the others are written. A
lone operation that still fails is answered with ``blame(operation, exception)``. ``process``
must therefore leave nothing behind when it raises (it runs in one transaction).

A lone operation waits :data:`LONE_TURNS` turns of the event loop before it is processed:
what arrives meanwhile joins its batch. At one message at a time that is the rule rather than
the exception: the commit that stores a message answers its sender and pushes it to the
recipient at once, so the sender's next message, its ack of the previous ``delivered`` and
the recipient's ack come back together, a turn or two apart, and share one transaction
instead of taking three (docs/benchmarks.md, "Seventh round"). A turn with nothing else to do
costs microseconds; under load the queue is never empty and nobody waits.

``observe(size, seconds)``, when given, hears of every batch taken from the queue: how many
operations it held and how long it took to answer them all (retries of halves included); the
relay's metrics use it, so this module needs to know nothing of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from tresen.core.logging import get_logger

__all__ = ["LONE_TURNS", "GroupCommitter"]

T = TypeVar("T")
R = TypeVar("R")

log = get_logger("tresen.batching")

LONE_TURNS = 3
"""Turns of the event loop a lone operation waits for others to join its batch."""


class GroupCommitter(Generic[T, R]):
    def __init__(
        self,
        process: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 256,
        max_queued: int = 50_000,
        blame: Callable[[T, Exception], BaseException] | None = None,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self._process = process
        self._blame = blame
        self._observe = observe
        self._max_batch = max_batch
        self.isolated_failures = 0
        """Operations that failed alone after their batch was split (for tests and metrics)."""
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue(max_queued)
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if self._worker is None:
            self._loop = asyncio.get_running_loop()
            self._worker = self._loop.create_task(self._run())

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        # Nothing queued was written; whoever still waits sees a cancellation.
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            future.cancel()

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; raises ``asyncio.QueueFull`` when the relay is overloaded."""
        if self._worker is None or self._loop is None:
            raise RuntimeError("GroupCommitter.start() was not called")
        future: asyncio.Future[R] = self._loop.create_future()
        self._queue.put_nowait((item, future))
        return future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._queue.empty():
                for _ in range(LONE_TURNS):
                    await asyncio.sleep(0)  # a turn of the event loop: see the module's doc
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            started = time.perf_counter()
            try:
                await self._apply(batch)
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
            if self._observe is not None:
                try:
                    self._observe(len(batch), time.perf_counter() - started)
                except Exception:
                    # Measuring must never stop the writes.
                    log.exception("batch observer failed")

    async def _apply(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results: Sequence[R | BaseException] = await self._process(items)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(batch) == 1:
                self._fail_alone(batch[0], exc)
                return
            # One operation can make the whole transaction fail: retry the halves, in order,
            # until the ones to blame are alone. The others cost one extra attempt per level.
            log.warning("batch failed; retrying it in halves", size=len(batch), error=_kind(exc))
            middle = len(batch) // 2
            await self._apply(batch[:middle])
            await self._apply(batch[middle:])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _fail_alone(self, entry: tuple[T, asyncio.Future[R]], exc: Exception) -> None:
        item, future = entry
        self.isolated_failures += 1
        error = exc if self._blame is None else self._blame(item, exc)
        log.warning(
            "operation failed alone",
            error=_kind(exc),
            answered=_kind(error),
            isolated_failures=self.isolated_failures,
        )
        if not future.done():
            future.set_exception(error)


def _kind(exc: BaseException) -> str:
    # Exception messages can quote the offending values (client data): only the type is logged.
    return type(exc).__qualname__
