"""The audit trail of the business's actions on its customers' personal data (``audit_log``).

Each row is written inside the transaction of the action it records. It names the customer by
:func:`subject_of` only: given the account id, anyone can tell which rows are about it, but a
row alone names nobody, so the trail outlives an erasure without undoing it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.gateway.schema import audit_log

__all__ = ["AuditRow", "add_audit", "recent_audit", "subject_of"]

MAX_REASON = 512


def subject_of(account_id: str) -> str:
    """The customer as the audit trail names them."""
    return hashlib.sha256(f"tresen-audit:{account_id}".encode()).hexdigest()[:32]


async def add_audit(
    conn: AsyncConnection,
    *,
    at_ms: int,
    actor: str,
    action: str,
    account_id: str | None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(audit_log).values(
            at_ms=at_ms,
            actor=actor[:128],
            action=action,
            subject=None if account_id is None else subject_of(account_id),
            reason=None if reason is None else reason[:MAX_REASON],
            details=json.dumps(details or {}, sort_keys=True),
        )
    )


AuditRow = dict[str, Any]


async def recent_audit(conn: AsyncConnection, limit: int = 100) -> list[AuditRow]:
    rows = await conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
    return [{**row._mapping, "details": json.loads(row.details)} for row in rows]
