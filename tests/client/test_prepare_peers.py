"""Preparing to write to many new peers at once: their keys and sessions in one request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gateway_support import next_of
from support import RunningRelay, registered_client

from tresen.client import Client
from tresen.client.events import MessageEvent
from tresen.wire.e2e import Text

pytestmark = pytest.mark.slow


async def test_sessions_with_new_peers_start_in_one_request_and_their_messages_read(
    relay: RunningRelay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop: Client = await registered_client(
        relay.url, relay.sms_file, tmp_path / "shop", relay.next_phone()
    )
    people = [
        await registered_client(relay.url, relay.sms_file, tmp_path / n, relay.next_phone())
        for n in ("ana", "ben", "cem")
    ]
    asked: list[str] = []
    real_call = shop.api._call

    async def counted(method: str, path: str, **kwargs: Any) -> Any:
        asked.append(f"{method} {path}")
        return await real_call(method, path, **kwargs)

    monkeypatch.setattr(shop.api, "_call", counted)
    try:
        accounts = [p.account_id for p in people if p.account_id is not None]
        unknown = await shop.prepare_peers([*accounts, "0" * 32, accounts[0]])
        assert unknown == ["0" * 32]
        assert asked == ["POST /v1/keys/claim"]  # one claim for all, no directory look-ups

        # Known peers are not claimed again.
        assert await shop.prepare_peers(accounts) == []
        assert asked == ["POST /v1/keys/claim"]

        asked.clear()
        for person in people:
            person.start()
            await shop.send(person.account_id or "", Text(text="Your order is ready"))
        # Only the shop's own account is looked up (for its other devices), once.
        assert [a for a in asked if "/keys" in a] == [f"GET /v1/keys/{shop.account_id}"]
        for person in people:
            got = await next_of(person, MessageEvent)
            assert got.payload == Text(text="Your order is ready")
    finally:
        for client in (shop, *people):
            await client.close()
