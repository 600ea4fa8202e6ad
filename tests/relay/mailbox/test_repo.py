"""The mailbox's statements on their own, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from support import RunningRelay, receiving_device

from tresen.core.ids import AccountId
from tresen.relay.mailbox import repo
from tresen.relay.schema import business_profiles


async def test_send_checks_name_suspended_senders_and_the_devices_that_can_receive(
    relay: RunningRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys in chunks of two: more senders than recipients, and the other way round.
    monkeypatch.setattr(repo, "CHUNK", 2)
    senders = [await receiving_device(relay) for _ in range(5)]
    recipients = [await receiving_device(relay) for _ in range(3)]
    # Devices whose identity keys were never published: an account's only one, and a
    # second one of a recipient.
    keyless = await relay.register()
    second = await relay.register(recipients[0].phone)
    assert (second.account_id, second.device_id) == (recipients[0].account_id, 2)
    async with relay.ctx.db.write() as conn:
        for shop, suspended in ((senders[1], True), (senders[3], False)):
            await conn.execute(
                insert(business_profiles).values(
                    account_id=shop.account_id,
                    display_name="Shop",
                    name_skeleton="shop",
                    created_ms=1,
                    updated_ms=1,
                    suspended_ms=1 if suspended else None,
                )
            )
    ids = [AccountId(d.account_id) for d in (*recipients, keyless)]
    async with relay.ctx.db.read() as conn:
        checks = await repo.send_checks(conn, [AccountId(d.account_id) for d in senders], ids)
        only_recipients = await repo.send_checks(conn, [], ids[:1])
    assert checks.suspended == {senders[1].account_id}
    assert set(checks.devices) == {d.account_id for d in recipients}
    for device in recipients:
        listed = checks.devices[AccountId(device.account_id)]
        assert [d.device_id for d in listed] == [device.device_id]
    assert only_recipients.suspended == set()
    assert list(only_recipients.devices) == [recipients[0].account_id]
