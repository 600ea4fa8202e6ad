"""The business's approved message templates, for the composer's picker and the thread.

The list comes from the relay (``Gateway.all_templates``), kept for a short while so that a
page does not ask the relay each time; a template's operator-signed form comes through the
gateway's device, which verifies it as every customer's client does.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tresen.client.api import RelayError
from tresen.client.templates import TemplateRejected
from tresen.core.clock import Clock
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.service import Gateway
from tresen.wire.templates import SignedTemplateBody, TemplateStatus

__all__ = ["FRESH_MS", "Approved", "MessageTemplates"]

FRESH_MS = 30_000


@dataclass(frozen=True, slots=True)
class Approved:
    id: int
    name: str
    language: str
    category: str


class MessageTemplates:
    def __init__(self, gateway: Gateway, clock: Clock) -> None:
        self.gateway = gateway
        self.clock = clock
        self._approved: list[Approved] = []
        self._read_ms: int | None = None

    async def approved(self) -> list[Approved]:
        """The templates the business may send now, by name and language."""
        now = self.clock.now_ms()
        if self._read_ms is None or now - self._read_ms >= FRESH_MS:
            try:
                every = await self.gateway.all_templates()
            except (RelayError, httpx.HTTPError, OSError) as exc:
                raise Refused("the templates cannot be fetched now; try again") from exc
            self._approved = sorted(
                (
                    Approved(int(t["id"]), str(t["name"]), str(t["language"]), str(t["category"]))
                    for t in every
                    if t.get("status") == TemplateStatus.APPROVED
                ),
                key=lambda a: (a.name, a.language),
            )
            self._read_ms = now
        return list(self._approved)

    async def get(self, template_id: int) -> tuple[Approved, SignedTemplateBody]:
        """The approved template ``template_id`` and its operator-signed form."""
        found = next((a for a in await self.approved() if a.id == template_id), None)
        if found is None:
            raise Refused("there is no such approved template")
        try:
            signed = await self.gateway.client.templates.template(template_id)
        except (TemplateRejected, RelayError, httpx.HTTPError, OSError) as exc:
            raise Refused("the template cannot be fetched now; try again") from exc
        return found, signed

    async def signed(self, name: str, language: str) -> SignedTemplateBody | None:
        try:
            found = next(
                (a for a in await self.approved() if (a.name, a.language) == (name, language)),
                None,
            )
            return None if found is None else (await self.get(found.id))[1]
        except Refused:
            return None
