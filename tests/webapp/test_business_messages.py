"""Business messages in the web app: a template the airline sends through its Cloud API
gateway renders in the browser only as the operator signed it; a forged one is refused; and
consent given and withdrawn in the browser decides whether the airline may send offers."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect
from webapp_support import (
    AppPage,
    MakeCustomer,
    Platform,
    gateway,
    open_airline,
    register,
    shoot_app,
    write,
)

from tresen.client import Client
from tresen.wire.e2e import Template

OFFER = {"name": "flight_offer", "language": {"code": "en"}}


def offer(phone: str, name: str = "Anna") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": phone,
        "type": "template",
        "template": {
            **OFFER,
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": name},
                        {"type": "text", "text": "Lisbon"},
                        {"type": "text", "text": "79"},
                    ],
                }
            ],
        },
    }


async def test_a_template_from_the_gateway_renders_and_a_forged_one_is_refused(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    phone = await register(app, platform)
    await open_airline(page)
    # The tick is decided here, from the operator's certificate, not from the relay's word.
    await expect(
        page.get_by_test_id("profile-name").get_by_test_id("verified-tick")
    ).to_be_visible()
    await expect(page.get_by_test_id("tick-reason")).to_have_text(
        "Verified by the operator of this server"
    )
    # The airline's logo, fetched with the device's token and shown from a blob: URL.
    logo = page.locator(".profile-body img.avatar")
    await expect(logo).to_have_attribute("src", re.compile(r"^blob:"))
    assert await logo.evaluate("(image) => image.complete && image.naturalWidth") == 256
    offers = page.locator("[data-scope=marketing] input")
    # The box shows what the relay stored: checked once the consent is saved (a profile
    # re-rendered before that shows the stored state again).
    await offers.click()
    await expect(offers).to_be_checked()
    await page.get_by_role("button", name="Message").click()

    async with gateway(platform) as api:
        sent = await api.post("/messages", json=offer(phone))
        assert sent.status_code == 200, sent.text
    template = page.get_by_test_id("template")
    await expect(template).to_have_count(1, timeout=20_000)
    await expect(template.locator(".template-header")).to_have_text("This week's fares")
    await expect(template.locator(".body")).to_have_text(
        "Hello Anna, fly to Lisbon from 79 EUR, one way, booked by Sunday."
    )
    await expect(template.get_by_role("button", name="Stop offers")).to_be_visible()
    await shoot_app(page, "template")

    # Another account claims the airline's signed template with words of its own: the
    # browser shows nothing of it and says so.
    async with gateway(platform) as api:
        listed = (await api.get("/message_templates")).json()["data"]
    [signed] = [t for t in listed if t["name"] == "flight_offer" and t["language"] == "en"]
    mallory: Client = await make_customer("mallory")
    forged = Template(
        template_id=signed["id"],
        name="flight_offer",
        language="en",
        parameters={"body": ["Anna", "Lisbon", "1 EUR at http://evil.example"]},
    )
    await mallory.send(phone, forged)
    await page.get_by_role("button", name="Back").click()
    row = page.get_by_test_id("chat-row").filter(has_text=mallory.phone or "")
    await expect(row).to_be_visible(timeout=20_000)
    await row.click()
    await expect(page.locator(".bubble.in .notice")).to_have_text(
        "This message does not match the template the operator approved and was not shown. "
        "It was reported."
    )
    await expect(page.get_by_text("evil.example")).to_have_count(0)
    assert app.problems.all() == []


async def test_withdrawing_consent_in_the_browser_stops_the_airlines_offers(
    app: AppPage, platform: Platform
) -> None:
    page = app.page
    phone = await register(app, platform)
    await open_airline(page)
    await page.get_by_role("button", name="Message").click()
    # START to a business opts in to its offers: signed in the browser, recorded by the relay.
    async with gateway(platform) as api:
        refused = await api.post("/messages", json=offer(phone))
        assert refused.json()["error"]["code"] == 131050  # no opt-in yet
        await write(page, "START")
        await expect(page.get_by_test_id("chat-notice")).to_have_text(
            "You will now receive marketing messages from Tresen Air. Send STOP to stop them."
        )
        sent = await api.post("/messages", json=offer(phone))
        assert sent.status_code == 200, sent.text
        await expect(page.get_by_test_id("template")).to_have_count(1, timeout=20_000)

        await page.get_by_role("button", name="Back").click()
        await page.get_by_role("button", name="Settings").click()
        await page.get_by_role("link", name="Consent").click()
        entry = page.get_by_test_id("consent-entry").filter(has_text="Tresen Air")
        await expect(entry.locator("[data-scope=marketing]")).to_have_attribute(
            "data-state", "opted_in"
        )
        await shoot_app(page, "consent")
        await entry.get_by_role("button", name="Withdraw all").click()
        await expect(entry.locator("[data-scope=marketing]")).to_have_attribute(
            "data-state", "opted_out"
        )
        await expect(entry.locator("[data-scope=utility]")).to_have_attribute(
            "data-state", "opted_out"
        )

        refused = await api.post("/messages", json=offer(phone))
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == 131050
    assert app.problems.all() == []
