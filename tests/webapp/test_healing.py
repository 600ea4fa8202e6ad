"""Sessions that heal between the browser and the Python SDK (docs/protocol.md §8.6): a
device that lost its Olm sessions asks for the message again over a new session, and the
sender's device, browser or SDK, sends it again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from playwright.async_api import Page, expect
from webapp_support import (
    AppPage,
    MakeCustomer,
    Platform,
    next_message,
    open_chat_with,
    register,
    write,
)

from tresen.client import Client
from tresen.client.events import StatusChanged
from tresen.client.store import MessageStatus
from tresen.wire.e2e import Text

FORGET_SESSIONS = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("tresen");
  open.onsuccess = () => {
    const tx = open.result.transaction("sessions", "readwrite");
    tx.objectStore("sessions").clear();
    tx.oncomplete = () => { open.result.close(); resolve(true); };
    tx.onerror = () => reject(tx.error);
  };
  open.onerror = () => reject(open.error);
})"""


async def text_from(client: Client) -> tuple[str, str]:
    received = await next_message(client, within_s=30)
    assert isinstance(received.payload, Text)
    return received.chat, received.payload.text


async def talking(page: Page, anna: Client) -> str:
    """The browser and Anna have written to each other (sessions both ways); Anna's chat."""
    assert anna.phone is not None
    await open_chat_with(page, anna.phone)
    await write(page, "Hallo Anna")
    chat, _ = await text_from(anna)
    await anna.send_text(chat, "Hallo Browser")
    await expect(page.locator(".bubble.in .body")).to_have_text(["Hallo Browser"])
    return chat


async def test_the_browser_loses_its_sessions_and_the_message_still_arrives(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna = await make_customer("anna")
    await register(app, platform)
    chat = await talking(page, anna)

    assert await page.evaluate(FORGET_SESSIONS) is True
    await page.reload()
    sent = await anna.send_text(chat, "Nach dem Verlust")
    # The browser could not decrypt it, asked Anna's device again, and shows it now.
    await expect(page.locator(".bubble.in .body")).to_have_text(
        ["Hallo Browser", "Nach dem Verlust"], timeout=30_000
    )
    while True:
        event = await anna.next_event(within_s=30)
        if (
            isinstance(event, StatusChanged)
            and event.message_id == sent.message_id
            and event.status is MessageStatus.DELIVERED
        ):
            break
    assert app.problems.all() == []


async def test_the_sdk_customer_loses_its_sessions_and_the_browser_sends_again(
    app: AppPage, platform: Platform, make_customer: MakeCustomer, tmp_path: Path
) -> None:
    page = app.page
    anna = await make_customer("anna")
    await register(app, platform)
    await talking(page, anna)

    await anna.close()
    with sqlite3.connect(tmp_path / "anna" / "client.db") as db:
        db.execute("DELETE FROM sessions")
    anna = Client.open(tmp_path / "anna")
    anna.start()
    try:
        await write(page, "Nachricht nach Annas Verlust")
        _, text = await text_from(anna)
        assert text == "Nachricht nach Annas Verlust"
        await expect(page.locator(".bubble.out .ticks").last).to_have_attribute(
            "data-status", "delivered", timeout=20_000
        )
    finally:
        await anna.close()
    assert app.problems.all() == []
