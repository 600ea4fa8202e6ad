"""Answering a customer's request for their data, end to end: the gateway's export of that
customer, inline when small, else as a JSON document attachment."""

from __future__ import annotations

import secrets

import httpx

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.client.events import DataRequested
from tresen.core.logging import get_logger
from tresen.gateway.customers.audit import subject_of
from tresen.gateway.customers.service import CustomerData
from tresen.wire import relay as wire
from tresen.wire.e2e import MAX_EXPORT_INLINE_BYTES, DataExport, MediaKind, encode_payload

__all__ = ["ExportAnswers"]

log = get_logger("tresen.gateway.customers")


class ExportAnswers:
    def __init__(self, client: Client, customers: CustomerData) -> None:
        self.client = client
        self.customers = customers

    async def answer(self, request: DataRequested) -> None:
        """Send the customer ``request.chat`` what the gateway holds about them. A failure to
        send is logged: the customer's app lists this business as not answering."""
        document = await self.customers.export(request.chat)
        try:
            if len(document) <= MAX_EXPORT_INLINE_BYTES:
                answer = DataExport(request_id=request.request_id, document=document)
            else:
                media = await self.client.attachments.prepare(
                    document,
                    filename="export.json",
                    mime_type="application/json",
                    kind=MediaKind.DOCUMENT,
                )
                answer = DataExport(request_id=request.request_id, file=media)
            # Class SESSION: the request opened the customer's window a moment ago.
            await self.client.sender.deliver(
                request.chat,
                encode_payload(answer),
                secrets.token_hex(16),
                wire.MessageClass.SESSION,
            )
        except (RelayError, httpx.HTTPError, OSError) as exc:
            log.warning(
                "export not sent", subject=subject_of(request.chat), error=type(exc).__name__
            )
