"""The platform rules as pure functions: windows, quality, tiers and pricing categories.

Everything here takes the time and the counts as arguments, so the rules are tested with
plain numbers and an injected clock; ``PolicyService`` feeds them from the database.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec
import phonenumbers

from tresen.core.policy import PolicySettings

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "Pricing",
    "PricingCategory",
    "PricingType",
    "Quality",
    "TemplateCategory",
    "country_of",
    "negative_counts",
    "pricing_category",
    "quality_of",
    "tier_limit",
    "tier_step",
    "window_open",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class TemplateCategory(StrEnum):
    MARKETING = "MARKETING"
    UTILITY = "UTILITY"
    AUTHENTICATION = "AUTHENTICATION"


class PricingCategory(StrEnum):
    MARKETING = "marketing"
    UTILITY = "utility"
    AUTHENTICATION = "authentication"
    AUTHENTICATION_INTERNATIONAL = "authentication_international"
    SERVICE = "service"


class PricingType(StrEnum):
    REGULAR = "regular"
    FREE_CUSTOMER_SERVICE = "free_customer_service"


class Quality(StrEnum):
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"


class Pricing(msgspec.Struct, frozen=True):
    """The pricing facts of one send, as Cloud API status webhooks carry them."""

    billable: bool
    category: PricingCategory
    type: PricingType
    country: str
    price_micros: int
    currency: str
    pricing_model: str = "PMP"

    def to_wire(self) -> dict[str, object]:
        return {
            "billable": self.billable,
            "pricing_model": self.pricing_model,
            "type": str(self.type),
            "category": str(self.category),
        }


def window_open(last_customer_ms: int | None, now_ms: int, policy: PolicySettings) -> bool:
    """Whether the customer-service window is open: it closes exactly ``window_hours`` after
    the customer's last message."""
    if last_customer_ms is None:
        return False
    return now_ms < last_customer_ms + int(policy.window_hours * HOUR_MS)


def quality_of(negative: int, delivered: int, policy: PolicySettings) -> Quality:
    """GREEN/YELLOW/RED from blocks and reports relative to delivered messages (at least
    ``quality_min_delivered`` of them count, so a few early blocks do not turn a new business
    red at once)."""
    ratio = negative / max(delivered, policy.quality_min_delivered)
    if ratio >= policy.quality_red_ratio:
        return Quality.RED
    if ratio >= policy.quality_yellow_ratio:
        return Quality.YELLOW
    return Quality.GREEN


def negative_counts(
    received_ms: int | None, last_counted_ms: int | None, now_ms: int, policy: PolicySettings
) -> bool:
    """Whether a block or report moves a business's quality: only from a customer who received
    a message from it in the last ``quality_recipient_days`` (strangers cannot report a
    business down), and once per customer per ``quality_days`` (nor can one angry customer).
    The others are kept for the operator."""
    if received_ms is None or received_ms < now_ms - policy.quality_recipient_days * DAY_MS:
        return False
    return last_counted_ms is None or last_counted_ms < now_ms - policy.quality_days * DAY_MS


def tier_limit(tier: int, policy: PolicySettings) -> int | None:
    """Unique customers per rolling 24 h at that step of the ladder; ``None`` is unlimited."""
    ladder = policy.tier_ladder
    limit = ladder[min(max(tier, 0), len(ladder) - 1)]
    return None if limit <= 0 else limit


def tier_step(tier: int, used: int, quality: Quality, policy: PolicySettings) -> int:
    """The tier after an evaluation: one step down on RED quality, one step up when at least
    ``tier_upgrade_ratio`` of the limit was used over ``tier_usage_days``, else unchanged."""
    top = len(policy.tier_ladder) - 1
    if quality is Quality.RED:
        return max(tier - 1, 0)
    limit = tier_limit(tier, policy)
    if limit is not None and tier < top and used >= policy.tier_upgrade_ratio * limit:
        return tier + 1
    return tier


def country_of(phone: str) -> str:
    """ISO 3166-1 alpha-2 region of an E.164 number ("ZZ" when unknown)."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return "ZZ"
    return region or "ZZ"


def pricing_category(
    template: TemplateCategory, business_country: str, recipient_country: str
) -> PricingCategory:
    if template is TemplateCategory.MARKETING:
        return PricingCategory.MARKETING
    if template is TemplateCategory.UTILITY:
        return PricingCategory.UTILITY
    if business_country != recipient_country:
        return PricingCategory.AUTHENTICATION_INTERNATIONAL
    return PricingCategory.AUTHENTICATION
