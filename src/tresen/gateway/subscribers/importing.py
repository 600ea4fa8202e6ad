"""Importing existing subscribers from a CSV file, row by row, with a report of every row.

A utility list's subscribers come with the evidence of their consent, which the business
attests at the relay. A marketing list's cannot: only the customer's own signed opt-in
counts, so an imported customer is pending until they confirm themselves (``START``), or
subscribed at once when the relay already holds their signed opt-in.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from tresen.client.api import RelayError
from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.gateway.subscribers import repo
from tresen.gateway.subscribers.consent import ConsentRelay, day_of, own_opt_in
from tresen.gateway.subscribers.model import (
    ListNotFound,
    Purpose,
    Source,
    State,
    Subscriber,
    SubscriberList,
)

__all__ = [
    "MAX_BYTES",
    "MAX_ROWS",
    "ImportRefused",
    "ImportReport",
    "ImportRow",
    "SubscriberImport",
    "normalize_phone",
]

log = get_logger(__name__)

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 50_000
EVIDENCE_MAX = 1024
ATTRIBUTE_MAX = 500
KNOWN = frozenset({"phone", "evidence", "evidence_date"})

_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
_SEPARATORS = re.compile(r"[\s\-./()]")


class ImportRefused(ValueError):
    """The whole file is refused (too large, not UTF-8, no phone column…)."""


@dataclass(frozen=True, slots=True)
class ImportRow:
    row: int
    """The row's line number in the file (the header is row 1)."""
    phone: str
    accepted: bool
    state: State | None
    reason: str


@dataclass(slots=True)
class ImportReport:
    list_id: int
    rows: list[ImportRow] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.rows)

    @property
    def refused(self) -> int:
        return sum(not r.accepted for r in self.rows)

    def counts(self) -> dict[str, int]:
        """Accepted rows by the state they got, and refused rows."""
        found: dict[str, int] = {str(s): 0 for s in State}
        found["refused"] = 0
        for r in self.rows:
            found[str(r.state) if r.accepted and r.state else "refused"] += 1
        return found

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["row", "phone", "result", "state", "reason"])
        for r in self.rows:
            result = "accepted" if r.accepted else "refused"
            writer.writerow([r.row, r.phone, result, str(r.state or ""), r.reason])
        return out.getvalue()


def normalize_phone(raw: str) -> str | None:
    """``raw`` as E.164 (``+4915…``; ``0049…`` taken as ``+49…``), or ``None``."""
    phone = _SEPARATORS.sub("", raw)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    return phone if _PHONE.fullmatch(phone) else None


def _evidence_ms(raw: str) -> int | None:
    """``2025-11-03`` (a day, taken at noon UTC) or an ISO time (UTC unless it says)."""
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            return int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp())
        at = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return int(at.timestamp())


class SubscriberImport:
    def __init__(
        self, db: Database, clock: Clock, relay: ConsentRelay, *, business_account_id: str
    ) -> None:
        self.db = db
        self.clock = clock
        self.relay = relay
        self.business_account_id = business_account_id

    async def import_csv(self, list_id: int, data: bytes) -> ImportReport:
        """Add the file's customers to the list; every data row gets a line in the report.

        Columns: ``phone`` (required), ``name``, ``evidence``, ``evidence_date``; any other
        column becomes an attribute of the subscriber (for segments and parameters)."""
        async with self.db.read() as conn:
            found = await repo.get_list(conn, list_id)
        if found is None:
            raise ListNotFound(list_id)
        rows = list(_reader(data))
        if len(rows) > MAX_ROWS:
            raise ImportRefused(f"a file has at most {MAX_ROWS} rows, not {len(rows)}")
        report = ImportReport(list_id)
        seen: dict[str, int] = {}
        for line, values in enumerate(rows, start=2):
            report.rows.append(await self._row(found, line, values, seen))
        log.info("subscribers imported", list_id=list_id, **report.counts())
        return report

    async def _row(
        self,
        found: SubscriberList,
        line: int,
        values: Mapping[str | None, object],
        seen: dict[str, int],
    ) -> ImportRow:
        raw = str(values.get("phone") or "").strip()

        def refused(reason: str) -> ImportRow:
            return ImportRow(line, raw, False, None, reason)

        if None in values:
            return refused("more fields than the header names")
        phone = normalize_phone(raw)
        if phone is None:
            return refused("not a phone number (write it like +4915112345678)")
        if phone in seen:
            return refused(f"duplicate row (the same number as row {seen[phone]})")
        seen[phone] = line
        attributes = {
            str(k): str(v).strip()
            for k, v in values.items()
            if k is not None and k not in KNOWN and v is not None and str(v).strip()
        }
        if any(len(v) > ATTRIBUTE_MAX for v in attributes.values()):
            return refused(f"a value is longer than {ATTRIBUTE_MAX} characters")
        evidence = str(values.get("evidence") or "").strip()
        if len(evidence) > EVIDENCE_MAX:
            return refused(f"the evidence is longer than {EVIDENCE_MAX} characters")
        evidence_date = str(values.get("evidence_date") or "").strip()
        evidence_ms: int | None = None
        if found.purpose is Purpose.UTILITY:
            if not evidence:
                return refused("no evidence of consent (a utility list needs it)")
            if not evidence_date:
                return refused("no evidence_date (when the customer consented)")
        if evidence_date:
            evidence_ms = _evidence_ms(evidence_date)
            if evidence_ms is None:
                return refused("evidence_date not understood (write it like 2025-11-03)")
            evidence_ms *= 1000
        try:
            account_id = await self.relay.resolve(phone)
        except RelayError as exc:
            if exc.code in (ErrorCode.UNDELIVERABLE, ErrorCode.INVALID_PARAMETER, 404):
                return refused("not on the relay (no Tresen account has this number)")
            return refused(f"the relay refused the lookup ({exc.code}); import the row again")
        except (httpx.HTTPError, OSError):
            return refused("the relay cannot be reached; import the row again")
        if account_id == self.business_account_id:
            return refused("this is the business's own number")
        try:
            state, reason = await self._consent(found, account_id, evidence, evidence_ms)
        except _Refused as exc:
            return refused(str(exc))
        await self._save(found, account_id, phone, state, reason, attributes, evidence or None)
        return ImportRow(line, phone, True, state, reason)

    async def _consent(
        self, found: SubscriberList, account_id: str, evidence: str, evidence_ms: int | None
    ) -> tuple[State, str]:
        try:
            if found.purpose is Purpose.UTILITY:
                assert evidence_ms is not None
                await self.relay.attest_consent(account_id, evidence, evidence_ms)
                return State.SUBSCRIBED, "subscribed: utility consent attested with the evidence"
            records = await self.relay.consent_records(
                self.business_account_id, account_id, history=1
            )
        except RelayError as exc:
            if exc.code == ErrorCode.ATTESTED_CONSENT_REFUSED:
                why = str(exc.details.get("reason") or "refused")
                if why == "customer_opted_out":
                    raise _Refused("the customer opted out (150062 customer_opted_out)") from None
                raise _Refused(f"the relay refused the attested consent (150062 {why})") from None
            if exc.code == ErrorCode.INVALID_PARAMETER:
                raise _Refused(f"the relay refused the evidence: {exc}") from None
            raise _Refused(f"the relay refused ({exc.code}); import the row again") from None
        except (httpx.HTTPError, OSError):
            raise _Refused("the relay cannot be reached; import the row again") from None
        record = records.consents.get(str(Purpose.MARKETING))
        if own_opt_in(record):
            return State.SUBSCRIBED, "subscribed: the customer's own signed opt-in is on record"
        if record is not None and not record.opted_in and record.source == "customer":
            raise _Refused("the customer opted out (150062 customer_opted_out)")
        return (
            State.PENDING,
            "pending: marketing consent cannot be attested by the business; the customer "
            "must confirm it themselves (START)",
        )

    async def _save(
        self,
        found: SubscriberList,
        account_id: str,
        phone: str,
        state: State,
        reason: str,
        attributes: dict[str, str],
        evidence: str | None,
    ) -> None:
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            before = await repo.get_subscriber(conn, found.id, account_id)
            if before is not None and before.state is State.SUBSCRIBED:
                state = State.SUBSCRIBED  # an import never takes back a confirmation
            await repo.put_subscriber(
                conn,
                Subscriber(
                    list_id=found.id,
                    account_id=account_id,
                    phone=phone,
                    state=state,
                    source=before.source if before else Source.IMPORT,
                    attributes={**(before.attributes if before else {}), **attributes},
                    evidence=evidence or (before.evidence if before else None),
                    reason=f"{reason} (import of {day_of(now)})",
                    created_ms=before.created_ms if before else now,
                    updated_ms=now,
                ),
            )


class _Refused(Exception):
    pass


def _reader(data: bytes) -> csv.DictReader[str]:
    if len(data) > MAX_BYTES:
        raise ImportRefused(f"a file has at most {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused("the file is not UTF-8 text") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:4096], delimiters=",;\t"
        )
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "phone" not in header:
        raise ImportRefused("the first row must name the columns, one of them phone")
    if len(set(header)) != len(header):
        raise ImportRefused("a column is named twice in the first row")
    reader.fieldnames = header
    return reader
