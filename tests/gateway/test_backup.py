"""``tresen gateway backup`` and ``restore``: a gateway backed up while it runs and restored
into a fresh folder (and database) is the same device with the same Olm sessions: it decrypts
the customer's next message, and the inbox shows the conversation from before the backup."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from gateway_support import (
    become_business,
    customer,
    gateway_settings,
    relay_codes,
    run_gateway,
    subscribe,
    webhook_inbox,
)
from support import PG_URL, Backend, RunningRelay, drop_schema, new_schema_name

from tresen.core.clock import SystemClock
from tresen.core.http import tls_context
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.tokens import AgentTokens
from tresen.gateway.settings import GatewaySettings

pytestmark = pytest.mark.slow

INBOX_API = "/inbox/api/v1"


async def tresen(*args: str, settings: GatewaySettings) -> tuple[int, str]:
    """``python -m tresen gateway ARGS`` for the gateway of ``settings``: exit code, output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRESEN_GATEWAY_")}
    env["COLUMNS"] = "200"
    if settings.database_schema is not None:
        env["TRESEN_GATEWAY_DATABASE_SCHEMA"] = settings.database_schema
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tresen", "gateway", *args,
        "--data-dir", str(settings.data_dir),
        "--database-url", settings.resolved_database_url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


@asynccontextmanager
async def fresh_gateway(
    settings: GatewaySettings, backend: Backend, folder: Path
) -> AsyncIterator[GatewaySettings]:
    """The settings of ``settings``'s gateway moved to an empty folder and database."""
    if backend.name == "sqlite":
        yield GatewaySettings(data_dir=folder, relay_url=settings.relay_url, phone=settings.phone)
        return
    schema = new_schema_name()
    try:
        yield GatewaySettings(
            data_dir=folder,
            relay_url=settings.relay_url,
            phone=settings.phone,
            database_url=PG_URL,
            database_schema=schema,
        )
    finally:
        await drop_schema(schema)


async def never_registers(number: str) -> str:
    raise AssertionError(f"the restored gateway asked for a registration code for {number}")


async def agent_token(settings: GatewaySettings) -> str:
    """An inbox API token of a new owner."""
    db = await open_database(settings)
    try:
        agents = Agents(
            db, SystemClock(), hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        )
        agent = await agents.create("anna", "Anna Schmidt", Role.OWNER, "Korrekt Pferd Batterie")
        _listed, token = await AgentTokens(db, SystemClock(), agents).create(agent.id, "tests")
        return token
    finally:
        await db.dispose()


async def test_a_restored_gateway_decrypts_the_next_message_and_shows_the_old_conversation(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    settings, schema = gateway_settings(relay, backend, tmp_path)
    archive = tmp_path / "gateway-backup.tar.gz"
    try:
        async with AsyncExitStack() as stack:
            async with run_gateway(settings, codes=relay_codes(relay)) as first:
                await become_business(relay, first)
                inbox = await stack.enter_async_context(webhook_inbox(first.gateway.app_secret))
                await subscribe(first, inbox)
                await alice.send_text(first.gateway.phone, "Hello before the backup")
                before = (await inbox.next_message("text"))["messages"][0]
                token, device = first.token, first.gateway.client.device_id
                inbox_token = await agent_token(settings)

                code, out = await tresen(
                    "backup", "--to", str(archive), "--with-key", settings=settings
                )
                assert code == 0, out
                assert "gateway backup written" in out

            restored_folder = tmp_path / "restored"
            async with fresh_gateway(settings, backend, restored_folder) as restored:
                code, out = await tresen("restore", "--from", str(archive), settings=restored)
                assert code == 0, out

                async with run_gateway(restored, codes=never_registers, token=token) as second:
                    assert second.gateway.client.device_id == device  # the same device
                    await alice.send_text(second.gateway.phone, "After the restore")
                    after = (await inbox.next_message("text"))["messages"][0]
                    assert after["text"]["body"] == "After the restore"
                    assert after["from"] == before["from"]

                    async with httpx.AsyncClient(
                        verify=tls_context(),
                        base_url=second.url + INBOX_API,
                        headers={"Authorization": f"Bearer {inbox_token}"},
                        timeout=30,
                    ) as api:
                        r = await api.get("/conversations", params={"status": "any"})
                        assert r.status_code == 200, r.text
                        [conversation] = r.json()["conversations"]
                        r = await api.get(f"/conversations/{conversation['contact']}")
                        assert r.status_code == 200, r.text
                        texts = [m["text"] for m in r.json()["messages"]]
                        assert texts == ["Hello before the backup", "After the restore"]
    finally:
        await alice.close()
        if schema is not None:
            await drop_schema(schema)


async def test_a_gateway_restore_refuses_a_full_target_and_says_where_the_key_goes(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    settings, schema = gateway_settings(relay, backend, tmp_path)
    archive = tmp_path / "gateway-backup.tar"
    try:
        async with run_gateway(settings, codes=relay_codes(relay)):
            code, out = await tresen("backup", "--to", str(archive), settings=settings)
            assert code == 0, out
            assert "not in the archive" in out

        code, out = await tresen("restore", "--from", str(archive), settings=settings)
        assert code == 1
        assert "restore_target_not_empty" in out

        async with fresh_gateway(settings, backend, tmp_path / "restored") as restored:
            code, out = await tresen("restore", "--from", str(archive), settings=restored)
            assert code == 1
            assert "restore_key_missing" in out
            assert str(restored.resolved_key_file) in out
            assert "--with-key" in out

            restored.resolved_key_file.write_bytes(settings.resolved_key_file.read_bytes())
            restored.resolved_key_file.chmod(0o600)
            code, out = await tresen(
                "restore", "--from", str(archive), "--force", settings=restored
            )
            assert code == 0, out
    finally:
        if schema is not None:
            await drop_schema(schema)
