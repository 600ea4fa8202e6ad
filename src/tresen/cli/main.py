"""Entry point of the ``tresen`` command."""

from __future__ import annotations

import typer

from tresen.cli import admin, chat, gateway, relay
from tresen.cli.up import up

__all__ = ["app"]

app = typer.Typer(
    name="tresen",
    help="Tresen: self-hostable, end-to-end encrypted business messaging.",
    no_args_is_help=True,
    add_completion=False,
)
app.command(name="up")(up)
app.add_typer(relay.app, name="relay")
app.add_typer(gateway.app, name="gateway")
app.add_typer(chat.app, name="chat")
app.add_typer(admin.app, name="admin")
