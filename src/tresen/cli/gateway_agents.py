"""``tresen gateway agents``: the people of the business's team inbox."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from tresen.cli.common import GatewayConfigOption, GatewayDataDirOption, console, format_time
from tresen.gateway.inbox.roles import Role

if TYPE_CHECKING:
    from tresen.gateway.inbox.agents import Agent, Agents
    from tresen.gateway.inbox.tokens import AgentToken, AgentTokens
    from tresen.gateway.settings import GatewaySettings

# The inbox's storage is imported inside the commands, so `tresen gateway` and its other
# commands do not load it (nor argon2 and the translations).

__all__ = ["app"]

app = typer.Typer(
    help="The people of the team inbox: owners, admins and agents.", no_args_is_help=True
)

T = TypeVar("T")

RoleOption = Annotated[
    Role, typer.Option("--role", help="owner, admin (settings, tokens, agents) or agent.")
]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from standard input instead of asking."
    ),
]


def _settings(config: Path | None, data_dir: Path | None) -> GatewaySettings:
    from tresen.cli.gateway import gateway_settings

    return gateway_settings(config, data_dir=data_dir)


def _with_agents(settings: GatewaySettings, action: Callable[[Agents], Awaitable[T]]) -> T:
    from tresen.core.clock import SystemClock
    from tresen.gateway.database import open_database
    from tresen.gateway.inbox.agents import Agents
    from tresen.gateway.inbox.i18n import Refused

    async def run() -> T:
        db = await open_database(settings)
        try:
            return await action(Agents(db, SystemClock()))
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except Refused as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        console.print("[red]the two passwords differ[/red]")
        raise typer.Exit(1)
    return first


async def _agent(agents: Agents, username: str) -> Agent:
    from tresen.gateway.inbox.agents import AgentError

    agent = await agents.by_username(username)
    if agent is None:
        raise AgentError("there is no agent {name}", name=username)
    return agent


@app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="How they sign in, e.g. anna.")],
    name: Annotated[str, typer.Option("--name", help="Shown to the team, e.g. Anna Schmidt.")],
    role: RoleOption = Role.AGENT,
    password_stdin: PasswordStdin = False,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Add a person to the inbox with a first password."""
    password = _password(password_stdin)
    agent = _with_agents(
        _settings(config, data_dir), lambda agents: agents.create(username, name, role, password)
    )
    console.print(f"Added {agent.username} ({agent.display_name}) as {agent.role}.")


@app.command("list")
def list_agents(data_dir: GatewayDataDirOption = None, config: GatewayConfigOption = None) -> None:
    """Everyone of the inbox, with their role."""
    table = Table("user", "name", "role", "since", "disabled")
    for agent in _with_agents(_settings(config, data_dir), lambda agents: agents.all()):
        table.add_row(
            agent.username,
            agent.display_name,
            str(agent.role),
            format_time(agent.created_ms),
            format_time(agent.disabled_ms),
        )
    console.print(table)


@app.command("role")
def set_role(
    username: Annotated[str, typer.Argument(help="Whose role changes.")],
    role: Annotated[Role, typer.Argument(help="owner, admin or agent.")],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Change someone's role (the business always keeps an owner)."""

    async def change(agents: Agents) -> Agent:
        return await agents.set_role((await _agent(agents, username)).id, role)

    agent = _with_agents(_settings(config, data_dir), change)
    console.print(f"{agent.username} is {agent.role} now.")


@app.command("disable")
def disable(
    username: Annotated[str, typer.Argument(help="Who may no longer sign in.")],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Sign someone out everywhere and stop them signing in (their history stays)."""

    async def change(agents: Agents) -> Agent:
        return await agents.disable((await _agent(agents, username)).id)

    agent = _with_agents(_settings(config, data_dir), change)
    console.print(f"{agent.username} is disabled and signed out everywhere.")


@app.command("enable")
def enable(
    username: Annotated[str, typer.Argument(help="Who may sign in again.")],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Let a disabled person sign in again."""

    async def change(agents: Agents) -> Agent:
        return await agents.enable((await _agent(agents, username)).id)

    agent = _with_agents(_settings(config, data_dir), change)
    console.print(f"{agent.username} may sign in again.")


@app.command("password")
def password(
    username: Annotated[str, typer.Argument(help="Whose password is set.")],
    password_stdin: PasswordStdin = False,
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Set a new password; every session of that person ends."""
    new = _password(password_stdin)

    async def change(agents: Agents) -> None:
        await agents.set_password((await _agent(agents, username)).id, new)

    _with_agents(_settings(config, data_dir), change)
    console.print(f"New password set for {username}; signed out everywhere.")


tokens_app = typer.Typer(
    help="Personal access tokens of the inbox's JSON API: each acts as its agent, with the "
    "agent's role.",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="token")


def _tokens(agents: Agents) -> AgentTokens:
    from tresen.gateway.inbox.tokens import AgentTokens

    return AgentTokens(agents.db, agents.clock, agents)


@tokens_app.command("create")
def create_token(
    username: Annotated[str, typer.Argument(help="Whose token: it acts as them.")],
    name: Annotated[
        str, typer.Option("--name", help="What it is for, e.g. the name of a tool.")
    ] = "cli",
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Make a token and print it once: only its SHA-256 is kept."""

    async def make(agents: Agents) -> tuple[AgentToken, str]:
        return await _tokens(agents).create((await _agent(agents, username)).id, name)

    listed, token = _with_agents(_settings(config, data_dir), make)
    console.print(f"Token {listed.id} ({listed.name}) for {username}; shown only now:")
    # Plain print: the token on a line of its own, never wrapped or styled.
    print(token)


@tokens_app.command("list")
def list_tokens(
    username: Annotated[str, typer.Argument(help="Whose tokens.")],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Someone's tokens (by their hint; the tokens themselves are not kept)."""

    async def find(agents: Agents) -> list[AgentToken]:
        return await _tokens(agents).of((await _agent(agents, username)).id)

    table = Table("id", "name", "hint", "created", "last used", "revoked")
    for token in _with_agents(_settings(config, data_dir), find):
        table.add_row(
            str(token.id),
            token.name,
            token.hint + "…",
            format_time(token.created_ms),
            format_time(token.last_used_ms),
            format_time(token.revoked_ms),
        )
    console.print(table)


@tokens_app.command("revoke")
def revoke_token(
    username: Annotated[str, typer.Argument(help="Whose token.")],
    token_id: Annotated[int, typer.Argument(help="The token's id (see list).", min=1)],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Revoke one of someone's tokens: it stops working at once."""

    async def revoke(agents: Agents) -> bool:
        return await _tokens(agents).revoke((await _agent(agents, username)).id, token_id)

    if not _with_agents(_settings(config, data_dir), revoke):
        console.print(f"[red]{username} has no active token {token_id}[/red]")
        raise typer.Exit(1)
    console.print(f"Token {token_id} of {username} revoked.")
