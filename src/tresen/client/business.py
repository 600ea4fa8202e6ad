"""What a client shows of a business: its profile, its hours and whether it earns the tick.

The relay's word that a business is verified counts for nothing here. The tick is earned only
by a certificate that the operator key the client pinned (or a key it endorsed) signed, that
has not expired or been revoked by a fresh signed revocation list, and that binds the account,
phone number, display name and device keys the client itself sees. :func:`judge` makes that
decision without I/O; ``Client.business`` fetches what it needs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from tresen.crypto.certificates import (
    CertificateError,
    ExpiredCertificate,
    ForgedCertificate,
    KeyRing,
    RevokedCertificate,
    SignedCertificate,
    UnknownOperatorKey,
    check_binding,
    decode_certificate,
    verify_certificate,
)
from tresen.wire.business import WEEKDAYS, WeeklyHours, is_open, next_change, parse_closed_dates

__all__ = [
    "Business",
    "BusinessProfile",
    "BusinessSummary",
    "Tick",
    "TickState",
    "judge",
]


class TickState(StrEnum):
    VERIFIED = "verified"
    NOT_VERIFIED = "not_verified"
    NO_OPERATOR_KEY = "no_operator_key"
    UNKNOWN_OPERATOR_KEY = "unknown_operator_key"
    FORGED = "forged"
    EXPIRED = "expired"
    REVOKED = "revoked"
    NO_REVOCATION_LIST = "no_revocation_list"
    CHANGED = "changed"
    IDENTITY_CHANGED = "identity_changed"
    NOT_LOGGED = "not_logged"


_REASONS = {
    TickState.VERIFIED: "verified by the operator",
    TickState.NOT_VERIFIED: "not verified by the operator",
    TickState.NO_OPERATOR_KEY: "no operator key is pinned on this device",
    TickState.UNKNOWN_OPERATOR_KEY: "the certificate is signed by a key this device does not trust",
    TickState.FORGED: "the certificate's signature does not verify",
    TickState.EXPIRED: "the certificate has expired",
    TickState.REVOKED: "the operator revoked the certificate",
    TickState.NO_REVOCATION_LIST: "no fresh revocation list could be checked",
    TickState.CHANGED: "the name, number or devices changed since the operator verified it",
    TickState.IDENTITY_CHANGED: "its identity keys changed; compare safety numbers first",
    TickState.NOT_LOGGED: "the certificate is not in the operator's public key log",
}


@dataclass(frozen=True, slots=True)
class Tick:
    """Whether to show the verified tick, and why (not)."""

    state: TickState
    detail: str = ""
    serial: int | None = None
    expires_ms: int | None = None

    @property
    def verified(self) -> bool:
        return self.state is TickState.VERIFIED

    @property
    def reason(self) -> str:
        base = _REASONS[self.state]
        return f"{base} ({self.detail})" if self.detail else base


_FAILURES: tuple[tuple[type[CertificateError], TickState], ...] = (
    (UnknownOperatorKey, TickState.UNKNOWN_OPERATOR_KEY),
    (ExpiredCertificate, TickState.EXPIRED),
    (RevokedCertificate, TickState.REVOKED),
    (ForgedCertificate, TickState.FORGED),
)


def judge(
    certificate: Any,
    ring: KeyRing | None,
    now_ms: int,
    *,
    revoked: Collection[int] | None,
    account_id: str,
    phone: str,
    display_name: str,
    device_keys: Iterable[str],
    identity_changed: bool = False,
) -> Tick:
    """The tick for a business as this client sees it now.

    ``certificate`` is the signed certificate as JSON (``None`` when the business has none);
    ``revoked`` the serials of a revocation list already checked with
    ``verify_revocations``, or ``None`` when no fresh list could be had.
    """
    if certificate is None:
        return Tick(TickState.NOT_VERIFIED)
    if ring is None:
        return Tick(TickState.NO_OPERATOR_KEY)
    try:
        signed = SignedCertificate.from_json(certificate)
        cert = verify_certificate(signed, ring, now_ms, revoked or ())
    except CertificateError as exc:
        for kind, state in _FAILURES:
            if isinstance(exc, kind):
                return Tick(state, str(exc))
        return Tick(TickState.FORGED, str(exc))
    if revoked is None:
        return Tick(TickState.NO_REVOCATION_LIST, serial=cert.serial)
    if identity_changed:
        return Tick(TickState.IDENTITY_CHANGED, serial=cert.serial)
    bound = check_binding(
        cert,
        account_id=account_id,
        phone=phone,
        display_name=display_name,
        device_keys=device_keys,
    )
    if not bound:
        return Tick(TickState.CHANGED, serial=cert.serial)
    return Tick(TickState.VERIFIED, serial=cert.serial, expires_ms=cert.expires_ms)


def _local_time(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=zone)


@dataclass(frozen=True, slots=True)
class BusinessProfile:
    """A business's public profile as the relay serves it (``GET /v1/businesses/{id}``)."""

    account_id: str
    display_name: str
    about: str
    description: str
    address: str
    email: str
    websites: tuple[str, ...]
    category: str
    timezone: str
    hours: WeeklyHours
    closed_dates: tuple[date, ...]
    has_picture: bool
    certificate: dict[str, str] | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BusinessProfile:
        certificate = data.get("certificate")
        return cls(
            account_id=str(data["account_id"]),
            display_name=str(data["display_name"]),
            about=str(data.get("about", "")),
            description=str(data.get("description", "")),
            address=str(data.get("address", "")),
            email=str(data.get("email", "")),
            websites=tuple(str(w) for w in data.get("websites", ())),
            category=str(data.get("category", "")),
            timezone=str(data.get("timezone") or "UTC"),
            hours=WeeklyHours.parse(data.get("hours") or {}),
            closed_dates=parse_closed_dates(list(data.get("closed_dates") or ())),
            has_picture=bool(data.get("has_picture", False)),
            certificate=None if certificate is None else dict(certificate),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "display_name": self.display_name,
            "about": self.about,
            "description": self.description,
            "address": self.address,
            "email": self.email,
            "websites": list(self.websites),
            "category": self.category,
            "timezone": self.timezone,
            "hours": self.hours.to_json(),
            "closed_dates": [d.isoformat() for d in self.closed_dates],
            "has_picture": self.has_picture,
            "certificate": self.certificate,
        }

    @property
    def certificate_key_id(self) -> str | None:
        """The operator key the certificate names (unchecked: to fetch a key rotated in)."""
        if self.certificate is None:
            return None
        try:
            return decode_certificate(SignedCertificate.from_json(self.certificate).body).key_id
        except CertificateError:
            return None

    @property
    def has_hours(self) -> bool:
        return not self.hours.is_empty

    def open_now(self, now_ms: int) -> bool | None:
        """Open at ``now_ms`` by the business's own clock; ``None`` without published hours."""
        if not self.has_hours:
            return None
        return is_open(self.hours, self.closed_dates, self.timezone, now_ms)

    def next_change(self, now_ms: int) -> int | None:
        if not self.has_hours:
            return None
        return next_change(self.hours, self.closed_dates, self.timezone, now_ms)

    def opening_status(self, now_ms: int) -> str:
        """``Open now · closes at 17:30`` or ``Closed · opens Mon 09:00`` (the business's
        local time, with its zone), or ``No opening hours published``."""
        now_open = self.open_now(now_ms)
        if now_open is None:
            return "No opening hours published"
        zone = ZoneInfo(self.timezone)
        change = self.next_change(now_ms)
        state = "Open now" if now_open else "Closed"
        if change is None:
            return f"{state} for the next days" if now_open else "Closed for the next days"
        at = _local_time(change, zone)
        today = _local_time(now_ms, zone).date()
        when = at.strftime("%H:%M") if at.date() == today else at.strftime("%a %H:%M")
        verb = "closes" if now_open else "opens"
        where = at.tzname() or self.timezone
        return f"{state} · {verb} {'at ' if at.date() == today else ''}{when} {where}"

    def hours_lines(self) -> list[str]:
        """One line a weekday, Monday first: ``Mon  09:00-12:00, 13:00-17:30`` or ``closed``."""
        lines = []
        for name, day in zip(WEEKDAYS, self.hours.days, strict=True):
            spans = ", ".join(f"{a}-{b}" for a, b in (i.to_json() for i in day)) or "closed"
            lines.append(f"{name.capitalize()}  {spans}")
        return lines


@dataclass(frozen=True, slots=True)
class Business:
    """A business as this client sees it: the profile, its phone number and the tick."""

    profile: BusinessProfile
    phone: str
    tick: Tick
    checked_ms: int

    @property
    def account_id(self) -> str:
        return self.profile.account_id

    @property
    def display_name(self) -> str:
        return self.profile.display_name

    @property
    def verified(self) -> bool:
        return self.tick.verified


@dataclass(frozen=True, slots=True)
class BusinessSummary:
    """A directory hit; ``tick`` is checked by the client for those the relay lists as
    verified (and is ``NOT_VERIFIED`` for the others)."""

    account_id: str
    display_name: str
    about: str
    category: str
    tick: Tick

    @property
    def verified(self) -> bool:
        return self.tick.verified
