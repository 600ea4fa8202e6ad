"""SQL of a person's access to and erasure of what the relay holds about their account.

Reads and deletes across the tables of ``relay/schema.py`` that name an account
(``docs/privacy.md`` is the inventory); every function runs inside a transaction the caller
opened. Which rows stay after an erasure, and why, is decided here and documented in
``docs/privacy.md`` ("Export and erasure").
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Table,
    delete,
    desc,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.ids import AccountId, DevicePk
from tresen.relay.schema import (
    accounts,
    attachments,
    blocks,
    consent_log,
    consents,
    devices,
    fallback_keys,
    ledger,
    lookup_budgets,
    mailbox,
    message_pricing,
    messages,
    one_time_keys,
    quality_events,
    rate_events,
    reach,
    recipients,
    service_windows,
    verification_codes,
)

__all__ = [
    "ERASED",
    "Erased",
    "adopt_retired_blocks",
    "attachment_ids",
    "erase_account",
    "export_sections",
    "retired_blocker",
]

ERASED = "erased"
"""What a ledger line names as its recipient once that account was deleted."""


def retired_blocker(phone: str) -> str:
    """The stand-in that holds the blocks of a deleted account until its number registers
    again (32 characters, like an account id; never a valid account id, which is hex)."""
    digest = hashlib.sha256(f"tresen-retired-blocks:{phone}".encode()).hexdigest()
    return "rz" + digest[:30]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _rows(result: Any, hide: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row._mapping.items() if k not in hide} for row in result]


async def _section(
    conn: AsyncConnection,
    table: Table,
    where: Any,
    order: Any,
    limit: int,
    *,
    hide: frozenset[str] = frozenset(),
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` rows of ``table``, newest first, and whether there were more."""
    result = await conn.execute(select(table).where(where).order_by(desc(order)).limit(limit + 1))
    rows = _rows(result, hide)
    return rows[:limit], len(rows) > limit


async def export_sections(
    conn: AsyncConnection, account_id: AccountId, limit: int
) -> tuple[dict[str, Any], list[str]]:
    """Everything the relay holds about ``account_id``, by section, and the sections cut at
    ``limit`` rows (newest kept). Token hashes, ciphertexts and other people's identities
    beyond the account ids the person dealt with are left out."""
    out: dict[str, Any] = {}
    truncated: list[str] = []
    account = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).one()
    out["account"] = {k: _plain(v) for k, v in account._mapping.items()}
    device_rows = (
        await conn.execute(
            select(devices).where(devices.c.account_id == account_id).order_by(devices.c.device_id)
        )
    ).all()
    out["devices"] = _rows(device_rows, frozenset({"pk", "token_hash"}))
    out["keys"] = await _key_counts(conn, device_rows)
    out["mailbox"] = await _mailbox_counts(conn, device_rows)
    sections: list[tuple[str, Table, Any, Any, frozenset[str]]] = [
        (
            "messages_sent",
            messages,
            messages.c.sender_account == account_id,
            messages.c.server_ms,
            frozenset({"sender_device_pk"}),
        ),
        (
            "messages_received",
            messages,
            messages.c.recipient_account == account_id,
            messages.c.server_ms,
            frozenset({"sender_device_pk"}),
        ),
        (
            "consents",
            consents,
            consents.c.customer_account == account_id,
            consents.c.updated_ms,
            frozenset(),
        ),
        (
            "consent_log",
            consent_log,
            consent_log.c.customer_account == account_id,
            consent_log.c.pk,
            frozenset({"pk"}),
        ),
        (
            "blocks",
            blocks,
            blocks.c.blocker_account == account_id,
            blocks.c.created_ms,
            frozenset(),
        ),
        (
            "reports_and_blocks_made",
            quality_events,
            quality_events.c.customer_account == account_id,
            quality_events.c.at_ms,
            frozenset({"pk", "counted"}),
        ),
        (
            "service_windows",
            service_windows,
            service_windows.c.customer_account == account_id,
            service_windows.c.last_customer_ms,
            frozenset(),
        ),
        ("reach", reach, reach.c.customer_account == account_id, reach.c.at_ms, frozenset()),
        (
            "recipients",
            recipients,
            recipients.c.customer_account == account_id,
            recipients.c.delivered_ms,
            frozenset(),
        ),
        (
            "message_pricing",
            message_pricing,
            message_pricing.c.recipient_account == account_id,
            message_pricing.c.server_ms,
            frozenset(),
        ),
        (
            "attachments",
            attachments,
            attachments.c.account_id == account_id,
            attachments.c.created_ms,
            frozenset({"device_pk"}),
        ),
        (
            "ledger",
            ledger,
            ledger.c.business_account == account_id,
            ledger.c.pk,
            frozenset({"pk"}),
        ),
    ]
    for name, table, where, order, hide in sections:
        rows, cut = await _section(conn, table, where, order, limit, hide=hide)
        out[name] = rows
        if cut:
            truncated.append(name)
    budget = (
        await conn.execute(
            select(lookup_budgets.c.tat_ms).where(lookup_budgets.c.account_id == account_id)
        )
    ).scalar_one_or_none()
    out["lookup_budget"] = None if budget is None else {"tat_ms": int(budget)}
    code = (
        await conn.execute(
            select(verification_codes.c.created_ms, verification_codes.c.expires_ms).where(
                verification_codes.c.phone == account.phone
            )
        )
    ).one_or_none()
    # The code itself is left out: it would let a reader of the export register a device.
    out["pending_code"] = None if code is None else dict(code._mapping)
    out["rate_events"] = int(
        (
            await conn.execute(
                select(func.count()).where(rate_events.c.bucket == export_bucket(account.id))
            )
        ).scalar_one()
    )
    return out, truncated


def export_bucket(account_id: str) -> str:
    """The rate bucket of an account's exports. The registration throttle's buckets are keyed
    hashes (accounts/throttle.py) that nobody can tie to a number once their window's key is
    gone, two windows later; an export neither reports nor deletes them."""
    return f"export:{account_id}"


async def _key_counts(conn: AsyncConnection, device_rows: Any) -> list[dict[str, Any]]:
    found = []
    for d in device_rows:
        one_time = (
            await conn.execute(select(func.count()).where(one_time_keys.c.device_pk == d.pk))
        ).scalar_one()
        fallback = (
            await conn.execute(select(func.count()).where(fallback_keys.c.device_pk == d.pk))
        ).scalar_one()
        found.append(
            {
                "device_id": int(d.device_id),
                "one_time_keys": int(one_time),
                "fallback_keys": int(fallback),
            }
        )
    return found


async def _mailbox_counts(conn: AsyncConnection, device_rows: Any) -> list[dict[str, Any]]:
    found = []
    for d in device_rows:
        count = (
            await conn.execute(select(func.count()).where(mailbox.c.device_pk == d.pk))
        ).scalar_one()
        found.append({"device_id": int(d.device_id), "queued": int(count)})
    return found


async def attachment_ids(conn: AsyncConnection, account_id: AccountId) -> list[str]:
    """The blobs the account uploaded (their files go before the rows)."""
    rows = await conn.execute(
        select(attachments.c.id).where(attachments.c.account_id == account_id)
    )
    return [str(r[0]) for r in rows]


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure removed: the devices to disconnect, and counts for the audit row."""

    device_pks: list[DevicePk]
    counts: dict[str, int]


async def erase_account(
    conn: AsyncConnection,
    account_id: AccountId,
    phone: str,
    now_ms: int,
    *,
    withdrawal_note: str,
) -> Erased:
    """Delete the account and what names it, in one transaction.

    Stays: the consent history (the evidence a business relied on, with a withdrawal
    appended now), quality events (the business's rating and the operator's review), blocks
    others made of it (theirs), ledger lines (the bill; their recipient becomes
    :data:`ERASED`) and the blocks it made (kept under :func:`retired_blocker` until the
    number registers again)."""
    counts: dict[str, int] = {}

    async def run(name: str, stmt: Any) -> None:
        result = await conn.execute(stmt)
        counts[name] = counts.get(name, 0) + int(result.rowcount or 0)

    pks = [
        DevicePk(int(pk))
        for pk in (
            await conn.execute(select(devices.c.pk).where(devices.c.account_id == account_id))
        ).scalars()
    ]
    # Consents are made void the way a customer withdraws them: an opt-out appended to the
    # history, so that a business can see when and why its consent ended.
    current = (
        await conn.execute(select(consents).where(consents.c.customer_account == account_id))
    ).all()
    for row in current:
        if row.state != "opted_out":
            await conn.execute(
                insert(consent_log).values(
                    business_account=row.business_account,
                    customer_account=account_id,
                    scope=row.scope,
                    state="opted_out",
                    source="customer",
                    evidence=withdrawal_note,
                    evidence_ms=now_ms,
                    at_ms=now_ms,
                )
            )
    counts["consents_withdrawn"] = sum(1 for r in current if r.state != "opted_out")
    await run("consents", delete(consents).where(consents.c.customer_account == account_id))
    if pks:
        await run("mailbox", delete(mailbox).where(mailbox.c.device_pk.in_(pks)))
        await run("one_time_keys", delete(one_time_keys).where(one_time_keys.c.device_pk.in_(pks)))
        await run("fallback_keys", delete(fallback_keys).where(fallback_keys.c.device_pk.in_(pks)))
    # What it sent that still waits for others, and events about what they sent it.
    await run("mailbox", delete(mailbox).where(mailbox.c.peer_account == account_id))
    await run("devices", delete(devices).where(devices.c.account_id == account_id))
    await run(
        "messages",
        delete(messages).where(
            or_(messages.c.sender_account == account_id, messages.c.recipient_account == account_id)
        ),
    )
    await run(
        "message_pricing",
        delete(message_pricing).where(message_pricing.c.recipient_account == account_id),
    )
    await run(
        "ledger",
        update(ledger)
        .where(ledger.c.recipient_account == account_id)
        .values(recipient_account=ERASED),
    )
    for table in (service_windows, reach, recipients):
        await run(table.name, delete(table).where(table.c.customer_account == account_id))
    await run(
        "lookup_budgets", delete(lookup_budgets).where(lookup_budgets.c.account_id == account_id)
    )
    await run(
        "verification_codes", delete(verification_codes).where(verification_codes.c.phone == phone)
    )
    await run(
        "rate_events", delete(rate_events).where(rate_events.c.bucket == export_bucket(account_id))
    )
    await run("attachments", delete(attachments).where(attachments.c.account_id == account_id))
    retired = retired_blocker(phone)
    await conn.execute(delete(blocks).where(blocks.c.blocker_account == retired))
    await run(
        "blocks_retired",
        update(blocks)
        .where(blocks.c.blocker_account == account_id)
        .values(blocker_account=retired),
    )
    await run("accounts", delete(accounts).where(accounts.c.id == account_id))
    return Erased(pks, {k: v for k, v in counts.items() if v})


async def adopt_retired_blocks(conn: AsyncConnection, phone: str, account_id: AccountId) -> int:
    """Give a new account of ``phone`` the blocks a deleted account of that number made."""
    result = await conn.execute(
        update(blocks)
        .where(blocks.c.blocker_account == retired_blocker(phone))
        .values(blocker_account=account_id)
    )
    return int(result.rowcount or 0)
