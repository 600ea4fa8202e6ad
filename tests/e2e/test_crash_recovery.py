"""A relay process killed with SIGKILL mid-stream loses nothing it answered ``accepted``."""

from __future__ import annotations

import httpx
import pytest
from support import RelayProcess, SendStream, connect_device, publish_identity, register_device

from tresen.core.http import tls_context

pytestmark = pytest.mark.slow


async def test_sigkill_mid_stream_loses_no_accepted_message(relay_process: RelayProcess) -> None:
    await relay_process.start()
    async with httpx.AsyncClient(
        verify=tls_context(), base_url=relay_process.url, timeout=30
    ) as http:
        alice = await register_device(http, relay_process.sms_file, "+4915110000001")
        bob = await register_device(http, relay_process.sms_file, "+4915110000002")
        await publish_identity(http, alice)
        await publish_identity(http, bob)

    sender = await connect_device(relay_process.url, alice)
    total = 5000
    stream = SendStream(sender, bob.account_id, total=total)
    accepted = stream.accepted
    stream.start()
    await stream.until_accepted(300)
    relay_process.kill()
    await stream.stop()
    assert 300 <= len(accepted) < total  # the kill landed in the middle of the stream

    await relay_process.start()
    receiver = await connect_device(relay_process.url, bob)
    # Acked as an app does: the relay sends at most its window (512) of unacked messages.
    received = set(await receiver.drain(ack=True))
    lost = set(accepted.values()) - received
    assert not lost, f"{len(lost)} accepted messages were lost"
    await receiver.close()
