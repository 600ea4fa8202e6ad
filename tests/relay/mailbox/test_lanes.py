"""On PostgreSQL, what recipients report (acks, read receipts) has a group commit of its own."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from support import Backend, RunningRelay, receiving_device

from tresen.relay.schema import mailbox
from tresen.wire import relay as wire


def text_to(recipient: str, client_msg_id: str) -> wire.Send:
    return wire.Send(
        client_msg_id=client_msg_id,
        to=recipient,
        per_device=[wire.DeviceCiphertext(device_id=1, type=1, body=b"ciphertext")],
    )


async def test_a_batch_of_acks_that_waits_does_not_hold_up_sends(
    relay: RunningRelay, backend: Backend
) -> None:
    """Every message brings acks (the recipient's, then the sender's of ``delivered``): a send
    that waited for them, batch after batch, took that time longer to arrive."""
    if backend.name == "sqlite":
        pytest.skip("SQLite has one writer: one group commit does all")
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    sender = await relay.ctx.accounts.authenticate(alice.token)
    recipient = await relay.ctx.accounts.authenticate(bob.token)
    service = relay.ctx.mailbox
    await service.send(sender, text_to(bob.account_id, "first"))
    (entry,) = await service.pending(recipient.device_pk)
    # Another transaction holds the entry's row: the ack's batch waits for it.
    async with relay.ctx.db.write() as holder:
        await holder.execute(
            select(mailbox.c.seq).where(mailbox.c.seq == entry.seq).with_for_update()
        )
        ack = service.submit_ack(recipient, [entry.seq])
        second = service.submit_send(sender, text_to(bob.account_id, "second"))
        accepted = await asyncio.wait_for(second, timeout=30)
        assert not accepted.duplicate
        assert not ack.done()
    assert await ack == 1
    await second
    left = await service.pending(recipient.device_pk)
    assert [e.seq > entry.seq for e in left] == [True]


async def test_a_send_is_answered_while_an_earlier_ack_of_its_connection_waits(
    relay: RunningRelay, backend: Backend
) -> None:
    """The message is pushed to its recipient when its batch commits; its ``accepted`` must
    not wait for an ack the other group commit has not written, or the recipient's delivery
    receipt could reach the sender before it (and the sender would not know the message)."""
    if backend.name == "sqlite":
        pytest.skip("SQLite has one writer: one group commit does all")
    shop = await receiving_device(relay)
    customer = await receiving_device(relay)
    shop_ws = await relay.connect(shop)
    customer_ws = await relay.connect(customer)
    try:
        await customer_ws.send(text_to(shop.account_id, "hello"))
        await customer_ws.expect(wire.Accepted)
        pushed = await shop_ws.expect(wire.MessageFrame)
        # Another transaction holds the entry's row: the shop's ack of it waits.
        async with relay.ctx.db.write() as holder:
            await holder.execute(
                select(mailbox.c.seq).where(mailbox.c.seq == pushed.id).with_for_update()
            )
            await shop_ws.send(wire.Ack(ids=[pushed.id]))
            await shop_ws.send(text_to(customer.account_id, "your parcel"))
            accepted = await shop_ws.expect(wire.Accepted, timeout=20)
            assert accepted.client_msg_id == "your parcel"
            reply = await customer_ws.expect(wire.MessageFrame)
            assert reply.message_id == accepted.message_id
        # The ack is written once the row is free: the entry is gone.
        for _ in range(200):
            if not await relay.ctx.mailbox.pending(
                (await relay.ctx.accounts.authenticate(shop.token)).device_pk
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the shop's ack was never written")
    finally:
        await shop_ws.ws.close()
        await customer_ws.ws.close()
