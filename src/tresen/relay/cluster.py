"""Several relay nodes on one database: what one node tells the others, over NATS.

Each node holds the WebSocket connections of some devices (its :class:`~tresen.relay.mailbox.
hub.Hub`). What is stored is in the shared database, so a node only needs to hear that it
should look again, never the messages themselves:

- ``wake``: entries were committed for these devices (one notice per group commit, naming
  every device of the batch that is not connected to the committing node);
- ``push``: a frame that is not stored (``keys_low``) for a device connected elsewhere;
- ``displace``: a device connected to this node; any other node closes its older connection;
- ``disconnect``: a device was removed; whichever node holds it closes it;
- ``forget``: what the send path caches about an account changed (it became a business).

Notices are hints on core NATS (at most once): a node that misses one still finds the entries
at its next mailbox poll (``limits.delivery_poll_s``), and caches expire on their own
(``policy`` caches live 5 s). Every node receives every notice and ignores the devices it does
not hold; a notice costs each node one dictionary lookup per device it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from tresen.core.logging import get_logger

__all__ = ["Cluster", "Kind", "NatsCluster", "Notice", "SingleNode", "cluster_of"]

log = get_logger("tresen.relay.cluster")

MAX_QUEUED = 10_000
"""Notices waiting to be published; beyond it they are dropped (the polls find the entries)."""

Kind = Literal["wake", "push", "displace", "disconnect", "forget"]


class Notice(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    kind: Kind
    node: str
    devices: list[int] = []
    frame: bytes = b""
    text: str = ""


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Notice).decode

Handler = Callable[[Notice], None]


class Cluster:
    """What a node tells the others; a single node tells nobody."""

    node_id: str
    published = 0
    """Notices handed to the other nodes (for metrics)."""
    dropped = 0
    """Notices not published because too many were waiting (for tests and metrics)."""

    def tell(self, notice: Notice) -> None:
        """Publish ``notice`` (never blocks; best effort)."""

    def listen(self, handler: Handler) -> None:
        """Call ``handler`` with every notice of another node."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def shared(self) -> bool:
        """True when other nodes may hold connections."""
        return False

    @property
    def connected(self) -> bool:
        """True while this node can tell the others (always, for a single node)."""
        return True


class SingleNode(Cluster):
    def __init__(self) -> None:
        self.node_id = "single"


class NatsCluster(Cluster):
    """Notices on the NATS subject ``<subject>.relay``: every node publishes and subscribes."""

    def __init__(self, url: str, subject: str, node_id: str | None = None) -> None:
        self.url = url
        self.subject = f"{subject}.relay"
        self.node_id = node_id or secrets.token_hex(6)
        self._handlers: list[Handler] = []
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        self._nc: Any = None
        self._sender: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return True

    @property
    def connected(self) -> bool:
        """True while the link to the NATS server is up."""
        return self._nc is not None and bool(self._nc.is_connected)

    def listen(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def start(self) -> None:
        import nats  # imported here: a single node never needs it

        async def errors(exc: Exception) -> None:
            log.warning("cluster connection trouble", error=type(exc).__name__)

        self._nc = await nats.connect(
            self.url,
            name=f"tresen-relay-{self.node_id}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=errors,
        )
        await self._nc.subscribe(self.subject, cb=self._received)
        await self._nc.flush()
        self._sender = asyncio.create_task(self._send())
        log.info("cluster joined", node=self.node_id, subject=self.subject)

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None

    def tell(self, notice: Notice) -> None:
        try:
            self._queue.put_nowait(_encode(notice))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _send(self) -> None:
        while True:
            data = await self._queue.get()
            try:
                await self._nc.publish(self.subject, data)
                self.published += 1
                # Whatever else queued meanwhile goes out in the same flush.
                while not self._queue.empty():
                    await self._nc.publish(self.subject, self._queue.get_nowait())
                    self.published += 1
                await self._nc.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Lost notices are found again by the mailbox polls.
                log.warning("cluster notice not published", error=type(exc).__name__)

    async def _received(self, msg: Any) -> None:
        try:
            notice = _decode(msg.data)
        except msgspec.DecodeError:
            log.warning("cluster notice unreadable")
            return
        if notice.node == self.node_id:
            return
        for handler in self._handlers:
            try:
                handler(notice)
            except Exception:
                log.exception("cluster notice failed", kind=notice.kind)


def cluster_of(nats_url: str | None, subject: str, node_id: str | None) -> Cluster:
    """The cluster the settings name: NATS when a URL is given, else a single node."""
    return SingleNode() if not nats_url else NatsCluster(nats_url, subject, node_id)
