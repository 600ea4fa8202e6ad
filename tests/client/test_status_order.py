"""Delivered and read reports that overtake the sender's own storing of the message.

The relay's ``accepted`` answer and the recipient's ``delivered``/``read`` can reach the
sender's receive loop in one go: the loop resolves ``send()``'s wait with ``accepted`` and
reads on, before ``send()`` resumes and stores the message. The reports must not be lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import RunningRelay, registered_client

from tresen.client import Client
from tresen.client.events import Event, StatusChanged
from tresen.client.store import MessageStatus
from tresen.wire import relay as wire

PRICING = wire.PricingFacts(
    billable=False, pricing_model="PMP", type="free_customer_service", category="service"
)


class OvertakingSocket:
    """Stands in for the relay's side of the connection: answers a send with ``accepted``
    and, in the same read, the recipient's ``delivered`` and ``read`` of that message,
    handled by the client's frame handler one after the other, as its receive loop does."""

    def __init__(self, client: Client, message_id: str) -> None:
        self.client = client
        self.message_id = message_id
        self.acked: list[int] = []

    async def send(self, raw: bytes) -> None:
        frame = wire.decode_client_frame(raw)
        if isinstance(frame, wire.Ack):
            self.acked.extend(frame.ids)
            return
        assert isinstance(frame, wire.Send)
        recipient = frame.to
        for reply in (
            wire.Accepted(
                client_msg_id=frame.client_msg_id, message_id=self.message_id, server_ms=1_000
            ),
            wire.Read(id=8, message_id=self.message_id, recipient=recipient, server_ms=1_300),
            wire.Delivered(
                id=7,
                message_id=self.message_id,
                recipient=recipient,
                server_ms=1_200,
                pricing=PRICING,
            ),
        ):
            await self.client.connection.on_frame(self, wire.encode(reply))  # type: ignore[arg-type]

    async def close(self) -> None:
        pass


@pytest.fixture
async def pair(relay: RunningRelay, tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    clients = [
        await registered_client(relay.url, relay.sms_file, tmp_path / name, relay.next_phone())
        for name in ("shop", "ana")
    ]
    yield clients[0], clients[1]
    for client in clients:
        await client.close()


def pending_events(client: Client) -> list[Event]:
    events: list[Any] = []
    while not client._events.empty():
        events.append(client._events.get_nowait())
    return events


async def test_reports_that_come_before_the_message_is_stored_are_applied(
    pair: tuple[Client, Client],
) -> None:
    sender, recipient = pair
    assert recipient.phone is not None
    message_id = "a96e06c32341d70992556bac22cec2e7"
    socket = OvertakingSocket(sender, message_id)
    sender.connection.ws = socket  # type: ignore[assignment]

    sent = await sender.send_text(recipient.phone, "Your parcel is on its way")

    assert sent.message_id == message_id
    stored = sender.store.message(message_id)
    assert stored is not None
    assert stored.status is MessageStatus.READ
    # Delivered first, then read, whatever order the reports came in; each with its time
    # and (delivered) the pricing facts.
    assert [e for e in pending_events(sender) if isinstance(e, StatusChanged)] == [
        StatusChanged(
            message_id,
            recipient.account_id or "",
            MessageStatus.DELIVERED,
            pricing=PRICING,
            server_ms=1_200,
        ),
        StatusChanged(message_id, recipient.account_id or "", MessageStatus.READ, server_ms=1_300),
    ]
    assert sorted(socket.acked) == [7, 8]
