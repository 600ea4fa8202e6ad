"""The mailbox's statements on their own, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import insert, select
from support import Backend, RunningRelay, receiving_device

from tresen.core.db import DriverStatement
from tresen.core.ids import AccountId, DevicePk, MessageId
from tresen.relay.mailbox import repo
from tresen.relay.schema import business_profiles, devices


async def first_device_pks(relay: RunningRelay) -> dict[str, DevicePk]:
    """Each account's (first) device's pk."""
    async with relay.ctx.db.read() as conn:
        rows = await conn.execute(select(devices.c.account_id, devices.c.pk))
        return {account: DevicePk(pk) for account, pk in rows}


async def keyed_plan(relay: RunningRelay, statement: DriverStatement, params: Any) -> str:
    """PostgreSQL's plan for a group-commit statement, on the connections it runs on."""
    async with relay.ctx.db.write(keyed=True) as conn:
        sql, names = statement.text(conn)
        values = tuple(params[n] for n in names) if isinstance(params, dict) else params
        rows = await conn.exec_driver_sql(f"EXPLAIN {sql}", values)
        return "\n".join(row[0] for row in rows)


async def test_send_checks_name_suspended_senders_and_the_devices_that_can_receive(
    relay: RunningRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys in chunks of two: more senders than recipients, and the other way round.
    monkeypatch.setattr(repo, "CHUNK", 2)
    senders = [await receiving_device(relay) for _ in range(5)]
    recipients = [await receiving_device(relay) for _ in range(3)]
    # Devices whose identity keys were never published: an account's only one, and a
    # second one of a recipient.
    keyless = await relay.register()
    second = await relay.register(recipients[0].phone)
    assert (second.account_id, second.device_id) == (recipients[0].account_id, 2)
    async with relay.ctx.db.write() as conn:
        for shop, suspended in ((senders[1], True), (senders[3], False)):
            await conn.execute(
                insert(business_profiles).values(
                    account_id=shop.account_id,
                    display_name="Shop",
                    name_skeleton="shop",
                    created_ms=1,
                    updated_ms=1,
                    suspended_ms=1 if suspended else None,
                )
            )
    ids = [AccountId(d.account_id) for d in (*recipients, keyless)]
    async with relay.ctx.db.read() as conn:
        checks = await repo.send_checks(conn, [AccountId(d.account_id) for d in senders], ids)
        only_recipients = await repo.send_checks(conn, [], ids[:1])
    assert checks.suspended == {senders[1].account_id}
    assert set(checks.devices) == {d.account_id for d in recipients}
    for device in recipients:
        listed = checks.devices[AccountId(device.account_id)]
        assert [d.device_id for d in listed] == [device.device_id]
    assert only_recipients.suspended == set()
    assert list(only_recipients.devices) == [recipients[0].account_id]


def entry(device_pk: DevicePk, n: int) -> repo.NewEntry:
    return repo.NewEntry(
        device_pk=device_pk,
        kind=repo.EntryKind.MESSAGE,
        message_id=MessageId(f"m{n}"),
        peer_account=AccountId("+15550000000"),
        peer_device=1,
        klass=0,
        olm_type=1,
        payload=b"x",
        server_ms=1,
        expires_ms=10**13,
    )


async def test_a_store_tells_each_mailbox_head_before_it_and_the_checks_their_lengths(
    relay: RunningRelay,
) -> None:
    """Given where each device's connection has sent up to, the newest seq it held above
    that before a batch (that number itself when none) is where the connection's cursor must
    be for it to push the batch's entries without reading; the batch's own entries do not
    count. The send checks give each mailbox's length."""
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    pk = await first_device_pks(relay)
    a, b = pk[alice.account_id], pk[bob.account_id]
    async with relay.ctx.db.write(keyed=True) as conn:
        first = await repo.store(conn, [], [entry(a, 1), entry(a, 2)], {a: 0})
    assert first.after == {a: 0}
    async with relay.ctx.db.write(keyed=True) as conn:
        second = await repo.store(conn, [], [entry(b, 3), entry(a, 4), entry(b, 5)], {a: 0, b: 0})
    assert second.seqs == sorted(second.seqs)
    assert min(second.seqs) > max(first.seqs)
    assert second.after == {a: max(first.seqs), b: 0}
    async with relay.ctx.db.read() as conn:
        checks = await repo.send_checks(conn, [], [alice.account_id, bob.account_id])
    queued = {d.pk: d.queued for listed in checks.devices.values() for d in listed}
    assert queued == {a: 3, b: 2}

    # Alice's connection has sent everything: nothing waits above; its newest entries were
    # acked (deleted) and what stays is below where it has sent. Bob has no connection here:
    # his entries are fetched, never offered.
    top = max(second.seqs)
    async with relay.ctx.db.write(keyed=True) as conn:
        await repo.delete_entries(conn, [(a, second.seqs[1])])
        third = await repo.store(conn, [], [entry(a, 6), entry(b, 7)], {a: top})
    assert third.after == {a: top, b: repo.NOTHING_SENT}
    assert third.after[b] > max(third.seqs)
    # Sent up to Alice's first entry only: later ones wait above it, the newest entry 6.
    async with relay.ctx.db.write(keyed=True) as conn:
        fourth = await repo.store(conn, [], [entry(a, 8)], {a: min(first.seqs)})
    assert fourth.after == {a: third.seqs[0]}


async def test_the_lock_takes_the_devices_named_and_every_device_of_the_accounts(
    relay: RunningRelay, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.name != "postgres":
        pytest.skip("SQLite has a single writer and locks no rows")
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    bob2 = await relay.register(bob.phone)
    carol = await receiving_device(relay)
    async with relay.ctx.db.read() as conn:
        rows = await conn.execute(select(devices.c.account_id, devices.c.device_id, devices.c.pk))
        pks = {(account, device_id): DevicePk(pk) for account, device_id, pk in rows}
    alice_pk = pks[(alice.account_id, 1)]
    bob_pks = [pks[(bob.account_id, 1)], pks[(bob2.account_id, 2)]]

    for chunk in (repo.CHUNK, 1):  # in one statement, and in chunks
        monkeypatch.setattr(repo, "CHUNK", chunk)
        async with relay.ctx.db.write(keyed=True) as conn:
            found = await repo.lock_devices(conn, [alice_pk], [AccountId(bob.account_id)])
            assert {a: sorted(p) for a, p in found.items()} == {bob.account_id: sorted(bob_pks)}
            # Another transaction finds those rows locked, and Carol's not.
            async with relay.ctx.db.write() as other:
                for pk in (alice_pk, *bob_pks):
                    with pytest.raises(sqlalchemy.exc.DBAPIError, match="could not obtain lock"):
                        await other.execute(
                            select(devices.c.pk)
                            .where(devices.c.pk == pk)
                            .with_for_update(nowait=True)
                        )
                    await other.rollback()
                    await other.begin()
                await other.execute(
                    select(devices.c.pk)
                    .where(devices.c.pk == pks[(carol.account_id, 1)])
                    .with_for_update(nowait=True)
                )


async def test_the_lock_looks_devices_up_by_index(relay: RunningRelay, backend: Backend) -> None:
    """Written as "IN (SELECT unnest(...))" on both sides of its OR, the lock tested every row
    of the table against hashed lists; with "= ANY(...)" each side is an index look-up."""
    if backend.name != "postgres":
        pytest.skip("SQLite locks no rows")
    plan = await keyed_plan(relay, repo._LOCK_DEVICES, ([1, 2], ["a", "b"]))
    assert "Index" in plan
    assert "SubPlan" not in plan


async def test_acks_delete_entries_and_deliver_each_message_once(relay: RunningRelay) -> None:
    """A message is delivered by the first copy acked that its device could read: not by an
    undecryptable one, and not again by a later copy."""
    alice = await receiving_device(relay)
    async with relay.ctx.db.read() as conn:
        rows = await conn.execute(
            select(devices.c.pk).where(devices.c.account_id == alice.account_id)
        )
        a = DevicePk(rows.scalar_one())
    messages = [
        repo.NewMessage(
            repo.SentMessage(
                MessageId(f"m{n}"), AccountId("+1"), DevicePk(0), alice.account_id, 0, 1
            ),
            f"c{n}",
            10**13,
            None,
        )
        for n in (1, 2)
    ]
    copies = [entry(a, 1), entry(a, 1), entry(a, 2)]
    async with relay.ctx.db.write(keyed=True) as conn:
        seqs = (await repo.store(conn, messages, copies)).seqs
    first, second, other = ((a, seq) for seq in seqs)
    steps = [([first, other], {first}), ([second, (a, 10**9)], set()), ([first], set())]
    found = []
    for keys, undecryptable in steps:
        async with relay.ctx.db.write(keyed=True) as conn:
            deleted, delivered = await repo.delete_acked(conn, keys, undecryptable, 5)
        found.append(
            (sorted(seq for _, seq, _, _ in deleted), sorted(m.message_id for m in delivered))
        )
    assert found == [
        (sorted([first[1], other[1]]), ["m2"]),  # m1's copy was undecryptable
        ([second[1]], ["m1"]),
        ([], []),  # deleted already
    ]


async def test_the_acks_statement_finds_its_rows_by_index(
    relay: RunningRelay, backend: Backend
) -> None:
    if backend.name != "postgres":
        pytest.skip("SQLite runs the acks' two statements in the relay's process")
    plan = await keyed_plan(relay, repo._DELETE_ACKED, ([1], [2], [False], 3, 0))
    assert "Seq Scan" not in plan, plan
    # By the primary key or the (device, seq) index, as the planner sees fit.
    assert re.search(r"Index Scan using \w+ on mailbox\b", plan), plan
    assert "Index Scan using pk_messages on messages" in plan, plan


async def test_send_checks_find_earlier_sends_by_device_and_client_id(
    relay: RunningRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repo, "CHUNK", 2)  # more keys than accounts, in chunks
    alice = await receiving_device(relay)
    bob = await receiving_device(relay)
    pk = await first_device_pks(relay)
    a, b = pk[alice.account_id], pk[bob.account_id]
    sent = [
        repo.SentMessage(MessageId(f"m{n}"), alice.account_id, a, bob.account_id, 3, 100 + n)
        for n in range(3)
    ]
    async with relay.ctx.db.write(keyed=True) as conn:
        await repo.store(
            conn, [repo.NewMessage(m, f"c{i}", 10**13, None) for i, m in enumerate(sent)], []
        )
    keys = [(a, "c0"), (a, "c2"), (b, "c1"), (a, "new"), (a, "c1")]
    async with relay.ctx.db.read() as conn:
        checks = await repo.send_checks(conn, [AccountId(alice.account_id)], [], keys)
    assert checks.earlier == {(a, "c0"): sent[0], (a, "c1"): sent[1], (a, "c2"): sent[2]}
    assert checks.suspended == set()
    assert checks.devices == {}


async def test_the_send_checks_find_their_rows_by_index(
    relay: RunningRelay, backend: Backend
) -> None:
    if backend.name != "postgres":
        pytest.skip("SQLite plans every statement anew")
    values = {"senders": ["a"], "recipients": ["b"], "pairs_a": [1], "pairs_b": ["c"]}
    plan = await keyed_plan(relay, repo._SEND_CHECKS, values)
    assert "Seq Scan" not in plan, plan
    assert re.search(r"Index \w*\s?Scan using \w+ on messages\b", plan), plan
    assert "ix_mailbox_device_seq" in plan, plan  # the queue lengths (an index or bitmap scan)
