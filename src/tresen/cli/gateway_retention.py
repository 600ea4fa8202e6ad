"""``tresen gateway retention``: the gateway's retention periods, applied now."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from tresen.cli.common import console

__all__ = ["app"]

app = typer.Typer(
    help="What the gateway keeps, and for how long (retention.* settings).", no_args_is_help=True
)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The gateway's folder (device keys, SQLite database)."),
]
Config = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (also TRESEN_GATEWAY_CONFIG).", dir_okay=False
    ),
]


@app.command()
def run(data_dir: DataDir = None, config: Config = None) -> None:
    """Apply every retention period once, now, and print what each deleted or reduced.

    A running gateway does this every retention.interval_s by itself; while it runs it holds
    its device store, whose payloads and conversations (with retention.conversation_days) are
    then left to it."""
    from tresen.cli.gateway import gateway_settings
    from tresen.client.lock import FolderInUse
    from tresen.client.store import LocalStore
    from tresen.core.clock import SystemClock
    from tresen.gateway.customers.service import CustomerData
    from tresen.gateway.database import gateway_key, open_database
    from tresen.gateway.media.store import MediaStore
    from tresen.gateway.retention.service import Retention

    settings = gateway_settings(config, data_dir=data_dir)
    key = gateway_key(settings)
    device_db = settings.device_dir / "client.db"
    store: LocalStore | None = None
    if device_db.exists():
        try:
            store = LocalStore(device_db, key)
        except FolderInUse:
            console.print("The gateway is running: it clears its device store by itself.")

    async def apply() -> dict[str, int]:
        db = await open_database(settings)
        media = MediaStore(db)

        async def delete_media(media_id: str) -> None:
            # The relay's copies are ciphertext only and expire there.
            await media.remove(media_id)
            (settings.media_dir / media_id[:3] / media_id).unlink(missing_ok=True)

        async def forget_peer(account_id: str) -> int:
            assert store is not None
            return store.forget_peer(account_id)

        customers = CustomerData(
            db, SystemClock(), business=dict, delete_media=delete_media, forget_peer=forget_peer
        )
        retention = Retention(
            db,
            SystemClock(),
            settings,
            clear_payloads=None if store is None else store.clear_payloads,
            erase_inactive=None if store is None else customers.erase_inactive,
        )
        try:
            return await retention.run()
        finally:
            await db.dispose()

    try:
        counts = asyncio.run(apply())
    finally:
        if store is not None:
            store.close()
    for name, n in counts.items():
        console.print(f"{name}: {n}")
