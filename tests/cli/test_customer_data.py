"""``tresen chat export`` / ``delete-account`` and ``tresen gateway customers erase``, as a
customer and a business's operator use them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from chat_support import run_chat
from gateway_support import gateway_settings, next_of, relay_codes, run_gateway
from support import Backend, RunningRelay, registered_client
from typer.testing import CliRunner

from tresen.cli.main import app as tresen
from tresen.client.events import MessageEvent
from tresen.gateway.settings import GatewaySettings

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@sqlite_only
async def test_a_customer_exports_their_data_and_deletes_their_account(
    relay: RunningRelay, tmp_path: Path
) -> None:
    folder = tmp_path / "anna"
    anna = await registered_client(relay.url, relay.sms_file, folder, relay.next_phone())
    account_id, phone = anna.account_id, anna.phone
    await anna.close()
    out = tmp_path / "export.json"

    exported = await run_chat(folder, "export", "--out", str(out), "--wait", "2")
    assert "the relay's part and 0 of 0 businesses" in exported.stderr
    assert exported.ok == ""
    document = json.loads(out.read_text())
    assert document["relay"]["account"]["id"] == account_id
    assert document["businesses"] == []
    assert oct(out.stat().st_mode & 0o777) == "0o600"

    refused = await run_chat(folder, "delete-account")  # no terminal: the question is "no"
    assert refused.returncode == 1
    assert "Nothing deleted." in refused.stderr
    assert await relay.ctx.accounts.phone_of(account_id) == phone  # type: ignore[arg-type]
    deleted = await run_chat(folder, "delete-account", "--yes")
    assert deleted.ok == f"Deleted the account of {phone}.\n"
    assert await relay.ctx.accounts.phone_of(account_id) is None  # type: ignore[arg-type]


def _erase(settings: GatewaySettings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        tresen,
        ["gateway", "customers", "erase", *args, "--data-dir", str(settings.data_dir)],
        env={
            "TRESEN_GATEWAY_DATABASE_URL": settings.resolved_database_url,
            "TRESEN_GATEWAY_RELAY_URL": settings.relay_url,
        },
    )
    return result.exit_code, result.output


@sqlite_only
async def test_the_business_erases_a_customer_from_the_command_line(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    settings, _ = gateway_settings(relay, backend, tmp_path)
    anna = await registered_client(relay.url, relay.sms_file, tmp_path / "anna", relay.next_phone())
    anna.start()
    try:
        async with run_gateway(settings, codes=relay_codes(relay)) as running:
            await anna.send_text(running.gateway.account_id, "Please forget me")
            r = await running.send(
                {"to": (anna.phone or "").lstrip("+"), "type": "text", "text": {"body": "OK"}}
            )
            assert r.status_code == 200, r.text
            await next_of(anna, MessageEvent)
            # While the gateway runs it holds its device store: nothing is erased.
            code, output = await asyncio.to_thread(
                _erase, settings, anna.phone or "", "--reason", "asked by e-mail"
            )
            assert code == 1
            assert "The gateway is running" in output
        code, output = await asyncio.to_thread(
            _erase, settings, anna.phone or "", "--reason", "asked by e-mail on 2025-11-05"
        )
        assert code == 0, output
        assert "messages 2" in output
        assert "Recorded in the audit trail." in output
        code, output = await asyncio.to_thread(_erase, settings, anna.phone or "", "--reason", "x")
        assert code == 1
        assert "No customer" in output
        async with run_gateway(settings) as running:
            async with running.gateway.store.db.read() as conn:
                rows = (
                    await conn.exec_driver_sql("SELECT action, actor, reason FROM audit_log")
                ).all()
            assert [tuple(r) for r in rows] == [
                ("customer_erased", rows[0][1], "asked by e-mail on 2025-11-05")
            ]
            assert rows[0][1].startswith("cli:")
            assert await running.gateway.store.contact(anna.account_id or "") is None
    finally:
        await anna.close()
