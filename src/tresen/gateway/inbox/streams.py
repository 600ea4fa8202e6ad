"""The live pages' event streams (Server-Sent Events): what a stream says, and how many there are.

Every open inbox page of a signed-in agent holds one stream. It tells what changed, by kind
and ids only (``message`` with its wamid, ``status``, ``conversation``, ``activity``,
``typing``), never what a message or note says: the page fetches the rendered fragments it
needs itself, as its agent and in its agent's language. A stream re-checks (and so touches)
its session every ``session_check_s``, which keeps its agent online for automatic assignment,
and ends once the session has (signed out everywhere, disabled, expired); it sends a comment
every ``heartbeat_s`` so that proxies keep an idle stream open, and ends after ``max_s``
(the browser reconnects), so that no connection is held for ever.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from tresen.gateway.inbox.agents import Agents
from tresen.gateway.inbox.events import Hub, HubFull, InboxEvent, Listener

__all__ = ["RETRY_MS", "StreamLimits", "Streams", "sse"]

log = structlog.get_logger(__name__)

RETRY_MS = 2000
"""The browser's first wait before it reconnects a dropped stream."""

# What a stream may tell of an event: kinds, ids and states, never a message's words.
_SHOWN = frozenset(
    {"wamid", "direction", "status", "error", "kind", "agent_id", "assignee", "name"}
)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    per_agent: int = 8
    total: int = 1000
    heartbeat_s: float = 15
    session_check_s: float = 30
    max_s: float = 3600


def sse(kind: str, data: dict[str, Any]) -> str:
    """One Server-Sent Event."""
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _said(event: InboxEvent) -> str:
    data: dict[str, Any] = {"contact": event.contact}
    data.update((k, v) for k, v in event.data.items() if k in _SHOWN)
    return sse(event.kind, data)


class Streams:
    """The open streams, counted per agent and in all."""

    def __init__(self, hub: Hub, agents: Agents, limits: StreamLimits | None = None) -> None:
        self.hub = hub
        self.agents = agents
        self.limits = limits or StreamLimits()
        self._open: dict[int, int] = {}

    @property
    def open(self) -> int:
        return sum(self._open.values())

    @property
    def agents_connected(self) -> int:
        """Agents with at least one live page open."""
        return len(self._open)

    def room_for(self, agent_id: int) -> bool:
        """Whether ``agent_id`` may open another stream now."""
        return self._open.get(agent_id, 0) < self.limits.per_agent and self.open < self.limits.total

    def _take(self, agent_id: int) -> Listener | None:
        if not self.room_for(agent_id):
            return None
        try:
            listener = self.hub.subscribe()
        except HubFull:
            return None
        self._open[agent_id] = self._open.get(agent_id, 0) + 1
        return listener

    def _give_back(self, agent_id: int, listener: Listener) -> None:
        listener.close()
        left = self._open.get(agent_id, 0) - 1
        if left > 0:
            self._open[agent_id] = left
        else:
            self._open.pop(agent_id, None)

    async def follow(self, agent_id: int, session_token: str) -> AsyncIterator[str]:
        """The stream of one page of ``agent_id``, signed in with ``session_token``.

        The stream's place is taken when iteration starts (a response that is never sent
        holds none), so a caller checks :meth:`room_for` first and a stream that finds no
        room after all says ``full`` and ends."""
        listener = self._take(agent_id)
        if listener is None:
            yield sse("full", {})
            return
        limits = self.limits
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[InboxEvent] | None = None
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n"
            now = loop.time()
            beat_at, check_at, end_at = (
                now + limits.heartbeat_s,
                now + limits.session_check_s,
                now + limits.max_s,
            )
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(listener.get())
                wait = max(0.0, min(beat_at, check_at, end_at) - loop.time())
                done, _ = await asyncio.wait({pending}, timeout=wait)
                if done:
                    event = pending.result()
                    pending = None
                    yield _said(event)
                now = loop.time()
                if now >= end_at:
                    return
                if now >= check_at:
                    if await self.agents.session(session_token) is None:
                        yield sse("signed-out", {})
                        return
                    check_at = loop.time() + limits.session_check_s
                if now >= beat_at:
                    yield ": beat\n\n"
                    beat_at = now + limits.heartbeat_s
        except Exception:
            # The page reconnects; a broken stream must not take the gateway with it.
            log.exception("inbox stream ended", agent_id=agent_id)
        finally:
            if pending is not None:
                pending.cancel()
            self._give_back(agent_id, listener)
