"""``tresen chat`` for who may write to you: consents (``consents``, ``revoke``, ``optin``,
``optout``), blocks (``block``, ``unblock``) and reports (``report``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from tresen.cli.chat.records import consent_change_record, dashboard_record
from tresen.cli.chat.runner import (
    ChatFailure,
    JsonOption,
    chat_command,
    err,
    print_json,
    print_line,
)
from tresen.client.consent import ConsentRecord
from tresen.client.presentation import consent_states_text, consent_summary
from tresen.client.sdk import Client
from tresen.crypto.consent import ALL_SCOPES, ConsentScope

__all__ = ["ReportReason"]

PeerArgument = Annotated[
    str,
    typer.Argument(help="The other person's or business's phone number (+49...) or account id."),
]
BusinessArgument = Annotated[
    str,
    typer.Argument(
        help="The business: its phone number (+49...), account id, or name as `tresen chat "
        "consents` lists it."
    ),
]
ScopeOption = Annotated[
    list[ConsentScope] | None,
    typer.Option(
        "--scope",
        case_sensitive=False,
        help="utility (order updates, codes) or marketing (offers); repeat for both (the default).",
    ),
]


class ReportReason(StrEnum):
    SPAM = "spam"
    OFFENSIVE = "offensive"
    SCAM = "scam"
    UNWANTED = "unwanted"
    OTHER = "other"


@chat_command()
async def consents(client: Client, as_json: JsonOption = False) -> None:
    """List every business with your consent on record: which messages it may send you
    (utility: order updates and codes; marketing: offers), and who recorded it."""
    lines = await client.consents()
    if as_json:
        print_json([dashboard_record(line) for line in lines])
        return
    if not lines:
        err.print("No business has your consent on record.")
    for line in lines:
        name = line.display_name or line.account_id
        print_line(f"{name} · {consent_summary(line, name)}  ({line.account_id})")


async def _business_id(client: Client, business: str) -> str:
    """The account id of a phone number, an account id, or a name on the dashboard."""
    if business.startswith("+"):
        return await client.resolve(business)
    wanted = business.casefold()
    named = [
        line.account_id
        for line in await client.consents()
        if (line.display_name or "").casefold() == wanted
    ]
    if len(named) > 1:
        raise ChatFailure(
            f"several businesses on `tresen chat consents` are named {business!r}; name one by "
            "its phone number or account id"
        )
    return named[0] if named else business


def _print_change(records: list[ConsentRecord], business: str, as_json: bool) -> None:
    if as_json:
        print_json(consent_change_record(records, business))
        return
    name = next((r.business_name for r in records if r.business_name), business)
    print_line(consent_states_text(records, name))


def _scopes(scope: list[ConsentScope] | None) -> tuple[str, ...]:
    return tuple(str(s) for s in (scope or ALL_SCOPES))


@chat_command()
async def revoke(client: Client, business: BusinessArgument, as_json: JsonOption = False) -> None:
    """Withdraw all your consent from a business in one action: no more order updates, codes
    or offers from it (it may still answer for 24 hours after you write to it)."""
    account_id = await _business_id(client, business)
    _print_change(await client.revoke_all(account_id), account_id, as_json)


@chat_command()
async def optin(
    client: Client,
    business: BusinessArgument,
    scope: ScopeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Agree to a business's messages (signed on this device)."""
    account_id = await _business_id(client, business)
    _print_change(await client.opt_in(account_id, _scopes(scope)), account_id, as_json)


@chat_command()
async def optout(
    client: Client,
    business: BusinessArgument,
    scope: ScopeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Withdraw your consent to a business's messages (a signed revocation)."""
    account_id = await _business_id(client, business)
    _print_change(await client.opt_out(account_id, _scopes(scope)), account_id, as_json)


@chat_command()
async def block(client: Client, peer: PeerArgument) -> None:
    """Block someone: their messages stop reaching you, and yours them, until `unblock`.
    They are not told."""
    new = await client.block(peer)
    print_line(f"Blocked {peer}." if new else f"{peer} was blocked already.")


@chat_command()
async def unblock(client: Client, peer: PeerArgument) -> None:
    """Unblock someone: you can write to each other again."""
    await client.unblock(peer)
    print_line(f"Unblocked {peer}.")


@chat_command()
async def report(
    client: Client,
    peer: PeerArgument,
    reason: Annotated[ReportReason, typer.Option("--reason", case_sensitive=False, help="Why.")],
    and_block: Annotated[bool, typer.Option("--block", help="Block them as well.")] = False,
    message_id: Annotated[
        str | None,
        typer.Option("--message-id", help="A message of theirs the report is about."),
    ] = None,
    detail: Annotated[str, typer.Option("--detail", help="A few words for the operator.")] = "",
) -> None:
    """Report someone to your operator; a business's reports count against its quality."""
    await client.report(peer, str(reason), message_id=message_id, detail=detail, block=and_block)
    also = " and blocked them" if and_block else ""
    print_line(f"Reported {peer} ({reason}){also}.")
