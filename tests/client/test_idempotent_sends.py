"""A send repeated with its client message id is the relay's duplicate: the recipient gets
the message once, and the repeat is answered with the first send's message id."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support import next_of
from support import RunningRelay, registered_client

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow


async def test_a_send_repeated_with_the_same_client_msg_id_reaches_the_recipient_once(
    relay: RunningRelay, tmp_path: Path
) -> None:
    ana: Client = await registered_client(
        relay.url, relay.sms_file, tmp_path / "ana", relay.next_phone()
    )
    ben: Client = await registered_client(
        relay.url, relay.sms_file, tmp_path / "ben", relay.next_phone()
    )
    assert ben.phone is not None
    try:
        ben.start()
        booked = Text(text="Your table for Friday is booked")
        first = await ana.send(ben.phone, booked, client_msg_id="booking-4711")
        # A caller that lost the answer (a crash, a timeout) sends the same message again.
        again = await ana.send(ben.phone, booked, client_msg_id="booking-4711")
        after = await ana.send(ben.phone, Text(text="See you then"))

        assert first.duplicate is False
        assert again.duplicate is True
        assert again.message_id == first.message_id
        assert again.client_msg_id == "booking-4711"
        assert after.duplicate is False
        assert after.message_id != first.message_id

        # The relay hands out a device's messages in order: the one after the repeat comes
        # straight after the first, so the repeat was never stored.
        got = [await next_of(ben, MessageEvent) for _ in range(2)]
        assert [e.message_id for e in got] == [first.message_id, after.message_id]
        assert [e.payload for e in got] == [booked, Text(text="See you then")]
        assert ana.account_id is not None
        kept = [m for m in ben.store.messages(ana.account_id) if not m.outgoing]
        assert [m.message_id for m in kept] == [first.message_id, after.message_id]
    finally:
        await ana.close()
        await ben.close()
