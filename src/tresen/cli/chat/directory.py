"""``tresen chat`` for whom you talk to: a business's profile (``business``), the directory
(``businesses``), and the safety number of a chat (``safety``, ``trust``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tresen.cli.chat.records import business_record, summary_record
from tresen.cli.chat.runner import (
    ChatFailure,
    JsonOption,
    chat_command,
    err,
    print_json,
    print_line,
)
from tresen.client.api import RelayError
from tresen.client.presentation import (
    business_check_failed_text,
    directory_line,
    keys_unchanged_text,
    profile_lines,
)
from tresen.client.sdk import Client
from tresen.client.store import Trust
from tresen.core.errors import ErrorCode
from tresen.wire.business import BusinessCategory

__all__: list[str] = []

PeerOption = Annotated[
    str, typer.Option("--with", help="The other person's phone number (+49...) or account id.")
]


@chat_command()
async def safety(client: Client, peer: PeerOption) -> None:
    """Print the 60-digit safety number of your chat with someone.

    Compare it with theirs in person or on a call: if both show the same digits, nobody is
    in between.
    """
    number = await client.safety_number(peer)
    print_line(number)
    if client.trust_of(await client.resolve(peer)) is not Trust.TRUSTED:
        err.print(
            "Their security keys changed or are not confirmed by the relay's key log. "
            f"If these digits match theirs, run: "
            f"tresen chat trust --with {escape(peer)}"
        )


@chat_command()
async def trust(
    client: Client,
    peer: PeerOption,
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect", help="The safety number you compared; refuse if it is not the current one."
        ),
    ] = None,
) -> None:
    """Accept someone's changed security keys, after you compared safety numbers."""
    account_id = await client.resolve(peer)
    # Checking first also notices a change nobody has seen yet.
    number = await client.safety_number(account_id)
    if expect is not None and "".join(expect.split()) != "".join(number.split()):
        raise ChatFailure(
            f"the safety number is now {number}, not the one you compared; nothing was trusted"
        )
    if client.trust_of(account_id) is Trust.TRUSTED:
        print_line(keys_unchanged_text(peer))
        return
    await client.trust_identity(account_id)
    print_line(f"Accepted the new security keys of {peer} (safety number {number}).")


@chat_command(name="business")
async def business_profile(
    client: Client,
    peer: Annotated[
        str, typer.Argument(help="The business's phone number (+49...) or account id.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Show a business's profile, whether it earns the ✓ and why, and when it is open.

    The profile lists its opening hours and the coming days it is closed. The ✓ is decided
    on this device: only a certificate signed by the pinned operator key, not expired or
    revoked, naming the business's current name, number and devices earns it.
    """
    try:
        business = await client.business(peer)
    except RelayError as exc:
        if exc.code != ErrorCode.UNDELIVERABLE:
            raise
        raise ChatFailure(business_check_failed_text(peer, exc)) from None
    now = client.clock.now_ms()
    if as_json:
        print_json(business_record(business, now))
        return
    for line in profile_lines(business, now, account=True):
        print_line(line)


@chat_command(name="businesses")
async def find_businesses(
    client: Client,
    query: Annotated[str, typer.Argument(help="Part of the name; empty lists all.")] = "",
    category: Annotated[
        BusinessCategory | None,
        typer.Option("--category", case_sensitive=False, help="Only this category."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=50, help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Search the business directory: one business a line, ✓ where this device checked the
    operator's certificate. Open a chat with `tresen chat send --to ACCOUNT_ID`."""
    found = await client.find_businesses(query, None if category is None else str(category), limit)
    if as_json:
        print_json([summary_record(b) for b in found])
        return
    if not found:
        err.print(
            f"No business matches {escape(repr(query))}."
            if query
            else "The directory lists no business."
        )
    for hit in found:
        print_line(directory_line(hit))
