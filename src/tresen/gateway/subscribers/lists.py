"""Subscriber lists as the business manages them, and keeping subscribers in step with the
relay's consent records (a customer who withdraws consent in their app is no longer
subscribed, whatever the list says)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.client.api import RelayError
from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.logging import get_logger
from tresen.gateway.subscribers import repo
from tresen.gateway.subscribers.consent import ConsentRelay, verdict
from tresen.gateway.subscribers.links import deep_link, qr_png, qr_svg
from tresen.gateway.subscribers.model import (
    ListInvalid,
    ListNotFound,
    ListSpec,
    State,
    Subscriber,
    SubscriberList,
    check_spec,
)

__all__ = ["RECONCILE_AT_ONCE", "SubscriberLists"]

log = get_logger(__name__)

RECONCILE_AT_ONCE = 8
ATTRIBUTE_SAMPLE = 5_000
"""Subscribers read for the attribute names a list holds (a form's suggestions)."""
"""Consent records read from the relay at once while a list is reconciled."""


class SubscriberLists:
    """Create, edit and delete lists; read their subscribers, reconciled with the relay."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        relay: ConsentRelay,
        *,
        business_account_id: str,
        relay_url: str,
    ) -> None:
        self.db = db
        self.clock = clock
        self.relay = relay
        self.business_account_id = business_account_id
        self.relay_url = relay_url

    # --- lists -------------------------------------------------------------------------------

    async def create_list(self, spec: ListSpec) -> SubscriberList:
        spec = check_spec(spec)
        async with self.db.write() as conn:
            await self._free(conn, spec, None)
            list_id = await repo.insert_list(conn, spec, self.clock.now_ms())
            found = await repo.get_list(conn, list_id)
        assert found is not None
        return found

    async def edit_list(self, list_id: int, spec: ListSpec) -> SubscriberList:
        spec = check_spec(spec)
        async with self.db.write() as conn:
            await self._free(conn, spec, list_id)
            if not await repo.update_list(conn, list_id, spec):
                raise ListNotFound(list_id)
            found = await repo.get_list(conn, list_id)
        assert found is not None
        return found

    async def delete_list(self, list_id: int) -> None:
        """The list and its subscribers (the customers' consent at the relay stays)."""
        async with self.db.write() as conn:
            if not await repo.delete_list(conn, list_id):
                raise ListNotFound(list_id)

    @staticmethod
    async def _free(conn: AsyncConnection, spec: ListSpec, list_id: int | None) -> None:
        taken = await repo.name_taken(conn, spec, list_id)
        if taken is not None:
            if taken == "keyword":
                raise ListInvalid(
                    "keyword", "keyword_taken", "another list already has this keyword"
                )
            raise ListInvalid(taken, "name_taken", "another list already has this name")

    async def lists(self) -> list[SubscriberList]:
        """Every list with its subscribers counted by state."""
        async with self.db.read() as conn:
            found = await repo.get_lists(conn)
            counted = await repo.counts(conn, [f.id for f in found])
        return [_with_counts(f, counted[f.id]) for f in found]

    async def get_list(self, list_id: int) -> SubscriberList:
        async with self.db.read() as conn:
            found = await repo.get_list(conn, list_id)
            if found is None:
                raise ListNotFound(list_id)
            counted = await repo.counts(conn, [list_id])
        return _with_counts(found, counted[list_id])

    # --- subscribers -------------------------------------------------------------------------

    async def subscribers(
        self, list_id: int, *, states: Sequence[State] = (), reconcile: bool = True
    ) -> list[Subscriber]:
        """A list's subscribers, oldest first; reconciled with the relay's consent records
        first (``reconcile``), so that the list shows who may really be written to."""
        if reconcile:
            await self.reconcile(list_id)
        async with self.db.read() as conn:
            if await repo.get_list(conn, list_id) is None:
                raise ListNotFound(list_id)
            return await repo.subscribers_of(conn, list_id, states=states)

    async def attribute_names(self, list_ids: Sequence[int], *, most: int) -> list[str]:
        """The attribute names the lists' subscribers hold (of the newest few thousand), for
        a form that offers them; at most ``most``, sorted."""
        async with self.db.read() as conn:
            return await repo.attribute_names(conn, list_ids, rows=ATTRIBUTE_SAMPLE, most=most)

    async def remove_subscriber(self, list_id: int, account_id: str) -> bool:
        """Take a customer off a list (their consent at the relay stays as it is)."""
        async with self.db.write() as conn:
            return await repo.delete_subscriber(conn, list_id, account_id)

    # --- consent -----------------------------------------------------------------------------

    async def reconcile(self, list_id: int) -> int:
        """Move the list's pending and subscribed customers to the state the relay's consent
        records give them; how many moved. A customer whose records cannot be read now
        keeps their state (the campaign engine asks again with :meth:`still_subscribed`)."""
        async with self.db.read() as conn:
            found = await repo.get_list(conn, list_id)
            if found is None:
                raise ListNotFound(list_id)
            entries = await repo.subscribers_of(
                conn, list_id, states=(State.PENDING, State.SUBSCRIBED)
            )
        slots = asyncio.Semaphore(RECONCILE_AT_ONCE)

        async def one(entry: Subscriber) -> bool:
            async with slots:
                return await self._check(found, entry) is not None

        moved = await asyncio.gather(*(one(e) for e in entries))
        return sum(moved)

    async def still_subscribed(self, list_id: int, account_id: str) -> bool:
        """Whether the customer may get the list's messages now: subscribed here, and the
        relay still holds their consent (else they are unsubscribed here, with the reason).
        For the campaign engine, just before it sends; ``False`` when the relay cannot say."""
        async with self.db.read() as conn:
            found = await repo.get_list(conn, list_id)
            entry = await repo.get_subscriber(conn, list_id, account_id)
        if found is None or entry is None or entry.state is not State.SUBSCRIBED:
            return False
        try:
            moved = await self._read_and_check(found, entry)
        except (RelayError, httpx.HTTPError, OSError):
            return False
        return moved is None or moved is State.SUBSCRIBED

    async def _check(self, found: SubscriberList, entry: Subscriber) -> State | None:
        try:
            return await self._read_and_check(found, entry)
        except (RelayError, httpx.HTTPError, OSError) as exc:
            log.warning("consent records not read", account_id=entry.account_id, error=str(exc))
            return None

    async def _read_and_check(self, found: SubscriberList, entry: Subscriber) -> State | None:
        records = await self.relay.consent_records(
            self.business_account_id, entry.account_id, history=1
        )
        now = self.clock.now_ms()
        change = verdict(entry, found.purpose, records, now)
        if change is None:
            return None
        async with self.db.write() as conn:
            moved = await repo.set_state(
                conn,
                found.id,
                entry.account_id,
                change.state,
                change.reason,
                now,
                only_from=(entry.state,),
            )
        if moved:
            log.info(
                "subscriber reconciled",
                list_id=found.id,
                account_id=entry.account_id,
                state=str(change.state),
            )
        return change.state if moved else None

    # --- link and QR code --------------------------------------------------------------------

    async def link(self, list_id: int) -> str:
        """The deep link that opens the chat with ``START <KEYWORD>`` typed in."""
        found = await self.get_list(list_id)
        if found.keyword is None:
            raise ListInvalid(
                "keyword", "no_keyword", "a list needs a keyword for a link or a QR code"
            )
        return deep_link(self.relay_url, self.business_account_id, found.keyword)

    async def qr_code(self, list_id: int, kind: str) -> bytes:
        """The link's QR code, ``kind`` ``svg`` or ``png``."""
        link = await self.link(list_id)
        if kind == "svg":
            return qr_svg(link)
        if kind == "png":
            return qr_png(link)
        raise ValueError(f"a QR code is svg or png, not {kind}")


def _with_counts(found: SubscriberList, counts: dict[State, int]) -> SubscriberList:
    return replace(found, counts=counts)
