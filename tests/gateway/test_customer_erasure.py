"""A customer's data, end to end: they download what the relay and a business hold about them,
delete their account, and the business erases them on request. Afterwards every table of
relay and gateway is searched for them: only what docs/privacy.md says stays is left."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway_support import RunningGateway, customer, next_of
from sqlalchemy import select
from support import RunningRelay

from tresen.client.events import MessageEvent
from tresen.core.db import Database
from tresen.gateway.customers.audit import subject_of
from tresen.gateway.customers.service import CustomerData
from tresen.gateway.schema import metadata as gateway_tables
from tresen.gateway.subscribers import ListSpec, Purpose, Subscribers
from tresen.relay.accounts.personal_data_repo import retired_blocker
from tresen.relay.schema import devices
from tresen.relay.schema import metadata as relay_tables


async def _rows_naming(db: Database, tables: Any, needles: list[str]) -> dict[str, list[str]]:
    """Every row of every table that contains one of ``needles``, by table."""
    found: dict[str, list[str]] = {}
    async with db.read() as conn:
        for table in tables.sorted_tables:
            for row in await conn.execute(select(table)):
                text = repr(tuple(row))
                if any(n in text for n in needles):
                    found.setdefault(table.name, []).append(text)
    return found


def _device_store_rows(path: Path, needles: list[str]) -> list[str]:
    db = sqlite3.connect(path)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [
            f"{name}: {row!r}"
            for name in names
            for row in db.execute(f'SELECT * FROM "{name}"')
            if any(n in repr(row) for n in needles)
        ]
    finally:
        db.close()


async def test_export_then_erasure_leaves_only_what_the_document_keeps(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    business = gw.gateway.account_id
    anna = await customer(relay, tmp_path / "anna")
    bob = await customer(relay, tmp_path / "bob")
    subscribers: Subscribers = gw.app.state.subscribers
    try:
        assert anna.account_id is not None
        assert anna.phone is not None
        account_id, phone = anna.account_id, anna.phone
        # Anna writes to the shop and gets an answer, is on its flight updates list (imported
        # with the business's evidence), and chats with Bob.
        await anna.send_text(business, "Where is my order 4711?")
        r = await gw.send({"to": phone.lstrip("+"), "type": "text", "text": {"body": "On its way"}})
        assert r.status_code == 200, r.text
        answer = await next_of(anna, MessageEvent)
        assert answer.chat == business
        flights = await subscribers.lists.create_list(
            ListSpec(name="Flight updates", purpose=Purpose.UTILITY)
        )
        report = await subscribers.imports.import_csv(
            flights.id,
            f"phone,name,evidence,evidence_date\n{phone},Anna,Booking TA 123,2025-11-03\n".encode(),
            by="owner",
        )
        assert report.accepted == 1
        await anna.send_text(bob.account_id or "", "Lunch?")
        await next_of(bob, MessageEvent)

        export = await anna.export_data(timeout_s=15)

        assert export["relay"]["account"] == {
            **export["relay"]["account"],
            "id": account_id,
            "phone": phone,
        }
        assert {m["recipient_account"] for m in export["relay"]["messages_sent"]} >= {
            business,
            bob.account_id,
        }
        assert [c["scope"] for c in export["relay"]["consents"]] == ["utility"]
        (shop,) = export["businesses"]
        assert shop["account_id"] == business
        assert shop["status"] == "answered", shop
        data = shop["data"]
        assert data["contact"]["phone"] == phone
        texts = [m["content"].get("body") for m in data["messages"]]
        assert "Where is my order 4711?" in texts
        assert "On its way" in texts
        assert [s["list"] for s in data["subscriptions"]] == ["Flight updates"]

        async with relay.ctx.db.read() as conn:
            anna_ed25519 = (
                await conn.execute(
                    select(devices.c.identity_ed25519).where(devices.c.account_id == account_id)
                )
            ).scalar_one()
        await anna.delete_account()
        customers: CustomerData = gw.app.state.customers
        erased = await customers.erase(phone, actor="agent:1", reason="request of 2025-11-05")
        assert erased.counts["messages"] >= 2

        # The key log publishes the account's empty device set in its next epoch.
        await relay.ctx.transparency.publish(force=True)
        needles = [account_id, phone, phone.lstrip("+")]
        relay_left = await _rows_naming(relay.ctx.db, relay_tables, needles)
        # The consent history (the business's evidence, with the withdrawal appended), the
        # audit row of the deletion, the key log's record that the account has no device;
        # and nothing else (docs/privacy.md, "Export and erasure").
        assert set(relay_left) == {"consent_log", "admin_audit", "kt_accounts"}, relay_left
        [logged] = relay_left["kt_accounts"]
        assert anna_ed25519 not in logged  # no key of the deleted devices is left
        withdrawn = [r for r in relay_left["consent_log"] if "'opted_out'" in r]
        assert len(withdrawn) == 1
        assert "account deleted" in withdrawn[0]
        assert len(relay_left["admin_audit"]) == 1
        assert "account_deleted" in relay_left["admin_audit"][0]
        assert retired_blocker(phone) not in str(relay_left)

        gateway_db: Database = gw.gateway.store.db
        assert await _rows_naming(gateway_db, gateway_tables, needles) == {}
        audit = await _rows_naming(gateway_db, gateway_tables, [subject_of(account_id)])
        assert [a for a in audit["audit_log"] if "customer_erased" in a]
        assert [a for a in audit["audit_log"] if "export_answered" in a]
        async with gateway_db.read() as conn:
            actions = [
                r.action for r in await conn.execute(select(gateway_tables.tables["audit_log"]))
            ]
        assert actions == ["subscribers_imported", "export_answered", "customer_erased"]
        device_db = gw.settings.device_dir / "client.db"
        assert _device_store_rows(device_db, needles) == []

        # Her number is free: registered again, it is a new account nobody knows.
        again = await customer(relay, tmp_path / "anna-again", phone)
        try:
            assert again.account_id != account_id
            assert (await again.consents()) == []
        finally:
            await again.close()
    finally:
        await anna.close()
        await bob.close()


def test_the_audit_subject_names_nobody_by_itself() -> None:
    subject = subject_of("0123456789abcdef0123456789abcdef")
    assert "0123456789abcdef" not in subject
    assert subject == subject_of("0123456789abcdef0123456789abcdef")
    assert subject != subject_of("0123456789abcdef0123456789abcdee")
