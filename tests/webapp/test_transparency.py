"""Key transparency in the web app: the browser checks every contact's keys against the
relay's signed key log before it uses them, and a business's certificate before it shows its
tick. A relay that lies to this browser (a key swapped for it only, an entry removed from its
map, its history rewritten, a certificate kept out of the log) is caught: the chat shows the
warning and what the user writes is held; an honest relay raises no warning.

The relay runs in this process, so that a test can tamper with its key log as the Python
clients' tests do (transparency_support); the swap for this browser only rewrites the relay's
answers to this page alone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import require_chromium
from playwright.async_api import Browser, Page, Route, expect
from support import RunningRelay, registered_client
from transparency_support import remove_entry, rewrite_leaf, verify_unlogged
from webapp_support import (
    AppPage,
    Platform,
    next_message,
    open_app,
    open_chat_with,
    register,
    require_webapp,
    shoot_app,
    write,
)

from tresen.client import Client
from tresen.relay.operator.service import OperatorPrincipal
from tresen.wire.e2e import Text


@pytest.fixture
async def app(browser: Browser, relay: RunningRelay, tmp_path: Path) -> AsyncIterator[AppPage]:
    """The web app served by the in-process relay, in a fresh browser context."""
    require_chromium()
    require_webapp()
    page = await open_app(browser, on(relay, tmp_path))
    try:
        yield page
    finally:
        await page.close()


def on(relay: RunningRelay, tmp_path: Path) -> Platform:
    """The in-process relay as the web app helpers know a platform."""
    return Platform(
        url=relay.url,
        sms_file=relay.sms_file,
        data_dir=tmp_path,
        log_file=tmp_path / "relay.log",
        printed={},
    )


@pytest.fixture
async def people(relay: RunningRelay, tmp_path: Path) -> AsyncIterator[list[Client]]:
    """Customers on the Python SDK (``await person(people, relay, tmp_path, "anna")``),
    closed after the test."""
    clients: list[Client] = []
    try:
        yield clients
    finally:
        for client in clients:
            await client.close()


async def person(people: list[Client], relay: RunningRelay, tmp_path: Path, name: str) -> Client:
    client: Client = await registered_client(
        relay.url, relay.sms_file, tmp_path / name, relay.next_phone()
    )
    client.start()
    people.append(client)
    return client


# How many epoch heads the browser checked and kept (their contents are sealed at rest).
COUNT_ROOTS = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("tresen");
  open.onsuccess = () => {
    const request = open.result.transaction("roots").objectStore("roots").count();
    request.onsuccess = () => { open.result.close(); resolve(request.result); };
    request.onerror = () => reject(request.error);
  };
  open.onerror = () => reject(open.error);
})"""


async def show(page: Page, *route: str) -> None:
    """Go to a screen of the app (``#/profile/<account>``), as a link would."""
    await page.evaluate("(hash) => { location.hash = hash; }", "#/" + "/".join(route))


async def held(page: Page, text: str) -> None:
    """What the user wrote stays pending, unsent."""
    bubble = page.locator(".bubble.out").filter(has_text=text)
    await expect(bubble.locator(".ticks")).to_have_attribute("data-status", "pending")


async def test_an_honest_relay_raises_no_warning_and_a_key_swapped_for_this_browser_is_caught(
    app: AppPage, relay: RunningRelay, people: list[Client], tmp_path: Path
) -> None:
    page = app.page
    anna = await person(people, relay, tmp_path, "anna")
    bob = await person(people, relay, tmp_path, "bob")
    mallory = await person(people, relay, tmp_path, "mallory")
    assert anna.phone is not None
    assert bob.phone is not None
    await register(app, on(relay, tmp_path))

    # Honest: the browser checks Anna's keys (and its own) and writes to her.
    await open_chat_with(page, anna.phone)
    await write(page, "Hallo Anna")
    received = await next_message(anna)
    assert isinstance(received.payload, Text)
    assert received.payload.text == "Hallo Anna"
    await expect(page.get_by_test_id("key-log-failed")).to_have_count(0)
    await expect(page.get_by_test_id("key-log-own")).to_have_count(0)
    assert await page.evaluate(COUNT_ROOTS) >= 1  # Anna's keys came with proofs it checked

    # The relay shows this browser (only) Mallory's key as Bob's.
    assert mallory.device.identity is not None
    intruder = mallory.device.identity.curve25519

    async def swap(route: Route) -> None:
        response = await route.fetch()
        body: dict[str, Any] = await response.json()
        body["devices"][0]["identity_keys"]["curve25519"] = intruder
        await route.fulfill(response=response, body=json.dumps(body))

    def bobs_keys(url: str) -> bool:
        return f"/v1/keys/{bob.account_id}?" in url and "transparency=true" in url

    await page.route(bobs_keys, swap)
    await page.get_by_role("button", name="Back").click()
    await open_chat_with(page, bob.phone)
    await write(page, "Nur für dich, Bob")
    warning = page.get_by_test_id("key-log-failed")
    await expect(warning).to_be_visible(timeout=20_000)
    await expect(warning).to_contain_text("key log does not vouch")
    await held(page, "Nur für dich, Bob")
    await shoot_app(page, "key-log-warning")

    # Anna's chat is unaffected; Bob never received anything.
    await page.get_by_role("button", name="Back").click()
    await open_chat_with(page, anna.phone)
    await expect(page.get_by_test_id("key-log-failed")).to_have_count(0)
    await write(page, "Noch da?")
    await next_message(anna)
    assert app.problems.all() == []


async def test_an_entry_removed_from_the_log_is_caught(
    app: AppPage, relay: RunningRelay, people: list[Client], tmp_path: Path
) -> None:
    page = app.page
    bob = await person(people, relay, tmp_path, "bob")
    assert bob.phone is not None
    assert bob.account_id is not None
    await register(app, on(relay, tmp_path))
    await relay.ctx.transparency.publish()  # Bob's keys are in the log...
    # ...then the relay drops Bob from its map (but still hands out his keys) and signs that.
    await remove_entry(relay, bob.account_id)

    await open_chat_with(page, bob.phone)
    await write(page, "Hallo Bob")
    await expect(page.get_by_test_id("key-log-failed")).to_be_visible(timeout=20_000)
    await held(page, "Hallo Bob")
    assert app.problems.all() == []


async def test_a_rewritten_history_stops_every_chat_and_the_warning_stays(
    app: AppPage, relay: RunningRelay, people: list[Client], tmp_path: Path
) -> None:
    page = app.page
    anna = await person(people, relay, tmp_path, "anna")
    bob = await person(people, relay, tmp_path, "bob")
    assert anna.phone is not None
    assert bob.phone is not None
    assert bob.account_id is not None
    await register(app, on(relay, tmp_path))
    await open_chat_with(page, anna.phone)
    await write(page, "Hallo Anna")
    await next_message(anna)

    # The relay rewrites Bob's entry in its past log: the log no longer extends the one the
    # browser saw, whatever the proofs of any account say now.
    await rewrite_leaf(relay, bob.account_id, "A" * 42 + "E")
    await page.get_by_role("button", name="Back").click()
    await open_chat_with(page, bob.phone)
    await write(page, "Hallo Bob")
    warning = page.get_by_test_id("key-log-failed")
    await expect(warning).to_be_visible(timeout=20_000)
    await expect(warning).to_contain_text("history")
    await held(page, "Hallo Bob")

    # The warning, and what it says, stay after a reload, and Anna's chat is stopped too.
    await page.reload()
    await expect(page.get_by_test_id("key-log-failed")).to_contain_text("history")
    await page.get_by_role("button", name="Back").click()
    await page.get_by_test_id("chat-row").filter(has_text=anna.phone).click()
    await expect(page.get_by_test_id("key-log-failed")).to_contain_text("history")
    await write(page, "Bist du noch da?")
    await held(page, "Bist du noch da?")
    assert app.problems.all() == []


async def test_a_certificate_kept_out_of_the_log_gets_no_tick_and_stops_the_chat(
    app: AppPage, relay: RunningRelay, people: list[Client], tmp_path: Path
) -> None:
    page = app.page
    bakery = await person(people, relay, tmp_path, "bakery")
    lookalike = await person(people, relay, tmp_path, "lookalike")
    assert bakery.account_id is not None
    assert lookalike.account_id is not None
    for shop, name in ((bakery, "Bakery Lindner"), (lookalike, "Bank Support")):
        await shop.save_business_profile(display_name=name, category="RETAIL")
    await register(app, on(relay, tmp_path))
    await relay.ctx.operator.verify(OperatorPrincipal("tests"), bakery.account_id)
    # The operator signs a certificate it keeps out of the log, to show it to some browsers
    # only.
    hidden = await verify_unlogged(relay, lookalike.account_id)

    # The honest business: its certificate is in the log, so it has its tick.
    await show(page, "profile", bakery.account_id)
    await expect(page.get_by_test_id("profile-name")).to_contain_text("Bakery Lindner")
    await expect(
        page.get_by_test_id("profile-name").get_by_test_id("verified-tick")
    ).to_be_visible()
    await expect(page.get_by_test_id("tick-reason")).to_have_text(
        "Verified by the operator of this server"
    )

    # The lookalike: a valid signature, but not in the log: no tick, and the chat warns.
    await show(page, "profile", lookalike.account_id)
    await expect(page.get_by_test_id("profile-name")).to_contain_text("Bank Support")
    await expect(page.get_by_test_id("tick-reason")).to_contain_text(
        "not in the operator's public key log"
    )
    await expect(page.get_by_test_id("verified-tick")).to_have_count(0)
    await show(page, "chat", lookalike.account_id)
    await expect(page.get_by_test_id("key-log-failed")).to_be_visible(timeout=20_000)
    await expect(page.get_by_test_id("chat-name")).to_contain_text("Bank Support")
    await expect(page.get_by_test_id("verified-tick")).to_have_count(0)
    await write(page, "my account number is")
    await held(page, "my account number is")
    await shoot_app(page, "certificate-not-logged")

    # The honest business keeps its tick and its messages.
    await show(page, "chat", bakery.account_id)
    await expect(page.get_by_test_id("chat-name").get_by_test_id("verified-tick")).to_be_visible()
    await expect(page.get_by_test_id("key-log-failed")).to_have_count(0)
    await write(page, "two rolls, please")
    received = await next_message(bakery)
    assert isinstance(received.payload, Text)
    assert received.payload.text == "two rolls, please"
    # The one refusal the page met is the relay's answer that it never logged that certificate
    # (150082, a 404 the browser reports on its console).
    refused = [r for r in app.responses if r.status >= 400]
    assert [(r.status, r.url.split("/v1/")[1]) for r in refused] == [
        (404, f"transparency/certificates/{hidden.serial}")
    ]
    assert (await refused[0].json())["error"]["code"] == 150082
    assert app.problems.page_errors == []
    assert app.problems.csp_violations == []
    assert app.problems.console_errors == [
        "Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]
