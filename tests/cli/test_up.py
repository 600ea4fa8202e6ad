"""``tresen up``: the platform with its verified demo business, as a newcomer meets it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
from support import read_last_code

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.core.http import tls_context
from tresen.relay.webapp.files import BUNDLED_DIST, is_built
from tresen.wire.e2e import Media, MediaKind, Text


@contextmanager
def tresen_up(data_dir: Path, sms_file: Path) -> Iterator[dict[str, str]]:
    """Run ``tresen up`` until its demo line; yields the printed lines by their label."""
    env = {**os.environ, "TRESEN_SMS_SENDER": "file", "TRESEN_SMS_FILE": str(sms_file)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tresen",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            "--gateway-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        printed: dict[str, str] = {}
        for line in process.stdout:
            label, _, rest = line.partition(":")
            if label in ("Relay", "Web app", "Operator", "Demo", "Gateway", "API token", "Inbox"):
                printed[label] = rest.strip()
            if label == "Demo" or "did not start" in line:
                break
        assert "Demo" in printed, printed
        yield printed
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


async def next_text(customer: Client) -> str:
    while True:
        event = await customer.next_event(within_s=20)
        if isinstance(event, MessageEvent) and not event.outgoing:
            assert isinstance(event.payload, Text), event.payload
            return event.payload.text


async def next_media(customer: Client) -> MessageEvent:
    while True:
        event = await customer.next_event(within_s=20)
        if isinstance(event, MessageEvent) and not event.outgoing:
            assert isinstance(event.payload, Media), event.payload
            return event


async def talk_to_the_demo(
    customer: Client, sms_file: Path, printed: dict[str, str], fingerprint: str
) -> None:
    phone = "+4915112340001"
    await customer.request_code(phone)
    code = read_last_code(sms_file, phone)
    assert code is not None
    await customer.register(phone, code)
    assert customer.operator_fingerprint == fingerprint

    [airline] = await customer.find_businesses("air")
    assert (airline.display_name, airline.verified) == ("Tresen Air", True)
    business = await customer.business(airline.account_id)
    assert business.phone in printed["Demo"]
    assert business.profile.open_now(customer.clock.now_ms()) is not None

    customer.start()
    # The gateway's bot greets, and asks which flight (the airline's systems know it).
    await customer.send_text(business.phone, "What is the status of my flight?")
    greeting = await next_text(customer)
    assert greeting.startswith("Hello and welcome to Tresen Air!")
    assert await next_text(customer) == (
        "Which flight is it? Please write its number, for example TA 100."
    )
    await customer.send_text(business.phone, "TA 104")
    status = await next_text(customer)
    assert status.startswith("TA 104 Berlin (BER) → Vienna (VIE) is delayed by 45 minutes")
    # The boarding pass comes as a PDF from the airline's systems, encrypted to the customer.
    await customer.send_text(business.phone, "Please send me my boarding pass, booking K7Q2ZP")
    event = await next_media(customer)
    media = event.payload
    assert isinstance(media, Media)
    assert media.kind is MediaKind.DOCUMENT
    assert media.mime_type == "application/pdf"
    assert media.filename == "Boarding pass TA 210 K7Q2ZP.pdf"
    assert media.caption is not None
    assert "show its qr code at the gate" in media.caption.lower()
    kept = await customer.download(event)
    assert kept.read_bytes().startswith(b"%PDF-")
    [chat] = customer.store.chats()
    assert (chat.business, chat.display_name, chat.verified) == (True, "Tresen Air", True)


async def test_up_runs_a_verified_demo_airline_that_answers(tmp_path: Path) -> None:
    sms_file = tmp_path / "sms.jsonl"
    with tresen_up(tmp_path / "data", sms_file) as printed:
        url = printed["Relay"].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/v1/health").json() == {"status": "ok"}
        assert_web_app_answers(url, printed["Web app"])
        assert "Tresen Air ✓" in printed["Demo"]
        fingerprint = printed["Operator"].removeprefix("key fingerprint ").strip()

        assert_gateway_answers(printed)
        async with Client.open(tmp_path / "customer", url) as customer:
            await talk_to_the_demo(customer, sms_file, printed, fingerprint)

    # A second start finds the same demo business, still verified, and its gateway; the
    # token of the first run still works (an integration set up with it keeps working).
    with tresen_up(tmp_path / "data", sms_file) as again:
        assert again["Operator"] == printed["Operator"]
        assert again["Demo"] == printed["Demo"]
        assert again["API token"] == printed["API token"]
        # The same first login (on this run's port).
        assert again["Inbox"].split("(")[1] == printed["Inbox"].split("(")[1]
        assert_gateway_answers(again)
        assert_inbox_login_works(again)


def assert_web_app_answers(url: str, line: str) -> None:
    """The printed web app URL answers with the app, or says how to build it."""
    webapp = line.split()[0]
    assert webapp == f"{url}/app/"
    page = httpx.get(webapp, headers={"Accept": "text/html"})
    if is_built(BUNDLED_DIST):
        assert page.status_code == 200
        assert '<div id="root">' in page.text
        assert "not built" not in line
    else:
        assert page.status_code == 503
        assert "run make web" in page.text
        assert "(not built: run make web)" in line


def assert_inbox_login_works(printed: dict[str, str]) -> None:
    """The printed inbox URL and first login sign in (the owner sees the team page)."""
    found = re.fullmatch(r"(\S+)\s+\(sign in as (\S+), password (\S+)\)", printed["Inbox"])
    assert found is not None, printed["Inbox"]
    inbox, user, password = found.groups()
    with httpx.Client(verify=tls_context(), follow_redirects=False) as http:
        form = http.get(f"{inbox}/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        login_cookie = form.cookies.get("tresen_inbox_login") or next(
            SimpleCookie(h)["tresen_inbox_login"].value
            for h in form.headers.get_list("set-cookie")
            if h.startswith("tresen_inbox_login=")
        )
        signed_in = http.post(
            f"{inbox}/login",
            data={"csrf": csrf.group(1), "username": user, "password": password},
            headers={"Cookie": f"tresen_inbox_login={login_cookie}"},
        )
        assert signed_in.status_code == 303, signed_in.text
        session = next(
            SimpleCookie(h)["tresen_inbox"].value
            for h in signed_in.headers.get_list("set-cookie")
            if h.startswith("tresen_inbox=")
        )
        team = http.get(f"{inbox}/agents", headers={"Cookie": f"tresen_inbox={session}"})
        assert team.status_code == 200
        assert "Tresen Air owner" in team.text


def assert_gateway_answers(printed: dict[str, str]) -> None:
    """The printed Cloud API URL and token work: the profile is the demo airline's."""
    messages_url = printed["Gateway"].split()[0]
    assert messages_url.endswith("/messages")
    base = messages_url.rsplit("/", 1)[0]
    headers = {"Authorization": f"Bearer {printed['API token']}"}
    r = httpx.get(f"{base}/whatsapp_business_profile", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["vertical"] == "TRAVEL"
    r = httpx.get(base, headers=headers)
    assert r.json()["verified_name"] == "Tresen Air"
    assert r.json()["name_status"] == "APPROVED"
    # The airline's boarding-pass template, with the pass's PDF as its header, is approved.
    r = httpx.get(f"{base}/message_templates", params={"name": "boarding_pass"}, headers=headers)
    templates = {(t["language"], t["status"]) for t in r.json()["data"]}
    assert templates == {("en", "APPROVED"), ("de", "APPROVED")}
    (header,) = [c for c in r.json()["data"][0]["components"] if c["type"] == "HEADER"]
    assert header["format"] == "DOCUMENT"
