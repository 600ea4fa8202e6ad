"""The SQL of subscriber lists and subscribers: functions of an open connection."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.gateway.schema import (
    conversation_labels,
    labels,
    subscriber_imports,
    subscriber_lists,
    subscribers,
)
from tresen.gateway.subscribers.model import (
    ListSpec,
    Purpose,
    Source,
    State,
    Subscriber,
    SubscriberList,
)

__all__ = [
    "attribute_names",
    "counts",
    "delete_list",
    "delete_subscriber",
    "get_import",
    "get_list",
    "get_lists",
    "get_subscriber",
    "imports_of",
    "insert_import",
    "insert_list",
    "list_by_keyword",
    "lists_of",
    "name_taken",
    "put_subscriber",
    "set_state",
    "subscribers_of",
    "update_list",
]


def _list(row: Any) -> SubscriberList:
    return SubscriberList(
        id=int(row.id),
        name=str(row.name),
        keyword=row.keyword,
        purpose=Purpose(row.purpose),
        description=str(row.description),
        confirmation=str(row.confirmation),
        created_ms=int(row.created_ms),
    )


def _subscriber(row: Any) -> Subscriber:
    try:
        attributes = json.loads(row.attributes)
    except ValueError:
        attributes = {}
    return Subscriber(
        list_id=int(row.list_id),
        account_id=str(row.account_id),
        phone=str(row.phone),
        state=State(row.state),
        source=Source(row.source),
        attributes={str(k): str(v) for k, v in dict(attributes).items()},
        evidence=row.evidence,
        reason=row.reason,
        created_ms=int(row.created_ms),
        updated_ms=int(row.updated_ms),
    )


async def insert_list(conn: AsyncConnection, spec: ListSpec, now_ms: int) -> int:
    result = await conn.execute(
        insert(subscriber_lists).values(
            name=spec.name,
            keyword=spec.keyword,
            purpose=str(spec.purpose),
            description=spec.description,
            confirmation=spec.confirmation,
            created_ms=now_ms,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


async def update_list(conn: AsyncConnection, list_id: int, spec: ListSpec) -> bool:
    result = await conn.execute(
        update(subscriber_lists)
        .where(subscriber_lists.c.id == list_id)
        .values(
            name=spec.name,
            keyword=spec.keyword,
            purpose=str(spec.purpose),
            description=spec.description,
            confirmation=spec.confirmation,
        )
    )
    return bool(result.rowcount)


async def delete_list(conn: AsyncConnection, list_id: int) -> bool:
    await conn.execute(delete(subscribers).where(subscribers.c.list_id == list_id))
    await conn.execute(delete(subscriber_imports).where(subscriber_imports.c.list_id == list_id))
    result = await conn.execute(delete(subscriber_lists).where(subscriber_lists.c.id == list_id))
    return bool(result.rowcount)


async def get_list(conn: AsyncConnection, list_id: int) -> SubscriberList | None:
    row = (
        await conn.execute(select(subscriber_lists).where(subscriber_lists.c.id == list_id))
    ).first()
    return None if row is None else _list(row)


async def get_lists(conn: AsyncConnection) -> list[SubscriberList]:
    rows = (await conn.execute(select(subscriber_lists).order_by(subscriber_lists.c.name))).all()
    return [_list(row) for row in rows]


async def list_by_keyword(conn: AsyncConnection, keyword: str) -> SubscriberList | None:
    row = (
        await conn.execute(select(subscriber_lists).where(subscriber_lists.c.keyword == keyword))
    ).first()
    return None if row is None else _list(row)


async def name_taken(conn: AsyncConnection, spec: ListSpec, other_than: int | None) -> str | None:
    """The field (name or keyword) another list already has, if any."""
    for column, value in (("name", spec.name), ("keyword", spec.keyword)):
        if value is None:
            continue
        query = select(subscriber_lists.c.id).where(subscriber_lists.c[column] == value)
        if other_than is not None:
            query = query.where(subscriber_lists.c.id != other_than)
        if (await conn.execute(query.limit(1))).first() is not None:
            return column
    return None


async def counts(conn: AsyncConnection, list_ids: Iterable[int]) -> dict[int, dict[State, int]]:
    ids = list(list_ids)
    found: dict[int, dict[State, int]] = {i: dict.fromkeys(State, 0) for i in ids}
    if not ids:
        return found
    rows = await conn.execute(
        select(subscribers.c.list_id, subscribers.c.state, func.count())
        .where(subscribers.c.list_id.in_(ids))
        .group_by(subscribers.c.list_id, subscribers.c.state)
    )
    for list_id, state, count in rows:
        found[int(list_id)][State(state)] = int(count)
    return found


async def get_subscriber(conn: AsyncConnection, list_id: int, account_id: str) -> Subscriber | None:
    row = (
        await conn.execute(
            select(subscribers).where(
                and_(subscribers.c.list_id == list_id, subscribers.c.account_id == account_id)
            )
        )
    ).first()
    return None if row is None else _subscriber(row)


async def subscribers_of(
    conn: AsyncConnection,
    list_id: int,
    *,
    states: Sequence[State] = (),
    labels_all: Sequence[str] = (),
) -> list[Subscriber]:
    """A list's subscribers (in ``states``; whose conversation carries every label of
    ``labels_all``), oldest first."""
    query = select(subscribers).where(subscribers.c.list_id == list_id)
    if states:
        query = query.where(subscribers.c.state.in_([str(s) for s in states]))
    for name in dict.fromkeys(labels_all):
        labelled = (
            select(conversation_labels.c.contact)
            .join(labels, labels.c.id == conversation_labels.c.label_id)
            .where(labels.c.name == name)
        )
        query = query.where(subscribers.c.account_id.in_(labelled))
    query = query.order_by(subscribers.c.created_ms, subscribers.c.account_id)
    return [_subscriber(row) for row in (await conn.execute(query)).all()]


async def lists_of(
    conn: AsyncConnection, account_id: str, states: Sequence[State]
) -> list[tuple[SubscriberList, Subscriber]]:
    """The lists ``account_id`` is on (in ``states``), with their entry."""
    rows = (
        await conn.execute(
            select(subscribers).where(
                and_(
                    subscribers.c.account_id == account_id,
                    subscribers.c.state.in_([str(s) for s in states]),
                )
            )
        )
    ).all()
    entries = [_subscriber(row) for row in rows]
    if not entries:
        return []
    found = (
        await conn.execute(
            select(subscriber_lists).where(subscriber_lists.c.id.in_([e.list_id for e in entries]))
        )
    ).all()
    by_id = {int(row.id): _list(row) for row in found}
    return [(by_id[e.list_id], e) for e in entries if e.list_id in by_id]


async def put_subscriber(conn: AsyncConnection, entry: Subscriber) -> None:
    """Insert or replace ``entry`` (the first ``created_ms`` stays)."""
    values = {
        "phone": entry.phone,
        "state": str(entry.state),
        "source": str(entry.source),
        "attributes": json.dumps(entry.attributes, ensure_ascii=False, sort_keys=True),
        "evidence": entry.evidence,
        "reason": entry.reason,
        "updated_ms": entry.updated_ms,
    }
    result = await conn.execute(
        update(subscribers)
        .where(
            and_(
                subscribers.c.list_id == entry.list_id,
                subscribers.c.account_id == entry.account_id,
            )
        )
        .values(**values)
    )
    if not result.rowcount:
        await conn.execute(
            insert(subscribers).values(
                list_id=entry.list_id,
                account_id=entry.account_id,
                created_ms=entry.created_ms,
                **values,
            )
        )


async def set_state(
    conn: AsyncConnection,
    list_id: int,
    account_id: str,
    state: State,
    reason: str | None,
    now_ms: int,
    *,
    only_from: Sequence[State] = (),
) -> bool:
    """Move a subscriber to ``state`` (only from ``only_from`` when given); whether it moved."""
    query = update(subscribers).where(
        and_(subscribers.c.list_id == list_id, subscribers.c.account_id == account_id)
    )
    if only_from:
        query = query.where(subscribers.c.state.in_([str(s) for s in only_from]))
    result = await conn.execute(query.values(state=str(state), reason=reason, updated_ms=now_ms))
    return bool(result.rowcount)


async def delete_subscriber(conn: AsyncConnection, list_id: int, account_id: str) -> bool:
    result = await conn.execute(
        delete(subscribers).where(
            and_(subscribers.c.list_id == list_id, subscribers.c.account_id == account_id)
        )
    )
    return bool(result.rowcount)


async def attribute_names(
    conn: AsyncConnection, list_ids: Sequence[int], *, rows: int, most: int
) -> list[str]:
    """The attribute names the subscribers of ``list_ids`` hold (read from at most ``rows``
    subscribers, the newest), sorted, at most ``most`` of them."""
    if not list_ids:
        return []
    found: set[str] = set()
    result = await conn.execute(
        select(subscribers.c.attributes)
        .where(subscribers.c.list_id.in_(list(list_ids)), subscribers.c.attributes != "{}")
        .order_by(subscribers.c.updated_ms.desc())
        .limit(rows)
    )
    for row in result:
        try:
            attributes = json.loads(row.attributes)
        except ValueError:
            continue
        if isinstance(attributes, dict):
            found.update(str(k) for k in attributes)
    return sorted(found)[:most]


async def insert_import(
    conn: AsyncConnection,
    list_id: int,
    *,
    by: str,
    now_ms: int,
    accepted: int,
    refused: int,
    counted: dict[str, int],
    rows: list[list[Any]],
    keep: int,
) -> int:
    """Record an import of ``list_id`` and forget all but its ``keep`` newest imports."""
    result = await conn.execute(
        insert(subscriber_imports).values(
            list_id=list_id,
            by=by[:100],
            created_ms=now_ms,
            accepted=accepted,
            refused=refused,
            counts=json.dumps(counted),
            rows=json.dumps(rows, separators=(",", ":"), ensure_ascii=False),
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    old = (
        (
            await conn.execute(
                select(subscriber_imports.c.id)
                .where(subscriber_imports.c.list_id == list_id)
                .order_by(subscriber_imports.c.id.desc())
                .offset(keep)
            )
        )
        .scalars()
        .all()
    )
    if old:
        await conn.execute(delete(subscriber_imports).where(subscriber_imports.c.id.in_(old)))
    return int(key[0])


async def imports_of(conn: AsyncConnection, list_id: int) -> list[Any]:
    """The kept imports of a list, newest first, without their rows."""
    columns = [c for c in subscriber_imports.c if c.name != "rows"]
    query = (
        select(*columns)
        .where(subscriber_imports.c.list_id == list_id)
        .order_by(subscriber_imports.c.id.desc())
    )
    return list((await conn.execute(query)).all())


async def get_import(conn: AsyncConnection, list_id: int, import_id: int) -> Any | None:
    """One kept import of a list, with its rows."""
    query = select(subscriber_imports).where(
        subscriber_imports.c.id == import_id, subscriber_imports.c.list_id == list_id
    )
    return (await conn.execute(query)).first()
