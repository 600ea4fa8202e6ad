"""What happens after a campaign's send: statuses (delivered, read, failed) by wamid and
replies, from what the gateway's recorder committed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from tresen.core.logging import get_logger
from tresen.gateway.campaigns.repo import CampaignRepo
from tresen.gateway.recorder import Op, Received, StatusReport

__all__ = ["Tracking"]

log = get_logger("tresen.gateway.campaigns")


class Tracking:
    def __init__(self, repo: CampaignRepo) -> None:
        self.repo = repo
        self._queue: asyncio.Queue[StatusReport | Received] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def recorded(self, ops: Sequence[Op]) -> None:
        """The recorder's ``on_recorded``: take note, apply in the background."""
        for op in ops:
            if isinstance(op, StatusReport | Received):
                self._queue.put_nowait(op)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drained(self) -> None:
        """Wait until every noted status and reply is applied."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            op = await self._queue.get()
            try:
                if isinstance(op, StatusReport):
                    await self.repo.status(
                        op.wamid, op.status, op.at_ms, op.pricing, op.error_code, op.error
                    )
                else:
                    await self.repo.replied(op.message.contact, op.message.created_ms)
            except Exception:
                log.exception("campaign outcome not recorded")
            finally:
                self._queue.task_done()
