"""Who is replying: an agent typing an answer, told to the team and to the customer.

While an agent types in a thread's reply box, the page says so every few seconds. The team's
other pages show "Anna is replying…" (a ``typing`` event), and the customer sees the
business typing: the Cloud API's typing indicator, which goes with marking the customer's
latest message read (as ``POST …/messages`` with ``typing_indicator`` does), end to end
encrypted and shown by the customer's app for up to 25 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import select

from tresen.core.clock import Clock
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.cloudapi.requests import ReadRequest
from tresen.gateway.inbox.agents import Agent
from tresen.gateway.inbox.events import Hub, InboxEvent
from tresen.gateway.schema import messages
from tresen.gateway.service import Gateway

__all__ = ["AGENT_EVERY_MS", "CUSTOMER_EVERY_MS", "Typing", "customer_typing"]

log = structlog.get_logger(__name__)

AGENT_EVERY_MS = 2_000
"""An agent's typing is told to the team at most this often (the page says so every ~4 s)."""
CUSTOMER_EVERY_MS = 20_000
"""And to the customer at most this often per conversation: the customer's app shows the
indicator for 25 s, so more often would only cost the relay."""
MAX_REMEMBERED = 10_000

TellCustomer = Callable[[str], Awaitable[None]]


def customer_typing(gateway: Gateway) -> TellCustomer:
    """Show the customer of a conversation that the business is typing, through the gateway's
    own read-receipt path; quietly nothing when it cannot (no message from them yet, the
    window closed, the relay out of reach)."""

    async def tell(contact: str) -> None:
        async with gateway.store.db.read() as conn:
            latest = (
                await conn.execute(
                    select(messages.c.wamid, messages.c.relay_message_id)
                    .where(messages.c.contact == contact, messages.c.direction == "in")
                    .order_by(messages.c.created_ms.desc())
                    .limit(1)
                )
            ).first()
        if latest is None or not latest.relay_message_id:
            return
        request = ReadRequest(
            message_id=str(latest.wamid),
            relay_message_id=str(latest.relay_message_id),
            typing=True,
        )
        try:
            async with asyncio.timeout(5):
                await gateway.mark_read(request)
        except (GraphError, TimeoutError) as exc:
            log.info("typing indicator not shown", contact=contact, reason=str(exc))
        except Exception:
            # Only a courtesy: the agent's typing must never fail because of it.
            log.exception("typing indicator failed", contact=contact)

    return tell


class Typing:
    """Tells of agents typing, at most every ``agent_every_ms`` per agent (to the team) and
    ``customer_every_ms`` per conversation (to the customer)."""

    def __init__(
        self,
        hub: Hub,
        clock: Clock,
        *,
        tell_customer: TellCustomer,
        agent_every_ms: int = AGENT_EVERY_MS,
        customer_every_ms: int = CUSTOMER_EVERY_MS,
    ) -> None:
        self.hub = hub
        self.clock = clock
        self.tell_customer = tell_customer
        self.agent_every_ms = agent_every_ms
        self.customer_every_ms = customer_every_ms
        self._agent_told: dict[int, int] = {}
        self._customer_told: dict[str, int] = {}

    async def typing(self, agent: Agent, contact: str) -> bool:
        """``agent`` is typing an answer in ``contact``'s conversation; whether it was told
        (``False``: told a moment ago)."""
        now = self.clock.now_ms()
        if now - self._agent_told.get(agent.id, now - self.agent_every_ms) < self.agent_every_ms:
            return False
        self._agent_told[agent.id] = now
        self.hub.publish(
            InboxEvent("typing", contact, {"agent_id": agent.id, "name": agent.display_name})
        )
        told = self._customer_told.get(contact, now - self.customer_every_ms)
        if now - told >= self.customer_every_ms:
            self._customer_told[contact] = now
            self._forget_before(now - self.customer_every_ms)
            await self.tell_customer(contact)
        return True

    def _forget_before(self, ms: int) -> None:
        if len(self._customer_told) > MAX_REMEMBERED:
            self._customer_told = {c: t for c, t in self._customer_told.items() if t > ms}
        if len(self._agent_told) > MAX_REMEMBERED:
            self._agent_told = {a: t for a, t in self._agent_told.items() if t > ms}
