"""The reconciliation's rules on constructed statements and receipts: which charge a receipt
proves, and why the others are not proven."""

from __future__ import annotations

from tresen.client.statements import LineItem, StatementHead
from tresen.crypto.delivery import DeliveryFacts, sign_delivery
from tresen.crypto.olm import DeviceIdentity
from tresen.gateway.billing.reconcile import Reconciliation, UnprovenReason
from tresen.gateway.billing.repo import KeptReceipt

SHOP, ALICE, BOB = "5" * 32, "a" * 32, "b" * 32
JAN_1, FEB_1 = 1_767_225_600_000, 1_769_904_000_000
DAY = 86_400_000


def head(**changes: object) -> StatementHead:
    values: dict[str, object] = {
        "month": "2026-01",
        "period_start_ms": JAN_1,
        "period_end_ms": FEB_1,
        "final": True,
        "items_total": 0,
        "items_reduced": 0,
        "grand_totals": [],
    }
    values.update(changes)
    return StatementHead(**values)  # type: ignore[arg-type]


def line(message_id: str, recipient: str = ALICE, template: int = 7) -> LineItem:
    return LineItem(message_id, recipient, template, "utility", "DE", 10_000, "EUR", JAN_1 + DAY)


def receipt(
    device: DeviceIdentity,
    message_id: str,
    *,
    customer: str = ALICE,
    template: str = "7",
    delivered_ms: int = JAN_1 + DAY,
    signed_ms: int | None = None,
) -> KeptReceipt:
    facts = DeliveryFacts(
        message_id=message_id,
        business=SHOP,
        customer=customer,
        device_id=1,
        template_id=template,
        delivered_ms=delivered_ms if signed_ms is None else signed_ms,
    )
    return KeptReceipt(
        message_id, customer, 1, device.ed25519, template, delivered_ms,
        sign_delivery(device, facts), JAN_1 + DAY,
    )  # fmt: skip


def test_each_rule_names_the_charge_it_does_not_prove() -> None:
    device = DeviceIdentity.create()
    ids = [f"{n:032x}" for n in range(1, 9)]
    receipts = {
        ids[0]: receipt(device, ids[0]),
        ids[1]: receipt(device, ids[1], customer=BOB),
        ids[2]: receipt(device, ids[2], template="8"),
        ids[3]: receipt(device, ids[3], delivered_ms=FEB_1 + 2 * DAY),
        ids[4]: receipt(device, ids[4], signed_ms=JAN_1),
        ids[6]: receipt(device, ids[6], delivered_ms=FEB_1 + DAY // 2),  # a slow clock
    }
    items = [line(i) for i in ids[:7]] + [line(ids[0])]
    totals = [{"currency": "EUR", "count": 8, "amount_micros": 80_000}]
    result = Reconciliation(SHOP, head(grand_totals=totals))
    result.add_page(items[:4], receipts)
    result.add_page(items[4:], receipts)
    result.finish()

    assert [(u.item.message_id, u.reason) for u in result.unproven] == [
        (ids[1], UnprovenReason.OTHER_CUSTOMER),
        (ids[2], UnprovenReason.OTHER_TEMPLATE),
        (ids[3], UnprovenReason.OUTSIDE_MONTH),
        (ids[4], UnprovenReason.BAD_SIGNATURE),
        (ids[5], UnprovenReason.NO_RECEIPT),
        (ids[0], UnprovenReason.CHARGED_TWICE),
    ]
    assert (result.verified.count, result.charged.count, result.unproven_total.count) == (2, 8, 6)
    assert result.unproven_total.by_currency["EUR"].amount_micros == 60_000
    assert not result.clean
    assert result.totals_exceeding == []


def test_a_grand_total_above_the_line_items_is_not_clean() -> None:
    device = DeviceIdentity.create()
    only = "c" * 32
    receipts = {only: receipt(device, only)}
    padded = [{"currency": "EUR", "count": 2, "amount_micros": 20_000}]
    result = Reconciliation(SHOP, head(grand_totals=padded))
    result.add_page([line(only)], receipts)
    assert result.finish().totals_exceeding == ["EUR"]
    assert not result.clean

    # Once the relay gave line items up, the totals cannot be compared: nothing to dispute.
    reduced = Reconciliation(SHOP, head(grand_totals=padded, items_reduced=1))
    reduced.add_page([line(only)], receipts)
    assert reduced.finish().clean
