"""Work a server repeats on its own clock (retention passes), and work done in chunks.

Both the relay and the gateway apply periods this way: one task wakes when the next run is
due on the injected clock (a test moves that clock instead of waiting), a failed run is logged
and the next one comes at its time, and a long backlog is worked off in bounded transactions
that let other work in between.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from tresen.core.clock import Clock
from tresen.core.logging import get_logger

__all__ = ["Periodic", "repeat_in_chunks"]

log = get_logger("tresen.core.periodic")


class Periodic:
    """Runs ``job`` every ``interval_s`` of ``clock``, the first time one interval after it is
    made, in a task of its own once started."""

    def __init__(
        self, name: str, clock: Clock, interval_s: float, job: Callable[[], Awaitable[object]]
    ) -> None:
        self.name = name
        self.clock = clock
        self._interval_ms = int(interval_s * 1000)
        self._job = job
        self._next_ms = clock.now_ms() + self._interval_ms
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_periodically())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def take_due(self) -> bool:
        """Whether a run is due now; if so, the next one is due an interval from now."""
        now = self.clock.now_ms()
        if now < self._next_ms:
            return False
        self._next_ms = now + self._interval_ms
        return True

    async def _run_periodically(self) -> None:
        while True:
            left_ms = self._next_ms - self.clock.now_ms()
            await asyncio.sleep(max(min(left_ms, self._interval_ms), 1) / 1000)
            if not self.take_due():
                continue
            try:
                await self._job()
            except Exception:
                log.exception("periodic work failed", work=self.name)


async def repeat_in_chunks(chunk: Callable[[int], Awaitable[int]], size: int) -> int:
    """Call ``chunk(size)`` until it does fewer than ``size`` rows; the rows done in all."""
    total = 0
    while True:
        count = await chunk(size)
        total += count
        if count < size:
            return total
        await asyncio.sleep(0)  # a long backlog lets other work in between chunks
