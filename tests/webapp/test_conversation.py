"""The rest of a conversation in the web app: unread counts, typing, reply buttons, safety
numbers and a changed identity, blocking and reporting a business, and the app in German."""

from __future__ import annotations

import httpx
from playwright.async_api import expect
from webapp_support import (
    AppPage,
    MakeCustomer,
    Platform,
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
from tresen.core.http import tls_context
from tresen.crypto.olm import DeviceIdentity
from tresen.wire.e2e import (
    Button,
    Interactive,
    InteractiveKind,
    InteractiveReply,
    ListRow,
    ListSection,
    Reaction,
    ReplyContext,
    Text,
)


async def test_unread_counts_typing_and_reply_buttons(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna, first = await writing_to_anna(app, platform, make_customer, "Hallo")
    await page.get_by_role("button", name="Back").click()

    # Two messages while the chat list is shown: a badge of 2, gone once the chat is open,
    # and Anna sees them read.
    one = await anna.send_text(first.chat, "eins")
    await anna.send_text(first.chat, "zwei")
    row = page.get_by_test_id("chat-row")
    await expect(row.get_by_test_id("unread")).to_have_text("2")
    await expect(row).to_contain_text("zwei")
    await row.click()
    await expect(page.locator(".bubble.in .body")).to_have_text(["eins", "zwei"])
    await page.get_by_role("button", name="Back").click()
    await expect(row.get_by_test_id("unread")).to_have_count(0)
    while True:
        event = await anna.next_event(within_s=20)
        read = isinstance(event, StatusChanged) and event.status is MessageStatus.READ
        if read and event.message_id == one.message_id:
            break
    await row.click()

    # Anna types an answer: the header says so.
    await anna.typing(first.chat, first.message_id)
    await expect(page.get_by_text("typing…")).to_be_visible()

    # Reply buttons: a tap answers with the button's id.
    asked = await anna.send_interactive(
        first.chat,
        Interactive(
            type=InteractiveKind.BUTTON,
            body="Darf das Paket zum Nachbarn?",
            buttons=[Button(id="yes", title="Ja"), Button(id="no", title="Nein, behalten")],
        ),
    )
    await expect(page.get_by_text("typing…")).to_have_count(0)
    await page.get_by_role("button", name="Nein, behalten").click()
    answer = await next_message(anna)
    assert isinstance(answer.payload, InteractiveReply)
    assert (answer.payload.message_id, answer.payload.id) == (asked.message_id, "no")
    await expect(page.get_by_role("button", name="Ja")).to_be_disabled()
    assert app.problems.all() == []


async def test_safety_numbers_match_and_a_changed_identity_holds_messages(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna = await make_customer("anna")
    assert anna.phone is not None
    phone = await register(app, platform)
    await open_chat_with(page, anna.phone)
    await write(page, "Hallo")
    await next_message(anna)

    await page.get_by_role("button", name=anna.phone).click()
    await page.goto(page.url.replace("#/profile/", "#/safety/"))
    shown = page.get_by_test_id("safety-number")
    await expect(shown).to_have_text(await anna.safety_number(phone), use_inner_text=True)
    assert len((await shown.inner_text()).split()) == 12

    # Anna's device presents other identity keys: the browser holds what it writes to her
    # until its user compared safety numbers and trusted the new keys.
    other = DeviceIdentity.create()
    [one_time_key] = other.generate_one_time_keys(1)
    async with httpx.AsyncClient(verify=tls_context(), base_url=platform.url) as http:
        changed = await http.put(
            "/v1/keys",
            json={
                "identity_keys": {"curve25519": other.curve25519, "ed25519": other.ed25519},
                "one_time_keys": [
                    {
                        "key_id": one_time_key.key_id,
                        "public_key": one_time_key.public_key,
                        "signature": one_time_key.signature,
                    }
                ],
            },
            headers={"Authorization": f"Bearer {anna.api.token}"},
        )
        assert changed.status_code == 200, changed.text
    await page.go_back()
    await page.go_back()
    await write(page, "Bist du das noch?")
    await expect(page.get_by_test_id("identity-changed")).to_be_visible(timeout=20_000)
    held = page.locator(".bubble.out").filter(has_text="Bist du das noch?")
    await expect(held.locator(".ticks")).to_have_attribute("data-status", "pending")
    await (
        page.get_by_test_id("identity-changed").get_by_role("button", name="Safety number").click()
    )
    await expect(shown).not_to_have_text(await anna.safety_number(phone), use_inner_text=True)
    await page.get_by_role("button", name="I compared them — trust the new keys").click()
    await expect(page.get_by_test_id("identity-changed")).to_have_count(0)
    await expect(held.locator(".ticks")).to_have_attribute("data-status", "sent", timeout=20_000)


async def test_blocking_and_reporting_the_airline(app: AppPage, platform: Platform) -> None:
    page = app.page
    phone = await register(app, platform)
    await page.get_by_role("button", name="Find businesses").first.click()
    await page.get_by_label("Search by name").fill("Tresen Air")
    await page.get_by_test_id("business-result").first.click()
    await page.get_by_role("button", name="Message").click()
    await write(page, "hi")
    await expect(page.locator(".bubble.in").first).to_be_visible(timeout=20_000)

    gateway = platform.printed["Gateway"].split()[0]
    headers = {"Authorization": f"Bearer {platform.printed['API token']}"}
    text = {"messaging_product": "whatsapp", "to": phone, "type": "text", "text": {"body": "x"}}
    async with httpx.AsyncClient(verify=tls_context(), headers=headers, timeout=20) as api:
        assert (await api.post(gateway, json=text)).status_code == 200

        await page.get_by_role("button", name="Tresen Air").click()
        await page.get_by_role("button", name="Block", exact=True).click()
        await expect(page.get_by_role("button", name="Unblock")).to_be_visible()
        refused = await api.post(gateway, json=text)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == 131026

        await page.get_by_role("button", name="Unblock").click()
        await expect(page.get_by_role("button", name="Block", exact=True)).to_be_visible()
        assert (await api.post(gateway, json=text)).status_code == 200

        await page.get_by_role("button", name="Report and block").click()
        await expect(page.get_by_role("status")).to_have_text("Reported. Thank you.")
        assert (await api.post(gateway, json=text)).json()["error"]["code"] == 131026
    await page.get_by_role("button", name="Message").click()
    await expect(page.get_by_text("You blocked this business")).to_be_visible()


async def test_the_app_speaks_german_to_a_german_browser(app: AppPage, platform: Platform) -> None:
    german = await open_app(app.context.browser, platform, locale="de-DE")  # type: ignore[arg-type]
    try:
        page = german.page
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Mit Unternehmen chatten, Ende-zu-Ende-verschlüsselt"
        )
        await expect(page.get_by_role("button", name="Code senden")).to_be_visible()
        assert await page.evaluate("() => document.documentElement.lang") == "de"
    finally:
        await german.close()


async def test_the_text_a_peer_sends_is_never_markup(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna, first = await writing_to_anna(app, platform, make_customer, "Hallo")
    payload = '<img src=x onerror="window.pwned=1"><b>fett</b>'
    await anna.send(first.chat, Text(text=payload))
    await expect(page.locator(".bubble.in .body")).to_have_text([payload])
    assert await page.evaluate("() => window.pwned === undefined")
    assert await page.locator(".bubble.in img").count() == 0


async def test_a_list_opens_from_its_menu_button_and_a_row_answers(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna, first = await writing_to_anna(app, platform, make_customer, "Wann kommt ihr?")
    asked = await anna.send_interactive(
        first.chat,
        Interactive(
            type=InteractiveKind.LIST,
            body="Wann sollen wir kommen?",
            button="Zeit wählen",
            sections=[
                ListSection(
                    title="Morgen",
                    rows=[ListRow(id="am", title="Vormittag", description="8 bis 12 Uhr")],
                ),
                ListSection(title="Freitag", rows=[ListRow(id="fri", title="Ganztags")]),
            ],
        ),
    )
    morning = page.get_by_role("button", name="Vormittag")
    await expect(morning).to_be_hidden()
    await page.get_by_text("Zeit wählen").click()
    await expect(page.get_by_role("group", name="Freitag")).to_contain_text("Ganztags")
    await morning.click()
    answer = await next_message(anna)
    assert isinstance(answer.payload, InteractiveReply)
    assert (answer.payload.message_id, answer.payload.id) == (asked.message_id, "am")
    assert answer.payload.description == "8 bis 12 Uhr"


async def test_one_tab_at_a_time_is_the_device_and_another_can_take_over(
    app: AppPage, platform: Platform
) -> None:
    page = app.page
    await register(app, platform)
    second = await app.context.new_page()
    await second.goto("/app/")
    await expect(second.get_by_test_id("elsewhere")).to_contain_text(
        "Tresen is open in another tab"
    )
    await second.get_by_role("button", name="Use here").click()
    await expect(second.get_by_role("heading", name="Chats")).to_be_visible()
    await expect(page.get_by_test_id("elsewhere")).to_contain_text(
        "Tresen was opened in another tab"
    )
    await page.get_by_role("button", name="Use here").click()
    await expect(page.get_by_role("heading", name="Chats")).to_be_visible()
    await expect(second.get_by_test_id("elsewhere")).to_be_visible()
    assert app.problems.all() == []


async def test_removing_this_browser_deletes_its_device_and_its_data(
    app: AppPage, platform: Platform
) -> None:
    page = app.page
    phone = await register(app, platform)
    await page.get_by_role("button", name="Settings").click()
    await expect(page.get_by_test_id("my-phone")).to_have_text(phone)
    await expect(page.locator(".devices li")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Remove this browser").click()
    await expect(page.get_by_label("Phone number")).to_be_visible()
    databases = await page.evaluate("async () => (await indexedDB.databases()).map(d => d.name)")
    assert "tresen" not in databases or await page.evaluate(
        """() => new Promise((resolve) => {
             const open = indexedDB.open("tresen");
             open.onsuccess = () => {
               const tx = open.result.transaction("meta");
               const read = tx.objectStore("meta").get("me");
               read.onsuccess = () => resolve(read.result === undefined);
             };
           })"""
    )

    # Registered again, the account has this one device: the removed one is gone.
    await register(app, platform, phone)
    await page.get_by_role("button", name="Settings").click()
    await expect(page.locator(".devices li")).to_have_count(1)
    await expect(page.locator(".devices li")).to_contain_text("(This browser)")


async def test_reactions_and_quoted_replies_both_ways(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    anna, question = await writing_to_anna(app, platform, make_customer, "Kommst du morgen?")

    # Anna reacts and answers quoting the question: the browser shows both on the message.
    await anna.react(question.chat, question.message_id, "👍")
    await anna.send(
        question.chat,
        Text(text="Ja, um neun", context=ReplyContext(message_id=question.message_id)),
    )
    mine = page.locator(".bubble.out").filter(has_text="Kommst du morgen?")
    await expect(mine.get_by_test_id("reactions")).to_have_text("👍")
    answer = page.locator(".bubble.in").filter(has_text="Ja, um neun")
    await expect(answer.get_by_test_id("quoted")).to_contain_text("Kommst du morgen?")
    await expect(page.locator(".bubble")).to_have_count(2)  # a reaction is no bubble

    # The browser reacts to Anna's answer and replies to it.
    await answer.click()
    await answer.get_by_label("React").click()
    await answer.get_by_role("button", name="❤️").click()
    reaction = await next_message(anna)
    assert isinstance(reaction.payload, Reaction)
    assert reaction.payload.emoji == "❤️"
    await expect(answer.get_by_test_id("reactions")).to_have_text("❤️")
    await answer.click()
    await answer.get_by_role("button", name="Reply").click()
    await expect(page.get_by_test_id("replying")).to_contain_text("Ja, um neun")
    await write(page, "Super")
    reply = await next_message(anna)
    assert isinstance(reply.payload, Text)
    assert reply.payload.context is not None
    assert reply.payload.context.message_id == reaction.payload.message_id
    await expect(page.get_by_test_id("replying")).to_have_count(0)
    await shoot_app(page, "reactions")
    assert app.problems.all() == []


RECORD_NOTIFICATIONS = """
window.shownNotifications = [];
window.Notification = class {
  static permission = "granted";
  static async requestPermission() { return "granted"; }
  constructor(title, options) { window.shownNotifications.push({title, body: options.body}); }
};
"""


async def test_a_message_for_a_tab_in_the_background_is_notified(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    # The browser's notifications are recorded instead of shown (headless Chromium has no
    # notification centre); everything else is the app's own code.
    await app.context.add_init_script(RECORD_NOTIFICATIONS)
    page = app.page
    await page.reload()
    anna, first = await writing_to_anna(app, platform, make_customer, "Hallo")
    await anna.send_text(first.chat, "Sichtbar, kein Hinweis")
    await expect(page.locator(".bubble.in .body")).to_have_text(["Sichtbar, kein Hinweis"])

    # Playwright tells every page it has the focus; without that, the page loses it to
    # another tab brought to the front, as with a person switching tabs.
    cdp = await app.context.new_cdp_session(page)
    await cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    other = await app.context.new_page()
    await other.bring_to_front()
    assert await page.evaluate("() => document.hasFocus()") is False
    await anna.send_text(first.chat, "Im Hintergrund")
    await expect(page.locator(".bubble.in .body")).to_have_count(2)
    shown = await page.evaluate("() => window.shownNotifications")
    assert shown == [{"title": anna.phone, "body": "Im Hintergrund"}]


async def test_a_deep_link_opens_the_chat_with_a_text_ready_to_send(
    app: AppPage, platform: Platform
) -> None:
    page = app.page
    await register(app, platform)
    await page.get_by_role("button", name="Find businesses").first.click()
    await page.get_by_label("Search by name").fill("Tresen Air")
    result = page.get_by_test_id("business-result").first
    await result.click()
    airline = page.url.split("#/profile/")[1]
    await page.goto(f"/app/#/chat/{airline}?text=START%20NEWS")
    composer = page.get_by_label("Message", exact=True)
    await expect(composer).to_have_value("START NEWS")
    await expect(page.locator(".bubble")).to_have_count(0)  # nothing went out by itself
    await expect(page.get_by_test_id("chat-name")).to_contain_text("Tresen Air")
