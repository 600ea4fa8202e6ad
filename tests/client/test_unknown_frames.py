"""A frame the client cannot read (a newer relay's) is skipped: the connection and every later
message survive it."""

from __future__ import annotations

from pathlib import Path

from gateway_support import next_of
from support import RunningRelay, registered_client

from tresen.client.events import Connected, Disconnected, Drained, MessageEvent
from tresen.wire import relay as wire
from tresen.wire.e2e import Text


class FromTheFuture(wire.Frame, tag="from_the_future"):
    """A server frame this client's protocol revision does not know."""

    surprise: str = "hello"


async def test_a_frame_the_client_cannot_read_is_skipped(
    relay: RunningRelay, tmp_path: Path
) -> None:
    alice = await registered_client(relay.url, relay.sms_file, tmp_path / "a", relay.next_phone())
    bob = await registered_client(relay.url, relay.sms_file, tmp_path / "b", relay.next_phone())
    alice.start()
    bob.start()
    try:
        await next_of(alice, Drained)
        device = await relay.ctx.accounts.authenticate(alice.api.token)
        connection = relay.ctx.hub.connection(device.device_pk)
        assert connection is not None
        connection.push(FromTheFuture())

        await bob.send_text(alice.phone, "still there?")
        seen = []
        while True:
            event = await next_of(alice, object)
            seen.append(event)
            if isinstance(event, MessageEvent):
                break
        assert isinstance(event.payload, Text)
        assert event.payload.text == "still there?"
        assert not any(isinstance(e, Connected | Disconnected) for e in seen)
    finally:
        await alice.close()
        await bob.close()
