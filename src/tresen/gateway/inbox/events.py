"""What happens in the inbox, told to everyone in the gateway process who listens.

The recorder tells of every message recorded (a customer's, or one the business sent through
the API or the inbox) and every status report; the inbox's own code tells of the team's
activity (notes, assignments, statuses, labels) and of agents typing. Listeners are the live
pages of signed-in agents and the automatic assignment. A listener that falls behind by more
than ``MAX_QUEUED`` events is told so once (``lagged``) and should reload what it shows; the
hub never blocks a publisher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tresen.gateway.recorder import Echo, Op, Received, Sent, StatusReport

__all__ = ["MAX_LISTENERS", "MAX_QUEUED", "Hub", "HubFull", "InboxEvent", "Listener"]

MAX_QUEUED = 1000
MAX_LISTENERS = 2000


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """``kind`` is one of: ``message`` (a message recorded: ``wamid``, ``direction`` "in" or
    "out"), ``status`` (``wamid``, ``status``, ``error``), ``activity`` (``kind``,
    ``agent_id``), ``conversation`` (what changed: ``assignee``, ``status``, …), ``typing``
    (``agent_id``), ``lagged`` (events were dropped for this listener)."""

    kind: str
    contact: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Listener:
    """One listener's queue of events; iterate it, and ``close()`` it when done."""

    def __init__(self, hub: Hub, limit: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[InboxEvent] = asyncio.Queue()
        self._limit = limit
        self._lagged = False

    def put(self, event: InboxEvent) -> None:
        if self._queue.qsize() >= self._limit:
            if not self._lagged:
                self._lagged = True
                self._queue.put_nowait(InboxEvent("lagged"))
            return
        self._queue.put_nowait(event)

    async def get(self) -> InboxEvent:
        event = await self._queue.get()
        if event.kind == "lagged":
            self._lagged = False
        return event

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[InboxEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[InboxEvent]:
        while True:
            yield await self.get()


class HubFull(Exception):
    """More listeners than ``MAX_LISTENERS``."""


class Hub:
    """Publish-subscribe inside one gateway process; call it from the event loop."""

    def __init__(self, *, max_listeners: int = MAX_LISTENERS, max_queued: int = MAX_QUEUED) -> None:
        self._listeners: set[Listener] = set()
        self._max_listeners = max_listeners
        self._max_queued = max_queued

    def subscribe(self) -> Listener:
        if len(self._listeners) >= self._max_listeners:
            raise HubFull
        listener = Listener(self, self._max_queued)
        self._listeners.add(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def publish(self, event: InboxEvent) -> None:
        for listener in list(self._listeners):
            listener.put(event)

    def recorded(self, ops: Sequence[Op]) -> None:
        """Tell of what the recorder committed (its ``on_recorded``)."""
        for op in ops:
            if isinstance(op, Received | Sent | Echo):
                message = op.message
                said = {"wamid": message.wamid, "direction": message.direction}
                self.publish(InboxEvent("message", message.contact, said))
            elif isinstance(op, StatusReport):
                status = {"wamid": op.wamid, "status": op.status, "error": op.error}
                self.publish(InboxEvent("status", None, status))
