"""``tresen gateway customers``: a customer's data at the business, erased on request."""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer

from tresen.cli.common import GatewayConfigOption, GatewayDataDirOption, console

__all__ = ["app"]

app = typer.Typer(
    help="A customer's data at the business: erasure on request.", no_args_is_help=True
)


@app.command()
def erase(
    customer: Annotated[
        str, typer.Argument(help="The customer's phone number (E.164 or digits) or account id.")
    ],
    reason: Annotated[
        str,
        typer.Option("--reason", help="Why (e.g. the customer's request and its date); audited."),
    ],
    data_dir: GatewayDataDirOption = None,
    config: GatewayConfigOption = None,
) -> None:
    """Erase everything the gateway holds about a customer, and record it in the audit trail.

    Run it with the gateway stopped (it holds its device store while it runs); a running
    gateway erases through its inbox: DELETE /inbox/api/v1/customers/{customer}."""
    from tresen.cli.gateway import gateway_settings
    from tresen.core.clock import SystemClock
    from tresen.gateway.customers.device_store import DeviceStoreBusy, forget_peer_in_folder
    from tresen.gateway.customers.service import CustomerData, CustomerNotFound
    from tresen.gateway.database import gateway_key, open_database
    from tresen.gateway.media.store import MediaStore

    reason = reason.strip()
    if not 1 <= len(reason) <= 512:
        console.print("[red]--reason needs 1 to 512 characters.[/red]")
        raise typer.Exit(2)
    settings = gateway_settings(config, data_dir=data_dir)
    key = gateway_key(settings)

    async def run() -> dict[str, int] | None:
        db = await open_database(settings)
        store = MediaStore(db)

        async def delete_media(media_id: str) -> None:
            # The relay's copies are ciphertext only and expire there.
            await store.remove(media_id)
            (settings.media_dir / media_id[:3] / media_id).unlink(missing_ok=True)

        async def forget_peer(account_id: str) -> int:
            return forget_peer_in_folder(settings.device_dir, key, account_id)

        customers = CustomerData(
            db,
            SystemClock(),
            business=dict,
            delete_media=delete_media,
            forget_peer=forget_peer,
        )
        try:
            # The device store first: while the gateway runs it is held, and nothing is erased.
            account_id, _ = await customers.find(customer)
            await forget_peer(account_id)
            erased = await customers.erase(
                account_id, actor=f"cli:{getpass.getuser()}"[:128], reason=reason
            )
        except CustomerNotFound:
            return None
        finally:
            await db.dispose()
        return erased.counts

    try:
        counts = asyncio.run(run())
    except DeviceStoreBusy:
        console.print(
            "[red]The gateway is running: stop it first, or erase through its inbox "
            "(DELETE /inbox/api/v1/customers/…).[/red]"
        )
        raise typer.Exit(1) from None
    if counts is None:
        console.print(f"[red]No customer {customer} at this gateway.[/red]")
        raise typer.Exit(1)
    removed = ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "nothing"
    console.print(f"Erased {customer}: {removed}. Recorded in the audit trail.")
