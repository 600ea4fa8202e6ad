"""``tresen audit``: follow a relay's key log as an independent auditor, publish the roots
seen, and compare them with another party's (docs/operations.md, "Auditing the key log")."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import httpx
import typer

from tresen.cli.common import console, format_time
from tresen.client.api import RelayError
from tresen.client.audit import AuditFailure, Auditor
from tresen.client.transparency import load_roots

__all__ = ["app"]

app = typer.Typer(
    help="Audit a relay's key log: follow it, publish the roots seen, compare with others.",
    no_args_is_help=True,
)

EXIT_FAILURE = 1
EXIT_UNREACHABLE = 2

StateOption = Annotated[
    Path,
    typer.Option("--state", help="Folder where this auditor keeps the operator key and roots."),
]


def _fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(code)


@app.command()
def follow(
    relay: Annotated[str, typer.Option("--relay", help="The relay's base URL.")],
    state: StateOption,
    operator_key: Annotated[
        str | None,
        typer.Option(
            "--operator-key",
            help="The operator's public key (base64) to pin; default: the relay's current "
            "key on first use.",
        ),
    ] = None,
) -> None:
    """Check every epoch published since the last run: signature, chain, consistency."""

    async def run() -> None:
        auditor = Auditor(relay, state, operator_key=operator_key)
        try:
            result = await auditor.follow()
        except AuditFailure as exc:
            evidence = state / "evidence.json"
            state.mkdir(parents=True, exist_ok=True)
            evidence.write_text(json.dumps(exc.evidence, indent=1) + "\n")
            raise _fail(f"The key log failed the audit: {exc} (evidence in {evidence})") from None
        except (RelayError, httpx.HTTPError) as exc:
            raise _fail(f"The relay could not be read: {exc}", EXIT_UNREACHABLE) from None
        finally:
            await auditor.close()
        latest = result.latest
        if latest is None:
            console.print("The relay has published no epoch yet.")
            return
        console.print(
            f"Checked {result.checked} new epochs; the log is consistent up to epoch "
            f"{latest.epoch} ({latest.tree_size} entries, {format_time(latest.published_ms)})."
        )

    asyncio.run(run())


@app.command()
def roots(
    state: StateOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON to publish.")] = False,
) -> None:
    """The epoch heads this auditor checked and kept."""
    kept = Auditor("http://127.0.0.1", state).roots()
    if as_json:
        typer.echo(json.dumps(kept, indent=1))
        return
    for root in kept:
        console.print(
            f"epoch {root['epoch']}: {root['tree_size']} entries, root {root['log_root']}"
        )


@app.command()
def compare(
    theirs: Annotated[
        Path, typer.Argument(help="Roots another auditor or client published (JSON).")
    ],
    state: StateOption,
    relay: Annotated[
        str, typer.Option("--relay", help="The relay's base URL (for the operator's keys).")
    ],
) -> None:
    """Compare the roots kept here with another party's: a difference proves a fork."""

    async def run() -> None:
        try:
            other = load_roots(theirs.read_text())
        except (OSError, ValueError) as exc:
            raise _fail(f"{theirs}: not a list of roots ({exc})") from None
        auditor = Auditor(relay, state)
        try:
            conflicts = await auditor.compare(other)
        except (RelayError, httpx.HTTPError) as exc:
            raise _fail(f"The relay could not be read: {exc}", EXIT_UNREACHABLE) from None
        finally:
            await auditor.close()
        if not conflicts:
            console.print(f"No conflict: {len(other)} roots compared.")
            return
        for conflict in conflicts:
            console.print(
                f"[red]Fork at epoch {conflict.epoch}: {conflict.reason} "
                f"(ours {conflict.mine}, theirs {conflict.theirs})[/red]"
            )
        raise typer.Exit(EXIT_FAILURE)

    asyncio.run(run())
