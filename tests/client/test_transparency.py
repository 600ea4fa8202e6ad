"""Key transparency as clients see it: honest relays raise no warning; a relay that lies about
keys (to one client only, by removing an entry, by rewriting or forking its history) is
caught by every client that uses the keys, which then refuses to send."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from support import RunningRelay, registered_client
from transparency_support import LyingTransport, remove_entry, rewrite_leaf, verify_unlogged

from tresen.client import Client
from tresen.client.business import TickState
from tresen.client.directory import IdentityNotTrusted
from tresen.client.events import Event, KeyTransparencyFailed
from tresen.client.store import Trust
from tresen.client.transparency import compare_roots
from tresen.relay.operator.service import OperatorPrincipal
from tresen.relay.schema import devices
from tresen.relay.transparency import repo
from tresen.relay.transparency.models import lookup_public
from tresen.wire.e2e import Text

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


async def person(relay: RunningRelay, tmp_path: Path, name: str, **options: Any) -> Client:
    client: Client = await registered_client(
        relay.url, relay.sms_file, tmp_path / name, relay.next_phone(), **options
    )
    return client


class Forget(Exception):
    """Rolls back the transaction it leaves."""


def drained(client: Client) -> list[Event]:
    found = []
    while not client._events.empty():
        found.append(client._events.get_nowait())
    return found


def failures(client: Client) -> list[KeyTransparencyFailed]:
    return [e for e in drained(client) if isinstance(e, KeyTransparencyFailed)]


async def test_honest_relay_raises_no_warning_and_messages_flow(
    relay: RunningRelay, tmp_path: Path
) -> None:
    alice = await person(relay, tmp_path, "alice")
    bob = await person(relay, tmp_path, "bob")
    try:
        assert bob.account_id is not None
        await alice.send(bob.account_id, Text(text="hello"))
        # Bob adds a device: published in the log, and Alice's next look-up accepts it.
        bob2 = await registered_client(
            relay.url, relay.sms_file, tmp_path / "bob2", bob.phone or ""
        )
        await alice.directory.devices_of(bob.account_id, refresh=True)
        await alice.send(bob.account_id, Text(text="both of your devices"))
        assert len(alice.store.peer_devices(bob.account_id)) == 2
        await bob.send(alice.account_id or "", Text(text="hi"))

        for client in (alice, bob, bob2):
            assert failures(client) == []
        assert alice.trust_of(bob.account_id) is Trust.TRUSTED
        roots = alice.key_log_roots()
        assert [r["epoch"] for r in roots] == sorted({r["epoch"] for r in roots})
        assert len(roots) >= 2  # a newer head was accepted with a consistency proof
        ring = alice.operator_keys
        assert ring is not None
        assert compare_roots(roots, bob.key_log_roots(), ring) == []
        await bob2.close()
    finally:
        await alice.close()
        await bob.close()


class HeldAnswer(LyingTransport):
    """The relay's answer to one look-up reaches the client only when the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.path: str | None = None
        self.body: dict[str, Any] = {}
        self.answered = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path != self.path:
            return response
        self.path = None
        await response.aread()
        await response.aclose()
        self.body = response.json()
        self.answered.set()
        await self.release.wait()
        return httpx.Response(200, json=self.body, request=request)


async def test_look_ups_answered_across_a_new_epoch_raise_no_warning(
    relay: RunningRelay, tmp_path: Path
) -> None:
    """Two look-ups side by side: the first is answered from epoch n, the second from epoch
    n + 1, and the second answer is checked first. The first is not a history that went
    back: the client had seen nothing newer than epoch n when it asked."""
    held = HeldAnswer()
    alice = await person(relay, tmp_path, "alice", transport=held)
    bob = await person(relay, tmp_path, "bob")
    dave = await person(relay, tmp_path, "dave")
    try:
        assert bob.account_id is not None
        assert dave.account_id is not None
        await alice.send(bob.account_id, Text(text="hello"))
        asked_at = alice.key_log.epoch
        assert asked_at is not None

        held.path = f"/v1/keys/{bob.account_id}"
        first = asyncio.create_task(alice.directory.devices_of(bob.account_id, refresh=True))
        await held.answered.wait()
        assert held.body["transparency"]["epoch"]["epoch"] == asked_at
        # Meanwhile Dave adds a device, a new epoch is published, and Alice sees it.
        dave2 = await registered_client(
            relay.url, relay.sms_file, tmp_path / "dave2", dave.phone or ""
        )
        await dave2.close()
        await relay.ctx.transparency.publish()
        await alice.directory.devices_of(dave.account_id, refresh=True)
        assert alice.key_log.epoch is not None
        assert alice.key_log.epoch > asked_at

        held.release.set()
        await first
        assert failures(alice) == []
        assert alice.trust_of(bob.account_id) is Trust.TRUSTED

        # The same old answer to a look-up asked after the newer epoch was seen is one.
        old = held.body
        held.rewrite = lambda request, body: (
            old if request.url.path == f"/v1/keys/{bob.account_id}" else body
        )
        await alice.directory.devices_of(bob.account_id, refresh=True)
        warnings = failures(alice)
        assert warnings
        assert warnings[0].forked
        assert "went back" in warnings[0].reason
        assert alice.trust_of(bob.account_id) is Trust.KEY_TRANSPARENCY
    finally:
        for client in (alice, bob, dave):
            await client.close()


async def test_a_key_swapped_for_one_client_only_stops_that_client(
    relay: RunningRelay, tmp_path: Path
) -> None:
    lying = LyingTransport()
    carol = await person(relay, tmp_path, "carol", transport=lying)
    alice = await person(relay, tmp_path, "alice")
    bob = await person(relay, tmp_path, "bob")
    mallory = await person(relay, tmp_path, "mallory")
    try:
        assert bob.account_id is not None
        assert mallory.device.identity is not None
        intruder = mallory.device.identity.curve25519

        def swap(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any]:
            if request.url.path == f"/v1/keys/{bob.account_id}":
                body["devices"][0]["identity_keys"]["curve25519"] = intruder
            return body

        lying.rewrite = swap
        with pytest.raises(IdentityNotTrusted) as refused:
            await carol.send(bob.account_id, Text(text="for your eyes only"))
        assert refused.value.reason is Trust.KEY_TRANSPARENCY
        assert carol.trust_of(bob.account_id) is Trust.KEY_TRANSPARENCY
        [warning] = failures(carol)
        assert warning.account_id == bob.account_id
        assert not warning.forked
        assert carol.store.peer_devices(bob.account_id) == {}  # nothing unvouched was pinned
        # Still refused when asked again, however the relay answers now.
        lying.rewrite = None
        with pytest.raises(IdentityNotTrusted):
            await carol.send(bob.account_id, Text(text="again"))

        # Everyone else is unaffected.
        await alice.send(bob.account_id, Text(text="hello"))
        assert failures(alice) == []
    finally:
        for client in (carol, alice, bob, mallory):
            await client.close()


async def test_an_entry_removed_from_the_map_is_detected(
    relay: RunningRelay, tmp_path: Path
) -> None:
    alice = await person(relay, tmp_path, "alice")
    bob = await person(relay, tmp_path, "bob")
    try:
        assert bob.account_id is not None
        await alice.send(bob.account_id, Text(text="hello"))
        # The relay drops Bob from its map (but still hands out his keys) and signs that.
        await remove_entry(relay, bob.account_id)

        await alice.directory.devices_of(bob.account_id, refresh=True)
        with pytest.raises(IdentityNotTrusted):
            await alice.send(bob.account_id, Text(text="still there?"))
        [warning] = failures(alice)
        assert warning.account_id == bob.account_id
        assert "no devices" in warning.reason
    finally:
        await alice.close()
        await bob.close()


async def test_a_tick_needs_the_certificate_in_the_log(relay: RunningRelay, tmp_path: Path) -> None:
    alice = await person(relay, tmp_path, "alice")
    honest = await person(relay, tmp_path, "bakery")
    hidden = await person(relay, tmp_path, "lookalike")
    try:
        assert honest.account_id is not None
        assert hidden.account_id is not None
        for shop, name in ((honest, "Bakery Lindner"), (hidden, "Bank Support")):
            await shop.save_business_profile(display_name=name, category="RETAIL")
        await relay.ctx.operator.verify(OperatorPrincipal("tests"), honest.account_id)
        await verify_unlogged(relay, hidden.account_id)

        bakery = await alice.business(honest.account_id)
        assert bakery.tick.verified, bakery.tick.reason
        assert failures(alice) == []

        lookalike = await alice.business(hidden.account_id)
        assert lookalike.tick.state is TickState.NOT_LOGGED
        assert "not in the key log" in lookalike.tick.reason
        [warning] = failures(alice)
        assert warning.account_id == hidden.account_id
        with pytest.raises(IdentityNotTrusted):
            await alice.send(hidden.account_id, Text(text="my account number is"))
        # The honest business keeps its tick and its messages.
        assert (await alice.business(honest.account_id)).tick.verified
        await alice.send(honest.account_id, Text(text="two rolls, please"))
    finally:
        for client in (alice, honest, hidden):
            await client.close()


async def test_a_rewritten_history_is_detected_and_blocks_sending(
    relay: RunningRelay, tmp_path: Path
) -> None:
    alice = await person(relay, tmp_path, "alice")
    bob = await person(relay, tmp_path, "bob")
    carol = await person(relay, tmp_path, "carol")
    try:
        assert bob.account_id is not None
        assert carol.account_id is not None
        await alice.send(bob.account_id, Text(text="hello"))
        await alice.send(carol.account_id, Text(text="hello"))
        # The relay rewrites Bob's entry in its past log: the new log does not extend the
        # one Alice saw, whatever its proofs say about Bob now.
        await rewrite_leaf(relay, bob.account_id, "A" * 42 + "E")

        await alice.directory.devices_of(carol.account_id, refresh=True)
        warnings = failures(alice)
        assert warnings
        assert warnings[0].forked
        # Sending stops for every peer: the log Alice checked keys against is gone.
        for peer in (bob.account_id, carol.account_id):
            assert alice.trust_of(peer) is Trust.KEY_TRANSPARENCY
            with pytest.raises(IdentityNotTrusted):
                await alice.send(peer, Text(text="are you there?"))
    finally:
        for client in (alice, bob, carol):
            await client.close()


async def test_a_history_forked_for_one_client_is_found_by_comparing_roots(
    relay: RunningRelay, tmp_path: Path
) -> None:
    lying = LyingTransport()
    alice = await person(relay, tmp_path, "alice")
    carol = await person(relay, tmp_path, "carol", transport=lying)
    bob = await person(relay, tmp_path, "bob")
    dave = await person(relay, tmp_path, "dave")
    try:
        assert bob.account_id is not None
        assert dave.account_id is not None
        await carol.send(dave.account_id, Text(text="hi Dave"))
        # The relay signs an epoch in which Bob's key is another, shows it to Carol only,
        # and never commits it: everyone else goes on with the honest history.
        ctx = relay.ctx
        forked: dict[str, Any] = {}
        bob_keys = await ctx.keys.device_directory(bob.account_id)  # type: ignore[arg-type]
        swapped = "B" * 42 + "E"

        try:
            async with ctx.db.write() as conn:
                await conn.execute(
                    update(devices)
                    .where(devices.c.account_id == bob.account_id)
                    .values(identity_curve25519=swapped)
                )
                await repo.queue_devices_change(conn, bob.account_id, 0)
                await ctx.transparency.publish_in(conn)
                found = await ctx.transparency.lookup_in(conn, bob.account_id, carol.key_log.since)
                assert found is not None
                forked["proof"] = json.loads(lookup_public(found).model_dump_json())
                raise Forget
        except Forget:
            pass  # rolled back

        def fork(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any]:
            if request.url.path == f"/v1/keys/{bob.account_id}":
                body["devices"][0]["identity_keys"]["curve25519"] = swapped
                body["transparency"] = forked["proof"]
            return body

        lying.rewrite = fork
        await carol.directory.devices_of(bob.account_id, refresh=True)
        assert failures(carol) == []  # the forked head is signed and its proofs hold
        lying.rewrite = None

        # The honest history goes on: Dave adds a device, Alice sees the next epochs.
        dave2 = await registered_client(
            relay.url, relay.sms_file, tmp_path / "dave2", dave.phone or ""
        )
        await dave2.close()
        await alice.directory.devices_of(dave.account_id, refresh=True)
        await alice.directory.devices_of(bob.account_id, refresh=True)
        assert bob_keys
        assert alice.store.peer_devices(bob.account_id)[1].curve25519 != swapped

        # Comparing roots shows the fork...
        ring = alice.operator_keys
        assert ring is not None
        conflicts = compare_roots(alice.key_log_roots(), carol.key_log_roots(), ring)
        assert conflicts
        assert conflicts[0].reason == "same epoch, other head"
        # ...and so does Carol's next look-up: she stops sending and warns.
        await carol.directory.devices_of(dave.account_id, refresh=True)
        warnings = failures(carol)
        assert warnings
        assert warnings[0].forked
        with pytest.raises(IdentityNotTrusted):
            await carol.send(dave.account_id, Text(text="hi again"))
        assert failures(alice) == []
    finally:
        for client in (alice, carol, bob, dave):
            await client.close()
