"""Which device is connected to this relay process, and how to wake its delivery loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from tresen.core.ids import DevicePk
from tresen.relay.mailbox.repo import MailboxEntry
from tresen.wire.relay import ServerFrame

__all__ = ["Connection", "Hub"]

CLOSE_REPLACED = 4409


class Connection(Protocol):
    def wake(self) -> None:
        """New mailbox entries may be there: look again."""

    def push(self, frame: ServerFrame) -> None:
        """Send a frame that is not stored in the mailbox (best effort)."""

    def offer(self, after_seq: int, entries: list[MailboxEntry]) -> None:
        """Entries just committed; before them the mailbox ended at ``after_seq``."""

    async def close(self, code: int, reason: str) -> None: ...


class Hub:
    """At most one live connection per device; a newer one displaces the older."""

    def __init__(self) -> None:
        self._connections: dict[DevicePk, Connection] = {}

    def register(self, device_pk: DevicePk, connection: Connection) -> Connection | None:
        previous = self._connections.get(device_pk)
        self._connections[device_pk] = connection
        return previous

    def unregister(self, device_pk: DevicePk, connection: Connection) -> None:
        if self._connections.get(device_pk) is connection:
            del self._connections[device_pk]

    def is_connected(self, device_pk: DevicePk) -> bool:
        return device_pk in self._connections

    def connection(self, device_pk: DevicePk) -> Connection | None:
        """The device's connection on this relay process, if it has one."""
        return self._connections.get(device_pk)

    def wake(self, device_pks: Iterable[DevicePk]) -> None:
        for pk in device_pks:
            connection = self._connections.get(pk)
            if connection is not None:
                connection.wake()

    def offer(self, device_pk: DevicePk, after_seq: int, entries: list[MailboxEntry]) -> None:
        connection = self._connections.get(device_pk)
        if connection is not None:
            connection.offer(after_seq, entries)

    def push(self, device_pk: DevicePk, frame: ServerFrame) -> bool:
        connection = self._connections.get(device_pk)
        if connection is None:
            return False
        connection.push(frame)
        return True

    async def disconnect(self, device_pk: DevicePk, reason: str) -> None:
        connection = self._connections.pop(device_pk, None)
        if connection is not None:
            await connection.close(1008, reason)

    async def close_all(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(
            *(c.close(1001, "relay shutting down") for c in connections), return_exceptions=True
        )
