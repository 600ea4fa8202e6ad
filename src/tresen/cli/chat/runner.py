"""What every ``tresen chat`` command shares: the data folder and relay options, opening the
client, and turning every expected failure into a message and an exit code.

A command is an async function whose first parameter is the opened :class:`Client` (or, for
those that open it themselves, a :class:`Where`), registered with :func:`chat_command`; the
decorator adds ``--data-dir`` and ``--relay`` and runs it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tresen.client.contacts import AddressBook
from tresen.client.lock import FolderInUse
from tresen.client.presentation import cli_hints, error_text, identity_text
from tresen.client.sdk import Client, IdentityNotTrusted, NotRegistered, OperatorKeyMismatch
from tresen.core.logging import configure_logging
from tresen.crypto import CryptoError
from tresen.crypto.certificates import CertificateError

__all__ = [
    "EXIT_IDENTITY_CHANGED",
    "EXIT_TIMED_OUT",
    "ChatFailure",
    "DataDirOption",
    "JsonOption",
    "RelayOption",
    "Where",
    "app",
    "chat_command",
    "default_data_dir",
    "err",
    "name_of",
    "open_client",
    "print_json",
    "print_line",
    "run",
    "where",
]

EXIT_IDENTITY_CHANGED = 3
EXIT_TIMED_OUT = 4

app = typer.Typer(
    help="Your end-to-end encrypted chats: the terminal app (no subcommand) and scriptable "
    "commands.",
    invoke_without_command=True,
)

err = Console(stderr=True, highlight=False, soft_wrap=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="TRESEN_CHAT_DIR",
        help="Folder of this device's keys, sessions and messages.",
        show_default="~/.local/share/tresen/chat",
        file_okay=False,
    ),
]
RelayOption = Annotated[
    str | None,
    typer.Option(
        "--relay",
        envvar="TRESEN_RELAY_URL",
        help="Relay URL, e.g. https://relay.example.com (default: the one this data folder "
        "was registered with).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

T = TypeVar("T")


class ChatFailure(Exception):
    """Ends a command with a message on standard error and an exit code; never a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class FolderBusy(ChatFailure):
    """Another process holds the data folder (``FolderInUse``)."""


@dataclass(frozen=True, slots=True)
class Where:
    """The data folder and relay URL a command was given (after the subcommand or before)."""

    folder: Path
    relay: str | None


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tresen" / "chat"


def where(ctx: typer.Context, data_dir: Path | None, relay: str | None) -> Where:
    parent = ctx.parent.params if ctx.parent is not None else {}
    folder = data_dir or parent.get("data_dir") or default_data_dir()
    return Where(Path(folder).expanduser(), relay or parent.get("relay"))


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` and turn every expected failure into a clear message and exit code."""
    try:
        return asyncio.run(_explained(main))
    except ChatFailure as failure:
        err.print(f"[red]error:[/red] {escape(failure.message)}")
        raise typer.Exit(failure.exit_code) from None


async def _explained(main: Callable[[], Awaitable[T]]) -> T:
    try:
        return await main()
    except IdentityNotTrusted as exc:
        text = identity_text(exc.account_id, cli_hints(exc.account_id))
        raise ChatFailure(text, EXIT_IDENTITY_CHANGED) from None
    except NotRegistered as exc:
        raise ChatFailure(str(exc)) from None
    except Exception as exc:
        explained = error_text(exc, "the other side", cli_hints())
        if explained is None:
            raise
        raise ChatFailure(explained) from None


@asynccontextmanager
async def open_client(
    place: Where, *, registered: bool = True, operator_key: str | None = None
) -> AsyncIterator[Client]:
    """The client of the data folder, closed afterwards; ``registered``: refuse a folder
    that holds no registered device (and create nothing on the way)."""
    folder = place.folder
    if registered and not (folder / "client.db").exists():
        raise ChatFailure(
            f"no device is registered in {folder}; run `tresen chat register --phone +49... "
            "--relay URL` first (or pass --data-dir)"
        )
    try:
        client = Client.open(folder, place.relay, operator_key=operator_key)
    except NotRegistered:
        raise ChatFailure(
            f"no relay is known for {folder}; pass --relay URL (or set TRESEN_RELAY_URL)"
        ) from None
    except OperatorKeyMismatch as exc:
        raise ChatFailure(f"{exc}; a client of another operator needs its own --data-dir") from None
    except FolderInUse as exc:
        # Two processes on one session state would break its conversations for good.
        raise FolderBusy(
            f"{exc}; close it first (a device's data folder is used by one process at a time)"
        ) from None
    except CertificateError as exc:
        raise ChatFailure(f"--operator-key: {exc}") from None
    except CryptoError as exc:
        # A wrong TRESEN_CLIENT_KEY, or a key file that is not this folder's.
        raise ChatFailure(f"cannot open the data in {folder}: {exc}") from None
    try:
        if registered and not client.registered:
            raise ChatFailure(
                f"the device in {folder} is not registered yet; run `tresen chat register "
                "--phone +49...` first"
            )
        yield client
    finally:
        await client.close()


def chat_command(
    name: str | None = None, *, opens_client: bool = True, stopped_by_ctrl_c: bool = False
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., None]]:
    """Register an async function as ``tresen chat NAME``.

    Its first parameter gets the opened client (``opens_client=False``: the :class:`Where`),
    its others are the command's options and arguments as typer reads them; ``--data-dir``
    and ``--relay`` are added. Warnings are logged to standard error, failures end the
    command with a message and exit code, and an int it returns is the exit code.
    ``stopped_by_ctrl_c``: Ctrl+C is how the command is meant to end (exit code 0).
    """

    def register(func: Callable[..., Awaitable[Any]]) -> Callable[..., None]:
        own = list(inspect.signature(func, eval_str=True).parameters.values())[1:]
        keyword = inspect.Parameter.KEYWORD_ONLY
        parameters = [
            inspect.Parameter("ctx", keyword, annotation=typer.Context),
            *(p.replace(kind=keyword) for p in own),
            inspect.Parameter("data_dir", keyword, default=None, annotation=DataDirOption),
            inspect.Parameter("relay", keyword, default=None, annotation=RelayOption),
        ]

        @functools.wraps(func)
        def command(
            *, ctx: typer.Context, data_dir: Path | None, relay: str | None, **options: Any
        ) -> None:
            # Warnings (a rejected message, a relay error) go to standard error.
            configure_logging("warning")
            place = where(ctx, data_dir, relay)

            async def main() -> Any:
                if not opens_client:
                    return await func(place, **options)
                async with open_client(place) as client:
                    return await func(client, **options)

            try:
                code = run(main)
            except KeyboardInterrupt:
                if not stopped_by_ctrl_c:
                    raise
                code = 0
            if isinstance(code, int) and code:
                raise typer.Exit(code)

        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        app.command(name=name)(command)
        return command

    return register


def print_json(record: object) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def name_of(client: Client, account_id: str) -> str:
    """How output names an account: a business by its profile, a person by the name saved
    for the number (``tresen chat name``), else the number; this account by its number."""
    if account_id == client.account_id and client.phone:
        return client.phone
    await client.phone_of(account_id)  # learned once, kept in the store
    return AddressBook(client.store, client.clock).title(account_id)
