"""Who a campaign reaches: explicit recipients (from a CSV), subscriber lists (through an
:class:`AudienceSource`), labelled conversations, filtered by attribute conditions."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import select

from tresen.core.db import Database
from tresen.gateway.campaigns.model import AudienceSpec, Recipient
from tresen.gateway.problems import Problem
from tresen.gateway.schema import contacts, conversation_labels, labels

__all__ = ["AudienceSource", "CsvProblem", "labelled", "recipients_from_csv", "resolve_audience"]

RESERVED_COLUMNS = ("phone", "account_id", "name")


class AudienceSource(Protocol):
    """Where subscriber lists come from: the members of ``list_id`` who may be sent to."""

    async def recipients(self, list_id: int) -> list[Recipient]: ...


class CsvProblem(Problem, ValueError):
    """A CSV of recipients that cannot be read (the line says where)."""


def recipients_from_csv(text: str) -> list[Recipient]:
    """Recipients from a CSV with a header: ``phone`` and/or ``account_id``, optionally
    ``name``; every other column is an attribute."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "phone" not in header and "account_id" not in header:
        raise CsvProblem("csv_no_phone_column", "the CSV needs a phone or account_id column")
    found: list[Recipient] = []
    for line, row in enumerate(reader, start=2):
        cells = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        phone = cells.get("phone") or None
        account_id = cells.get("account_id") or None
        if phone is None and account_id is None:
            raise CsvProblem(
                "csv_no_recipient",
                "line {line}: neither a phone number nor an account id",
                line=line,
            )
        attributes = {k: v for k, v in cells.items() if k and k not in RESERVED_COLUMNS and v}
        found.append(Recipient(phone, account_id, cells.get("name") or None, attributes))
    return found


async def labelled(db: Database, names: Sequence[str]) -> list[Recipient]:
    """The customers whose conversation carries any of the labels ``names``."""
    if not names:
        return []
    query = (
        select(contacts.c.account_id, contacts.c.phone, contacts.c.profile_name)
        .select_from(
            conversation_labels.join(labels, labels.c.id == conversation_labels.c.label_id).join(
                contacts, contacts.c.account_id == conversation_labels.c.contact
            )
        )
        .where(labels.c.name.in_(list(names)))
        .distinct()
        .order_by(contacts.c.account_id)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [Recipient(r.phone, r.account_id, r.profile_name) for r in rows]


async def resolve_audience(
    spec: AudienceSpec, *, db: Database, lists: AudienceSource | None
) -> list[Recipient]:
    """Everyone ``spec`` names (a recipient named twice once, first come), with the
    conditions applied."""
    everyone: list[Recipient] = list(spec.recipients)
    for list_id in spec.lists:
        if lists is None:
            raise LookupError("this gateway has no subscriber lists")
        everyone.extend(await lists.recipients(list_id))
    everyone.extend(await labelled(db, spec.labels))
    seen: set[str] = set()
    chosen: list[Recipient] = []
    for recipient in everyone:
        key = recipient.account_id or recipient.phone or ""
        if key in seen:
            continue
        if all(c.holds(recipient.attributes) for c in spec.conditions):
            seen.add(key)
            chosen.append(recipient)
    return chosen
