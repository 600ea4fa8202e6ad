"""A customer's copy of their data, and the deletion of their account.

The copy has two parts: what the relay holds (``GET /v1/me/export``) and what each business
the customer dealt with holds in its gateway, asked end to end (``DataRequest``, answered by a
``DataExport``). A business that does not answer within the time given is listed as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any

import httpx

from tresen.client.api import RelayApi, RelayError
from tresen.client.attachments import Attachments
from tresen.client.device import Device
from tresen.client.sending import Sender
from tresen.client.store import LocalStore
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.wire import relay as wire
from tresen.wire.e2e import DataExport, DataRequest, encode_payload

__all__ = ["EXPORT_FORMAT", "MAX_BUSINESSES_ASKED", "PersonalData"]

log = get_logger("tresen.client")

EXPORT_FORMAT = "tresen.export/1"
MAX_BUSINESSES_ASKED = 100
"""Businesses asked in one export (each is one message to send)."""
MAX_EXPORT_FILE_BYTES = 16 * 1024 * 1024
"""Largest business export accepted as an attachment."""


class PersonalData:
    def __init__(
        self,
        api: RelayApi,
        store: LocalStore,
        clock: Clock,
        device: Device,
        sender: Sender,
        attachments: Attachments,
    ) -> None:
        self.api = api
        self.store = store
        self.clock = clock
        self.device = device
        self.sender = sender
        self.attachments = attachments
        self._waiting: dict[tuple[str, str], asyncio.Future[tuple[str, DataExport]]] = {}

    def answered(self, sender: str, message_id: str, answer: DataExport) -> None:
        """A business's answer arrived (the receiver calls this); dropped when nobody waits."""
        waiter = self._waiting.get((sender, answer.request_id))
        if waiter is not None and not waiter.done():
            waiter.set_result((message_id, answer))

    async def export(self, *, timeout_s: float = 30.0) -> dict[str, Any]:
        """One JSON-able document: the relay's part, and each business's answer."""
        relay = await self.api.export_me()
        businesses = self._businesses(relay)
        asked: dict[str, str] = {}
        results: dict[str, dict[str, Any]] = {}
        for business in businesses:
            request_id = secrets.token_hex(16)
            self._waiting[(business, request_id)] = asyncio.get_running_loop().create_future()
            try:
                await self.sender.deliver(
                    business,
                    encode_payload(DataRequest(request_id=request_id)),
                    secrets.token_hex(16),
                    wire.MessageClass.SESSION,
                )
            except (RelayError, httpx.HTTPError) as exc:
                self._waiting.pop((business, request_id), None)
                code = int(exc.code) if isinstance(exc, RelayError) else None
                results[business] = {"status": "not_asked", "error": str(exc), "error_code": code}
                continue
            asked[business] = request_id
        if asked:
            waiters = [self._waiting[(b, r)] for b, r in asked.items()]
            await asyncio.wait(waiters, timeout=timeout_s)
        for business, request_id in asked.items():
            waiter = self._waiting.pop((business, request_id))
            if not waiter.done():
                waiter.cancel()
                results[business] = {"status": "no_answer", "waited_s": timeout_s}
                continue
            message_id, answer = waiter.result()
            results[business] = await self._read(message_id, answer)
        return {
            "format": EXPORT_FORMAT,
            "generated_ms": self.clock.now_ms(),
            "account_id": self.device.account_id,
            "relay": relay,
            "businesses": [
                {"account_id": b, "name": self._name(b), **results[b]} for b in businesses
            ],
        }

    def _businesses(self, relay: dict[str, Any]) -> list[str]:
        """The businesses this account dealt with: known here, or named by the relay."""
        found: list[str] = list(self.store.business_accounts())
        for section, column in (
            ("consents", "business_account"),
            ("service_windows", "business_account"),
            ("recipients", "business_account"),
            ("message_pricing", "business_account"),
        ):
            found.extend(str(row[column]) for row in relay.get(section, []))
        own = self.device.account_id
        return [b for b in dict.fromkeys(found) if b != own][:MAX_BUSINESSES_ASKED]

    def _name(self, business: str) -> str | None:
        known = self.store.known_business(business)
        return None if known is None else known.display_name

    async def _read(self, message_id: str, answer: DataExport) -> dict[str, Any]:
        if answer.error is not None:
            return {"status": "refused", "error": answer.error}
        try:
            if answer.document is not None:
                raw = answer.document
            else:
                assert answer.file is not None
                if answer.file.plain_size > MAX_EXPORT_FILE_BYTES:
                    return {"status": "invalid", "error": "the export file is too large"}
                path = await self.attachments.download(message_id, answer.file)
                try:
                    raw = path.read_bytes()
                finally:
                    with contextlib.suppress(OSError):
                        path.unlink()
            data = json.loads(raw)
        except (ValueError, OSError, RelayError, httpx.HTTPError) as exc:
            return {"status": "invalid", "error": str(exc) or type(exc).__name__}
        return {"status": "answered", "data": data}

    async def delete_account(self) -> None:
        """Delete the account at the relay; this device's token is then void and forgotten.
        What the businesses hold is theirs to erase (ask them)."""
        await self.api.delete_me()
        self.store.delete_meta("token")
        self.api.token = None
