"""Test support for the customer web app in a real browser.

The platform runs as ``tresen up`` runs it, in a child process: a relay that serves the app at
``/app/``, the verified demo airline Tresen Air with its gateway and its bot, on free ports,
with registration codes written to a file the test reads (the relay's ``file`` SMS sender).
The browser is Debian's Chromium (``browser_support.chromium``); an ``AppPage`` records what a
page must never do: log a console error, throw an uncaught error, or break its
Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import PHONE, REQUIRE_BROWSER, shoot
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    expect,
)

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.http import tls_context
from tresen.relay.accounts.sms import read_last_code
from tresen.relay.webapp.files import BUNDLED_DIST, is_built

START_WITHIN_S = 90.0
LABELS = ("Relay", "Web app", "WebSocket", "Operator", "Gateway", "API token", "Inbox", "Demo")


@dataclass
class Platform:
    """``tresen up`` running in a child process, as its printed lines describe it."""

    url: str
    """The relay's base URL, ``http://127.0.0.1:<port>``."""
    sms_file: Path
    data_dir: Path
    log_file: Path
    printed: dict[str, str]
    """What ``tresen up`` printed, by label (``Relay``, ``Web app``, ``Demo``, ``Gateway``,
    ``API token``, ``Inbox``, ``Operator``)."""
    business_phone: str = "+4930555010000"
    business_name: str = "Tresen Air"
    _phones: int = field(default=0)

    @property
    def app_url(self) -> str:
        """The web app: ``{url}/app/``."""
        return f"{self.url}/app/"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/v1/ws"

    @property
    def gateway_url(self) -> str:
        """The demo gateway's base URL (another origin than the relay's)."""
        return self.printed["Gateway"].split()[0].split("/v23.0")[0]

    @property
    def fingerprint(self) -> str:
        """The operator key's fingerprint, as ``tresen up`` printed it."""
        return self.printed["Operator"].removeprefix("key fingerprint ").strip()

    def next_phone(self) -> str:
        """A German mobile number no other test of this session uses."""
        self._phones += 1
        return f"+49151{secrets.randbelow(10**4):04d}{self._phones:04d}"

    def code_for(self, phone: str) -> str | None:
        """The newest registration code the relay sent to ``phone``, if any."""
        return read_last_code(self.sms_file, phone)

    async def wait_for_code(self, phone: str, within_s: float = 10.0) -> str:
        """The code the relay sends ``phone`` after a registration asked for one (in a
        browser, the test does not see the request end)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while (code := self.code_for(phone)) is None:
            if loop.time() > deadline:
                raise TimeoutError(f"no registration code for {phone} within {within_s}s")
            await asyncio.sleep(0.05)
        return code


@contextlib.contextmanager
def run_platform(folder: Path) -> Iterator[Platform]:
    """``python -m tresen up`` on free ports with its data in ``folder``; stopped at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    sms_file = folder / "sms.jsonl"
    log_file = folder / "tresen-up.log"
    env = {
        **os.environ,
        "TRESEN_SMS_SENDER": "file",
        "TRESEN_SMS_FILE": str(sms_file),
        # Every test registers from 127.0.0.1, many times over a session.
        "TRESEN_LIMITS__CODE_REQUESTS_PER_ADDRESS": "100000",
        "TRESEN_LIMITS__CODE_ATTEMPTS_PER_ADDRESS": "100000",
        "COLUMNS": "250",  # the printed lines stay whole
    }
    command = [sys.executable, "-m", "tresen", "up", "--data-dir", str(folder / "data")]
    command += ["--port", "0", "--gateway-port", "0"]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        printed = _wait_for_demo(process, log_file)
        yield Platform(
            url=printed["Relay"].split()[0],
            sms_file=sms_file,
            data_dir=folder / "data",
            log_file=log_file,
            printed=printed,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_demo(process: subprocess.Popen[bytes], log_file: Path) -> dict[str, str]:
    """The labelled lines ``tresen up`` printed, once its demo line is there."""
    deadline = time.monotonic() + START_WITHIN_S
    while time.monotonic() < deadline:
        log = log_file.read_text(errors="replace")
        if "did not start" in log or process.poll() is not None:
            raise RuntimeError(f"tresen up did not start:\n{log}")
        printed = {}
        for line in log.splitlines():
            label, _, rest = line.partition(":")
            if label in LABELS:
                printed[label] = rest.strip()
        if "Demo" in printed and "Gateway" in printed:
            return printed
        time.sleep(0.05)
    raise RuntimeError(f"tresen up did not start within {START_WITHIN_S}s:\n{log}")


def require_webapp() -> None:
    """Skip the calling test when the web app is not built (fail where browsers are required,
    as in CI: ``make test`` builds it first)."""
    if is_built(BUNDLED_DIST):
        return
    reason = f"the web app is not built ({BUNDLED_DIST} is missing): run make web"
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason}; TRESEN_REQUIRE_BROWSER=1 requires it")
    pytest.skip(reason)


# --- pages that record their problems -----------------------------------------------------

# Installed before any of the page's own scripts, outside its CSP: reports every violation.
_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.tresenCspViolation(JSON.stringify({
    directive: event.effectiveDirective,
    blocked: event.blockedURI,
    source: event.sourceFile,
    line: event.lineNumber,
  }));
});
"""


@dataclass
class Problems:
    """What went wrong in a page, as a user's browser would have it."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    """Uncaught exceptions and unhandled promise rejections."""
    csp_violations: list[dict[str, Any]] = field(default_factory=list)
    """``securitypolicyviolation`` events: directive, blocked URI, source file and line."""

    def all(self) -> list[str]:
        """Every problem, one line each; empty when the page behaved."""
        return (
            [f"console: {text}" for text in self.console_errors]
            + [f"uncaught: {text}" for text in self.page_errors]
            + [f"CSP {v['directive']}: {v['blocked']}" for v in self.csp_violations]
        )

    def clear(self) -> None:
        self.console_errors.clear()
        self.page_errors.clear()
        self.csp_violations.clear()


@dataclass
class AppPage:
    """A page of a new browser context (no cache, no storage) on the platform's relay."""

    page: Page
    context: BrowserContext
    problems: Problems
    responses: list[Response]
    """Every response the page received, in order."""

    async def wait_for_violations(self, count: int, within_s: float = 5.0) -> None:
        """Wait until ``count`` CSP violations were reported (the browser reports them after
        the fact, a task later)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while len(self.problems.csp_violations) < count:
            if loop.time() > deadline:
                raise TimeoutError(f"{self.problems.csp_violations} after {within_s}s")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.context.close()


async def open_app(
    browser: Browser,
    platform: Platform,
    *,
    path: str = "/app/",
    viewport: dict[str, int] | None = None,
    locale: str = "en-GB",
) -> AppPage:
    """A fresh browser context at ``path`` of the relay (phone size unless ``viewport``),
    recording console errors, uncaught errors and CSP violations from the first script on."""
    context = await browser.new_context(
        base_url=platform.url,
        viewport=viewport or PHONE,  # type: ignore[arg-type]
        locale=locale,
    )
    context.set_default_timeout(10_000)
    problems = Problems()
    responses: list[Response] = []

    def on_violation(_source: Any, report: str) -> None:
        problems.csp_violations.append(json.loads(report))

    def on_console(message: ConsoleMessage) -> None:
        # Chromium warns of a header it could not parse (an unknown Permissions-Policy
        # feature): the header is then not what the relay meant, which is an error here.
        if message.type == "error" or message.text.startswith("Error with "):
            problems.console_errors.append(message.text)

    def on_response(response: Response) -> None:
        responses.append(response)

    await context.expose_binding("tresenCspViolation", on_violation)
    await context.add_init_script(_REPORT_VIOLATIONS)
    page = await context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.page_errors.append(str(error)))
    page.on("response", on_response)
    await page.goto(path)
    return AppPage(page, context, problems, responses)


async def rendered(page: Page) -> None:
    """Wait until the app has put something into ``#root``. (A locator, not
    ``wait_for_function``: a string predicate is evaluated with ``eval``, which the app's CSP
    refuses.)"""
    await expect(page.locator("#root > *").first).to_be_attached()


async def interactive(page: Page) -> None:
    """Wait until the app marks itself interactive: ``<html data-ready="1">``."""
    await expect(page.locator("html")).to_have_attribute("data-ready", "1")


async def shoot_app(page: Page, name: str) -> None:
    """Save ``docs/screenshots/webapp-<name>.png`` when ``TRESEN_SCREENSHOTS`` names the
    folder (``TRESEN_SCREENSHOTS=docs/screenshots make test``); else nothing."""
    await shoot(page, f"webapp-{name}")


# --- what a person does in the app ---------------------------------------------------------


async def register(app: AppPage, platform: Platform, phone: str | None = None) -> str:
    """Register the browser with a one-time code, as a person does; its phone number."""
    page = app.page
    phone = phone or platform.next_phone()
    await interactive(page)
    used = platform.code_for(phone)  # a number registered before: its code was used up
    await page.get_by_label("Phone number").fill(phone)
    await page.get_by_role("button", name="Send code").click()
    code = await platform.wait_for_code(phone)
    while code == used:
        await asyncio.sleep(0.05)
        code = await platform.wait_for_code(phone)
    await page.get_by_label("Code", exact=True).fill(code)
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("heading", name="Chats")).to_be_visible(timeout=20_000)
    return phone


async def write(page: Page, text: str) -> None:
    await page.get_by_label("Message", exact=True).fill(text)
    await page.get_by_role("button", name="Send").click()


async def open_airline(page: Page) -> None:
    """Find the demo airline and open its profile."""
    await page.get_by_role("button", name="Find businesses").first.click()
    await page.get_by_label("Search by name").fill("Tresen Air")
    await page.get_by_test_id("business-result").first.click()
    await expect(page.get_by_test_id("profile-name")).to_contain_text("Tresen Air")


async def open_chat_with(page: Page, phone: str) -> None:
    """Start (or open) the chat with the account of ``phone``."""
    await page.get_by_role("button", name="Find businesses").first.click()
    await page.get_by_label("Or write to a phone number").fill(phone)
    await page.get_by_role("button", name="Start chat").click()


# --- the demo airline's systems -----------------------------------------------------------


def gateway(platform: Platform) -> httpx.AsyncClient:
    """The airline's Cloud API (``/v23.0/{phone_number_id}``), with the token `tresen up`
    printed."""
    messages = platform.printed["Gateway"].split()[0]
    return httpx.AsyncClient(
        verify=tls_context(),
        base_url=messages.removesuffix("/messages"),
        headers={"Authorization": f"Bearer {platform.printed['API token']}"},
        timeout=20,
    )


async def writing_to_anna(
    app: AppPage, platform: Platform, make_customer: MakeCustomer, first: str = "Hallo"
) -> tuple[Client, MessageEvent]:
    """The browser registered and writing to Anna, a customer on the Python SDK: Anna, and
    the browser's first message ``first`` as she received it."""
    anna = await make_customer("anna")
    assert anna.phone is not None
    await register(app, platform)
    await open_chat_with(app.page, anna.phone)
    await write(app.page, first)
    return anna, await next_message(anna)


# --- customers on the Python SDK ----------------------------------------------------------

MakeCustomer = Callable[..., Awaitable[Client]]
"""``await make_customer("anna")`` (the fixture): a registered, started SDK customer."""


async def next_message(client: Client, within_s: float = 20) -> MessageEvent:
    """The next message ``client`` receives (other events are passed over)."""
    while True:
        event = await client.next_event(within_s=within_s)
        if isinstance(event, MessageEvent) and not event.outgoing:
            return event


async def sdk_customer(
    platform: Platform, folder: Path, phone: str | None = None, **options: Any
) -> Client:
    """A ``tresen.client.Client`` registered on the platform's relay (its code read from the
    SMS file) and started; the caller closes it."""
    phone = phone or platform.next_phone()
    client = Client.open(folder, platform.url, **options)
    try:
        await client.request_code(phone)
        code = platform.code_for(phone)
        assert code is not None, f"no code for {phone}"
        await client.register(phone, code, device_name=folder.name)
        client.start()
    except BaseException:
        await client.close()
        raise
    return client
