"""``tresen gateway``: a business's gateway (Cloud API and webhooks) and its API tokens."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from tresen.cli import (
    gateway_agents,
    gateway_billing,
    gateway_bot,
    gateway_campaigns,
    gateway_customers,
    gateway_retention,
    gateway_webhooks,
)
from tresen.cli.common import (
    ArchiveOption,
    DatabaseUrlOption,
    ForceOption,
    GatewayConfigOption,
    GatewayDataDirOption,
    RestoreFromOption,
    WithKeyOption,
    console,
    format_time,
    start_server,
)
from tresen.core.logging import configure_logging

if TYPE_CHECKING:
    from tresen.gateway.settings import GatewaySettings

__all__ = ["app", "gateway_settings"]

app = typer.Typer(
    help="Run a business's gateway: the WhatsApp Cloud API's REST shapes and signed webhooks, "
    "as a device of the business account.",
    no_args_is_help=True,
)
token_app = typer.Typer(help="Bearer tokens of the gateway's Cloud API.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(gateway_webhooks.app, name="webhooks")
app.add_typer(gateway_agents.app, name="agents")
app.add_typer(gateway_bot.app, name="bot")
app.add_typer(gateway_campaigns.app, name="campaigns")
app.add_typer(gateway_customers.app, name="customers")
app.add_typer(gateway_retention.app, name="retention")
app.add_typer(gateway_billing.app, name="billing")

T = TypeVar("T")


def gateway_settings(config: Path | None, **overrides: Any) -> GatewaySettings:
    from tresen.gateway.settings import load_gateway_settings

    try:
        settings = load_gateway_settings(config, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _run(action: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(action())


def code_source(code: str | None) -> Callable[[str], Awaitable[str]]:
    """Where the first run's registration code comes from: ``--code``, the environment
    (``TRESEN_GATEWAY_CODE``), else the terminal."""

    async def ask(phone: str) -> str:
        given = code or os.environ.get("TRESEN_GATEWAY_CODE")
        if given:
            return given
        if not sys.stdin.isatty():
            raise typer.BadParameter(
                f"a registration code was sent to {phone}; pass it with --code or "
                "TRESEN_GATEWAY_CODE"
            )
        answer: str = await asyncio.to_thread(typer.prompt, f"Registration code sent to {phone}")
        return answer.strip()

    return ask


@app.command()
def serve(
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    relay: Annotated[str | None, typer.Option("--relay", help="The relay's base URL.")] = None,
    phone: Annotated[
        str | None, typer.Option("--phone", help="The business's number, E.164 (+49…).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in the data folder)."),
    ] = None,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port", help="API port (default 8480).")] = None,
    code: Annotated[
        str | None,
        typer.Option("--code", help="The registration code, on the first run."),
    ] = None,
) -> None:
    """Serve the Cloud API and deliver webhooks until interrupted; registers the gateway as a
    device of the business's number on its first run."""
    from tresen.client.lock import FolderInUse
    from tresen.gateway.app import build_gateway_app
    from tresen.gateway.relay_link import GatewayNotRegistered

    settings = gateway_settings(
        config,
        data_dir=data_dir,
        relay_url=relay,
        phone=phone,
        database_url=database_url,
        host=host,
        port=port,
    )
    gateway_app = build_gateway_app(settings, codes=code_source(code))

    async def main() -> None:
        try:
            server, task, url = await start_server(gateway_app, settings.host, settings.port)
        except (GatewayNotRegistered, FolderInUse) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        gateway = gateway_app.state.gateway
        console.rule("Tresen gateway")
        console.print(f"Business:   {gateway.phone}  (account {gateway.account_id})")
        console.print(f"Cloud API:  {url}/v23.0/{gateway.phone_number_id}/messages")
        console.print(
            f"            phone_number_id {gateway.phone_number_id}, "
            f"waba_id {gateway.waba_id}; docs at {url}/docs"
        )
        console.print(f"Inbox:      {url}/inbox")
        console.print(
            "            first person: tresen gateway agents add NAME --name 'Full Name' "
            "--role owner"
        )
        console.print("Tokens:     tresen gateway token create NAME")
        console.print("Webhooks:   tresen gateway webhooks add URL --verify-token … --app-secret …")
        try:
            await task
        except BaseException:
            server.should_exit = True
            await task
            raise

    try:
        asyncio.run(main())
    except (GatewayNotRegistered, FolderInUse) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


def _with_store(settings: GatewaySettings, action: Callable[[Any], Awaitable[T]]) -> T:
    from tresen.core.clock import SystemClock
    from tresen.gateway.database import open_database
    from tresen.gateway.store import GatewayStore

    async def run() -> T:
        db = await open_database(settings)
        try:
            return await action(GatewayStore(db, SystemClock()))
        finally:
            await db.dispose()

    return _run(run)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. crm.")],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Create an API token; it is shown once (only its hash is stored)."""
    settings = gateway_settings(config, data_dir=data_dir)

    async def create(store: Any) -> tuple[Any, str]:
        result: tuple[Any, str] = await store.create_token(name, max_tokens=settings.api.max_tokens)
        return result

    try:
        info, token = _with_store(settings, create)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"Token {info.id} ({info.name}), shown only now:")
    console.print(token, soft_wrap=True)


@token_app.command("list")
def token_list(data_dir: GatewayDataDirOption = None, config: GatewayConfigOption = None) -> None:
    """The gateway's API tokens (never the tokens themselves)."""
    settings = gateway_settings(config, data_dir=data_dir)
    tokens = _with_store(settings, lambda store: store.tokens())
    table = Table("id", "name", "starts with", "created", "last used", "revoked")
    for t in tokens:
        table.add_row(
            str(t.id),
            t.name,
            t.hint + "…",
            format_time(t.created_ms),
            format_time(t.last_used_ms),
            format_time(t.revoked_ms),
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    which: Annotated[str, typer.Argument(help="Token id, name or the start shown by list.")],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Revoke tokens: calls with them fail with error 190 from then on."""
    settings = gateway_settings(config, data_dir=data_dir)
    count = _with_store(settings, lambda store: store.revoke_token(which))
    if not count:
        console.print(f"[red]no active token matches {which}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {count} token{'s' if count != 1 else ''}")


@app.command()
def backup(
    to: ArchiveOption,
    with_key: WithKeyOption = False,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Back up the gateway's database, device (keys and sessions) and media while it runs."""
    from tresen.cli.backup import gateway_data, run_backup

    settings = gateway_settings(config, data_dir=data_dir, database_url=database_url)
    run_backup(gateway_data(settings), to, with_key=with_key)


@app.command()
def restore(
    from_: RestoreFromOption,
    force: ForceOption = False,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Restore a backup into an empty database and data folder (the gateway stopped), bring
    its schema up to date and check that the gateway can open its device with its key."""
    from tresen.cli.backup import gateway_data, run_restore

    settings = gateway_settings(config, data_dir=data_dir, database_url=database_url)
    run_restore(gateway_data(settings), from_, force=force)
