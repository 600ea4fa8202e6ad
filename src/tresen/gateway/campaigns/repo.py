"""The campaign tables: each function one named transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update

from tresen.core.db import Database
from tresen.gateway.campaigns.model import (
    AudienceSpec,
    CampaignDraft,
    CampaignId,
    CampaignState,
    CampaignSummary,
    RecipientState,
    Schedule,
)
from tresen.gateway.schema import campaign_recipients, campaigns, message_statuses

__all__ = [
    "CampaignRepo",
    "Mark",
    "NewRecipient",
    "RecipientRow",
    "client_msg_id_for",
    "is_unresolved",
    "unresolved",
]

SENT_STATES = (RecipientState.SENT, RecipientState.DELIVERED, RecipientState.READ)


def unresolved(phone: str) -> str:
    """The key of a recipient whose number is not looked up yet: the number itself (an
    account id never starts with ``+``)."""
    return phone


def is_unresolved(account_id: str) -> bool:
    return account_id.startswith("+")


def client_msg_id_for(campaign_id: int, account_id: str) -> str:
    """The one client message id of a campaign's message to one customer (≤ 64 chars)."""
    return f"cmp{campaign_id}-{account_id}"[:64]


@dataclass(frozen=True, slots=True)
class NewRecipient:
    account_id: str
    phone: str
    parameters: list[dict[str, Any]]
    state: RecipientState = RecipientState.QUEUED
    reason: str | None = None
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    """A recipient's new state: ``sending`` before the relay is asked, ``sent`` (with what
    the relay answered) after."""

    campaign_id: CampaignId
    account_id: str
    state: RecipientState
    wamid: str | None = None
    sent_ms: int | None = None
    pricing: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RecipientRow:
    campaign_id: CampaignId
    account_id: str
    phone: str
    parameters: list[dict[str, Any]]
    state: RecipientState
    reason: str | None
    error_code: int | None
    client_msg_id: str
    wamid: str | None
    due_ms: int | None
    sent_ms: int | None
    delivered_ms: int | None
    read_ms: int | None
    replied_ms: int | None
    pricing: dict[str, Any] | None


def _recipient(row: Any) -> RecipientRow:
    return RecipientRow(
        campaign_id=CampaignId(row.campaign_id),
        account_id=row.account_id,
        phone=row.phone,
        parameters=json.loads(row.parameters),
        state=RecipientState(row.state),
        reason=row.reason,
        error_code=row.error_code,
        client_msg_id=row.client_msg_id,
        wamid=row.wamid,
        due_ms=row.due_ms,
        sent_ms=row.sent_ms,
        delivered_ms=row.delivered_ms,
        read_ms=row.read_ms,
        replied_ms=row.replied_ms,
        pricing=json.loads(row.pricing) if row.pricing else None,
    )


class CampaignRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- campaigns ---------------------------------------------------------------------------

    async def create(self, draft: CampaignDraft, category: str, now_ms: int) -> CampaignId:
        async with self.db.write() as conn:
            result = await conn.execute(
                insert(campaigns).values(
                    name=draft.name,
                    template_name=draft.template_name,
                    language=draft.language,
                    category=category,
                    audience=json.dumps(draft.audience.to_json(), ensure_ascii=False),
                    parameters=json.dumps(draft.components, ensure_ascii=False),
                    schedule=json.dumps(draft.schedule.to_json()),
                    state=CampaignState.DRAFT,
                    created_ms=now_ms,
                    updated_ms=now_ms,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return CampaignId(int(key[0]))

    async def get(self, campaign_id: CampaignId) -> CampaignSummary | None:
        found = await self.find(ids=[campaign_id])
        return found[0] if found else None

    async def find(
        self,
        *,
        ids: Sequence[int] | None = None,
        states: Sequence[CampaignState] | None = None,
    ) -> list[CampaignSummary]:
        """Campaigns (newest first) with their recipients counted by state."""
        query = select(campaigns).order_by(campaigns.c.id.desc())
        if ids is not None:
            query = query.where(campaigns.c.id.in_(list(ids)))
        if states is not None:
            query = query.where(campaigns.c.state.in_([str(s) for s in states]))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            counted = select(
                campaign_recipients.c.campaign_id,
                campaign_recipients.c.state,
                func.count().label("n"),
            ).group_by(campaign_recipients.c.campaign_id, campaign_recipients.c.state)
            if rows:
                counted = counted.where(campaign_recipients.c.campaign_id.in_([r.id for r in rows]))
            counts: dict[int, dict[str, int]] = {}
            for c in (await conn.execute(counted)).all() if rows else []:
                counts.setdefault(c.campaign_id, {})[c.state] = int(c.n)
        figures = {r.id: json.loads(r.figures) for r in rows if r.figures}
        for campaign_id, kept in figures.items():
            # Reduced by retention: the rows are gone (or going), the figures stay.
            counts[campaign_id] = {str(k): int(v) for k, v in kept["counts"].items()}
        return [
            CampaignSummary(
                id=CampaignId(r.id),
                name=r.name,
                template_name=r.template_name,
                language=r.language,
                category=r.category,
                audience=AudienceSpec.from_json(json.loads(r.audience)),
                components=json.loads(r.parameters),
                schedule=Schedule.from_json(json.loads(r.schedule)),
                state=CampaignState(r.state),
                reason=r.reason,
                start_ms=r.start_ms,
                resume_ms=r.resume_ms,
                created_ms=r.created_ms,
                updated_ms=r.updated_ms,
                finished_ms=r.finished_ms,
                counts={str(s): counts.get(r.id, {}).get(str(s), 0) for s in RecipientState},
                figures=figures.get(r.id),
            )
            for r in rows
        ]

    async def state_of(self, campaign_id: CampaignId) -> CampaignState | None:
        async with self.db.read() as conn:
            state = await conn.scalar(
                select(campaigns.c.state).where(campaigns.c.id == campaign_id)
            )
        return None if state is None else CampaignState(state)

    async def change_state(
        self,
        campaign_id: CampaignId,
        to: CampaignState,
        now_ms: int,
        *,
        only_from: Sequence[CampaignState],
        reason: str | None = None,
        resume_ms: int | None = None,
    ) -> bool:
        """Move the campaign to ``to`` if it is in one of ``only_from``; whether it moved."""
        values: dict[str, Any] = {
            "state": str(to),
            "updated_ms": now_ms,
            "reason": reason,
            "resume_ms": resume_ms,
        }
        if to in (CampaignState.DONE, CampaignState.CANCELLED):
            values["finished_ms"] = now_ms
        async with self.db.write() as conn:
            result = await conn.execute(
                update(campaigns)
                .where(
                    campaigns.c.id == campaign_id,
                    campaigns.c.state.in_([str(s) for s in only_from]),
                )
                .values(**values)
            )
            return bool(result.rowcount)

    async def start(
        self,
        campaign_id: CampaignId,
        start_ms: int,
        recipients: Sequence[NewRecipient],
        due: Sequence[int],
        now_ms: int,
        *,
        state: CampaignState,
    ) -> bool:
        """Materialise the recipients (one row each) and schedule the campaign, in one
        transaction; False if it was no longer a draft."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.state == CampaignState.DRAFT)
                .values(state=str(state), start_ms=start_ms, updated_ms=now_ms)
            )
            if not result.rowcount:
                return False
            if recipients:
                await conn.execute(
                    insert(campaign_recipients),
                    [
                        {
                            "campaign_id": campaign_id,
                            "account_id": r.account_id,
                            "phone": r.phone,
                            "parameters": json.dumps(r.parameters, ensure_ascii=False),
                            "state": str(r.state),
                            "reason": r.reason,
                            "error_code": r.error_code,
                            "client_msg_id": client_msg_id_for(campaign_id, r.account_id),
                            "due_ms": at,
                        }
                        for r, at in zip(recipients, due, strict=True)
                    ],
                )
            return True

    # --- recipients --------------------------------------------------------------------------

    async def recipients(
        self, campaign_id: CampaignId, state: RecipientState | None = None
    ) -> list[RecipientRow]:
        query = select(campaign_recipients).where(campaign_recipients.c.campaign_id == campaign_id)
        if state is not None:
            query = query.where(campaign_recipients.c.state == str(state))
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(campaign_recipients.c.due_ms))).all()
        return [_recipient(r) for r in rows]

    async def next_due(
        self, campaign_id: CampaignId, now_ms: int, limit: int
    ) -> tuple[list[RecipientRow], int | None]:
        """Up to ``limit`` recipients due by ``now_ms`` (the ones left ``sending`` by a crash
        first), and when the next one not yet due is due (``None``: none waits)."""
        pending = [str(RecipientState.SENDING), str(RecipientState.QUEUED)]
        base = and_(
            campaign_recipients.c.campaign_id == campaign_id,
            campaign_recipients.c.state.in_(pending),
        )
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(campaign_recipients)
                    .where(base, campaign_recipients.c.due_ms <= now_ms)
                    .order_by(
                        (campaign_recipients.c.state == str(RecipientState.QUEUED)),
                        campaign_recipients.c.due_ms,
                        campaign_recipients.c.account_id,
                    )
                    .limit(limit)
                )
            ).all()
            later = await conn.scalar(
                select(func.min(campaign_recipients.c.due_ms)).where(
                    base, campaign_recipients.c.due_ms > now_ms
                )
            )
        return [_recipient(r) for r in rows], None if later is None else int(later)

    async def left(self, campaign_id: CampaignId) -> int:
        """Recipients not yet handed to the relay for good."""
        async with self.db.read() as conn:
            n = await conn.scalar(
                select(func.count()).where(
                    campaign_recipients.c.campaign_id == campaign_id,
                    campaign_recipients.c.state.in_(
                        [str(RecipientState.SENDING), str(RecipientState.QUEUED)]
                    ),
                )
            )
        return int(n or 0)

    async def resolve_recipient(
        self, campaign_id: CampaignId, phone: str, account_id: str
    ) -> RecipientRow | None:
        """Key a recipient looked up late by its account; ``None`` if the account already
        has a row of this campaign (the same person listed twice: the later row goes)."""
        async with self.db.write() as conn:
            here = and_(
                campaign_recipients.c.campaign_id == campaign_id,
                campaign_recipients.c.account_id == unresolved(phone),
            )
            taken = await conn.scalar(
                select(func.count()).where(
                    campaign_recipients.c.campaign_id == campaign_id,
                    campaign_recipients.c.account_id == account_id,
                )
            )
            if taken:
                await conn.execute(delete(campaign_recipients).where(here))
                return None
            await conn.execute(
                update(campaign_recipients)
                .where(here)
                .values(
                    account_id=account_id,
                    client_msg_id=client_msg_id_for(campaign_id, account_id),
                )
            )
            row = (
                await conn.execute(
                    select(campaign_recipients).where(
                        campaign_recipients.c.campaign_id == campaign_id,
                        campaign_recipients.c.account_id == account_id,
                    )
                )
            ).first()
        return None if row is None else _recipient(row)

    async def set_recipient(self, campaign_id: CampaignId, account_id: str, **values: Any) -> None:
        if "state" in values:
            values["state"] = str(values["state"])
        if "pricing" in values and values["pricing"] is not None:
            values["pricing"] = json.dumps(values["pricing"])
        async with self.db.write() as conn:
            await conn.execute(
                update(campaign_recipients)
                .where(
                    campaign_recipients.c.campaign_id == campaign_id,
                    campaign_recipients.c.account_id == account_id,
                )
                .values(**values)
            )

    async def apply_marks(self, marks: Sequence[Mark]) -> list[None]:
        """Record recipients' states in one write. A ``sent`` mark records the relay's
        acceptance, and any status of the message recorded before it (a ``delivered`` can
        overtake this write)."""
        async with self.db.write() as conn:
            for mark in marks:
                values: dict[str, Any] = {"state": str(mark.state)}
                if mark.state is RecipientState.SENT:
                    values.update(
                        wamid=mark.wamid,
                        sent_ms=mark.sent_ms,
                        pricing=json.dumps(mark.pricing) if mark.pricing is not None else None,
                        reason=None,
                        error_code=None,
                    )
                await conn.execute(
                    update(campaign_recipients)
                    .where(
                        campaign_recipients.c.campaign_id == mark.campaign_id,
                        campaign_recipients.c.account_id == mark.account_id,
                    )
                    .values(**values)
                )
                if mark.wamid is None:
                    continue
                earlier = (
                    await conn.execute(
                        select(message_statuses.c.status, message_statuses.c.at_ms).where(
                            message_statuses.c.wamid == mark.wamid,
                            message_statuses.c.status.in_(["delivered", "read", "failed"]),
                        )
                    )
                ).all()
                for status in earlier:
                    await _apply_status(conn, mark.wamid, status.status, status.at_ms, None, None)
        return [None] * len(marks)

    async def status(
        self,
        wamid: str,
        status: str,
        at_ms: int,
        pricing: str | None,
        error_code: int | None,
        error: str | None = None,
    ) -> None:
        """A ``delivered``, ``read`` or ``failed`` of a campaign's message."""
        async with self.db.write() as conn:
            await _apply_status(conn, wamid, status, at_ms, pricing, error_code, error)

    async def replied(self, account_id: str, at_ms: int) -> None:
        """A customer wrote after a campaign's message to them."""
        async with self.db.write() as conn:
            await conn.execute(
                update(campaign_recipients)
                .where(
                    campaign_recipients.c.account_id == account_id,
                    campaign_recipients.c.sent_ms <= at_ms,
                    campaign_recipients.c.replied_ms.is_(None),
                    campaign_recipients.c.state.in_([str(s) for s in SENT_STATES]),
                )
                .values(replied_ms=at_ms)
            )

    async def reached_since(self, since_ms: int) -> list[int]:
        """When campaigns sent in the last period (the oldest first): the tier's budget
        frees up 24 h after each."""
        async with self.db.read() as conn:
            rows = await conn.scalars(
                select(campaign_recipients.c.sent_ms)
                .where(campaign_recipients.c.sent_ms >= since_ms)
                .order_by(campaign_recipients.c.sent_ms)
            )
            return [int(x) for x in rows]


async def _apply_status(
    conn: Any,
    wamid: str,
    status: str,
    at_ms: int,
    pricing: str | None,
    error_code: int | None,
    error: str | None = None,
) -> None:
    """Move a recipient forward only: delivered after sent, read after either; failed only
    from sent (a read customer's copy cannot fail)."""
    row = campaign_recipients.c
    values: dict[str, Any]
    where: list[Any]
    if status == "delivered":
        values = {"delivered_ms": func.coalesce(row.delivered_ms, at_ms)}
        where = [row.state.in_([str(RecipientState.SENT), str(RecipientState.DELIVERED)])]
        values["state"] = str(RecipientState.DELIVERED)
    elif status == "read":
        values = {
            "read_ms": func.coalesce(row.read_ms, at_ms),
            "delivered_ms": func.coalesce(row.delivered_ms, at_ms),
            "state": str(RecipientState.READ),
        }
        where = [row.state.in_([str(s) for s in SENT_STATES])]
    elif status == "failed":
        values = {
            "state": str(RecipientState.FAILED),
            "error_code": error_code,
            "reason": error or "the message could not be delivered",
        }
        where = [row.state == str(RecipientState.SENT)]
    else:
        return
    if pricing is not None:
        values["pricing"] = pricing
    await conn.execute(
        update(campaign_recipients).where(row.wamid == wamid, or_(*where)).values(**values)
    )
