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

``observe(size, seconds)``, when given, hears of every batch taken from the queue: how many
operations it held and how long it took to answer them all (retries of halves included); the
relay's metrics use it, so this module needs to know nothing of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from tresen.core.logging import get_logger

__all__ = ["GroupCommitter", "InOrder"]

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")

log = get_logger("tresen.batching")


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


class InOrder(Generic[K, T, R]):
    """One key's operations (a device's, say) reach several group commits in the order they
    were submitted.

    A group commit keeps the order of what it is given, but two of them, each with its own
    transactions, do not keep it between them. An operation for another group commit than
    the key's unfinished ones waits until those are answered, and so does every later one
    of the key; operations of other keys are not held up. ``enqueue(lane, item)`` hands an
    operation to a group commit (``lane``) and returns its future; what it raises for an
    operation that waited is that operation's answer.
    """

    def __init__(self, enqueue: Callable[[GroupCommitter[T, R], T], asyncio.Future[R]]) -> None:
        self._enqueue = enqueue
        self._keys: dict[K, _KeyOrder[T, R]] = {}

    def __len__(self) -> int:
        """Keys with unfinished operations (for tests)."""
        return len(self._keys)

    def submit(self, key: K, lane: GroupCommitter[T, R], item: T) -> asyncio.Future[R]:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyOrder(lane)
        if not state.waiting and (state.unfinished == 0 or state.lane is lane):
            try:
                future = self._enqueue(lane, item)
            except BaseException:
                self._forget_if_idle(key, state)
                raise
            self._started(key, state, lane, future)
            return future
        outer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        state.waiting.append((lane, item, outer))
        return outer

    def _started(
        self,
        key: K,
        state: _KeyOrder[T, R],
        lane: GroupCommitter[T, R],
        future: asyncio.Future[R],
    ) -> None:
        state.lane = lane
        state.unfinished += 1
        future.add_done_callback(lambda _: self._finished(key, state))

    def _finished(self, key: K, state: _KeyOrder[T, R]) -> None:
        state.unfinished -= 1
        if state.unfinished == 0:
            # The next run of waiting operations that share a group commit goes on together.
            while state.waiting and (state.unfinished == 0 or state.waiting[0][0] is state.lane):
                lane, item, outer = state.waiting.popleft()
                if outer.done():
                    continue  # its caller gave up waiting
                try:
                    future = self._enqueue(lane, item)
                except Exception as exc:
                    outer.set_exception(exc)
                    continue
                _forward(future, outer)
                self._started(key, state, lane, future)
        self._forget_if_idle(key, state)

    def _forget_if_idle(self, key: K, state: _KeyOrder[T, R]) -> None:
        if state.unfinished == 0 and not state.waiting and self._keys.get(key) is state:
            del self._keys[key]


class _KeyOrder(Generic[T, R]):
    """Where one key's operations are: the group commit its unfinished ones went to, how
    many, and those waiting for them to be answered."""

    __slots__ = ("lane", "unfinished", "waiting")

    def __init__(self, lane: GroupCommitter[T, R]) -> None:
        self.lane = lane
        self.unfinished = 0
        self.waiting: deque[tuple[GroupCommitter[T, R], T, asyncio.Future[R]]] = deque()


def _forward(source: asyncio.Future[R], target: asyncio.Future[R]) -> None:
    """Answer ``target`` as ``source`` is answered."""

    def copy(_: asyncio.Future[R]) -> None:
        if target.done():
            return
        if source.cancelled():
            target.cancel()
        elif (exc := source.exception()) is not None:
            target.set_exception(exc)
        else:
            target.set_result(source.result())

    source.add_done_callback(copy)
