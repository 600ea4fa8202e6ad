"""Blocking and reporting from the customer's client, and what the business then sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import RunningRelay, read_last_code

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.client.events import MessageStatus, StatusChanged
from tresen.core.errors import ErrorCode


async def client(relay: RunningRelay, folder: Path, phone: str | None = None) -> Client:
    phone = phone or relay.next_phone()
    c = Client.open(folder, relay.url)
    await c.request_code(phone)
    code = read_last_code(relay.sms_file, phone)
    assert code is not None
    await c.register(phone, code)
    return c


async def delivered(sender: Client, message_id: str) -> None:
    while True:
        event = await sender.next_event(within_s=10)
        if (
            isinstance(event, StatusChanged)
            and event.message_id == message_id
            and event.status is MessageStatus.DELIVERED
        ):
            return


async def test_block_unblock_and_report_from_the_client(
    relay: RunningRelay, tmp_path: Path
) -> None:
    shop = await client(relay, tmp_path / "shop")
    await shop.save_business_profile(display_name="Corner Shop")
    ana = await client(relay, tmp_path / "ana")
    assert shop.phone is not None
    assert ana.phone is not None
    await ana.send_text(shop.phone, "Do you deliver on Sundays?")
    answer = await shop.send_text(ana.phone, "Yes, until noon.")
    for c in (shop, ana):
        c.start()
    await delivered(shop, answer.message_id)  # ana is the shop's customer: her block counts

    assert await ana.block(shop.phone) is True
    assert await ana.block(shop.phone) is False  # blocked already
    assert await ana.blocked() == [shop.account_id]
    with pytest.raises(RelayError) as refused:
        await shop.send_text(ana.phone, "Special offer!")
    assert refused.value.code == ErrorCode.UNDELIVERABLE
    with pytest.raises(RelayError) as own:
        await ana.send_text(shop.phone, "hello?")
    assert own.value.code == ErrorCode.BLOCKED_BY_YOU

    await ana.unblock(shop.phone)
    assert await ana.blocked() == []
    await ana.send_text(shop.phone, "Sorry, wrong button")
    await shop.send_text(ana.phone, "No problem")

    await ana.report(shop.phone, "spam", detail="offers every hour", block=True)
    standing: dict[str, Any] = await shop.quality()
    # One customer lowers the rating once per quality period; the report is kept all the same.
    assert (standing["blocks"], standing["reports"], standing["uncounted"]) == (1, 0, 1)
    assert await ana.blocked() == [shop.account_id]
    for c in (shop, ana):
        await c.close()
