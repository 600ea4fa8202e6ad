"""The gateway's device store (``device/client.db``, the SDK's store) forgets a customer: their
number, devices and sessions, and every message of their chat with its downloaded files."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tresen.client import Client
from tresen.client.lock import FolderInUse
from tresen.client.store import LocalStore

__all__ = ["DeviceStoreBusy", "forget_device_peer", "forget_peer_in_folder"]


class DeviceStoreBusy(Exception):
    """The gateway runs and holds its device store: erase through it (the inbox's API)."""


async def forget_device_peer(client: Client, account_id: str) -> int:
    """In a running gateway: forget ``account_id`` in its device's store."""
    rows = client.store.db.execute(
        "SELECT message_id FROM messages WHERE chat = ? OR sender_account = ?",
        (account_id, account_id),
    ).fetchall()
    for (message_id,) in rows:
        path = client.attachments.saved(str(message_id))
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()
    return client.store.forget_peer(account_id)


def forget_peer_in_folder(folder: Path, key: bytes, account_id: str) -> int:
    """With the gateway stopped: forget ``account_id`` in the device store of ``folder``."""
    if not (folder / "client.db").exists():
        return 0
    try:
        store = LocalStore(folder / "client.db", key)
    except FolderInUse as exc:
        raise DeviceStoreBusy(str(exc)) from None
    try:
        return store.forget_peer(account_id)
    finally:
        store.close()
