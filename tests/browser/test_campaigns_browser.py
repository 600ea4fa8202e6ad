"""Campaigns and subscriber lists in Chromium: an owner makes a notification list, imports
customers from a CSV and reads the row-by-row report, makes a campaign of an approved
utility template to the list, sees its cost, starts it and watches it reach done with its
results, then checks the month's bill against the customers' delivery receipts; an agent
sees the campaigns but cannot make or start one, nor see the bill."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from browser_support import TwoAgents, horizontal_overflow, notice, shoot, signed_in_page
from gateway_support import RunningGateway, approved_template, customer
from playwright.async_api import Browser, expect
from support import RunningRelay

from tresen.client.events import MessageEvent

FLIGHT_DELAY: dict[str, Any] = {
    "name": "flight_delay",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "BODY",
            "text": "Hello {{1}}, flight {{2}} leaves at {{3}}.",
            "example": {"body_text": [["Anna", "TR 118", "14:30"]]},
        },
    ],
}


async def next_template(client: Any, within_s: float = 30) -> str:
    """The body of the next template ``client`` receives."""
    while True:
        event = await client.next_event(within_s)
        if isinstance(event, MessageEvent) and event.template is not None:
            return str(event.template.body)


async def test_an_owner_imports_a_list_and_sends_a_campaign_to_it(
    relay: RunningRelay,
    gw: RunningGateway,
    signed_in: TwoAgents,
    browser: Browser,
    tmp_path: Path,
) -> None:
    template_id = await approved_template(relay, gw, FLIGHT_DELAY)
    marie = await customer(relay, tmp_path / "marie")
    jonas = await customer(relay, tmp_path / "jonas")
    anna, ben = signed_in.anna, signed_in.ben
    try:
        # A notification list, its purpose explained on the form.
        await anna.get_by_role("navigation").get_by_role("link", name="Campaigns").click()
        await anna.get_by_role("link", name="Subscriber lists").click()
        await expect(anna.get_by_text("Notifications about something the customer")).to_be_visible()
        await anna.get_by_label("Name", exact=True).fill("Flight TR 118")
        await anna.get_by_label("Utility").check()
        await anna.get_by_label("Keyword (customers write START and the keyword)").fill("tr118")
        await anna.get_by_role("button", name="Make the list").click()
        await expect(notice(anna)).to_have_text("List Flight TR 118 made.")
        await anna.get_by_role("link", name="Flight TR 118").click()
        qr = anna.get_by_role("img", name="QR code of the link to Flight TR 118")
        await expect(qr).to_be_visible()
        loaded = "async img => { await img.decode(); return img.naturalWidth; }"
        assert await qr.evaluate(loaded) > 0  # the image came
        await expect(anna.locator(".list-link code")).to_contain_text("START%20TR118")

        # The CSV: two customers with evidence, one row without, one not a number.
        csv_file = tmp_path / "passengers.csv"
        csv_file.write_text(
            "phone,evidence,evidence_date,first_name,seat\n"
            f"{marie.phone},booking TR118-1,2026-11-03,Marie,12A\n"
            f"{jonas.phone},booking TR118-2,2026-11-04,Jonas,12B\n"
            "+4915100000000,,,Nobody,1A\n"
            "hello,booking,2026-11-03,Typo,2B\n"
        )
        await anna.get_by_label("CSV file").set_input_files(csv_file)
        await anna.get_by_role("button", name="Import", exact=True).click()
        await expect(notice(anna)).to_have_text("Imported: 2 accepted, 2 refused.")
        report = anna.locator("table.import-report tbody tr")
        await expect(report).to_have_count(4)
        await expect(report.nth(0)).to_contain_text("accepted")
        await expect(report.nth(2)).to_contain_text("no evidence of consent")
        await expect(report.nth(3)).to_contain_text("not a phone number")
        async with anna.expect_download() as download:
            await anna.get_by_role("link", name="Download the report as CSV").click()
        saved = await (await download.value).path()
        assert "not a phone number" in Path(saved).read_text()
        await shoot(anna, "inbox-list-import")
        await anna.get_by_role("link", name="Flight TR 118").click()
        await expect(anna.locator("table.subscribers tbody tr")).to_have_count(2)
        # The list keeps its import, with the report and its CSV, for later.
        kept = anna.locator("table.imports tbody tr")
        await expect(kept).to_have_count(1)
        await expect(kept).to_contain_text("Anna")
        await shoot(anna, "inbox-list-imports")

        # The campaign: the template's text and placeholders, the list, values per person.
        await anna.goto("/inbox/campaigns")
        await anna.get_by_role("link", name="New campaign").click()
        await anna.get_by_label("Template", exact=True).select_option(
            label="flight_delay (en_US, utility)"
        )
        await anna.get_by_role("button", name="Choose").click()
        await expect(anna.locator(".template-text")).to_contain_text(
            "Hello {{1}}, flight {{2}} leaves at {{3}}."
        )
        await anna.get_by_label("Campaign name").fill("TR 118 delayed")
        await anna.get_by_role("checkbox", name=re.compile(r"Flight TR 118")).check()
        await anna.get_by_label("Body: {{1}}").fill("{{first_name}}")
        await anna.get_by_label("Body: {{2}}").fill("TR 118")
        await anna.get_by_label("Body: {{3}}").fill("16:45")
        await anna.get_by_label("No quiet hours").check()
        # Only passengers with a seat; a second condition, added and left without its value,
        # is refused on its own row.
        await anna.get_by_label("Attribute", exact=True).fill("seat")
        await anna.get_by_label("Condition", exact=True).select_option(label="has a value")
        await anna.get_by_role("button", name="Add a condition").click()
        second = anna.get_by_role("group", name="Condition 2")
        await second.get_by_label("Attribute", exact=True).fill("first_name")
        await anna.get_by_role("button", name="Review the campaign").click()
        await expect(anna.locator("#cond-trouble-2")).to_have_text("Give the value it must equal.")
        await shoot(anna, "inbox-campaign-conditions")
        again = anna.get_by_role("group", name="Condition 2")
        await again.get_by_label("Condition", exact=True).select_option(label="is one of")
        await again.get_by_label(re.compile(r"^Value")).fill("Marie, Jonas")
        await anna.get_by_role("checkbox", name=re.compile(r"Flight TR 118")).check()
        await anna.get_by_role("button", name="Review the campaign").click()
        await expect(notice(anna)).to_have_text(
            "Campaign TR 118 delayed made: check it, then start it."
        )
        await expect(anna.locator(".cost")).to_contain_text("for 2 recipients")
        await expect(anna.locator("ul.conditions")).to_contain_text("seat has a value")
        await expect(anna.locator("ul.conditions")).to_contain_text(
            "first_name is one of Marie, Jonas"
        )
        await expect(anna.locator(".audience-count")).to_have_text("Recipients now: 2")
        await shoot(anna, "inbox-campaign-review")

        # A test send needs every value: {{first_name}} comes only from a recipient.
        await anna.get_by_label("Send a test to").fill(marie.phone)
        await anna.get_by_role("button", name="Send a test").click()
        await expect(notice(anna)).to_contain_text("A test send needs a value for {{first_name}}")

        # Ben, an agent, sees the draft and its cost, not the buttons that send it.
        await ben.goto("/inbox/campaigns")
        await expect(ben.get_by_role("link", name="New campaign")).to_have_count(0)
        await ben.get_by_role("link", name="TR 118 delayed").click()
        await expect(ben.locator(".cost")).to_contain_text("for 2 recipients")
        await expect(ben.get_by_role("button", name="Start")).to_have_count(0)
        await expect(ben.get_by_role("button", name="Send a test")).to_have_count(0)
        await expect(ben.get_by_role("button", name="Cancel the campaign")).to_have_count(0)
        new = await ben.request.get("/inbox/campaigns/new", max_redirects=0)
        assert new.status == 403

        await anna.get_by_role("button", name="Start", exact=True).click()
        await expect(notice(anna)).to_have_text("Campaign started.")
        bodies = {await next_template(marie), await next_template(jonas)}
        assert bodies == {
            "Hello Marie, flight TR 118 leaves at 16:45.",
            "Hello Jonas, flight TR 118 leaves at 16:45.",
        }
        # The page follows on its own, without a reload, until the campaign is done.
        progress = anna.locator("#progress")
        await expect(progress.locator(".campaign-state")).to_have_text("done", timeout=30_000)
        await expect(progress.locator(".progress-count")).to_have_text("2 of 2 recipients")
        chart = anna.get_by_role("img", name="Of 2 sent messages")
        await expect(chart).to_be_visible()
        await anna.reload()
        await expect(anna.locator("table.recipients tbody tr")).to_have_count(2)
        await shoot(anna, "inbox-campaign")

        await ben.reload()
        await expect(ben.locator("#progress .campaign-state")).to_have_text("done")
        await expect(ben.get_by_role("img", name="Of 2 sent messages")).to_be_visible()

        # The month's bill: both charges proven by the passengers' signed delivery
        # receipts, which follow the messages by a moment (the page is checked again until
        # they are in).
        month = datetime.now(UTC).strftime("%Y-%m")
        await anna.goto("/inbox/reports")
        await anna.get_by_label("Month", exact=True).last.fill(month)
        await anna.get_by_role("button", name="Check the bill").click()
        verdict = anna.locator(".verdict")
        deadline = time.monotonic() + 30
        while "every charge is proven" not in (await verdict.text_content() or ""):
            assert time.monotonic() < deadline, await verdict.text_content()
            await anna.wait_for_timeout(200)
            await anna.reload()
        await expect(anna.locator("table.bills-totals tbody tr")).to_have_count(1)
        await expect(anna.locator("table.bills-totals tbody tr").first).to_contain_text("2")
        await shoot(anna, "inbox-bills")
        bills = await ben.request.get(f"/inbox/reports/bills?month={month}", max_redirects=0)
        assert bills.status == 403  # an agent does not see the bills

        # At phone width the pages stay within the screen.
        phone = await signed_in_page(
            browser, gw.url, "anna", viewport={"width": 375, "height": 800}
        )
        for path in (
            "/inbox/campaigns",
            "/inbox/lists",
            "/inbox/lists/1",
            f"/inbox/campaigns/new?t={template_id}",
        ):
            await phone.goto(path)
            assert await horizontal_overflow(phone) == 0, path
        await phone.goto("/inbox/campaigns")
        await phone.get_by_role("link", name="TR 118 delayed").click()
        assert await horizontal_overflow(phone) == 0
        await shoot(phone, "inbox-campaign-phone")
    finally:
        await jonas.close()
        await marie.close()
