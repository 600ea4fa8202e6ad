"""The subscriber lists of one gateway, built from its parts (for the composition root)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.gateway.service import Gateway
from tresen.gateway.store import StoredMessage
from tresen.gateway.subscribers.importing import SubscriberImport
from tresen.gateway.subscribers.keywords import KeywordOptIn
from tresen.gateway.subscribers.lists import SubscriberLists
from tresen.gateway.subscribers.segments import Segments
from tresen.gateway.subscribers.sending import GatewayMessenger

__all__ = ["Subscribers", "build_subscribers"]


@dataclass(frozen=True, slots=True)
class Subscribers:
    lists: SubscriberLists
    keywords: KeywordOptIn
    imports: SubscriberImport
    segments: Segments

    async def took(self, message: StoredMessage, recorded: Callable[[], Awaitable[bool]]) -> bool:
        """The automation's hook: whether a customer's message was a subscription keyword
        (handled here, so that no greeting or bot answers it)."""
        return await self.keywords.took(message, recorded)


def build_subscribers(db: Database, clock: Clock, gateway: Gateway) -> Subscribers:
    relay = gateway.client
    business = gateway.account_id
    return Subscribers(
        lists=SubscriberLists(
            db, clock, relay, business_account_id=business, relay_url=gateway.settings.relay_url
        ),
        keywords=KeywordOptIn(
            db, clock, relay, GatewayMessenger(gateway), business_account_id=business
        ),
        imports=SubscriberImport(db, clock, relay, business_account_id=business),
        segments=Segments(db),
    )
