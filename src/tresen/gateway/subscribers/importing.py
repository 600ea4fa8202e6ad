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
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tresen.client.api import RelayError
from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.gateway.customers.audit import add_audit
from tresen.gateway.problems import Problem, Reason
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
    "KEPT_IMPORTS",
    "KEPT_ROWS",
    "MAX_BYTES",
    "MAX_ROWS",
    "ImportRefused",
    "ImportReport",
    "ImportRow",
    "SubscriberImport",
    "kept_rows",
    "normalize_phone",
]

log = get_logger(__name__)

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 50_000
EVIDENCE_MAX = 1024
ATTRIBUTE_MAX = 500
KNOWN = frozenset({"phone", "evidence", "evidence_date"})
KEPT_IMPORTS = 20
"""Imports kept per list with their report (older ones are deleted)."""
KEPT_ROWS = 5_000
"""Rows kept of an import's report (refused rows first): a report of a large file would
otherwise weigh megabytes in the database."""

_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
_SEPARATORS = re.compile(r"[\s\-./()]")


class ImportRefused(Problem, ValueError):
    """The whole file is refused (too large, not UTF-8, no phone column…)."""


@dataclass(frozen=True, slots=True)
class ImportRow:
    row: int
    """The row's line number in the file (the header is row 1)."""
    phone: str
    accepted: bool
    state: State | None
    why: Reason
    """What became of the row and why, said in any language."""

    @property
    def reason(self) -> str:
        """``why`` in English."""
        return str(self.why)


@dataclass(slots=True)
class ImportReport:
    """An import of a list: the report of each of its rows, and once kept, who imported it
    and when (``id`` names it among the list's kept imports)."""

    list_id: int
    rows: list[ImportRow] = field(default_factory=list)
    id: int | None = None
    by: str = ""
    created_ms: int = 0
    counted: dict[str, int] | None = None
    """The rows counted by outcome when ``rows`` holds only part of them (a kept report of
    a large file); ``None`` when ``rows`` is every row."""

    @property
    def accepted(self) -> int:
        return sum(n for outcome, n in self.counts().items() if outcome != "refused")

    @property
    def refused(self) -> int:
        return self.counts()["refused"]

    @property
    def complete(self) -> bool:
        """Whether ``rows`` holds every row of the file."""
        return self.counted is None or len(self.rows) == sum(self.counted.values())

    def counts(self) -> dict[str, int]:
        """Accepted rows by the state they got, and refused rows."""
        if self.counted is not None:
            return dict(self.counted)
        found: dict[str, int] = {str(s): 0 for s in State}
        found["refused"] = 0
        for r in self.rows:
            found[str(r.state) if r.accepted and r.state else "refused"] += 1
        return found

    def to_csv(self, gettext: Callable[[str], str] = str) -> str:
        """The rows as CSV; ``gettext`` translates its words and reasons (English without)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([gettext(w) for w in ("row", "phone", "result", "state", "reason")])
        for r in self.rows:
            result = gettext("accepted" if r.accepted else "refused")
            state = gettext(str(r.state)) if r.state else ""
            writer.writerow([r.row, r.phone, result, state, r.why.said(gettext)])
        return out.getvalue()


def kept_rows(rows: list[ImportRow], most: int) -> list[ImportRow]:
    """At most ``most`` of ``rows`` in their order, refused rows first to keep: the rows a
    business needs to see again are the ones to fix."""
    if len(rows) <= most:
        return rows
    refused = [r for r in rows if not r.accepted][:most]
    accepted = [r for r in rows if r.accepted][: most - len(refused)]
    return sorted(refused + accepted, key=lambda r: r.row)


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

    async def import_csv(self, list_id: int, data: bytes, *, by: str = "") -> ImportReport:
        """Add the file's customers to the list; every data row gets a line in the report,
        which is kept with who imported it (``by``) among the list's newest imports.

        Columns: ``phone`` (required), ``name``, ``evidence``, ``evidence_date``; any other
        column becomes an attribute of the subscriber (for segments and parameters)."""
        async with self.db.read() as conn:
            found = await repo.get_list(conn, list_id)
        if found is None:
            raise ListNotFound(list_id)
        rows = list(_reader(data))
        if len(rows) > MAX_ROWS:
            raise ImportRefused(
                "too_many_rows",
                "a file has at most {most} rows, not {rows}",
                most=MAX_ROWS,
                rows=len(rows),
            )
        report = ImportReport(list_id)
        seen: dict[str, int] = {}
        for line, values in enumerate(rows, start=2):
            report.rows.append(await self._row(found, line, values, seen))
        log.info("subscribers imported", list_id=list_id, **report.counts())
        return await self._keep(report, by)

    async def _keep(self, report: ImportReport, by: str) -> ImportReport:
        report.by = by
        report.created_ms = self.clock.now_ms()
        kept = kept_rows(report.rows, KEPT_ROWS)
        async with self.db.write() as conn:
            report.id = await repo.insert_import(
                conn,
                report.list_id,
                by=by,
                now_ms=report.created_ms,
                accepted=report.accepted,
                refused=report.refused,
                counted=report.counts(),
                rows=[_row_json(r) for r in kept],
                keep=KEPT_IMPORTS,
            )
            # Many customers at once: the audit row names the list and counts, nobody.
            await add_audit(
                conn,
                at_ms=report.created_ms,
                actor=by or "gateway",
                action="subscribers_imported",
                account_id=None,
                details={"list_id": report.list_id, **report.counts()},
            )
        return report

    async def recent(self, list_id: int) -> list[ImportReport]:
        """The list's kept imports, newest first, without their rows."""
        async with self.db.read() as conn:
            found = await repo.imports_of(conn, list_id)
        return [_report(row, []) for row in found]

    async def report(self, list_id: int, import_id: int) -> ImportReport | None:
        """One kept import of the list, with its rows (all, or the refused first)."""
        async with self.db.read() as conn:
            row = await repo.get_import(conn, list_id, import_id)
        if row is None:
            return None
        try:
            rows = [_row_of(r) for r in json.loads(row.rows)]
        except (ValueError, TypeError, IndexError, KeyError):
            rows = []
        return _report(row, rows)

    async def _row(
        self,
        found: SubscriberList,
        line: int,
        values: Mapping[str | None, object],
        seen: dict[str, int],
    ) -> ImportRow:
        raw = str(values.get("phone") or "").strip()

        def refused(code: str, text: str, **values: object) -> ImportRow:
            return ImportRow(line, raw, False, None, Reason(code, text, values))

        if None in values:
            return refused("extra_fields", "more fields than the header names")
        phone = normalize_phone(raw)
        if phone is None:
            return refused("not_a_phone", "not a phone number (write it like +4915112345678)")
        if phone in seen:
            return refused(
                "duplicate", "duplicate row (the same number as row {row})", row=seen[phone]
            )
        seen[phone] = line
        attributes = {
            str(k): str(v).strip()
            for k, v in values.items()
            if k is not None and k not in KNOWN and v is not None and str(v).strip()
        }
        if any(len(v) > ATTRIBUTE_MAX for v in attributes.values()):
            return refused(
                "value_too_long", "a value is longer than {most} characters", most=ATTRIBUTE_MAX
            )
        evidence = str(values.get("evidence") or "").strip()
        if len(evidence) > EVIDENCE_MAX:
            return refused(
                "evidence_too_long",
                "the evidence is longer than {most} characters",
                most=EVIDENCE_MAX,
            )
        evidence_date = str(values.get("evidence_date") or "").strip()
        evidence_ms: int | None = None
        if found.purpose is Purpose.UTILITY:
            if not evidence:
                return refused("no_evidence", "no evidence of consent (a utility list needs it)")
            if not evidence_date:
                return refused("no_evidence_date", "no evidence_date (when the customer consented)")
        if evidence_date:
            evidence_ms = _evidence_ms(evidence_date)
            if evidence_ms is None:
                return refused(
                    "evidence_date_form",
                    "evidence_date not understood (write it like 2025-11-03)",
                )
            evidence_ms *= 1000
        try:
            account_id = await self.relay.resolve(phone)
        except RelayError as exc:
            if exc.code in (ErrorCode.UNDELIVERABLE, ErrorCode.INVALID_PARAMETER, 404):
                return refused(
                    "not_on_relay", "not on the relay (no Tresen account has this number)"
                )
            return refused(
                "lookup_refused",
                "the relay refused the lookup ({number}); import the row again",
                number=int(exc.code),
            )
        except (httpx.HTTPError, OSError):
            return refused("relay_unreachable", "the relay cannot be reached; import the row again")
        if account_id == self.business_account_id:
            return refused("own_number", "this is the business's own number")
        try:
            state, why = await self._consent(found, account_id, evidence, evidence_ms)
        except _Refused as exc:
            return ImportRow(line, raw, False, None, exc.why)
        await self._save(found, account_id, phone, state, str(why), attributes, evidence or None)
        return ImportRow(line, phone, True, state, why)

    async def _consent(
        self, found: SubscriberList, account_id: str, evidence: str, evidence_ms: int | None
    ) -> tuple[State, Reason]:
        try:
            if found.purpose is Purpose.UTILITY:
                assert evidence_ms is not None
                await self.relay.attest_consent(account_id, evidence, evidence_ms)
                return State.SUBSCRIBED, Reason(
                    "attested", "subscribed: utility consent attested with the evidence"
                )
            records = await self.relay.consent_records(
                self.business_account_id, account_id, history=1
            )
        except RelayError as exc:
            if exc.code == ErrorCode.ATTESTED_CONSENT_REFUSED:
                why = str(exc.details.get("reason") or "refused")
                if why == "customer_opted_out":
                    raise _Refused(_OPTED_OUT) from None
                raise _Refused(
                    Reason(
                        "consent_refused",
                        "the relay refused the attested consent (150062 {why})",
                        {"why": why},
                    )
                ) from None
            if exc.code == ErrorCode.INVALID_PARAMETER:
                raise _Refused(
                    Reason(
                        "evidence_refused",
                        "the relay refused the evidence: {detail}",
                        {"detail": str(exc)},
                    )
                ) from None
            raise _Refused(
                Reason(
                    "relay_refused",
                    "the relay refused ({number}); import the row again",
                    {"number": int(exc.code)},
                )
            ) from None
        except (httpx.HTTPError, OSError):
            raise _Refused(
                Reason("relay_unreachable", "the relay cannot be reached; import the row again")
            ) from None
        record = records.consents.get(str(Purpose.MARKETING))
        if own_opt_in(record):
            return State.SUBSCRIBED, Reason(
                "own_opt_in", "subscribed: the customer's own signed opt-in is on record"
            )
        if record is not None and not record.opted_in and record.source == "customer":
            raise _Refused(_OPTED_OUT)
        return State.PENDING, Reason(
            "must_confirm",
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


_OPTED_OUT = Reason("opted_out", "the customer opted out (150062 customer_opted_out)")


class _Refused(Exception):
    def __init__(self, why: Reason) -> None:
        super().__init__(str(why))
        self.why = why


def _row_json(r: ImportRow) -> list[Any]:
    why = r.why
    return [r.row, r.phone, r.accepted, str(r.state or ""), why.code, why.text, dict(why.values)]


def _row_of(data: list[Any]) -> ImportRow:
    line, phone, accepted, state, code, text, values = data
    return ImportRow(
        int(line),
        str(phone),
        bool(accepted),
        State(state) if state in set(State) else None,
        Reason.from_json({"code": code, "text": text, "values": values}),
    )


def _report(row: Any, rows: list[ImportRow]) -> ImportReport:
    try:
        counted = {str(k): int(v) for k, v in json.loads(row.counts).items()}
    except (ValueError, TypeError, AttributeError):
        counted = {}
    counted.setdefault("refused", int(row.refused))
    return ImportReport(
        int(row.list_id),
        rows,
        id=int(row.id),
        by=str(row.by),
        created_ms=int(row.created_ms),
        counted=counted,
    )


def _reader(data: bytes) -> csv.DictReader[str]:
    if len(data) > MAX_BYTES:
        raise ImportRefused(
            "too_large", "a file has at most {most} MiB", most=MAX_BYTES // (1024 * 1024)
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused("not_utf8", "the file is not UTF-8 text") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:4096], delimiters=",;\t"
        )
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "phone" not in header:
        raise ImportRefused(
            "no_phone_column", "the first row must name the columns, one of them phone"
        )
    if len(set(header)) != len(header):
        raise ImportRefused("column_twice", "a column is named twice in the first row")
    reader.fieldnames = header
    return reader
