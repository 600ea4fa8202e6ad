"""Test support for the inbox in a real browser: Debian's Chromium driven by Playwright.

The browser is the system's (``/usr/bin/chromium``, Debian's ``chromium`` package), never one
that Playwright downloads. Without it the browser tests are skipped with the reason, unless
``TRESEN_REQUIRE_BROWSER=1`` (as in CI), where its absence fails them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway_support import RunningGateway
from playwright.async_api import Browser, Locator, Page, async_playwright, expect
from support import RunningRelay

from tresen.core.clock import ManualClock
from tresen.gateway.inbox.agents import Agents

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("TRESEN_REQUIRE_BROWSER") == "1"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1200, "height": 800}
PASSWORD = "Korrekt Pferd Batterie"


@dataclass(frozen=True)
class Team:
    agents: Agents
    admin: str = "anna"
    """Anna Schmidt, an admin."""
    agent: str = "ben"
    """Ben Meyer, an agent."""


@dataclass(frozen=True)
class Clocked:
    """A relay and a gateway (with the team) that share a clock the test moves, so that a
    customer's 24-hour window closes without waiting a day."""

    clock: ManualClock
    relay: RunningRelay
    gw: RunningGateway
    team: Team


@dataclass(frozen=True)
class TwoAgents:
    """Anna (admin) and Ben (agent), each signed in in a browser context of their own."""

    anna: Page
    ben: Page


def require_chromium() -> None:
    """Skip the calling test when Debian's Chromium is missing (fail where it is required)."""
    if CHROMIUM.exists():
        return
    reason = f"browser tests need Debian's chromium package ({CHROMIUM} is missing)"
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason}; TRESEN_REQUIRE_BROWSER=1 requires it")
    pytest.skip(reason)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium, closed when the block ends."""
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # The sandbox needs user namespaces, which containers (and root in CI) lack.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def signed_in_page(
    browser: Browser,
    base_url: str,
    username: str,
    *,
    viewport: dict[str, int] | None = None,
) -> Page:
    """A page of a new browser context (its own cookies) in which ``username`` signed in
    through the login form; it shows the conversation list."""
    context = await browser.new_context(
        base_url=base_url,
        viewport=viewport or DESKTOP,  # type: ignore[arg-type]
        locale="en-GB",
    )
    context.set_default_timeout(10_000)
    page = await context.new_page()
    await page.goto("/inbox")
    await expect(page.get_by_role("heading", name="Sign in to the inbox")).to_be_visible()
    await page.get_by_label("User name").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    return await live(page)


async def live(page: Page) -> Page:
    """``page`` once its event stream is open (what the inbox's script marks on ``<html>``)."""
    await expect(page.locator("html[data-live=open]")).to_be_attached()
    return page


def notice(page: Page) -> Locator:
    """The notice a page shows after a form was sent."""
    return page.locator("p.notice[role=status]")


async def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than the viewport (0 when nothing scrolls sideways)."""
    overflow: int = await page.evaluate(
        "document.scrollingElement.scrollWidth - document.documentElement.clientWidth"
    )
    return overflow


async def shoot(page: Page, name: str) -> None:
    """Save a PNG of ``page`` as ``name``.png in the folder ``TRESEN_SCREENSHOTS`` names
    (docs/screenshots: ``TRESEN_SCREENSHOTS=docs/screenshots make test``); else nothing."""
    folder = os.environ.get("TRESEN_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=Path(folder) / f"{name}.png", full_page=True)
