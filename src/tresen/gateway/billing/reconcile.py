"""The reconciliation of a monthly statement against the delivery receipts the gateway holds:
rules as pure functions of the statement's lines and the receipts, so that tests need
neither a relay nor a clock.

A line item (a charge) is *verified* when the gateway holds a receipt for its message id
whose signature verifies with the device key it names, signed by the line's recipient, for
the line's template, delivered within the month (give or take :data:`CLOCK_SKEW_MS`: the
time is the customer device's clock). Every other line is *unproven*, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tresen.client.statements import LineItem, StatementHead
from tresen.crypto.delivery import DeliveryFacts, ForgedReceipt, verify_delivery
from tresen.gateway.billing.repo import KeptReceipt

__all__ = [
    "CLOCK_SKEW_MS",
    "MAX_LISTED",
    "Amount",
    "Reconciliation",
    "Tally",
    "Unproven",
    "UnprovenReason",
    "check_line",
]

CLOCK_SKEW_MS = 24 * 3600 * 1000
"""How far a receipt's delivery time may lie outside the month: a customer device's clock
may be off, and a message delivered near midnight on the last day is billed in that month."""
MAX_LISTED = 10_000
"""Unproven charges listed one by one; beyond, only counted."""


class UnprovenReason(StrEnum):
    NO_RECEIPT = "no_receipt"
    """The gateway holds no receipt for the message: the customer never said it arrived."""
    OTHER_CUSTOMER = "other_customer"
    """The receipt was signed by another account than the line's recipient."""
    OTHER_TEMPLATE = "other_template"
    """The receipt names another template than the line."""
    OUTSIDE_MONTH = "outside_month"
    """The receipt says the message was delivered outside the statement's month."""
    BAD_SIGNATURE = "bad_signature"
    """The kept receipt does not verify with the device key it names."""
    CHARGED_TWICE = "charged_twice"
    """The statement lists this message more than once."""


@dataclass(slots=True)
class Amount:
    count: int = 0
    amount_micros: int = 0

    def add(self, micros: int) -> None:
        self.count += 1
        self.amount_micros += micros


@dataclass(slots=True)
class Tally:
    """Counts and amounts per currency."""

    by_currency: dict[str, Amount] = field(default_factory=dict)

    def add(self, currency: str, micros: int) -> None:
        self.by_currency.setdefault(currency, Amount()).add(micros)

    @property
    def count(self) -> int:
        return sum(a.count for a in self.by_currency.values())


@dataclass(frozen=True, slots=True)
class Unproven:
    item: LineItem
    reason: UnprovenReason


@dataclass(slots=True)
class Reconciliation:
    """A month's statement held against the receipts."""

    business: str
    head: StatementHead
    charged: Tally = field(default_factory=Tally)
    """Every line item listed."""
    verified: Tally = field(default_factory=Tally)
    unproven_total: Tally = field(default_factory=Tally)
    unproven: list[Unproven] = field(default_factory=list)
    """The unproven charges, up to :data:`MAX_LISTED`, in the statement's order."""
    totals_exceeding: list[str] = field(default_factory=list)
    """Currencies whose grand total is more than the line items listed add up to (while no
    line was given up): charges nobody can check."""
    _seen: set[str] = field(default_factory=set)

    @property
    def clean(self) -> bool:
        """Every charge is proven by a receipt (charges given up after the dispute period
        aside: nothing is left to dispute of them)."""
        return self.unproven_total.count == 0 and not self.totals_exceeding

    def add_page(self, items: Sequence[LineItem], receipts: Mapping[str, KeptReceipt]) -> None:
        for item in items:
            self.charged.add(item.currency, item.price_micros)
            reason: UnprovenReason | None
            if item.message_id in self._seen:
                reason = UnprovenReason.CHARGED_TWICE
            else:
                self._seen.add(item.message_id)
                reason = check_line(self.business, self.head, item, receipts.get(item.message_id))
            if reason is None:
                self.verified.add(item.currency, item.price_micros)
                continue
            self.unproven_total.add(item.currency, item.price_micros)
            if len(self.unproven) < MAX_LISTED:
                self.unproven.append(Unproven(item, reason))

    def finish(self) -> Reconciliation:
        """Compare the statement's grand totals with the line items (when none was given
        up, they must add up to the same)."""
        if self.head.items_reduced == 0:
            for total in self.head.grand_totals:
                listed = self.charged.by_currency.get(str(total["currency"]), Amount())
                if (
                    int(total["amount_micros"]) > listed.amount_micros
                    or int(total["count"]) > listed.count
                ):
                    self.totals_exceeding.append(str(total["currency"]))
        return self


def check_line(
    business: str, head: StatementHead, item: LineItem, receipt: KeptReceipt | None
) -> UnprovenReason | None:
    """Why the charge ``item`` is not proven by ``receipt`` (``None``: it is)."""
    if receipt is None:
        return UnprovenReason.NO_RECEIPT
    if receipt.customer_account != item.recipient_account:
        return UnprovenReason.OTHER_CUSTOMER
    if item.template_id is not None and receipt.template_id != str(item.template_id):
        return UnprovenReason.OTHER_TEMPLATE
    start, end = head.period_start_ms - CLOCK_SKEW_MS, head.period_end_ms + CLOCK_SKEW_MS
    if not start <= receipt.delivered_ms < end:
        return UnprovenReason.OUTSIDE_MONTH
    facts = DeliveryFacts(
        message_id=receipt.message_id,
        business=business,
        customer=receipt.customer_account,
        device_id=receipt.device_id,
        template_id=receipt.template_id,
        delivered_ms=receipt.delivered_ms,
    )
    try:
        verify_delivery(facts, receipt.signature, receipt.device_ed25519)
    except ForgedReceipt:
        return UnprovenReason.BAD_SIGNATURE
    return None
