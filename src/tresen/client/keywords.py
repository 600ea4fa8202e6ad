"""STOP and START typed to a business: the text goes out, and the consent change with it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import httpx

from tresen.client.api import RelayError
from tresen.client.consent import ConsentBook, keyword_action
from tresen.client.directory import Directory
from tresen.client.events import ConsentChanged, Event
from tresen.client.operator import Businesses
from tresen.client.sending import SentMessage
from tresen.wire.e2e import Text, decode_payload

__all__ = ["Keywords"]


class Keywords:
    def __init__(
        self,
        directory: Directory,
        businesses: Businesses,
        consent: ConsentBook,
        emit: Callable[[Event], None],
    ) -> None:
        self.directory = directory
        self.businesses = businesses
        self.consent = consent
        self.emit = emit

    async def after_text(self, account_id: str, text: str) -> ConsentChanged | None:
        """A STOP or START typed to a business becomes a signed revocation or opt-in."""
        action = keyword_action(text)
        if action is None:
            return None
        phone = await self.directory.phone_of(account_id)  # also learns if it is a business
        known = self.businesses.known(account_id)
        if known is None:
            return None
        name = known.display_name
        if name is None:
            with contextlib.suppress(RelayError, httpx.HTTPError):
                name = (await self.businesses.business(account_id)).display_name
        changed = await self.consent.keyword(account_id, name or phone or account_id, action)
        self.emit(changed)
        return changed

    async def after_flush(self, sent: SentMessage, inner: bytes) -> None:
        """The same for a text that waited in the outbox, once it went out."""
        with contextlib.suppress(ValueError):
            payload = decode_payload(inner)
            if isinstance(payload, Text):
                with contextlib.suppress(RelayError, httpx.HTTPError):
                    await self.after_text(sent.chat, payload.text)
