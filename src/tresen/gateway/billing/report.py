"""A reconciliation as JSON: what the inbox's API answers and ``tresen gateway billing
verify --json`` prints."""

from __future__ import annotations

from typing import Any

from tresen.gateway.billing.reconcile import Reconciliation, Tally

__all__ = ["as_json", "money"]


def money(micros: int, currency: str) -> str:
    """An amount in millionths as a decimal with its currency (``0.012500 EUR``)."""
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    return f"{sign}{micros // 1_000_000}.{micros % 1_000_000:06d} {currency}"


def _tally(tally: Tally) -> list[dict[str, Any]]:
    return [
        {"currency": currency, "count": a.count, "amount_micros": a.amount_micros}
        for currency, a in sorted(tally.by_currency.items())
    ]


def as_json(r: Reconciliation) -> dict[str, Any]:
    return {
        "month": r.head.month,
        "final": r.head.final,
        "clean": r.clean,
        "charged": _tally(r.charged),
        "verified": _tally(r.verified),
        "unproven": _tally(r.unproven_total),
        "unproven_count": r.unproven_total.count,
        "items_reduced": r.head.items_reduced,
        "totals_exceeding_items": r.totals_exceeding,
        "unproven_items": [
            {
                "message_id": u.item.message_id,
                "recipient_account": u.item.recipient_account,
                "template_id": u.item.template_id,
                "charged_ms": u.item.charged_ms,
                "category": u.item.category,
                "country": u.item.country,
                "price_micros": u.item.price_micros,
                "currency": u.item.currency,
                "reason": str(u.reason),
            }
            for u in r.unproven
        ],
        "unproven_items_truncated": len(r.unproven) < r.unproven_total.count,
    }
