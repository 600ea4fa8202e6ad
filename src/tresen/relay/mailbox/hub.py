"""Which device is connected to this relay process, and how to wake its delivery loop; with
several nodes, what the others must hear of (:mod:`tresen.relay.cluster`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from tresen.core.ids import DevicePk
from tresen.core.logging import get_logger
from tresen.relay.cluster import Cluster, Kind, Notice, SingleNode
from tresen.relay.mailbox.repo import MailboxEntry
from tresen.wire.relay import ServerFrame, decode_server_frame, encode

log = get_logger("tresen.relay.hub")

__all__ = ["Connection", "Hub"]

CLOSE_REPLACED = 4409


class Connection(Protocol):
    def wake(self) -> None:
        """New mailbox entries may be there: look again."""

    def push(self, frame: ServerFrame) -> None:
        """Send a frame that is not stored in the mailbox (best effort)."""

    def offer(self, after_seq: int, entries: list[MailboxEntry]) -> None:
        """Entries just committed; before them the mailbox held none after ``after_seq``."""

    @property
    def sent_up_to(self) -> int:
        """The newest seq this connection has sent (it has sent every entry up to it)."""

    async def close(self, code: int, reason: str) -> None: ...


class Hub:
    """At most one live connection per device, across all nodes; a newer one displaces the
    older."""

    def __init__(self, cluster: Cluster | None = None) -> None:
        self._connections: dict[DevicePk, Connection] = {}
        self.cluster = cluster or SingleNode()
        self.cluster.listen(self._heard)
        self._closing: set[asyncio.Task[None]] = set()

    def register(self, device_pk: DevicePk, connection: Connection) -> Connection | None:
        previous = self._connections.get(device_pk)
        self._connections[device_pk] = connection
        self._tell("displace", [device_pk])
        return previous

    def unregister(self, device_pk: DevicePk, connection: Connection) -> None:
        if self._connections.get(device_pk) is connection:
            del self._connections[device_pk]

    @property
    def connected(self) -> int:
        """How many devices are connected to this relay process."""
        return len(self._connections)

    def is_connected(self, device_pk: DevicePk) -> bool:
        return device_pk in self._connections

    def connection(self, device_pk: DevicePk) -> Connection | None:
        """The device's connection on this relay process, if it has one."""
        return self._connections.get(device_pk)

    def sent_up_to(self, device_pks: Iterable[DevicePk]) -> dict[DevicePk, int]:
        """Of the devices connected to this node, where their connections have sent up to."""
        found = {}
        for pk in device_pks:
            connection = self._connections.get(pk)
            if connection is not None:
                found[pk] = connection.sent_up_to
        return found

    def wake(self, device_pks: Iterable[DevicePk]) -> None:
        for pk in device_pks:
            connection = self._connections.get(pk)
            if connection is not None:
                connection.wake()

    def offer(self, device_pk: DevicePk, after_seq: int, entries: list[MailboxEntry]) -> None:
        self.hand_over([(device_pk, after_seq, entries)])

    def hand_over(self, batch: list[tuple[DevicePk, int, list[MailboxEntry]]]) -> None:
        """Entries just committed, by device: to the connections on this node; the other
        nodes hear of the rest in one notice."""
        elsewhere = []
        for device_pk, after_seq, entries in batch:
            connection = self._connections.get(device_pk)
            if connection is not None:
                connection.offer(after_seq, entries)
            else:
                elsewhere.append(device_pk)
        if elsewhere:
            self._tell("wake", elsewhere)

    def push(self, device_pk: DevicePk, frame: ServerFrame) -> bool:
        """Send ``frame`` to the device wherever it is connected; False if it is not
        connected to this node (another node may still hold it)."""
        connection = self._connections.get(device_pk)
        if connection is None:
            self._tell("push", [device_pk], frame=encode(frame))
            return False
        connection.push(frame)
        return True

    async def disconnect(self, device_pk: DevicePk, reason: str) -> None:
        connection = self._connections.pop(device_pk, None)
        if connection is not None:
            await connection.close(1008, reason)
        else:
            self._tell("disconnect", [device_pk], text=reason)

    def _tell(
        self, kind: Kind, devices: list[DevicePk], *, frame: bytes = b"", text: str = ""
    ) -> None:
        if self.cluster.shared:
            node = self.cluster.node_id
            self.cluster.tell(Notice(kind, node, devices=list(devices), frame=frame, text=text))

    def _heard(self, notice: Notice) -> None:
        """A notice of another node, about the devices this node may hold."""
        for pk in notice.devices:
            device_pk = DevicePk(pk)
            connection = self._connections.get(device_pk)
            if connection is None:
                continue
            if notice.kind == "wake":
                connection.wake()
            elif notice.kind == "push":
                connection.push(decode_server_frame(notice.frame))
            elif notice.kind in ("displace", "disconnect"):
                del self._connections[device_pk]
                reason = notice.text or "connected elsewhere"
                code = CLOSE_REPLACED if notice.kind == "displace" else 1008
                task = asyncio.get_running_loop().create_task(connection.close(code, reason))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(
            *(c.close(1001, "relay shutting down") for c in connections), return_exceptions=True
        )
