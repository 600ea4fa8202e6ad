"""``tresen gateway webhooks``: webhook subscriptions, dead letters and delivery figures.

The commands work on the gateway's database directly (``--data-dir``, ``--config``,
``--database-url``), with the gateway's key, so they work whether the gateway runs or not; a
running gateway sees a change within ``webhooks.poll_s``.

Exit codes: 0 done, 1 refused or failed (the handshake, the subscription limit, an unknown
subscription, the database), 2 a usage or configuration error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tresen.cli.common import GatewayConfigOption, GatewayDataDirOption, console, format_time

if TYPE_CHECKING:
    from tresen.core.db import Database
    from tresen.gateway.settings import GatewaySettings
    from tresen.gateway.webhooks.outbox import Outbox

# Server modules are imported inside the commands, so `--help` stays fast.

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(
    help="Webhook subscriptions, dead letters and delivery figures (on the gateway's database).",
    no_args_is_help=True,
)

err = Console(stderr=True, highlight=False, soft_wrap=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in the data folder)."),
]


def _settings(
    config: Path | None, data_dir: Path | None, database_url: str | None
) -> GatewaySettings:
    from tresen.core.logging import configure_logging
    from tresen.gateway.settings import load_gateway_settings

    try:
        settings = load_gateway_settings(config, data_dir=data_dir, database_url=database_url)
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    # Migration and delivery chatter would drown the answer; warnings still show.
    configure_logging("warning", settings.log_format)
    return settings


def _on_outbox(settings: GatewaySettings, action: Callable[[Outbox], Awaitable[T]]) -> T:
    """Run ``action`` with the outbox of the migrated gateway database."""
    from tresen.core.clock import SystemClock
    from tresen.gateway.webhooks.outbox import Outbox

    return _on_database(
        settings, lambda db, key: action(Outbox(db, key, SystemClock(), settings.webhooks))
    )


def _on_database(settings: GatewaySettings, action: Callable[[Database, bytes], Awaitable[T]]) -> T:
    """Run ``action`` with the migrated gateway database and the gateway's key; errors
    become one line on standard error and exit code 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from tresen.crypto.secrets import SecretsError
    from tresen.gateway.database import gateway_key, open_database
    from tresen.gateway.webhooks.errors import WebhookError

    async def run() -> T:
        key = gateway_key(settings)
        db = await open_database(settings)
        try:
            return await action(db, key)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except WebhookError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    except SecretsError as exc:
        err.print(f"[red]key: {escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    except (SQLAlchemyError, OSError) as exc:
        err.print(f"[red]database: {escape(str(exc))}[/red]")
        raise typer.Exit(1) from None


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="The callback URL, http(s)://…")],
    verify_token: Annotated[
        str, typer.Option("--verify-token", help="Echoed by the receiver's handshake.")
    ],
    app_secret: Annotated[
        str,
        typer.Option("--app-secret", help="Signs every POST (X-Hub-Signature-256); stored sealed."),
    ],
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            "-f",
            help="A webhook field to send, repeatable (default: messages).",
            show_default=False,
        ),
    ] = None,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Subscribe URL: the Cloud API handshake first (GET with hub.challenge), then store it.
    Adding a URL again updates its token, secret and fields."""
    fields = field or ["messages"]
    settings = _settings(config, data_dir, database_url)
    subscription = _on_outbox(
        settings, lambda outbox: outbox.subscribe(url, verify_token, app_secret, fields)
    )
    console.print(
        f"subscribed {escape(subscription.url)} (id {subscription.id}) to "
        f"{', '.join(subscription.fields)}"
    )


@app.command("list")
def list_subscriptions(
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The active subscriptions."""
    settings = _settings(config, data_dir, database_url)
    subscriptions = _on_outbox(settings, lambda outbox: outbox.list())
    if not subscriptions:
        console.print(
            "no webhook subscriptions; add one with "
            "`tresen gateway webhooks add URL --verify-token … --app-secret …`"
        )
        return
    table = Table("id", "url", "fields", "since")
    for s in subscriptions:
        table.add_row(str(s.id), escape(s.url), ", ".join(s.fields), format_time(s.created_ms))
    console.print(table)


@app.command("remove")
def remove(
    subscription: Annotated[str, typer.Argument(help="The subscription's URL or id.")],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Stop sending to a subscription. Its pending events become dead letters (adding the
    URL again lets you replay them)."""
    settings = _settings(config, data_dir, database_url)
    removed = _on_outbox(settings, lambda outbox: outbox.remove(subscription))
    console.print(f"removed {escape(removed.url)} (id {removed.id})")


@app.command("dead")
def dead(
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    after: Annotated[
        int | None, typer.Option("--after", help="Page on after this id.", show_default=False)
    ] = None,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Dead letters: events given up after webhooks.give_up_s, oldest first."""
    settings = _settings(config, data_dir, database_url)
    events = _on_outbox(settings, lambda outbox: outbox.dead(limit, after))
    if not events:
        console.print("no dead webhook events")
        return
    table = Table("id", "event id", "url", "field", "conversation", "tries", "made", "last error")
    for e in events:
        table.add_row(
            str(e.id),
            e.event_id,
            escape(e.url or f"(subscription {e.subscription_id})"),
            e.field,
            escape(e.conversation),
            str(e.attempts),
            format_time(e.created_ms),
            escape(e.last_error or ""),
        )
    console.print(table)
    if len(events) == limit:
        console.print(f"more may follow: --after {events[-1].id}")


@app.command("replay")
def replay(
    event_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Event ids (from `dead`) to send again.", show_default=False),
    ] = None,
    all_dead: Annotated[bool, typer.Option("--all", help="Replay every dead event.")] = False,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Send dead events again, with their event ids and bodies; tries start over."""
    if bool(event_ids) == all_dead:
        err.print("[red]name the event ids to replay, or pass --all (not both)[/red]")
        raise typer.Exit(2)
    settings = _settings(config, data_dir, database_url)
    ids = list(event_ids or [])
    count = _on_outbox(
        settings,
        lambda outbox: outbox.replay(None, all_dead=True) if all_dead else outbox.replay(ids),
    )
    console.print(f"{count} event{'' if count == 1 else 's'} queued again")
    if ids and count < len(set(ids)):
        err.print(
            f"[yellow]{len(set(ids)) - count} of the named events are not dead letters of an "
            "active subscription[/yellow]"
        )
        raise typer.Exit(1)


@app.command("prune")
def prune(
    days: Annotated[
        float, typer.Option("--days", min=0, help="Delete events made more than this long ago.")
    ],
    dead: Annotated[
        bool, typer.Option("--dead", help="Dead letters too, not only delivered events.")
    ] = False,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete old delivered events (their bodies hold message content); pending ones stay."""
    settings = _settings(config, data_dir, database_url)
    count = _on_outbox(settings, lambda outbox: outbox.prune(days * 86400, dead=dead))
    kinds = "delivered and dead" if dead else "delivered"
    console.print(f"{count} {kinds} event{'' if count == 1 else 's'} deleted")


@app.command("stats")
def stats(
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """How many events are pending, delivered and dead; how old the oldest pending one is."""
    settings = _settings(config, data_dir, database_url)
    figures = _on_outbox(settings, lambda outbox: outbox.stats())
    table = Table("pending", "delivered", "dead", "oldest pending")
    age = figures.oldest_pending_age_s
    table.add_row(
        str(figures.pending),
        str(figures.delivered),
        str(figures.dead),
        "—" if age is None else _duration(age),
    )
    console.print(table)


@app.command("secret")
def secret(
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The app secret that signs webhooks of subscriptions made through the Cloud API
    (subscribed_apps); give it to the receiving application."""
    from tresen.gateway.database import app_secret

    settings = _settings(config, data_dir, database_url)

    print(_on_database(settings, lambda db, key: app_secret(db, key, settings.app_secret)))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
