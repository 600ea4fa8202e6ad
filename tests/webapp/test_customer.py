"""What a customer does in the web app, in Chromium, against a real platform (``tresen up``):
register, find the verified airline, chat with it and with a customer on the Python SDK, keep
writing while offline, and follow the conversation on a second browser linked to the account.
"""

from __future__ import annotations

import secrets
import sqlite3

from playwright.async_api import expect
from webapp_support import (
    AppPage,
    MakeCustomer,
    Platform,
    interactive,
    next_message,
    open_app,
    open_chat_with,
    register,
    shoot_app,
    write,
    writing_to_anna,
)

from tresen.client.events import StatusChanged
from tresen.client.store import MessageStatus
from tresen.wire.e2e import Text


async def test_a_customer_registers_finds_the_airline_and_asks_about_a_flight(
    app: AppPage, platform: Platform
) -> None:
    page = app.page
    await interactive(page)
    # The operator key's fingerprint is shown before the code is sent: the same one
    # `tresen up` printed.
    await page.get_by_text("Operator key of this server").click()
    await expect(page.get_by_test_id("operator-fingerprint")).to_have_text(platform.fingerprint)
    await shoot_app(page, "register")
    await register(app, platform)
    await expect(page.get_by_text("No chats yet")).to_be_visible()

    await page.get_by_role("button", name="Find businesses").first.click()
    await page.get_by_label("Search by name").fill("tresen")
    result = page.get_by_test_id("business-result").filter(has_text="Tresen Air")
    await expect(result).to_be_visible()
    await shoot_app(page, "directory")
    await result.click()
    await expect(page.get_by_test_id("profile-name")).to_contain_text("Tresen Air")
    await expect(page.get_by_test_id("open-now")).to_be_visible()
    await page.get_by_role("button", name="Message").click()

    await write(page, "FLIGHT")
    answer = page.locator(".bubble.in").filter(has_text="Which flight is it?")
    await expect(answer).to_be_visible(timeout=20_000)
    # The airline's device received it: the browser shows ✓✓ on the message.
    await expect(page.locator(".bubble.out .ticks").last).to_have_attribute(
        "data-status", "delivered", timeout=10_000
    )
    await write(page, "TA 100")
    # The bot answers with the flight itself (the question before it names TA 100 as an example).
    flight = page.locator(".bubble.in").filter(has_text="Berlin (BER)")
    await expect(flight).to_contain_text("TA 100", timeout=20_000)
    await shoot_app(page, "chat")
    assert app.problems.all() == []


async def test_the_browser_and_an_sdk_customer_write_to_each_other(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna = await make_customer("anna")
    assert anna.phone is not None
    await register(app, platform)

    await open_chat_with(page, anna.phone)
    await write(page, "Hallo Anna, hier schreibt der Browser")
    received = await next_message(anna)
    assert isinstance(received.payload, Text)
    assert received.payload.text == "Hallo Anna, hier schreibt der Browser"
    await expect(page.locator(".bubble.out .ticks").last).to_have_attribute(
        "data-status", "delivered"
    )

    # Anna reads it (blue ticks in the browser) and answers.
    await anna.mark_read(received.chat)
    await expect(page.locator(".bubble.out .ticks").last).to_have_attribute("data-status", "read")
    await anna.send_text(received.chat, "Hallo Browser, Anna hier 👋")
    await expect(page.locator(".bubble.in .body")).to_have_text(["Hallo Browser, Anna hier 👋"])

    # The browser had the chat open: Anna learns it was read.
    while True:
        event = await anna.next_event(within_s=20)
        if isinstance(event, StatusChanged) and event.status is MessageStatus.READ:
            break
    assert app.problems.all() == []


async def test_messages_written_offline_wait_and_go_out_when_back_online(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna, _ = await writing_to_anna(app, platform, make_customer, "first, online")

    await app.context.set_offline(True)
    await expect(page.get_by_test_id("connection-status")).to_be_visible(timeout=30_000)
    await write(page, "second, written offline")
    pending = page.locator(".bubble.out").filter(has_text="second, written offline")
    await expect(pending.locator(".ticks")).to_have_attribute("data-status", "pending")
    await shoot_app(page, "offline")
    await app.context.set_offline(False)
    received = await next_message(anna, within_s=40)
    assert isinstance(received.payload, Text)
    assert received.payload.text == "second, written offline"
    await expect(pending.locator(".ticks")).to_have_attribute(
        "data-status", "delivered", timeout=20_000
    )


async def test_a_second_browser_linked_to_the_account_sees_the_conversation(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    anna = await make_customer("anna")
    assert anna.phone is not None
    phone = await register(app, platform)
    second = await open_app(app.context.browser, platform)  # type: ignore[arg-type]
    try:
        await register(second, platform, phone)  # the same number: another device
        first_page, second_page = app.page, second.page
        await open_chat_with(first_page, anna.phone)
        await write(first_page, "Von Gerät eins")
        received = await next_message(anna)
        # Anna's answer goes to both browsers; the first one's message reached the second
        # as a transcript.
        await anna.send_text(received.chat, "Antwort an beide Geräte")
        row = second_page.get_by_test_id("chat-row")
        await expect(row).to_have_count(1, timeout=20_000)
        await row.click()
        await expect(second_page.locator(".bubble.out .body")).to_have_text(["Von Gerät eins"])
        await expect(second_page.locator(".bubble.in .body")).to_have_text(
            ["Antwort an beide Geräte"]
        )
        await expect(first_page.locator(".bubble.in .body")).to_have_text(
            ["Antwort an beide Geräte"]
        )
        await shoot_app(second_page, "second-device")
        assert second.problems.all() == []
    finally:
        await second.close()


async def test_nothing_typed_in_the_browser_reaches_the_relays_database_or_logs(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna = await make_customer("anna")
    assert anna.phone is not None
    await register(app, platform)
    marker = f"browser-marker-{secrets.token_hex(8)}"
    await open_chat_with(page, anna.phone)
    await write(page, f"{marker} to Anna")
    received = await next_message(anna)
    assert isinstance(received.payload, Text)
    assert marker in received.payload.text
    await page.get_by_role("button", name="Back").click()
    await page.get_by_role("button", name="Find businesses").first.click()
    await page.get_by_label("Search by name").fill("Tresen Air")
    await page.get_by_test_id("business-result").first.click()
    await page.get_by_role("button", name="Message").click()
    await write(page, f"{marker} to the airline")
    await expect(page.locator(".bubble.in").first).to_be_visible(timeout=20_000)

    # Every file the relay wrote (its database, the WAL, its log) and every row of every table.
    found = []
    for path in [platform.log_file, *platform.data_dir.rglob("*")]:
        if path.is_file() and marker.encode() in path.read_bytes():
            found.append(str(path.relative_to(platform.log_file.parent)))
    relay_files = [f for f in found if "demo-" not in f]
    assert relay_files == []
    with sqlite3.connect(platform.data_dir / "relay.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                assert marker not in repr(row)
