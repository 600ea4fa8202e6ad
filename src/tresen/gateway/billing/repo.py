"""SQL of the delivery receipts: one named function per statement, in the caller's
transaction."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.gateway.schema import delivery_receipts

__all__ = ["KeptReceipt", "add_receipt", "receipts_of"]


@dataclass(frozen=True, slots=True)
class KeptReceipt:
    message_id: str
    customer_account: str
    device_id: int
    device_ed25519: str
    template_id: str
    delivered_ms: int
    signature: bytes
    received_ms: int


async def add_receipt(conn: AsyncConnection, receipt: KeptReceipt) -> bool:
    """Keep ``receipt`` unless one for its message is kept already (the first device's
    stays); whether it was new."""
    row = {
        "message_id": receipt.message_id,
        "customer_account": receipt.customer_account,
        "device_id": receipt.device_id,
        "device_ed25519": receipt.device_ed25519,
        "template_id": receipt.template_id,
        "delivered_ms": receipt.delivered_ms,
        "signature": receipt.signature,
        "received_ms": receipt.received_ms,
    }
    made: Any
    if conn.dialect.name == "sqlite":
        made = sqlite.insert(delivery_receipts).values(**row)
    else:
        made = postgresql.insert(delivery_receipts).values(**row)
    result = await conn.execute(made.on_conflict_do_nothing(index_elements=["message_id"]))
    return bool(result.rowcount)


async def receipts_of(
    conn: AsyncConnection, message_ids: Collection[str]
) -> dict[str, KeptReceipt]:
    """The receipts kept for ``message_ids``, by message id."""
    if not message_ids:
        return {}
    r = delivery_receipts
    rows = await conn.execute(select(r).where(r.c.message_id.in_(list(message_ids))))
    return {
        row.message_id: KeptReceipt(
            message_id=row.message_id,
            customer_account=row.customer_account,
            device_id=int(row.device_id),
            device_ed25519=row.device_ed25519,
            template_id=row.template_id,
            delivered_ms=int(row.delivered_ms),
            signature=bytes(row.signature),
            received_ms=int(row.received_ms),
        )
        for row in rows
    }
