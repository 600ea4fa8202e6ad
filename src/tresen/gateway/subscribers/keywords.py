"""Double opt-in by keyword: ``START NEWS`` asks, the customer's own ``START`` confirms, and
``STOP`` leaves every marketing list at once.

The customer's ``START`` is a signed marketing opt-in made by their own app (see
:mod:`tresen.client.consent`); the gateway subscribes them only once the relay holds it. A
utility list's confirmation is the business's to attest, with the keyword as evidence.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import httpx

from tresen.client.api import RelayError
from tresen.client.consent import START_KEYWORDS, keyword_action
from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.logging import get_logger
from tresen.crypto.consent import ConsentState
from tresen.gateway.store import StoredMessage
from tresen.gateway.subscribers import repo
from tresen.gateway.subscribers.consent import ConsentRelay, day_of, verdict
from tresen.gateway.subscribers.model import (
    CONFIRM_WITHIN_MS,
    Purpose,
    Source,
    State,
    Subscriber,
    SubscriberList,
)
from tresen.gateway.subscribers.sending import (
    CONFIRM_BUTTON,
    Messenger,
    confirmation_message,
    subscribed_message,
)

__all__ = ["CONFIRM_RETRY_S", "KeywordOptIn", "SubscribeRequest", "subscribe_request"]

log = get_logger(__name__)

CONFIRM_RETRY_S = (0.2, 0.5, 1.0, 2.0)
"""Waits between looks for the customer's signed opt-in after their START: their app submits
it just after the message went out, so the message may arrive first. A later opt-in is found
when the list is next reconciled."""

_SUBSCRIBE = re.compile(r"(START|ANMELDEN)\s+([A-Z0-9]{1,30})")


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    word: str
    """START or ANMELDEN: also what the customer is asked to reply."""
    keyword: str
    language: str


def subscribe_request(text: str) -> SubscribeRequest | None:
    """``START NEWS`` (any case, trimmed) as a request to join the list NEWS."""
    found = _SUBSCRIBE.fullmatch(text.strip().upper())
    if found is None:
        return None
    word, keyword = found.group(1), found.group(2)
    return SubscribeRequest(word, keyword, START_KEYWORDS[word])


class KeywordOptIn:
    """Takes a customer's keyword messages (the automation's ``subscriptions``)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        relay: ConsentRelay,
        messenger: Messenger,
        *,
        business_account_id: str,
        retry_s: Sequence[float] = CONFIRM_RETRY_S,
    ) -> None:
        self.db = db
        self.clock = clock
        self.relay = relay
        self.messenger = messenger
        self.business_account_id = business_account_id
        self.retry_s = tuple(retry_s)

    async def took(self, message: StoredMessage, recorded: Callable[[], Awaitable[bool]]) -> bool:
        """Whether a customer's ``message`` was a subscription keyword, handled here: then no
        greeting or bot answers it. ``recorded()`` waits for the message's record and says
        whether it committed (if not, the relay hands it over again and it is handled then)."""
        contact = message.contact
        if message.type == "interactive":
            list_id = _confirm_button(message)
            if list_id is None:
                return False
            if await recorded():
                await self._guarded(self._confirm(contact, "en", only=list_id))
            return True
        if message.type != "text":
            return False
        text = str(message.content.get("body", ""))
        asked = subscribe_request(text)
        if asked is not None:
            async with self.db.read() as conn:
                found = await repo.list_by_keyword(conn, asked.keyword)
            if found is None:
                return False  # not a list of this business: an ordinary message
            if await recorded():
                phone = await self.messenger.phone_of(contact)
                await self._guarded(self._ask(contact, phone, found, asked))
            return True
        action = keyword_action(text)
        if action is None:
            return False
        if not await recorded():
            return True
        if action.state is ConsentState.OPTED_OUT:
            await self._guarded(self._stop(contact, action.keyword))
        else:
            await self._guarded(self._confirm(contact, action.language))
        return True

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except (RelayError, httpx.HTTPError, OSError) as exc:
            log.warning("subscription keyword not handled", error=str(exc))

    async def _ask(
        self, contact: str, phone: str | None, found: SubscriberList, asked: SubscribeRequest
    ) -> None:
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            before = await repo.get_subscriber(conn, found.id, contact)
            if before is None or before.state is not State.SUBSCRIBED:
                await repo.put_subscriber(
                    conn,
                    Subscriber(
                        list_id=found.id,
                        account_id=contact,
                        phone=phone or (before.phone if before else ""),
                        state=State.PENDING,
                        source=before.source if before else Source.KEYWORD,
                        attributes=before.attributes if before else {},
                        evidence=before.evidence if before else None,
                        reason=f"asked with {asked.word} {asked.keyword} on {day_of(now)}",
                        created_ms=before.created_ms if before else now,
                        updated_ms=now,
                    ),
                )
        if before is not None and before.state is State.SUBSCRIBED:
            await self.messenger.send_message(contact, subscribed_message(found, asked.language))
            return
        log.info("subscriber asked to confirm", list_id=found.id, account_id=contact)
        await self.messenger.send_message(
            contact, confirmation_message(found, asked.language, asked.word)
        )

    async def _confirm(self, contact: str, language: str, *, only: int | None = None) -> None:
        """The customer's START (or a utility list's confirm button): every list they were
        asked about lately is confirmed, each by the rule of its purpose."""
        now = self.clock.now_ms()
        async with self.db.read() as conn:
            waiting = [
                (found, entry)
                for found, entry in await repo.lists_of(conn, contact, (State.PENDING,))
                if now - entry.updated_ms <= CONFIRM_WITHIN_MS and only in (None, found.id)
            ]
        marketing = [(f, e) for f, e in waiting if f.purpose is Purpose.MARKETING]
        confirmed = [f for f, _e in waiting if f.purpose is Purpose.UTILITY]
        for found in confirmed:
            keyword = found.keyword or found.name
            evidence = f"confirmed by keyword START {keyword} on {day_of(now)}"
            await self.relay.attest_consent(contact, evidence, now)
            await self._subscribe(found, contact, evidence, now)
        if marketing:
            for found in await self._signed(contact, marketing):
                await self._subscribe(found, contact, None, self.clock.now_ms())
                confirmed.append(found)
        for found in confirmed:
            await self.messenger.send_message(contact, subscribed_message(found, language))

    async def _signed(
        self, contact: str, waiting: list[tuple[SubscriberList, Subscriber]]
    ) -> list[SubscriberList]:
        """The marketing lists whose confirmation the customer's signed opt-in now gives."""
        for delay in (0.0, *self.retry_s):
            if delay:
                await asyncio.sleep(delay)
            records = await self.relay.consent_records(self.business_account_id, contact, history=1)
            now = self.clock.now_ms()
            ready = [
                found
                for found, entry in waiting
                if (v := verdict(entry, found.purpose, records, now)) is not None
                and v.state is State.SUBSCRIBED
            ]
            if ready:
                return ready
        log.info("no signed opt-in yet after START", account_id=contact)
        return []

    async def _subscribe(
        self, found: SubscriberList, contact: str, evidence: str | None, now: int
    ) -> None:
        reason = f"confirmed on {day_of(now)}"
        async with self.db.write() as conn:
            await repo.set_state(
                conn, found.id, contact, State.SUBSCRIBED, reason, now, only_from=(State.PENDING,)
            )
            if evidence is not None:
                entry = await repo.get_subscriber(conn, found.id, contact)
                if entry is not None:
                    await repo.put_subscriber(conn, replace(entry, evidence=evidence))
        log.info("subscribed", list_id=found.id, account_id=contact)

    async def _stop(self, contact: str, word: str) -> None:
        """STOP leaves every marketing list at once (utility lists stay, as the customer's
        app leaves utility consent as it is: an order's updates still come)."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            entries = await repo.lists_of(conn, contact, (State.PENDING, State.SUBSCRIBED))
            for found, _entry in entries:
                if found.purpose is Purpose.MARKETING:
                    await repo.set_state(
                        conn,
                        found.id,
                        contact,
                        State.UNSUBSCRIBED,
                        f"sent {word} on {day_of(now)}",
                        now,
                    )
        log.info("unsubscribed by keyword", account_id=contact, lists=len(entries))


def _confirm_button(message: StoredMessage) -> int | None:
    reply = message.content.get(str(message.content.get("type", "")), {})
    if not isinstance(reply, dict):
        return None
    pressed = str(reply.get("id", ""))
    if not pressed.startswith(CONFIRM_BUTTON):
        return None
    try:
        return int(pressed.removeprefix(CONFIRM_BUTTON))
    except ValueError:
        return None
