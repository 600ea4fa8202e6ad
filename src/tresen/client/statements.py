"""A business's monthly statement from the relay: its totals and every line item, page by
page (``GET /v1/business/statements/{month}``, ``docs/protocol.md`` §12)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tresen.client.api import RelayApi

__all__ = ["MAX_PAGES", "PAGE", "LineItem", "StatementHead", "read_statement", "valid_month"]

PAGE = 1_000
MAX_PAGES = 10_000
"""Pages read at most (ten million line items): a relay that keeps answering "more" cannot
keep a reader busy for ever."""
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def valid_month(month: str) -> bool:
    """Whether ``month`` is a calendar month written ``YYYY-MM``."""
    return _MONTH.fullmatch(month) is not None


@dataclass(frozen=True, slots=True)
class LineItem:
    """One charge: a template message the operator says was delivered."""

    message_id: str
    recipient_account: str
    template_id: int | None
    category: str
    country: str
    price_micros: int
    currency: str
    charged_ms: int


@dataclass(frozen=True, slots=True)
class StatementHead:
    """What the statement's first page says of the whole month."""

    month: str
    period_start_ms: int
    period_end_ms: int
    final: bool
    items_total: int
    items_reduced: int
    """Charges of the month whose line items the relay gave up after the dispute period:
    in the totals, but nothing to check them against."""
    grand_totals: list[dict[str, Any]]


def _item(raw: dict[str, Any]) -> LineItem:
    template_id = raw.get("template_id")
    return LineItem(
        message_id=str(raw["message_id"]),
        recipient_account=str(raw["recipient_account"]),
        template_id=None if template_id is None else int(template_id),
        category=str(raw["category"]),
        country=str(raw["country"]),
        price_micros=int(raw["price_micros"]),
        currency=str(raw["currency"]),
        charged_ms=int(raw["charged_ms"]),
    )


async def read_statement(
    api: RelayApi, month: str, *, page: int = PAGE
) -> tuple[StatementHead, AsyncIterator[list[LineItem]]]:
    """The statement of ``month``: its head, and its line items a page at a time."""
    if not valid_month(month):
        raise ValueError(f"not a month written YYYY-MM: {month!r}")
    first = await api.own_statement(month, limit=page)
    head = StatementHead(
        month=str(first["month"]),
        period_start_ms=int(first["period_start_ms"]),
        period_end_ms=int(first["period_end_ms"]),
        final=bool(first["final"]),
        items_total=int(first["items_total"]),
        items_reduced=int(first["items_reduced"]),
        grand_totals=list(first["grand_totals"]),
    )

    async def pages() -> AsyncIterator[list[LineItem]]:
        body = first
        for _ in range(MAX_PAGES):
            yield [_item(i) for i in body["items"]]
            after = body.get("next_after")
            if not body.get("truncated") or not after:
                return
            body = await api.own_statement(month, after=str(after), limit=page)
        raise ValueError(f"the statement of {month} has more than {MAX_PAGES} pages")

    return head, pages()
