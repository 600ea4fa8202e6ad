"""Routes of billing: a business reads the prices that apply to it and its own monthly
statements (device token); the operator edits the default card and per-business overrides and
reads any business's statements (operator token, audited)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from tresen.core.errors import ErrorCode, TresenError
from tresen.core.fields import INT63_MAX, INT63_MIN, SafeStr
from tresen.core.ids import AccountId
from tresen.relay.billing.repo import RateRow
from tresen.relay.billing.service import (
    MAX_RATES,
    STATEMENT_PAGE,
    STATEMENT_PAGE_MAX,
    EffectiveRate,
    Month,
    Rate,
    Statement,
)
from tresen.relay.http import Authed, Ctx, OperatorAuthed, errors

__all__ = ["CSV_COLUMNS", "router", "statement_csv"]

business = APIRouter(prefix="/v1/business", tags=["billing"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])

AccountPath = Annotated[SafeStr, Path(min_length=1, max_length=64)]
MonthPath = Annotated[SafeStr, Path(max_length=16, description="calendar month (UTC), YYYY-MM")]
Limit = Annotated[
    int,
    Query(ge=1, le=STATEMENT_PAGE_MAX, description="line items on this page"),
]
After = Annotated[
    SafeStr | None, Query(max_length=40, description="next_after of the previous page")
]
Format = Annotated[
    Literal["json", "csv"] | None,
    Query(description="csv, or json (the default); an Accept of text/csv also gives csv"),
]

CSV_COLUMNS = (
    "record",
    "category",
    "country",
    "currency",
    "count",
    "amount_micros",
    "amount",
    "charged_at",
    "message_id",
    "recipient_account",
    "template_id",
)
_CSV_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"},
    **errors(404),
}


# --- shapes ----------------------------------------------------------------------------------


class RateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: SafeStr = Field(
        max_length=64,
        description="marketing, utility, authentication or authentication_international",
    )
    country: SafeStr = Field(
        max_length=8, description="recipient's country, ISO 3166-1 alpha-2, or * for any other"
    )
    price_micros: StrictInt = Field(
        ge=INT63_MIN,
        le=INT63_MAX,
        description="millionths of the currency per delivered template",
    )
    currency: SafeStr | None = Field(
        default=None, max_length=8, description="ISO 4217; the operator's currency if omitted"
    )


class RateCardUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rates: list[RateUpdate] = Field(max_length=MAX_RATES)
    replace: bool = Field(
        default=False, description="remove the card's rows that are not named here"
    )


class RatePublic(BaseModel):
    category: str
    country: str = Field(description="ISO 3166-1 alpha-2, or * for every other country")
    price_micros: int
    currency: str


class RateRowPublic(RatePublic):
    updated_ms: int


class EffectiveRatePublic(RatePublic):
    source: Literal["override", "operator", "settings"] = Field(
        description="the business's override, the operator's default card, or the settings"
    )


class OwnRateCardPublic(BaseModel):
    rates: list[RatePublic] = Field(
        description="the price per delivered template that applies to this business, per "
        "category and recipient country; * stands for every country not listed"
    )


class DefaultRateCardPublic(BaseModel):
    currency: str = Field(description="the operator's currency (settings)")
    rows: list[RateRowPublic] = Field(description="the prices set through the admin API")
    effective: list[EffectiveRatePublic] = Field(
        description="the prices a business without overrides pays"
    )


class BusinessRateCardPublic(BaseModel):
    account_id: str
    overrides: list[RateRowPublic]
    effective: list[EffectiveRatePublic]


class OverridesRemovedPublic(BaseModel):
    account_id: str
    removed: int


class TotalPublic(BaseModel):
    category: str
    country: str
    currency: str
    count: int
    amount_micros: int


class GrandTotalPublic(BaseModel):
    currency: str
    count: int
    amount_micros: int


class ItemPublic(BaseModel):
    charged_ms: int
    message_id: str
    recipient_account: str
    template_id: int | None
    category: str
    country: str
    price_micros: int
    currency: str


class StatementPublic(BaseModel):
    account_id: str
    month: str
    period_start_ms: int
    period_end_ms: int = Field(description="exclusive")
    generated_ms: int
    final: bool = Field(description="false while the month is not over")
    totals: list[TotalPublic] = Field(description="per category, country and currency")
    grand_totals: list[GrandTotalPublic] = Field(description="per currency")
    items: list[ItemPublic] = Field(description="this page of line items, by charge time")
    items_total: int = Field(description="line items in the month (those still held)")
    items_reduced: int = Field(
        description="charges of the month whose line items were given up after the dispute "
        "period: counted in the totals, not listed"
    )
    items_left: int = Field(description="line items after this page")
    truncated: bool = Field(description="more line items follow; fetch with after=next_after")
    next_after: str | None


# --- conversions -----------------------------------------------------------------------------


def _row(r: RateRow) -> RateRowPublic:
    return RateRowPublic(
        category=r.category,
        country=r.country,
        price_micros=r.price_micros,
        currency=r.currency,
        updated_ms=r.updated_ms,
    )


def _effective(e: EffectiveRate) -> EffectiveRatePublic:
    return EffectiveRatePublic(
        category=e.category,
        country=e.country,
        price_micros=e.price_micros,
        currency=e.currency,
        source=e.source.value,
    )


def _rates(body: RateCardUpdate, currency: str) -> list[Rate]:
    return [Rate(r.category, r.country, r.price_micros, r.currency or currency) for r in body.rates]


def _statement(s: Statement) -> StatementPublic:
    return StatementPublic(
        account_id=s.business_account,
        month=str(s.month),
        period_start_ms=s.month.start_ms,
        period_end_ms=s.month.end_ms,
        generated_ms=s.generated_ms,
        final=s.final,
        totals=[TotalPublic.model_validate(t, from_attributes=True) for t in s.totals],
        grand_totals=[
            GrandTotalPublic.model_validate(g, from_attributes=True) for g in s.grand_totals
        ],
        items=[ItemPublic.model_validate(i, from_attributes=True) for i in s.items],
        items_total=s.items_total,
        items_reduced=s.items_reduced,
        items_left=s.items_left,
        truncated=s.truncated,
        next_after=s.next_after,
    )


def _amount(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    )


def statement_csv(s: Statement, *, first_page: bool) -> str:
    """The statement as CSV (header ``CSV_COLUMNS``): on the first page a ``total`` row per
    category, country and currency and a ``grand_total`` row per currency; then an ``item``
    row per line item of the page; last, if more follow, a ``truncated`` row whose count is
    the number of line items left out."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, restval="", lineterminator="\r\n")
    writer.writeheader()
    if first_page:
        for t in s.totals:
            writer.writerow(
                {
                    "record": "total",
                    "category": t.category,
                    "country": t.country,
                    "currency": t.currency,
                    "count": t.count,
                    "amount_micros": t.amount_micros,
                    "amount": _amount(t.amount_micros),
                }
            )
        for g in s.grand_totals:
            writer.writerow(
                {
                    "record": "grand_total",
                    "currency": g.currency,
                    "count": g.count,
                    "amount_micros": g.amount_micros,
                    "amount": _amount(g.amount_micros),
                }
            )
    for i in s.items:
        writer.writerow(
            {
                "record": "item",
                "category": i.category,
                "country": i.country,
                "currency": i.currency,
                "count": 1,
                "amount_micros": i.price_micros,
                "amount": _amount(i.price_micros),
                "charged_at": _iso(i.charged_ms),
                "message_id": i.message_id,
                "recipient_account": i.recipient_account,
                "template_id": "" if i.template_id is None else i.template_id,
            }
        )
    if s.truncated:
        writer.writerow({"record": "truncated", "count": s.items_left})
    return out.getvalue()


async def _answer(
    request: Request,
    ctx: Ctx,
    account_id: AccountId,
    month: str,
    fmt: str | None,
    after: str | None,
    limit: int,
) -> StatementPublic | Response:
    statement = await ctx.billing.statement(
        account_id, Month.parse(month), after=after, limit=limit
    )
    wants_csv = fmt == "csv" or (
        fmt is None and "text/csv" in request.headers.get("accept", "").lower()
    )
    if not wants_csv:
        return _statement(statement)
    headers = {
        "Content-Disposition": (
            f'attachment; filename="statement-{account_id}-{statement.month}.csv"'
        ),
        "X-Tresen-Items-Total": str(statement.items_total),
        "X-Tresen-Items-Reduced": str(statement.items_reduced),
    }
    if statement.next_after is not None:
        headers["X-Tresen-Next-After"] = statement.next_after
        headers["X-Tresen-Items-Left"] = str(statement.items_left)
    return Response(
        statement_csv(statement, first_page=after is None),
        media_type="text/csv; charset=utf-8",
        headers=headers,
    )


# --- a business about itself (device token) --------------------------------------------------


@business.get("/rate-card", response_model=OwnRateCardPublic, responses=errors(404))
async def own_rate_card(principal: Authed, ctx: Ctx) -> OwnRateCardPublic:
    """The prices per delivered template that apply to the calling business."""
    rates = await ctx.billing.own_card(principal.account_id)
    return OwnRateCardPublic(
        rates=[
            RatePublic(
                category=r.category,
                country=r.country,
                price_micros=r.price_micros,
                currency=r.currency,
            )
            for r in rates
        ]
    )


@business.get("/statements/{month}", response_model=StatementPublic, responses=_CSV_DOC)
async def own_statement(
    month: MonthPath,
    request: Request,
    principal: Authed,
    ctx: Ctx,
    format: Format = None,
    after: After = None,
    limit: Limit = STATEMENT_PAGE,
) -> StatementPublic | Response:
    """The calling business's statement of a month: totals and line items."""
    return await _answer(request, ctx, principal.account_id, month, format, after, limit)


# --- the operator (operator token) -----------------------------------------------------------


@admin.get("/rate-card", response_model=DefaultRateCardPublic)
async def default_rate_card(_: OperatorAuthed, ctx: Ctx) -> DefaultRateCardPublic:
    card = await ctx.billing.default_card()
    return DefaultRateCardPublic(
        currency=card.currency,
        rows=[_row(r) for r in card.rows],
        effective=[_effective(e) for e in card.effective],
    )


@admin.put("/rate-card", response_model=DefaultRateCardPublic)
async def set_default_rate_card(
    body: RateCardUpdate, operator: OperatorAuthed, ctx: Ctx
) -> DefaultRateCardPublic:
    """Set prices of the default card; sends accepted from now on pay them."""
    card = await ctx.billing.set_default_rates(
        _rates(body, ctx.billing.currency), replace=body.replace, by=operator.name
    )
    return DefaultRateCardPublic(
        currency=card.currency,
        rows=[_row(r) for r in card.rows],
        effective=[_effective(e) for e in card.effective],
    )


@admin.get(
    "/businesses/{account_id}/rate-card",
    response_model=BusinessRateCardPublic,
    responses=errors(404),
)
async def business_rate_card(
    account_id: AccountPath, _: OperatorAuthed, ctx: Ctx
) -> BusinessRateCardPublic:
    card = await ctx.billing.business_card(AccountId(account_id))
    return BusinessRateCardPublic(
        account_id=card.account_id,
        overrides=[_row(r) for r in card.overrides],
        effective=[_effective(e) for e in card.effective],
    )


@admin.put(
    "/businesses/{account_id}/rate-card",
    response_model=BusinessRateCardPublic,
    responses=errors(404),
)
async def set_business_rate_card(
    account_id: AccountPath, body: RateCardUpdate, operator: OperatorAuthed, ctx: Ctx
) -> BusinessRateCardPublic:
    """Set prices for one business only; they take precedence over the default card."""
    card = await ctx.billing.set_business_rates(
        AccountId(account_id),
        _rates(body, ctx.billing.currency),
        replace=body.replace,
        by=operator.name,
    )
    return BusinessRateCardPublic(
        account_id=card.account_id,
        overrides=[_row(r) for r in card.overrides],
        effective=[_effective(e) for e in card.effective],
    )


@admin.delete(
    "/businesses/{account_id}/rate-card",
    response_model=OverridesRemovedPublic,
    responses=errors(404),
)
async def remove_business_rate_card(
    account_id: AccountPath,
    operator: OperatorAuthed,
    ctx: Ctx,
    category: Annotated[SafeStr | None, Query(max_length=64)] = None,
    country: Annotated[SafeStr | None, Query(max_length=8)] = None,
) -> OverridesRemovedPublic:
    """Remove one override (category and country) or, without them, all of the business's."""
    if (category is None) != (country is None):
        raise TresenError(
            ErrorCode.INVALID_PARAMETER,
            "name both category and country to remove one override, or neither to remove all",
        )
    key = None if category is None or country is None else (category, country)
    removed = await ctx.billing.remove_business_rates(AccountId(account_id), key, by=operator.name)
    return OverridesRemovedPublic(account_id=account_id, removed=removed)


@admin.get(
    "/businesses/{account_id}/statements/{month}",
    response_model=StatementPublic,
    responses=_CSV_DOC,
)
async def business_statement(
    account_id: AccountPath,
    month: MonthPath,
    request: Request,
    _: OperatorAuthed,
    ctx: Ctx,
    format: Format = None,
    after: After = None,
    limit: Limit = STATEMENT_PAGE,
) -> StatementPublic | Response:
    return await _answer(request, ctx, AccountId(account_id), month, format, after, limit)


router = APIRouter()
router.include_router(business)
router.include_router(admin)
