"""Entry point of the ``tresen`` command.

Each top-level command's module is imported when that command runs: ``tresen chat …`` does
not load the relay's, the gateway's and the operator's code, which would double its start-up
time, and ``tresen --help`` lists the commands with their summaries here, loading none of them.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["COMMANDS", "app"]

COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": (
        "tresen.cli.up",
        "up",
        "Run a relay on SQLite in a local data folder, with a verified demo business, and print "
        "how to reach both.",
    ),
    "relay": (
        "tresen.cli.relay",
        "app",
        "The relay: accounts, keys and store-and-forward delivery.",
    ),
    "gateway": (
        "tresen.cli.gateway",
        "app",
        "Run a business's gateway: the WhatsApp Cloud API's REST shapes and signed webhooks, as a "
        "device of the business account.",
    ),
    "chat": (
        "tresen.cli.chat",
        "app",
        "Your end-to-end encrypted chats: the terminal app (no subcommand) and scriptable "
        "commands.",
    ),
    "admin": (
        "tresen.cli.admin",
        "app",
        "Operate the platform: operator tokens, the signing key, business verification.",
    ),
    "audit": (
        "tresen.cli.audit",
        "app",
        "Audit a relay's key log: follow it, publish the roots seen, compare with others.",
    ),
}
"""Each command's module, the function (a single command) or Typer app (a group) in it, and the
summary ``tresen --help`` shows for it (the same as the command's own help)."""


class LazyCommands(TyperGroup):
    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        module, attribute, summary = found
        if self._listing:
            # Only the name and the summary are shown: the module is not imported for them.
            return TyperCommand(cmd_name, help=summary)
        target: Any = getattr(importlib.import_module(module), attribute)
        if isinstance(target, typer.Typer):
            command = typer.main.get_command(target)
        else:
            single = typer.Typer()
            single.command(name=cmd_name)(target)
            command = typer.main.get_command(single)
        command.name = cmd_name
        return command


app = typer.Typer(
    name="tresen",
    cls=LazyCommands,
    help="Tresen: self-hostable, end-to-end encrypted business messaging.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Tresen: self-hostable, end-to-end encrypted business messaging."""
