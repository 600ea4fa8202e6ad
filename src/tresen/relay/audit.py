"""The operator's audit trail: every administrative action of every relay domain writes here.

Shared by the domains that act on the operator's behalf (verification, templates, billing,
quality), so none of them reaches into another domain's repository for it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.ids import AccountId
from tresen.relay.schema import admin_audit

__all__ = ["add_audit"]


async def add_audit(
    conn: AsyncConnection,
    *,
    at_ms: int,
    operator: str,
    action: str,
    account_id: AccountId | None,
    details: dict[str, Any],
) -> None:
    """Record one administrative action inside the caller's transaction."""
    await conn.execute(
        insert(admin_audit).values(
            at_ms=at_ms,
            operator=operator[:64],
            action=action,
            account_id=account_id,
            details=json.dumps(details, sort_keys=True, ensure_ascii=False),
        )
    )
