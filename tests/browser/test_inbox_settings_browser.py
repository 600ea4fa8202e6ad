"""The inbox's settings in Debian's Chromium: an admin fills in the business profile and the
opening hours through the pages as a person does, at desktop and phone width; an agent is not
offered them."""

from __future__ import annotations

from browser_support import (
    PHONE,
    Team,
    TwoAgents,
    horizontal_overflow,
    notice,
    shoot,
    signed_in_page,
)
from gateway_support import RunningGateway
from playwright.async_api import Browser, expect


async def test_an_admin_fills_in_the_profile_and_the_opening_hours(
    signed_in: TwoAgents, gw: RunningGateway
) -> None:
    anna = signed_in.anna
    await anna.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    await expect(anna.get_by_role("heading", name="Business profile")).to_be_visible()
    await expect(
        anna.get_by_label("Display name (customers find the business by it)")
    ).to_have_value("Bäckerei Sonne")
    await anna.get_by_label("About (one line)").fill("Frisches Brot jeden Morgen")
    await anna.get_by_label("Category").select_option(label="Restaurant")
    await anna.get_by_label("E-mail").fill("hallo@sonne.example")
    await anna.get_by_label("Website", exact=True).fill("https://sonne.example")
    await anna.get_by_role("button", name="Save the profile").click()
    await expect(notice(anna)).to_have_text("The business profile is saved.")
    await expect(anna.get_by_text("State: verified")).to_be_visible()
    await shoot(anna, "inbox-settings")

    await anna.get_by_role("link", name="Opening hours").click()
    await anna.get_by_label("Time zone (e.g. Europe/Berlin)").fill("Europe/Berlin")
    await anna.get_by_label("Monday").fill("7-13, 14-18")
    await anna.get_by_label("Saturday").fill("8:00-12:00")
    await anna.get_by_label("Tuesday").fill("9 till late")
    await anna.get_by_role("button", name="Save the opening hours").click()
    alert = anna.get_by_role("alert")
    await expect(alert).to_contain_text("Opening hours on Tuesday")
    await expect(anna.get_by_label("Tuesday")).to_have_value("9 till late")  # kept
    await expect(anna.get_by_label("Tuesday")).to_have_attribute("aria-invalid", "true")
    await anna.get_by_label("Tuesday").fill("")
    await anna.get_by_role("button", name="Save the opening hours").click()
    await expect(notice(anna)).to_have_text("The opening hours are saved.")
    await expect(anna.get_by_label("Monday")).to_have_value("07:00-13:00, 14:00-18:00")

    profile = await gw.gateway.business_profile()
    assert profile is not None
    assert profile["about"] == "Frisches Brot jeden Morgen"
    assert profile["timezone"] == "Europe/Berlin"
    assert profile["hours"]["sat"] == [["08:00", "12:00"]]


async def test_the_settings_fit_a_phone_and_an_agent_is_not_offered_them(
    signed_in: TwoAgents, gw: RunningGateway, team: Team, browser: Browser
) -> None:
    ben = signed_in.ben
    nav = ben.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Settings")).to_have_count(0)
    response = await ben.goto("/inbox/settings")
    assert response is not None
    assert response.status == 403
    await expect(ben.get_by_role("textbox")).to_have_count(0)

    phone = await signed_in_page(browser, gw.url, team.admin, viewport=PHONE)
    for path in (
        "/inbox/settings",
        "/inbox/settings/hours",
        "/inbox/settings/labels",
        "/inbox/settings/templates",
        "/inbox/settings/api",
    ):
        await phone.goto(path)
        await expect(phone.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
        assert await horizontal_overflow(phone) <= 0, path
    await phone.goto("/inbox/settings/hours")
    await shoot(phone, "inbox-settings-phone")
