"""SQL of a customer's export and erasure: every table of ``gateway/schema.py`` that names a
customer (``docs/privacy.md``, the gateway's section). Each function runs inside the caller's
transaction."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, delete, desc, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.gateway.schema import (
    activity,
    bot_log,
    bot_state,
    campaign_recipients,
    campaigns,
    contacts,
    conversation_labels,
    conversations,
    early_statuses,
    labels,
    media,
    message_statuses,
    messages,
    subscriber_imports,
    subscriber_lists,
    subscribers,
    webhook_events,
)

__all__ = [
    "ERASED_PREFIX",
    "Erasure",
    "erase_customer",
    "export_customer",
    "find_customer",
    "inactive_customers",
    "inbound_media_ids",
]

ERASED_PREFIX = "erased-"
"""How a campaign's row of an erased recipient is named: the row stays (the campaign's figures
count it), with nothing left of the person."""

_DIGITS = re.compile(r"\D")


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _dicts(result: Any, hide: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in r._mapping.items() if k not in hide} for r in result]


async def find_customer(
    conn: AsyncConnection, phone_or_account: str
) -> tuple[str, str | None] | None:
    """The account id and phone of the customer ``phone_or_account`` names: an account id, an
    E.164 number, or its digits (a ``wa_id``)."""
    given = phone_or_account.strip()
    digits = _DIGITS.sub("", given)
    conditions = [contacts.c.account_id == given]
    if digits:
        conditions += [contacts.c.wa_id == digits, contacts.c.phone == "+" + digits]
    row = (
        await conn.execute(select(contacts.c.account_id, contacts.c.phone).where(or_(*conditions)))
    ).first()
    if row is not None:
        return str(row.account_id), row.phone
    # A subscriber or campaign recipient the gateway never chatted with.
    for table in (subscribers, campaign_recipients):
        conditions = [table.c.account_id == given]
        if digits:
            conditions.append(table.c.phone == "+" + digits)
        row = (
            await conn.execute(select(table.c.account_id, table.c.phone).where(or_(*conditions)))
        ).first()
        if row is not None:
            return str(row.account_id), row.phone
    return None


async def _newest(
    conn: AsyncConnection, table: Table, where: Any, order: Any, limit: int, hide: frozenset[str]
) -> tuple[list[dict[str, Any]], bool]:
    rows = _dicts(
        await conn.execute(select(table).where(where).order_by(desc(order)).limit(limit + 1)),
        hide,
    )
    return rows[:limit], len(rows) > limit


async def export_customer(
    conn: AsyncConnection, account_id: str, limit: int
) -> tuple[dict[str, Any], list[str]]:
    """What the gateway holds about ``account_id``, by table, newest ``limit`` rows each, and
    the sections that had more."""
    out: dict[str, Any] = {}
    truncated: list[str] = []
    contact = (
        await conn.execute(select(contacts).where(contacts.c.account_id == account_id))
    ).first()
    out["contact"] = (
        None if contact is None else {k: _plain(v) for k, v in contact._mapping.items()}
    )
    conversation = (
        await conn.execute(select(conversations).where(conversations.c.contact == account_id))
    ).first()
    out["conversation"] = (
        None
        if conversation is None
        else {k: v for k, v in conversation._mapping.items() if k != "assignee"}
    )
    found, cut = await _newest(
        conn, messages, messages.c.contact == account_id, messages.c.created_ms, limit, frozenset()
    )
    for m in found:
        with_content = m.get("content")
        with contextlib.suppress(ValueError):
            m["content"] = json.loads(with_content) if isinstance(with_content, str) else None
    out["messages"] = found
    if cut:
        truncated.append("messages")
    wamids = [m["wamid"] for m in found]
    out["message_statuses"] = (
        _dicts(
            await conn.execute(
                select(message_statuses)
                .where(message_statuses.c.wamid.in_(wamids))
                .order_by(message_statuses.c.id)
            ),
            frozenset({"id"}),
        )
        if wamids
        else []
    )
    out["labels"] = [
        str(r[0])
        for r in await conn.execute(
            select(labels.c.name)
            .join(conversation_labels, conversation_labels.c.label_id == labels.c.id)
            .where(conversation_labels.c.contact == account_id)
            .order_by(labels.c.name)
        )
    ]
    for name, table, where, order, hide in (
        (
            "activity",
            activity,
            activity.c.contact == account_id,
            activity.c.at_ms,
            frozenset({"id", "contact", "agent_id"}),
        ),
        (
            "bot_log",
            bot_log,
            bot_log.c.contact == account_id,
            bot_log.c.at_ms,
            frozenset({"id", "contact"}),
        ),
    ):
        rows, cut = await _newest(conn, table, where, order, limit, hide)
        out[name] = rows
        if cut:
            truncated.append(name)
    state = (await conn.execute(select(bot_state).where(bot_state.c.contact == account_id))).first()
    out["bot_state"] = None if state is None else dict(state._mapping)
    out["subscriptions"] = _dicts(
        await conn.execute(
            select(subscriber_lists.c.name.label("list"), subscribers)
            .join(subscriber_lists, subscriber_lists.c.id == subscribers.c.list_id)
            .where(subscribers.c.account_id == account_id)
            .order_by(subscribers.c.list_id)
        ),
        frozenset({"list_id"}),
    )
    for s in out["subscriptions"]:
        s["attributes"] = json.loads(s["attributes"])
    rows, cut = await _campaigns(conn, account_id, limit)
    out["campaigns"] = rows
    if cut:
        truncated.append("campaigns")
    out["webhook_events"] = int(
        (
            await conn.execute(
                select(func.count()).where(webhook_events.c.conversation == account_id)
            )
        ).scalar_one()
    )
    return out, truncated


async def _campaigns(
    conn: AsyncConnection, account_id: str, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    result = await conn.execute(
        select(
            campaigns.c.name.label("campaign"),
            campaigns.c.template_name,
            campaign_recipients.c.phone,
            campaign_recipients.c.parameters,
            campaign_recipients.c.state,
            campaign_recipients.c.reason,
            campaign_recipients.c.sent_ms,
            campaign_recipients.c.delivered_ms,
            campaign_recipients.c.read_ms,
            campaign_recipients.c.replied_ms,
        )
        .join(campaigns, campaigns.c.id == campaign_recipients.c.campaign_id)
        .where(campaign_recipients.c.account_id == account_id)
        .order_by(desc(campaign_recipients.c.campaign_id))
        .limit(limit + 1)
    )
    rows = _dicts(result)
    for r in rows:
        r["parameters"] = json.loads(r["parameters"])
    return rows[:limit], len(rows) > limit


async def inbound_media_ids(conn: AsyncConnection, account_id: str) -> list[str]:
    """The media the customer sent (their files are deleted with the conversation); the
    business's own uploads, which it may have sent to many, stay."""
    ids: set[str] = set()
    rows = await conn.execute(
        select(messages.c.content).where(
            messages.c.contact == account_id, messages.c.direction == "in"
        )
    )
    for (content,) in rows:
        try:
            value = json.loads(content)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("id"), str):
            ids.add(value["id"])
    if not ids:
        return []
    found = await conn.execute(
        select(media.c.id).where(media.c.id.in_(sorted(ids)), media.c.origin == "inbound")
    )
    return [str(r[0]) for r in found]


@dataclass
class Erasure:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, result: Any) -> None:
        n = int(result.rowcount or 0)
        if n:
            self.counts[name] = self.counts.get(name, 0) + n


async def erase_customer(conn: AsyncConnection, account_id: str, phone: str | None) -> Erasure:
    """Delete every row naming the customer; campaign rows are emptied of the person and kept
    (the campaign's figures count them), import reports lose the customer's number."""
    done = Erasure()
    wamids = select(messages.c.wamid).where(messages.c.contact == account_id)
    relay_ids = select(messages.c.relay_message_id).where(
        messages.c.contact == account_id, messages.c.relay_message_id.is_not(None)
    )
    done.add(
        "message_statuses",
        await conn.execute(delete(message_statuses).where(message_statuses.c.wamid.in_(wamids))),
    )
    done.add(
        "early_statuses",
        await conn.execute(
            delete(early_statuses).where(early_statuses.c.relay_message_id.in_(relay_ids))
        ),
    )
    done.add(
        "messages", await conn.execute(delete(messages).where(messages.c.contact == account_id))
    )
    for table in (conversations, activity, conversation_labels, bot_state, bot_log):
        done.add(table.name, await conn.execute(delete(table).where(table.c.contact == account_id)))
    done.add(
        "subscribers",
        await conn.execute(delete(subscribers).where(subscribers.c.account_id == account_id)),
    )
    done.add(
        "webhook_events",
        await conn.execute(
            delete(webhook_events).where(webhook_events.c.conversation == account_id)
        ),
    )
    recipients = (
        (
            await conn.execute(
                select(campaign_recipients.c.campaign_id).where(
                    campaign_recipients.c.account_id == account_id
                )
            )
        )
        .scalars()
        .all()
    )
    for campaign_id in recipients:
        done.add(
            "campaign_recipients",
            await conn.execute(
                update(campaign_recipients)
                .where(
                    campaign_recipients.c.campaign_id == campaign_id,
                    campaign_recipients.c.account_id == account_id,
                )
                .values(
                    account_id=ERASED_PREFIX + secrets.token_hex(12),
                    phone="",
                    parameters="{}",
                    wamid=None,
                    reason=None,
                )
            ),
        )
    if phone:
        done.counts["import_rows"] = await _scrub_imports(conn, phone)
    done.add(
        "contacts", await conn.execute(delete(contacts).where(contacts.c.account_id == account_id))
    )
    return done


async def _scrub_imports(conn: AsyncConnection, phone: str) -> int:
    """Blank the customer's number in the kept import reports (the line and its outcome stay,
    so the report's counts still add up)."""
    digits = _DIGITS.sub("", phone)
    scrubbed = 0
    rows = await conn.execute(select(subscriber_imports.c.id, subscriber_imports.c.rows))
    for import_id, raw in rows.all():
        report = json.loads(raw)
        changed = 0
        for entry in report:
            written = _DIGITS.sub("", str(entry[1])) if isinstance(entry, list) else ""
            # As written: in E.164, or national with a leading 0; the last 9 digits decide.
            if len(written) >= 9 and written[-9:] == digits[-9:]:
                entry[1] = ""
                changed += 1
        if changed:
            await conn.execute(
                update(subscriber_imports)
                .where(subscriber_imports.c.id == import_id)
                .values(rows=json.dumps(report, separators=(",", ":"), ensure_ascii=False))
            )
            scrubbed += changed
    return scrubbed


async def inactive_customers(conn: AsyncConnection, before_ms: int, limit: int) -> list[str]:
    """Customers whose conversation is resolved, with no message, status change or team
    activity since ``before_ms`` (at most ``limit``, longest inactive first)."""
    c = conversations
    condition = and_(
        c.c.status == "resolved",
        c.c.updated_ms < before_ms,
        or_(c.c.status_ms.is_(None), c.c.status_ms < before_ms),
        ~exists().where(
            contacts.c.account_id == c.c.contact, contacts.c.last_message_ms >= before_ms
        ),
        ~exists().where(messages.c.contact == c.c.contact, messages.c.created_ms >= before_ms),
        ~exists().where(activity.c.contact == c.c.contact, activity.c.at_ms >= before_ms),
    )
    rows = await conn.execute(
        select(c.c.contact).where(condition).order_by(c.c.updated_ms, c.c.contact).limit(limit)
    )
    return [str(r[0]) for r in rows]
