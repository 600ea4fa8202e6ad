"""``tresen gateway webhooks`` as an operator uses it, on the gateway's database (both
backends): subscribing through the handshake, listing, dead letters, replays, removal."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from support import Backend
from typer.testing import CliRunner
from webhook_support import APP_SECRET, VERIFY_TOKEN, WABA_ID, Receiver, serve_asgi

from tresen.cli.common import console
from tresen.cli.gateway_webhooks import app
from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.crypto.secrets import load_or_create_key_file
from tresen.gateway.settings import WebhookSettings
from tresen.gateway.webhooks import Outbox, WebhookDispatcher


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    # The console was made when the CLI was imported, with whatever width the test process
    # had then; the tables below are read whole.
    monkeypatch.setattr(console, "width", 250)


class Cli:
    def __init__(self, backend: Backend, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env: dict[str, str | None] = {
            "TRESEN_GATEWAY_DATABASE_URL": backend.url,
            "TRESEN_GATEWAY_DATABASE_SCHEMA": backend.schema,
            "TRESEN_GATEWAY_CONFIG": None,
            "TRESEN_GATEWAY_KEY": None,
            "TRESEN_GATEWAY_APP_SECRET": None,
            "COLUMNS": "250",
        }

    async def __call__(self, *args: str) -> Any:
        """``tresen gateway webhooks …`` in a thread (the test servers keep serving here)."""
        argv = [*args, "--data-dir", str(self.data_dir)]
        return await asyncio.to_thread(CliRunner().invoke, app, argv, env=self.env)


@pytest.fixture
def cli(backend: Backend, tmp_path: Path) -> Cli:
    return Cli(backend, tmp_path / "gateway")


def handshake_app() -> Starlette:
    async def callback(request: Request) -> PlainTextResponse:
        if request.query_params.get("hub.verify_token") != VERIFY_TOKEN:
            return PlainTextResponse("Forbidden", status_code=403)
        return PlainTextResponse(request.query_params["hub.challenge"])

    server = Starlette()
    server.add_route("/hook", callback, methods=["GET"])
    return server


async def test_add_list_and_remove_a_subscription(cli: Cli, db: Database) -> None:
    async with serve_asgi(handshake_app()) as base:
        url = base + "/hook"
        result = await cli(
            "add", url, "--verify-token", VERIFY_TOKEN, "--app-secret", APP_SECRET,
            "--field", "messages", "--field", "account_update",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"subscribed {url} (id 1) to messages, account_update" in result.stdout

        refused = await cli("add", base + "/other", "--verify-token", "wrong", "--app-secret", "s")
        assert refused.exit_code == 1
        assert "refused the subscription" in refused.stderr
        assert "HTTP 404" in refused.stderr
        wrong_token = await cli("add", url, "--verify-token", "wrong", "--app-secret", "s")
        assert wrong_token.exit_code == 1
        assert "HTTP 403 'Forbidden'" in wrong_token.stderr
        bad_field = await cli(
            "add", url, "--verify-token", VERIFY_TOKEN, "--app-secret", "s", "-f", "mesages"
        )
        assert bad_field.exit_code == 1
        assert "unknown webhook field mesages" in bad_field.stderr
        assert "Traceback" not in refused.output + wrong_token.output + bad_field.output

    listed = await cli("list")
    assert listed.exit_code == 0, listed.output
    assert url in listed.stdout
    assert "messages, account_update" in listed.stdout
    assert APP_SECRET not in listed.stdout

    removed = await cli("remove", url)
    assert removed.exit_code == 0, removed.output
    assert f"removed {url} (id 1)" in removed.stdout
    assert "no webhook subscriptions" in (await cli("list")).stdout
    again = await cli("remove", url)
    assert again.exit_code == 1
    assert "no webhook subscription" in again.stderr


async def test_dead_letters_are_listed_and_replayed(
    cli: Cli, db: Database, clock: ManualClock
) -> None:
    # The gateway (this test) and the CLI share the database and the key in the data folder.
    key = load_or_create_key_file(cli.data_dir / "key")
    settings = WebhookSettings(retry_initial_s=1, retry_max_s=5, give_up_s=10)
    outbox = Outbox(db, key, clock, settings)
    async with serve_asgi(handshake_app()) as base:
        url = base + "/hook"
        added = await cli("add", url, "--verify-token", VERIFY_TOKEN, "--app-secret", APP_SECRET)
        assert added.exit_code == 0, added.output
    async with db.write() as conn:
        for conversation in ("anna", "ben"):
            await outbox.enqueue(
                conn, waba_id=WABA_ID, conversation=conversation, field="messages", value={}
            )
    receiver = Receiver(clock, down=True)
    dispatcher = WebhookDispatcher(outbox, transport=receiver.transport)
    dispatcher.start()
    try:
        for _ in range(10):
            dispatcher.wake()
            await dispatcher.settle()
            clock.advance(seconds=5)
    finally:
        await dispatcher.close()

    listed = await cli("dead")
    assert listed.exit_code == 0, listed.output
    event_ids = re.findall(r"\b[0-9a-f]{32}\b", listed.stdout)
    assert len(event_ids) == 2
    assert "anna" in listed.stdout
    assert "ben" in listed.stdout
    assert "ConnectError" in listed.stdout
    assert url in listed.stdout
    stats = await cli("stats")
    assert re.search(r"│ 0\s+│ 0\s+│ 2\s+│ —", stats.stdout), stats.stdout

    one = await cli("replay", event_ids[0])
    assert one.exit_code == 0, one.output
    assert "1 event queued again" in one.stdout
    unknown = await cli("replay", event_ids[0], "f" * 32)
    assert unknown.exit_code == 1
    assert "2 of the named events are not dead letters" in unknown.stderr
    nothing = await cli("replay")
    assert nothing.exit_code == 2
    rest = await cli("replay", "--all")
    assert "1 event queued again" in rest.stdout
    assert "no dead webhook events" in (await cli("dead")).stdout
    stats = await cli("stats")
    assert re.search(r"│ 2\s+│ 0\s+│ 0\s+│", stats.stdout), stats.stdout
    pruned = await cli("prune", "--days", "0", "--dead")
    assert pruned.exit_code == 0, pruned.output
    assert "0 delivered and dead events deleted" in pruned.stdout  # pending ones stay


async def test_secret_shows_the_app_secret_of_api_made_subscriptions(
    cli: Cli, db: Database
) -> None:
    first = await cli("secret")
    assert first.exit_code == 0, first.output
    secret = first.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", secret)
    assert (await cli("secret")).stdout.strip() == secret


async def test_a_missing_config_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = await cli("list", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert "configuration error" in result.stderr
