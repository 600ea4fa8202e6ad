"""Entry point of the ``tresen`` command.

Each top-level command's module is imported when that command runs (or when the help lists
them): ``tresen chat …`` does not load the relay's, the gateway's and the operator's code,
which would double its start-up time.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["COMMANDS", "app"]

COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("tresen.cli.up", "up"),
    "relay": ("tresen.cli.relay", "app"),
    "gateway": ("tresen.cli.gateway", "app"),
    "chat": ("tresen.cli.chat", "app"),
    "admin": ("tresen.cli.admin", "app"),
}
"""Each command's module and the function (a single command) or Typer app (a group) in it."""


class LazyCommands(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        module, attribute = found
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
