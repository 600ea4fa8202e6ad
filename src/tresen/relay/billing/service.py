"""``BillingService``: the operator's rate cards and the monthly statements of businesses.

A template's price is fixed when the relay accepts it (``PolicyService.rate``: the business's
override, then the operator's default card, then the settings' card; in each, the recipient's
country before ``*``) and charged once, when it is first delivered (``PolicyService.delivered``
writes the ledger). A message that no device of its recipient received before it expired is
never charged: the purge reports it ``failed`` (131026) to the sender and writes no ledger row.
A business sees the prices that apply to it, never the operator's rows nor another business's;
a statement sums what the ledger charged in one calendar month (UTC).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.ids import AccountId
from tresen.core.logging import get_logger
from tresen.relay.audit import add_audit
from tresen.relay.billing import repo
from tresen.relay.billing.repo import DEFAULT_CARD, LedgerItem, LedgerTotal, RateRow
from tresen.relay.policy import repo as policy_repo
from tresen.relay.policy.rules import PricingCategory
from tresen.relay.policy.service import PolicyService

__all__ = [
    "ANY_COUNTRY",
    "MAX_PRICE_MICROS",
    "MAX_RATES",
    "PRICED_CATEGORIES",
    "STATEMENT_PAGE",
    "STATEMENT_PAGE_MAX",
    "BillingService",
    "BusinessCard",
    "DefaultCard",
    "EffectiveRate",
    "GrandTotal",
    "Month",
    "Rate",
    "RateSource",
    "Statement",
    "check_key",
    "check_rates",
    "month_start_ms",
]

log = get_logger("tresen.relay.billing")

PRICED_CATEGORIES: tuple[str, ...] = tuple(
    str(c) for c in PricingCategory if c is not PricingCategory.SERVICE
)
ANY_COUNTRY = "*"
# The countries a recipient's phone number can be placed in (``rules.country_of``).
COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)
# A million currency units per message: far above any real price, it catches a slipped digit.
MAX_PRICE_MICROS = 1_000_000_000_000
MAX_RATES = 2_000
STATEMENT_PAGE = 1_000
STATEMENT_PAGE_MAX = 10_000
_AUDIT_CHANGES = 100

_CURRENCY = re.compile(r"[A-Z]{3}")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_CURSOR = re.compile(r"(\d{1,15})-(\d{1,19})")


class RateSource(StrEnum):
    """Where an effective price comes from (shown to the operator only)."""

    OVERRIDE = "override"
    OPERATOR = "operator"
    SETTINGS = "settings"


@dataclass(frozen=True, slots=True)
class Rate:
    """One price: per delivered template of ``category`` to a recipient in ``country``."""

    category: str
    country: str
    price_micros: int
    currency: str


@dataclass(frozen=True, slots=True)
class EffectiveRate:
    category: str
    country: str
    price_micros: int
    currency: str
    source: RateSource


@dataclass(frozen=True, slots=True)
class DefaultCard:
    """The operator's default card: the rows set through the API, and the prices they and the
    settings' card give together."""

    currency: str
    rows: list[RateRow]
    effective: list[EffectiveRate]


@dataclass(frozen=True, slots=True)
class BusinessCard:
    account_id: AccountId
    overrides: list[RateRow]
    effective: list[EffectiveRate]


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month in UTC, written ``YYYY-MM``."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        match = _MONTH.fullmatch(text.strip())
        month = None if match is None else cls(int(match[1]), int(match[2]))
        if month is None or not 1 <= month.month <= 12 or month.year < 1970:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                "month must be written YYYY-MM, e.g. 2026-01",
                field="month",
                month=text,
            )
        return month

    @property
    def start_ms(self) -> int:
        return int(datetime(self.year, self.month, 1, tzinfo=UTC).timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        after = Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)
        return after.start_ms

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True, slots=True)
class GrandTotal:
    currency: str
    count: int
    amount_micros: int


@dataclass(frozen=True, slots=True)
class Statement:
    """What the ledger charged a business in one month: totals per category and country (and
    currency), a grand total per currency, and one page of line items in charge order."""

    business_account: AccountId
    month: Month
    generated_ms: int
    final: bool
    totals: list[LedgerTotal]
    grand_totals: list[GrandTotal]
    items: list[LedgerItem]
    items_total: int
    items_left: int
    next_after: str | None
    items_reduced: int = 0
    """Charges of the month whose line items were given up after the dispute period
    (``retention.ledger_dispute_days``): in the totals, not in the items."""

    @property
    def truncated(self) -> bool:
        return self.next_after is not None


def check_rates(rates: Sequence[Rate], *, field: str = "rates") -> list[Rate]:
    """The rates in canonical spelling (category in lower case; country and currency in upper
    case), or 100 with one problem per bad field."""
    problems: list[dict[str, str]] = []
    clean: list[Rate] = []
    seen: set[tuple[str, str]] = set()
    if len(rates) > MAX_RATES:
        problems.append({"field": field, "problem": f"at most {MAX_RATES} rates at a time"})
    for i, rate in enumerate(rates):
        at = f"{field}.{i}"
        (category, country), key_problems = _check_key(rate.category, rate.country, at)
        problems += key_problems
        currency = rate.currency.strip().upper()
        price = rate.price_micros
        if isinstance(price, bool) or not isinstance(price, int):
            price = -1
        if not 0 <= price <= MAX_PRICE_MICROS:
            problems.append(
                {
                    "field": f"{at}.price_micros",
                    "problem": "price must be a whole number of micro-units (millionths of the "
                    f"currency) from 0 to {MAX_PRICE_MICROS}",
                }
            )
        if not _CURRENCY.fullmatch(currency):
            problems.append(
                {
                    "field": f"{at}.currency",
                    "problem": "currency must be three letters (ISO 4217, e.g. EUR), "
                    f"not {rate.currency!r}",
                }
            )
        if (category, country) in seen:
            problems.append(
                {"field": at, "problem": f"{category} / {country} is given more than once"}
            )
        seen.add((category, country))
        clean.append(Rate(category, country, price, currency))
    if problems:
        raise TresenError(ErrorCode.INVALID_PARAMETER, "invalid rate card", problems=problems)
    return clean


def check_key(category: str, country: str) -> tuple[str, str]:
    """(category, country) of one rate in canonical spelling, or 100."""
    key, problems = _check_key(category, country, "")
    if problems:
        raise TresenError(ErrorCode.INVALID_PARAMETER, "invalid rate", problems=problems)
    return key


def _check_key(
    category: str, country: str, at: str
) -> tuple[tuple[str, str], list[dict[str, str]]]:
    prefix = f"{at}." if at else ""
    problems = []
    clean = category.strip().lower(), country.strip().upper()
    if clean[0] not in PRICED_CATEGORIES:
        problems.append(
            {
                "field": f"{prefix}category",
                "problem": f"unknown category {category!r}; one of " + ", ".join(PRICED_CATEGORIES),
            }
        )
    if clean[1] != ANY_COUNTRY and clean[1] not in COUNTRIES:
        problems.append(
            {
                "field": f"{prefix}country",
                "problem": f"{country!r} is not an ISO 3166-1 alpha-2 country code with phone "
                "numbers (e.g. DE), nor '*' for every other country",
            }
        )
    return clean, problems


def _key_order(key: tuple[str, str]) -> tuple[int, str]:
    category, country = key
    rank = PRICED_CATEGORIES.index(category)
    return rank, "" if country == ANY_COUNTRY else country  # "*" first in each category


def _parse_cursor(after: str) -> tuple[int, int]:
    match = _CURSOR.fullmatch(after)
    if match is None:
        raise TresenError(
            ErrorCode.INVALID_PARAMETER,
            "after must be the next_after value of the previous page",
            field="after",
        )
    return int(match[1]), int(match[2])


class BillingService:
    def __init__(self, db: Database, clock: Clock, policy: PolicyService) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy

    @property
    def currency(self) -> str:
        """The operator's currency: of the settings' card, and of a rate set without one."""
        return self.policy.policy.currency

    # --- rate cards --------------------------------------------------------------------------

    async def default_card(self) -> DefaultCard:
        async with self.db.read() as conn:
            rows = await repo.rates_of(conn, DEFAULT_CARD)
            lookup = await policy_repo.rate_rows(conn, ())
        return DefaultCard(self.currency, rows, self._effective(DEFAULT_CARD, lookup))

    async def set_default_rates(
        self, rates: Sequence[Rate], *, replace: bool, by: str
    ) -> DefaultCard:
        """Set prices of the default card (all other rows kept, or removed with ``replace``);
        they apply to sends accepted from now on."""
        await self._save(DEFAULT_CARD, check_rates(rates), replace=replace, by=by)
        return await self.default_card()

    async def business_card(self, business: AccountId) -> BusinessCard:
        """A business's overrides and the prices that apply to it (the operator's view)."""
        async with self.db.read() as conn:
            await self._require_business(conn, business)
            rows = await repo.rates_of(conn, business)
            lookup = await policy_repo.rate_rows(conn, {business})
        return BusinessCard(business, rows, self._effective(business, lookup))

    async def set_business_rates(
        self, business: AccountId, rates: Sequence[Rate], *, replace: bool, by: str
    ) -> BusinessCard:
        await self._save(business, check_rates(rates), replace=replace, by=by)
        return await self.business_card(business)

    async def remove_business_rates(
        self, business: AccountId, key: tuple[str, str] | None, *, by: str
    ) -> int:
        """Remove one override (category, country) or all of them; the default card applies
        again. How many rows were removed."""
        if key is not None:
            key = check_key(*key)
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            await self._require_business(conn, business)
            await repo.lock_card(conn, business)
            removed = await repo.delete_rates(conn, business, None if key is None else [key])
            await add_audit(
                conn,
                at_ms=now,
                operator=by,
                action="rate_card_override_removed",
                account_id=business,
                details={"removed": removed, "only": None if key is None else "/".join(key)},
            )
        log.info("rate card overrides removed", business=business, removed=removed)
        return removed

    async def own_card(self, business: AccountId) -> list[Rate]:
        """The prices that apply to the calling business, for each category and country that
        has one; nothing says where a price comes from."""
        async with self.db.read() as conn:
            await self._require_business(conn, business)
            lookup = await policy_repo.rate_rows(conn, {business})
        return [
            Rate(e.category, e.country, e.price_micros, e.currency)
            for e in self._effective(business, lookup)
        ]

    async def _save(self, owner: str, rates: list[Rate], *, replace: bool, by: str) -> None:
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            if owner != DEFAULT_CARD:
                await self._require_business(conn, AccountId(owner))
            await repo.lock_card(conn, owner)
            before = {(r.category, r.country): r for r in await repo.rates_of(conn, owner)}
            given = {(r.category, r.country) for r in rates}
            removed = sorted(k for k in before if k not in given) if replace else []
            await repo.delete_rates(conn, owner, removed)
            await repo.upsert_rates(
                conn,
                owner,
                [RateRow(r.category, r.country, r.price_micros, r.currency, now) for r in rates],
            )
            changes = [
                {
                    "category": r.category,
                    "country": r.country,
                    "from": None if old is None else old.price_micros,
                    "to": r.price_micros,
                    "currency": r.currency,
                }
                for r in rates
                if (old := before.get((r.category, r.country))) is None
                or (old.price_micros, old.currency) != (r.price_micros, r.currency)
            ]
            details: dict[str, Any] = {
                "changed": len(changes),
                "changes": changes[:_AUDIT_CHANGES],
                "replace": replace,
                "removed": ["/".join(k) for k in removed][:_AUDIT_CHANGES],
            }
            await add_audit(
                conn,
                at_ms=now,
                operator=by,
                action="rate_card" if owner == DEFAULT_CARD else "rate_card_override",
                account_id=None if owner == DEFAULT_CARD else AccountId(owner),
                details=details,
            )
        log.info(
            "rate card saved",
            business=owner or None,
            changed=len(changes),
            removed=len(removed),
        )

    def _effective(
        self, business: str, lookup: dict[tuple[str, str, str], tuple[int, str]]
    ) -> list[EffectiveRate]:
        """The price of every category and country that some layer names, as the send path
        computes it (``PolicyService.rate``), and the layer it comes from."""
        keys = {
            (category, country)
            for owner, category, country in lookup
            if owner in (business, DEFAULT_CARD)
        }
        for category, card in self.policy.policy.rate_card.items():
            keys.update((category, country) for country in card)
        keys = {k for k in keys if k[0] in PRICED_CATEGORIES}
        result = []
        for category, country in sorted(keys, key=_key_order):
            micros, currency = self.policy.rate(
                business, PricingCategory(category), country, lookup
            )
            result.append(
                EffectiveRate(
                    category,
                    country,
                    micros,
                    currency,
                    _source(business, category, country, lookup),
                )
            )
        return result

    async def _require_business(self, conn: AsyncConnection, account_id: AccountId) -> None:
        facts = (await policy_repo.account_facts(conn, {account_id})).get(account_id)
        if facts is None or facts.kind != "business":
            raise TresenError(
                ErrorCode.NOT_A_BUSINESS, "this account is not a business", account_id=account_id
            )

    # --- statements --------------------------------------------------------------------------

    async def statement(
        self,
        business: AccountId,
        month: Month,
        *,
        after: str | None = None,
        limit: int = STATEMENT_PAGE,
    ) -> Statement:
        """The business's statement of ``month``, with line items from the cursor ``after``
        (the previous page's ``next_after``), at most ``limit`` of them."""
        if not 1 <= limit <= STATEMENT_PAGE_MAX:
            raise TresenError(
                ErrorCode.INVALID_PARAMETER,
                f"limit must be 1 to {STATEMENT_PAGE_MAX}",
                field="limit",
            )
        cursor = None if after is None else _parse_cursor(after)
        now = self.clock.now_ms()
        start, end = month.start_ms, month.end_ms
        async with self.db.read() as conn:
            await self._require_business(conn, business)
            items_totals = await repo.ledger_totals(conn, business, start, end)
            reduced = await repo.month_totals(conn, business, start)
            page = await repo.ledger_items(conn, business, start, end, cursor, limit + 1)
            items = page[:limit]
            more = len(page) > limit
            left = 0
            if more:
                last = items[-1]
                left = await repo.ledger_items_after(
                    conn, business, start, end, (last.charged_ms, last.pk)
                )
        totals = _merged(items_totals, reduced)
        totals.sort(key=lambda t: (*_key_order((t.category, t.country)), t.currency))
        grand: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for t in totals:
            grand[t.currency][0] += t.count
            grand[t.currency][1] += t.amount_micros
        return Statement(
            business_account=business,
            month=month,
            generated_ms=now,
            final=now >= end,
            totals=totals,
            grand_totals=[GrandTotal(c, n, a) for c, (n, a) in sorted(grand.items())],
            items=items,
            items_total=sum(t.count for t in items_totals),
            items_left=left,
            next_after=f"{items[-1].charged_ms}-{items[-1].pk}" if more else None,
            items_reduced=sum(t.count for t in reduced),
        )


def month_start_ms(ms: int) -> int:
    """The first millisecond of the calendar month (UTC) that ``ms`` falls in."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return Month(moment.year, moment.month).start_ms


def _merged(*parts: list[LedgerTotal]) -> list[LedgerTotal]:
    """Totals of the same (category, country, currency) added up."""
    sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for part in parts:
        for t in part:
            total = sums[(t.category, t.country, t.currency)]
            total[0] += t.count
            total[1] += t.amount_micros
    return [LedgerTotal(*key, n, a) for key, (n, a) in sums.items()]


def _source(
    business: str, category: str, country: str, lookup: dict[tuple[str, str, str], tuple[int, str]]
) -> RateSource:
    for owner in (business, DEFAULT_CARD):
        for where in (country, ANY_COUNTRY):
            if (owner, category, where) in lookup:
                return RateSource.OPERATOR if owner == DEFAULT_CARD else RateSource.OVERRIDE
    return RateSource.SETTINGS
