"""A campaign's cost before it is sent: the rate card times the audience."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers

__all__ = ["CostPreview", "country_of", "preview_cost", "price_countries"]

ANY_COUNTRY = "*"


def country_of(phone: str | None) -> str:
    """ISO 3166-1 alpha-2 region of an E.164 number ("ZZ" when unknown)."""
    if not phone:
        return "ZZ"
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return "ZZ"
    return region or "ZZ"


@dataclass(frozen=True, slots=True)
class CostPreview:
    currency: str | None
    total_micros: int
    recipients: int
    by_country: dict[str, tuple[int, int]]
    """Country: (recipients, micros)."""
    unpriced: int
    """Recipients the card has no price for (counted as free)."""

    @property
    def total(self) -> float:
        return self.total_micros / 1_000_000


def preview_cost(
    rates: Sequence[dict[str, Any]], category: str, phones: Sequence[str | None]
) -> CostPreview:
    """``rates`` as ``GET /v1/business/rate-card`` lists them; one template per phone."""
    return price_countries(rates, category, (country_of(phone) for phone in phones))


def price_countries(
    rates: Sequence[dict[str, Any]], category: str, countries: Iterable[str]
) -> CostPreview:
    """As :func:`preview_cost`, one template per recipient in each of ``countries``."""
    wanted = category.lower()
    card = {
        (str(r["country"])): (int(r["price_micros"]), str(r["currency"]))
        for r in rates
        if str(r["category"]).lower() == wanted
    }
    currency: str | None = None
    total = 0
    unpriced = 0
    by_country: dict[str, tuple[int, int]] = {}
    recipients = 0
    for country in countries:
        recipients += 1
        price = card.get(country) or card.get(ANY_COUNTRY)
        if price is None:
            unpriced += 1
            micros = 0
        else:
            micros, currency = price
        total += micros
        count, sum_micros = by_country.get(country, (0, 0))
        by_country[country] = (count + 1, sum_micros + micros)
    return CostPreview(currency, total, recipients, by_country, unpriced)
