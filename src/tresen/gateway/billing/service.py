"""The business's bills: keeping the receipts its device checked, and verifying a month's
statement against them (the one reconciliation the command line and the inbox show)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

import httpx

from tresen.client.api import RelayError
from tresen.client.events import DeliveryReceiptEvent
from tresen.client.statements import LineItem, StatementHead, valid_month
from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.logging import get_logger
from tresen.gateway.billing import repo
from tresen.gateway.billing.reconcile import Reconciliation

__all__ = ["Bills", "InvalidMonth", "StatementSource", "StatementUnavailable"]

log = get_logger("tresen.gateway.billing")


class StatementSource(Protocol):
    """The business's statement of a month from the relay (``Client.statement``)."""

    async def __call__(
        self, month: str, /
    ) -> tuple[StatementHead, AsyncIterator[list[LineItem]]]: ...


class InvalidMonth(ValueError):
    """A month not written ``YYYY-MM``."""


class StatementUnavailable(Exception):
    """The relay could not be reached, or refused the statement (the reason says which)."""


class Bills:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        business: Callable[[], str],
        statement: StatementSource,
    ) -> None:
        self.db = db
        self.clock = clock
        self.business = business
        self.statement = statement

    async def keep(self, event: DeliveryReceiptEvent) -> None:
        """Keep a receipt the device checked (a repeated one changes nothing)."""
        receipt = repo.KeptReceipt(
            message_id=event.message_id,
            customer_account=event.customer,
            device_id=event.device_id,
            device_ed25519=event.device_ed25519,
            template_id=event.template_id,
            delivered_ms=event.delivered_ms,
            signature=event.signature,
            received_ms=self.clock.now_ms(),
        )
        async with self.db.write() as conn:
            await repo.add_receipt(conn, receipt)

    async def verify(self, month: str) -> Reconciliation:
        """Hold the statement of ``month`` against the receipts kept; every line item is
        read (the relay's pages followed) and looked up a page at a time."""
        if not valid_month(month):
            raise InvalidMonth(f"a month is written like 2026-01, not {month[:16]!r}")
        try:
            head, pages = await self.statement(month)
            result = Reconciliation(self.business(), head)
            async for items in pages:
                async with self.db.read() as conn:
                    receipts = await repo.receipts_of(conn, {i.message_id for i in items})
                result.add_page(items, receipts)
        except RelayError as exc:
            raise StatementUnavailable(f"the relay refused the statement: {exc.message}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise StatementUnavailable(
                f"the relay cannot be reached now ({type(exc).__name__})"
            ) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise StatementUnavailable(f"the relay's statement is malformed ({exc})") from None
        result.finish()
        log.info(
            "statement verified",
            month=month,
            charged=result.charged.count,
            unproven=result.unproven_total.count,
        )
        return result
