"""With the 24-hour window closed, the composer in Chromium offers only the business's approved
templates; the customer's app receives the template exactly as the page's preview showed it.
The relay and the gateway share a clock the test moves a day on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from browser_support import Clocked, live, notice, shoot, signed_in_page
from gateway_support import approved_template, customer, next_of
from playwright.async_api import Browser, Page, expect

from tresen.client.events import MessageEvent

PICKUP_READY: dict[str, Any] = {
    "name": "abholung_bereit",
    "language": "de",
    "category": "UTILITY",
    "components": [
        {
            "type": "HEADER",
            "format": "TEXT",
            "text": "Bestellung {{1}}",
            "example": {"header_text": ["#118"]},
        },
        {
            "type": "BODY",
            "text": "Guten Tag {{1}}, Ihre {{2}} liegt ab {{3}} für Sie bereit.",
            "example": {"body_text": [["Frau Keller", "Torte", "Samstag, 8 Uhr"]]},
        },
        {"type": "FOOTER", "text": "Bäckerei Sonne · Marktstraße 3"},
        {
            "type": "BUTTONS",
            "buttons": [
                {
                    "type": "URL",
                    "text": "Bestellung ansehen",
                    "url": "https://sonne.example/b/{{1}}",
                    "example": ["118"],
                }
            ],
        },
    ],
}
ASKED = "Können Sie mir für Samstag eine Schwarzwälder Kirschtorte backen?"


async def preview_text(page: Page) -> str:
    """The preview as plain lines, as a customer's app renders a template without markup:
    header, body, footer, then each button as ``[title] link``."""
    bubble = page.locator("#preview")
    lines = [*await bubble.locator(".header").all_inner_texts()]
    lines += await bubble.locator(".text").all_inner_texts()
    lines += await bubble.locator(".footer").all_inner_texts()
    for option in await bubble.locator("ul.options > li").all():
        detail = option.locator("small")
        target = await detail.inner_text() if await detail.count() else ""
        title = (await option.inner_text()).removesuffix(target).strip()
        lines.append(f"[{title}]" + (f" {target}" if target else ""))
    return "\n".join(line.strip() for line in lines)


async def answer(page: Page, asked: str, text: str) -> None:
    """From the list, open the conversation whose preview shows ``asked`` and answer it."""
    await page.goto("/inbox")
    await page.get_by_role("link").filter(has_text=asked).click()
    await page.get_by_label(re.compile(r"^Answer ")).fill(text)
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("ol.thread li.out").last).to_contain_text(text)


async def resolve(page: Page) -> None:
    """Resolve the conversation the thread ``page`` shows."""
    await page.get_by_label("Status", exact=True).select_option("resolved")
    await page.get_by_role("button", name="Set", exact=True).click()
    await expect(page.locator("main > p.meta")).to_contain_text("resolved")


async def test_with_the_window_closed_the_agent_sends_a_template_as_its_preview_shows(
    clocked: Clocked, browser: Browser, tmp_path: Path
) -> None:
    clock, relay, gw = clocked.clock, clocked.relay, clocked.gw
    await approved_template(relay, gw, PICKUP_READY)
    marie = await customer(relay, tmp_path / "marie")
    jonas = await customer(relay, tmp_path / "jonas")
    try:
        # Yesterday: two customers ask; Anna answers both, and Jonas's question is settled.
        await marie.opt_in(gw.gateway.phone)  # to the bakery's utility templates
        await jonas.send_text(gw.gateway.phone, "Haben Sie auch glutenfreies Brot?")
        await marie.send_text(gw.gateway.phone, ASKED)
        anna = await signed_in_page(browser, gw.url, clocked.team.admin)
        clock.advance(minutes=4)
        await answer(anna, "glutenfreies Brot", "Ja, freitags ein Buchweizenbrot.")
        await resolve(anna)
        await next_of(jonas, MessageEvent, 30)
        clock.advance(minutes=7)
        await answer(anna, ASKED, "Sehr gern! Wir melden uns.")
        await next_of(marie, MessageEvent, 30)

        clock.advance(hours=25)  # the customer wrote more than a day ago
        anna = await signed_in_page(browser, gw.url, clocked.team.admin)  # a new day's session
        await anna.get_by_role("link").filter(has_text="Sehr gern! Wir melden uns.").click()
        await live(anna)
        await expect(anna.get_by_text("The 24-hour window is closed")).to_be_visible()
        # Only templates: no answer box, no reply buttons, no reactions, no "Reply" links.
        await expect(anna.get_by_label(re.compile(r"^Answer "))).to_have_count(0)
        await expect(anna.get_by_text("Send with reply buttons")).to_have_count(0)
        await expect(anna.get_by_role("button", name=re.compile(r"^React "))).to_have_count(0)
        await expect(anna.locator("ol.thread").get_by_role("link", name="Reply")).to_have_count(0)

        await anna.get_by_label("Template", exact=True).select_option(label="abholung_bereit (de)")
        await anna.get_by_role("button", name="Choose").click()
        await expect(
            anna.get_by_role("heading", name=re.compile(r"^Send a template to "))
        ).to_be_visible()
        await expect(anna.locator("#preview")).to_have_count(0)  # nothing before the values
        await anna.get_by_label("Header: {{1}}").fill("#118")
        await anna.get_by_label("Body: {{1}}").fill("Frau Keller")
        await anna.get_by_label("Body: {{2}}").fill("Schwarzwälder Kirschtorte")
        await anna.get_by_label("Body: {{3}}").fill("Samstag, 8 Uhr")
        await anna.get_by_label(re.compile(r"^Button 1: the end of the link")).fill("118")
        await anna.get_by_role("button", name="Preview").click()
        preview = anna.locator("#preview")
        await expect(preview).to_contain_text(
            "Guten Tag Frau Keller, Ihre Schwarzwälder Kirschtorte liegt ab Samstag, 8 Uhr "
            "für Sie bereit."
        )
        shown = await preview_text(anna)
        assert shown == (
            "Bestellung #118\n"
            "Guten Tag Frau Keller, Ihre Schwarzwälder Kirschtorte liegt ab Samstag, 8 Uhr "
            "für Sie bereit.\n"
            "Bäckerei Sonne · Marktstraße 3\n"
            "[Bestellung ansehen] https://sonne.example/b/118"
        )
        await shoot(anna, "inbox-template")

        await anna.get_by_role("button", name="Send this template").click()
        await expect(notice(anna)).to_have_text("Template abholung_bereit sent.")
        received = await next_of(marie, MessageEvent, 30)
        assert received.template is not None
        assert received.template.name == "abholung_bereit"
        assert received.template.text() == shown  # exactly what the preview showed
        # The thread shows it as the customer sees it, marked as the template it is.
        sent = anna.locator("ol.thread li.out").last
        await expect(sent).to_contain_text("Template abholung_bereit")
        await expect(sent).to_contain_text("Guten Tag Frau Keller")
        clock.advance(minutes=30)
        await resolve(anna)

        # The reports count both days: two questions, two settled, answered within minutes.
        await anna.goto("/inbox/reports")
        by_agent = anna.get_by_role("table").filter(has_text="By agent")
        row = by_agent.get_by_role("row").filter(has_text="Anna Schmidt")
        # Opened, resolved, first answer after 4 and 11 minutes; then the time to resolve.
        await expect(row.get_by_role("cell")).to_have_text(
            ["2", "2", "7 min 30 s", re.compile(r"^12 h \d+ min$")]
        )
        await shoot(anna, "inbox-reports")
    finally:
        await jonas.close()
        await marie.close()
