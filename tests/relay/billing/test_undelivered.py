"""A template that never reaches its recipient costs nothing: it expires, the business hears
``failed`` (131026), and the ledger has no row for it."""

from __future__ import annotations

from relay.billing.factories import DAY_MS, Billing


async def test_a_template_that_expires_undelivered_is_reported_failed_and_not_charged(
    billing: Billing,
) -> None:
    b = billing
    shop = await b.business()
    reached, unreachable = await b.customer(), await b.customer()
    offer = await b.template(shop, "MARKETING")
    for person in (reached, unreachable):
        await b.consent(shop, person, "marketing")
    delivered = await b.send(shop, reached, "template", offer)
    lost = await b.send(shop, unreachable, "template", offer)
    assert lost["pricing"]["billable"] is True
    assert await b.deliver(reached) == [delivered["message_id"]]

    b.clock.advance(ms=366 * DAY_MS)  # past the envelopes' year (factories.LIMITS)
    purged = await b.relay.ctx.mailbox.purge_expired()
    assert (purged.messages, purged.failed) == (2, 1)

    assert set(await b.ledger()) == {delivered["message_id"]}
    [report] = [e for e in await b.pending(shop) if e["kind"] == "failed"]
    assert report["message_id"] == lost["message_id"]
    assert report["peer"] == unreachable.account_id
    assert report["class"] == "template"
    assert report["code"] == 131026
    assert report["pricing"] is None
