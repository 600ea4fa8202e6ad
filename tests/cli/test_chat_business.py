"""``tresen chat business`` / ``businesses`` and the operator key, as a script uses them: the
customer's commands in child processes, against a relay process whose operator verifies one
business through the admin API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import Backend, RelayProcess, registered_client

from tresen.client import Client
from tresen.core.clock import SystemClock
from tresen.core.http import tls_context
from tresen.core.settings import Settings
from tresen.relay.accounts.sms import read_last_code
from tresen.relay.operator.service import OperatorService

pytestmark = pytest.mark.slow

AIRLINE = "+4915150000001"
CARGO = "+4915150000002"
CUSTOMER = "+4915150000003"
NOBODY = "+4915159999999"
WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}

# The child processes get no client settings from whoever runs the tests.
ENV = {
    k: v
    for k, v in os.environ.items()
    if k
    not in (
        "TRESEN_CLIENT_KEY",
        "TRESEN_CHAT_DIR",
        "TRESEN_RELAY_URL",
        "TRESEN_OPERATOR_PUBLIC_KEY",
    )
}


def chat(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "tresen", "chat", *args, "--data-dir", str(data_dir)],
        env=ENV | env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
async def opened() -> AsyncIterator[list[Client]]:
    """SDK clients a test opened, closed after it."""
    clients: list[Client] = []
    yield clients
    for client in clients:
        await client.close()


async def business(
    relay: RelayProcess,
    folder: Path,
    phone: str,
    opened: list[Client],
    *,
    verify_with: str | None,
    **profile: Any,
) -> Client:
    """A registered business with its profile; verified by the operator if given a token."""
    client = await registered_client(relay.url, relay.sms_file, folder, phone)
    opened.append(client)
    defaults = {"timezone": "Europe/Berlin", "category": "TRAVEL", "hours": WEEKDAYS_9_TO_5}
    await client.save_business_profile(**(defaults | profile))
    await client.request_verification("we are who we say")
    if verify_with is not None:
        async with httpx.AsyncClient(verify=tls_context(), base_url=relay.url) as http:
            r = await http.post(
                f"/v1/admin/businesses/{client.account_id}/verify",
                headers={"Authorization": f"Bearer {verify_with}"},
            )
            assert r.status_code == 200, r.text
    return client


async def test_business_profiles_the_directory_and_the_operator_key(
    relay_process: RelayProcess, backend: Backend, tmp_path: Path, opened: list[Client]
) -> None:
    await relay_process.start()
    db = backend.database()
    try:
        operators = OperatorService(db, SystemClock(), Settings(data_dir=tmp_path))
        token = await operators.create_token("ops", by="test")
    finally:
        await db.dispose()
    airline = await business(
        relay_process,
        tmp_path / "airline",
        AIRLINE,
        opened,
        verify_with=token,
        display_name="Tresen Air",
        about="Flights across Europe",
        email="service@tresen-air.de",
        websites=["https://tresen-air.de"],
    )
    cargo = await business(
        relay_process,
        tmp_path / "cargo",
        CARGO,
        opened,
        verify_with=None,
        display_name="Tresen Cargo",
        about="Freight",
        category="OTHER",
    )
    async with httpx.AsyncClient(verify=tls_context(), base_url=relay_process.url) as http:
        published = (await http.get("/v1/operator/keys")).json()
        r = await http.post("/v1/registration/code", json={"phone": CUSTOMER})
        assert r.status_code == 202, r.text
    [current] = [k for k in published["keys"] if k["key_id"] == published["current_key_id"]]

    # The customer pins the operator's key from configuration and sees its fingerprint.
    customer = tmp_path / "customer"
    register = ("register", "--phone", CUSTOMER, "--relay", relay_process.url)
    malformed = chat(customer, *register, "--code", "0", TRESEN_OPERATOR_PUBLIC_KEY="not a key")
    assert malformed.returncode == 1
    assert "--operator-key: the pinned operator key is not an Ed25519 key" in malformed.stderr
    code = read_last_code(relay_process.sms_file, CUSTOMER)
    assert code is not None
    pinned = {"TRESEN_OPERATOR_PUBLIC_KEY": current["public_key"]}
    registered = json.loads(ok(chat(customer, *register, "--code", code, "--json", **pinned)))
    assert registered["operator_fingerprint"] == published["fingerprint"]
    assert registered["operator_key_configured"] is True

    # The profile, with the tick this device decided and why.
    shown = json.loads(ok(chat(customer, "business", AIRLINE, "--json")))
    assert (shown["display_name"], shown["verified"], shown["tick"]) == (
        "Tresen Air",
        True,
        "verified",
    )
    assert shown["tick_reason"] == "verified by the operator"
    assert (shown["phone"], shown["email"]) == (AIRLINE, "service@tresen-air.de")
    assert shown["hours_lines"][0] == "Mon  09:00-17:00"
    assert shown["hours_lines"][-1] == "Sun  closed"
    assert shown["opening_status"].startswith("Open now" if shown["open_now"] else "Closed")
    # As the app shows it (presentation.profile_lines), with the account id for scripts.
    text = ok(chat(customer, "business", cargo.account_id or "")).splitlines()
    assert text[0] == "Tresen Cargo · Business, no tick: not verified by the operator"
    assert "Freight" in text
    assert "Category: Other" in text
    assert f"Account: {cargo.account_id}" in text
    assert "Opening hours (Europe/Berlin):" in text
    assert "Fri  09:00-17:00" in text
    refused = chat(customer, "business", NOBODY)
    assert refused.returncode == 1
    assert f"{NOBODY} is not (or no longer) a listed business" in refused.stderr

    # The directory: the tick is checked here, not taken from the relay.
    found = json.loads(ok(chat(customer, "businesses", "tresen", "--json")))
    assert [(b["display_name"], b["verified"]) for b in found] == [
        ("Tresen Air", True),
        ("Tresen Cargo", False),
    ]
    travel = ok(chat(customer, "businesses", "--category", "travel")).splitlines()
    assert travel == [
        f"Tresen Air ✓ · Travel and transportation · Flights across Europe  ({airline.account_id})"
    ]

    # A listener labels the business's answer with its name and tick.
    ok(chat(customer, "send", "--to", AIRLINE, "--text", "When do I board?"))
    await airline.send_text(CUSTOMER, "Your flight boards at 09:40")
    listened = ok(chat(customer, "listen", "--json", "--count", "1", "--timeout", "60"))
    [message] = [json.loads(line) for line in listened.splitlines() if '"message"' in line]
    assert (message["business"], message["verified"], message["business_name"]) == (
        True,
        True,
        "Tresen Air",
    )
