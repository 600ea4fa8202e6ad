"""A message the relay could not deliver: the sender's client marks it failed, tells the
application (``StatusChanged`` FAILED with the Cloud API error code) and shows ✗, through a
relay with a controllable clock; a message that reached its recipient never fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support import MakeRelay, RunningRelay, registered_client

from tresen.cli.chat.records import event_record
from tresen.client import Client
from tresen.client.app import ChatModel
from tresen.client.events import Event, MessageEvent, StatusChanged
from tresen.client.store import MessageStatus
from tresen.core.clock import ManualClock
from tresen.wire import relay as wire

E = TypeVar("E")

HOUR_S = 3600
REASON = "expired before delivery"


@dataclass
class World:
    relay: RunningRelay
    clock: ManualClock
    tmp_path: Path
    clients: list[Client] = field(default_factory=list)

    async def person(self, name: str, *, online: bool = True) -> Client:
        """A registered client; ``online``: connected and through its backlog."""
        client = await registered_client(
            self.relay.url,
            self.relay.sms_file,
            self.tmp_path / name,
            self.relay.next_phone(),
            clock=self.clock,
        )
        self.clients.append(client)
        if online:
            client.start()
            await client.wait_drained()
        return client


@pytest.fixture
async def world(make_relay: MakeRelay, tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock()
    async with make_relay(clock=clock, limits={"envelope_ttl_s": HOUR_S}) as relay:
        made = World(relay, clock, tmp_path)
        yield made
        for client in made.clients:
            await client.close()


async def next_of(client: Client, kind: type[E], within_s: float = 20) -> E:
    async def wait() -> E:
        while True:
            event = await client.next_event()
            if isinstance(event, kind):
                return event

    return await asyncio.wait_for(wait(), within_s)


async def pending_at_relay(world: World, client: Client) -> list[Any]:
    r = await world.relay.http.get(
        "/v1/messages", headers={"Authorization": f"Bearer {client.api.token}"}
    )
    envelopes: list[Any] = r.json()["envelopes"]
    return envelopes


async def until(probe: Callable[[], Awaitable[object]], expected: object) -> None:
    """Wait (bounded) until ``probe()`` gives ``expected``: the relay is another party."""
    async with asyncio.timeout(20):
        while await probe() != expected:
            await asyncio.sleep(0.02)


def pending_events(client: Client) -> list[Event]:
    events: list[Any] = []
    while not client._events.empty():
        events.append(client._events.get_nowait())
    return events


async def test_a_message_that_expires_undelivered_is_marked_failed(world: World) -> None:
    shop = await world.person("shop")
    gone = await world.person("gone", online=False)  # registered, never connects again
    assert gone.phone is not None
    assert gone.account_id is not None
    sent = await shop.send_text(gone.phone, "Your table is ready")

    world.clock.advance(seconds=HOUR_S)
    purged = await world.relay.ctx.mailbox.purge_expired()
    assert purged.failed == 1

    status = await next_of(shop, StatusChanged)
    assert status == StatusChanged(
        sent.message_id,
        gone.account_id,
        MessageStatus.FAILED,
        server_ms=world.clock.now_ms(),
        error_code=131026,
        error=REASON,
    )
    stored = shop.store.message(sent.message_id)
    assert stored is not None
    assert (stored.status, stored.error) == (MessageStatus.FAILED, REASON)
    # Acked: the relay soon holds nothing more for the shop.
    await until(lambda: pending_at_relay(world, shop), [])

    # The app shows the message with a red ✗; `tresen chat listen --json` says "failed".
    [line] = ChatModel(shop).lines(gone.account_id)
    assert (line.text, line.ticks) == ("Your table is ready", f"✗ not delivered: {REASON}")
    record = await event_record(shop, status)
    assert (record["status"], record["error_code"], record["error"]) == ("failed", 131026, REASON)


async def test_a_delivered_message_never_becomes_failed(world: World) -> None:
    shop = await world.person("shop")
    ana = await world.person("ana")
    assert ana.phone is not None
    assert ana.account_id is not None
    sent = await shop.send_text(ana.phone, "Hello Ana")
    await next_of(ana, MessageEvent)
    delivered = await next_of(shop, StatusChanged)
    assert delivered.status is MessageStatus.DELIVERED

    # A late failure report (whatever sent it) changes nothing and is still acked.
    acked: list[int] = []

    class Socket:
        async def send(self, raw: bytes) -> None:
            frame = wire.decode_client_frame(raw)
            assert isinstance(frame, wire.Ack)
            acked.extend(frame.ids)

    late = wire.Failed(
        id=99, message_id=sent.message_id, recipient=ana.account_id, code=131026, reason=REASON
    )
    socket = Socket()
    real, shop.connection.ws = shop.connection.ws, socket  # type: ignore[assignment]
    try:  # acks go out on the connection the frame came on, while it is the open one
        await shop.connection.on_frame(socket, wire.encode(late))  # type: ignore[arg-type]
        shop.connection._flush_acks(socket)  # type: ignore[arg-type]
    finally:
        shop.connection.ws = real
    await shop.flush_acks()
    assert acked == [99]
    assert [e for e in pending_events(shop) if isinstance(e, StatusChanged)] == []
    stored = shop.store.message(sent.message_id)
    assert stored is not None
    assert (stored.status, stored.error) == (MessageStatus.DELIVERED, None)
    assert not shop.store.advance_status(sent.message_id, MessageStatus.FAILED)


class OvertakingSocket:
    """Answers a send with ``accepted`` and, in the same read, the given reports on it,
    handled before ``send()`` resumes and stores the message (as in test_status_order.py)."""

    def __init__(self, client: Client, message_id: str, *reports: wire.Frame) -> None:
        self.client = client
        self.message_id = message_id
        self.reports = reports
        self.acked: list[int] = []

    async def send(self, raw: bytes) -> None:
        frame = wire.decode_client_frame(raw)
        if isinstance(frame, wire.Ack):
            self.acked.extend(frame.ids)
            return
        assert isinstance(frame, wire.Send)
        accepted = wire.Accepted(
            client_msg_id=frame.client_msg_id, message_id=self.message_id, server_ms=1_000
        )
        for reply in (accepted, *self.reports):
            await self.client.connection.on_frame(self, wire.encode(reply))  # type: ignore[arg-type]

    async def close(self) -> None:
        pass


MESSAGE_ID = "a96e06c32341d70992556bac22cec2e7"


def failed(recipient: str) -> wire.Failed:
    return wire.Failed(
        id=9, message_id=MESSAGE_ID, recipient=recipient, code=131026, reason=REASON, server_ms=2
    )


async def test_a_failure_that_comes_before_the_message_is_stored_is_applied(
    world: World,
) -> None:
    shop = await world.person("shop", online=False)
    ana = await world.person("ana", online=False)
    assert ana.phone is not None
    assert ana.account_id is not None
    socket = OvertakingSocket(shop, MESSAGE_ID, failed(ana.account_id))
    shop.connection.ws = socket  # type: ignore[assignment]

    await shop.send_text(ana.phone, "Your parcel is on its way")

    stored = shop.store.message(MESSAGE_ID)
    assert stored is not None
    assert stored.status is MessageStatus.FAILED
    assert [e for e in pending_events(shop) if isinstance(e, StatusChanged)] == [
        StatusChanged(
            MESSAGE_ID,
            ana.account_id,
            MessageStatus.FAILED,
            server_ms=2,
            error_code=131026,
            error=REASON,
        )
    ]
    assert socket.acked == [9]


async def test_an_early_failure_does_not_undo_an_early_delivery(world: World) -> None:
    shop = await world.person("shop", online=False)
    ana = await world.person("ana", online=False)
    assert ana.phone is not None
    assert ana.account_id is not None
    delivered = wire.Delivered(id=8, message_id=MESSAGE_ID, recipient=ana.account_id, server_ms=1)
    # The failure is read first; the delivery is still what counts.
    socket = OvertakingSocket(shop, MESSAGE_ID, failed(ana.account_id), delivered)
    shop.connection.ws = socket  # type: ignore[assignment]

    await shop.send_text(ana.phone, "Your parcel is on its way")

    stored = shop.store.message(MESSAGE_ID)
    assert stored is not None
    assert stored.status is MessageStatus.DELIVERED
    statuses = [e for e in pending_events(shop) if isinstance(e, StatusChanged)]
    assert [s.status for s in statuses] == [MessageStatus.DELIVERED]
    assert sorted(socket.acked) == [8, 9]
