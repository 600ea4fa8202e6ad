"""``tresen chat export`` and ``tresen chat delete-account``: the customer's own data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from tresen.cli.chat.runner import chat_command, err, print_line
from tresen.client.sdk import Client

__all__ = ["delete_account", "export"]

OutOption = Annotated[
    Path,
    typer.Option("--out", "-o", help="Where to write the JSON document.", dir_okay=False),
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        min=1,
        max=600,
        help="Seconds to wait for the businesses' answers before listing them as not answering.",
    ),
]


@chat_command()
async def export(client: Client, out: OutOption, wait: WaitOption = 30.0) -> None:
    """Download everything held about you: what the relay holds, and what each business you
    dealt with holds (asked end to end), as one JSON document."""
    client.start()
    document = await client.export_data(timeout_s=wait)
    data = json.dumps(document, ensure_ascii=False, indent=2).encode()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    businesses = document["businesses"]
    answered = sum(1 for b in businesses if b["status"] == "answered")
    err.print(f"Wrote {out}: the relay's part and {answered} of {len(businesses)} businesses.")
    for b in businesses:
        if b["status"] != "answered":
            err.print(f"  {b.get('name') or b['account_id']}: {b['status'].replace('_', ' ')}")


@chat_command("delete-account")
async def delete_account(
    client: Client,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask; delete the account at once.")
    ] = False,
) -> int:
    """Delete your account at the relay: every device, keys, waiting messages and consents.
    Your number can register again as a new account. Businesses keep their own records until
    you ask them to erase them."""
    phone = client.phone or "this account"
    question = f"Delete the account of {phone} with all its devices? This cannot be undone"
    try:
        confirmed = yes or typer.confirm(question, err=True)
    except typer.Abort:  # no answer (end of input)
        confirmed = False
    if not confirmed:
        err.print("\nNothing deleted.")
        return 1
    await client.delete_account()
    print_line(f"Deleted the account of {phone}.")
    err.print(f"This device's data folder ({client.store.folder}) can now be removed.")
    return 0
