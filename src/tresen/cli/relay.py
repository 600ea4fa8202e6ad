"""``tresen relay``: run and migrate the relay."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Annotated

import typer

from tresen.cli.common import (
    ArchiveOption,
    ConfigOption,
    DatabaseUrlOption,
    DataDirOption,
    ForceOption,
    RestoreFromOption,
    WithKeyOption,
    console,
    make_settings,
    serve_app,
)
from tresen.core.settings import Settings

if TYPE_CHECKING:
    from tresen.core.db import Database

# Server modules are imported inside the commands: `tresen chat` and `--help` stay fast.

__all__ = ["app", "database_for"]

app = typer.Typer(help="The relay: accounts, keys and store-and-forward delivery.")

HostOption = Annotated[str | None, typer.Option("--host", help="Address to bind.")]
PortOption = Annotated[int | None, typer.Option("--port", help="Port to bind (0: any free).")]


def database_for(settings: Settings) -> Database:
    from tresen.core.db import Database

    return Database(
        settings.resolved_database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        schema=settings.database_schema,
    )


@app.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    migrate: Annotated[bool, typer.Option(help="Apply database migrations before serving.")] = True,
    nodes: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Start this many relay nodes on consecutive ports (one PostgreSQL database "
            "and NATS; for development).",
        ),
    ] = 1,
    nats: Annotated[
        str | None,
        typer.Option(help="NATS server of several relay nodes (setting cluster.nats_url)."),
    ] = None,
) -> None:
    """Serve the relay's HTTP API and WebSocket."""
    if nats is not None:
        os.environ["TRESEN_CLUSTER__NATS_URL"] = nats
    settings = make_settings(
        config, host=host, port=port, database_url=database_url, data_dir=data_dir
    )
    if nodes > 1:
        from tresen.cli.relay_nodes import serve_nodes

        serve_nodes(settings, nodes, config=config, migrate=migrate)
        return
    from tresen.relay.app import build_app
    from tresen.relay.context import ConsoleSmsRefused

    try:
        relay_app = build_app(settings, run_migrations=migrate)
    except ConsoleSmsRefused as exc:
        console.print(f"[red]configuration error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None

    def started(url: str) -> None:
        console.print(f"Tresen relay listening on {url}", soft_wrap=True)

    serve_app(relay_app, settings, started)


@app.command()
def migrate(
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Bring the relay database schema up to date."""
    from tresen.relay import migrate as migrations

    settings = make_settings(config, database_url=database_url, data_dir=data_dir)

    async def run() -> tuple[str | None, str | None]:
        db = database_for(settings)
        try:
            before = await migrations.current_revision(db)
            await migrations.upgrade(db)
            return before, await migrations.current_revision(db)
        finally:
            await db.dispose()

    before, after = asyncio.run(run())
    console.print(f"relay database at revision {after} (was {before or 'empty'})")


@app.command()
def backup(
    to: ArchiveOption,
    with_key: WithKeyOption = False,
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Back up the relay's database and attachment files while it serves."""
    from tresen.cli.backup import relay_data, run_backup

    settings = make_settings(config, database_url=database_url, data_dir=data_dir)
    run_backup(relay_data(settings), to, with_key=with_key)


@app.command()
def restore(
    from_: RestoreFromOption,
    force: ForceOption = False,
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Restore a backup into an empty database and data folder (the relay stopped), bring
    its schema up to date and check that the relay can open its signing key."""
    from tresen.cli.backup import relay_data, run_restore

    settings = make_settings(config, database_url=database_url, data_dir=data_dir)
    run_restore(relay_data(settings), from_, force=force)
