"""Business profiles as the relay and the clients both read them.

The relay validates a profile with these rules before it stores it; a client may run the same
rules before it sends one, and uses :func:`is_open` and :func:`next_change` to show "open now"
and "opens at 09:00" from a profile it fetched.

Opening hours are wall-clock times in the business's IANA time zone: "09:00 to 17:30" means
09:00 on the local clock, before and after a daylight-saving change alike. A weekday missing
from the schedule is closed; ``"00:00"`` to ``"24:00"`` is open all day, and an interval ending at
``"24:00"`` followed by one starting at ``"00:00"`` the next day is one opening across midnight.
Dates in ``closed_dates`` (holidays) are closed all day in that time zone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, available_timezones

__all__ = [
    "ABOUT_MAX",
    "ADDRESS_MAX",
    "DESCRIPTION_MAX",
    "DISPLAY_NAME_MAX",
    "EMAIL_MAX",
    "MAX_CLOSED_DATES",
    "MAX_INTERVALS_PER_DAY",
    "MAX_WEBSITES",
    "NEXT_CHANGE_HORIZON_DAYS",
    "WEBSITE_MAX",
    "WEEKDAYS",
    "BusinessCategory",
    "CleanProfileEdit",
    "Interval",
    "InvalidProfile",
    "Problem",
    "ProfileEdit",
    "Verification",
    "WeeklyHours",
    "clean_email",
    "clean_timezone",
    "clean_websites",
    "is_open",
    "next_change",
    "normalize_display_name",
    "parse_closed_dates",
]

DISPLAY_NAME_MAX = 100
ABOUT_MAX = 139
DESCRIPTION_MAX = 512
ADDRESS_MAX = 256
EMAIL_MAX = 128
WEBSITE_MAX = 256
MAX_WEBSITES = 2
MAX_INTERVALS_PER_DAY = 3
MAX_CLOSED_DATES = 100
NEXT_CHANGE_HORIZON_DAYS = 8

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
MS_PER_DAY = 86_400_000


class BusinessCategory(StrEnum):
    """The verticals of the WhatsApp Cloud API business profile."""

    AUTO = "AUTO"
    BEAUTY = "BEAUTY"
    APPAREL = "APPAREL"
    EDU = "EDU"
    ENTERTAIN = "ENTERTAIN"
    EVENT_PLAN = "EVENT_PLAN"
    FINANCE = "FINANCE"
    GROCERY = "GROCERY"
    GOVT = "GOVT"
    HOTEL = "HOTEL"
    HEALTH = "HEALTH"
    NONPROFIT = "NONPROFIT"
    PROF_SERVICES = "PROF_SERVICES"
    RETAIL = "RETAIL"
    TRAVEL = "TRAVEL"
    RESTAURANT = "RESTAURANT"
    OTHER = "OTHER"


class Verification(StrEnum):
    """Where a business stands with the operator; only ``verified`` shows the tick."""

    UNVERIFIED = "unverified"
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Problem:
    """One offending field of a profile: ``field`` is its JSON path (``hours.mon.0``)."""

    field: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class InvalidProfile(ValueError):
    """A profile (or a part of it) breaks the rules; ``problems`` names every offending field."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = list(problems)

    @classmethod
    def one(cls, field: str, problem: str) -> InvalidProfile:
        return cls([Problem(field, problem)])


# --- text fields ---------------------------------------------------------------------------

# Explicit bidirectional embeddings, overrides and isolates reorder the letters on screen, so
# "\u202easnahtfuL" would read as "Lufthansa" while comparing as something else.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def normalize_display_name(raw: str, field: str = "display_name") -> str:
    """NFC, trimmed, inner whitespace collapsed to one space; 1 to 100 characters."""
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        raise InvalidProfile.one(field, "must not be empty")
    if len(name) > DISPLAY_NAME_MAX:
        raise InvalidProfile.one(field, f"must be at most {DISPLAY_NAME_MAX} characters")
    for char in name:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Co"):
            raise InvalidProfile.one(
                field, f"must not contain control or private-use characters (U+{ord(char):04X})"
            )
        if char in _BIDI_CONTROLS:
            raise InvalidProfile.one(
                field, f"must not contain bidirectional controls (U+{ord(char):04X})"
            )
    return name


def _clean_text(raw: str, field: str, max_len: int, *, multiline: bool) -> str:
    text = unicodedata.normalize("NFC", raw.replace("\r\n", "\n")).strip()
    if len(text) > max_len:
        raise InvalidProfile.one(field, f"must be at most {max_len} characters")
    for char in text:
        if char == "\n" and multiline:
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):
            what = "control characters" if multiline else "line breaks or control characters"
            raise InvalidProfile.one(field, f"must not contain {what} (U+{ord(char):04X})")
    return text


def clean_email(raw: str, field: str = "email") -> str:
    """A syntactically valid address in normalized form (no DNS lookup); ``""`` clears it."""
    text = raw.strip()
    if not text:
        return ""
    # Imported here: it compiles its grammar on import (~40 ms), which a client that only
    # shows opening hours should not pay for at start.
    from email_validator import EmailNotValidError, validate_email

    try:
        normalized = validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as e:
        raise InvalidProfile.one(field, str(e)) from None
    if len(normalized) > EMAIL_MAX:
        raise InvalidProfile.one(field, f"must be at most {EMAIL_MAX} characters")
    return normalized


def clean_websites(raw: Sequence[str], field: str = "websites") -> tuple[str, ...]:
    """At most two absolute http(s) URLs with a host, each at most 256 characters."""
    if len(raw) > MAX_WEBSITES:
        raise InvalidProfile.one(field, f"at most {MAX_WEBSITES} websites")
    problems: list[Problem] = []
    cleaned: list[str] = []
    for i, value in enumerate(raw):
        url = value.strip()
        problem = _website_problem(url)
        if problem:
            problems.append(Problem(f"{field}.{i}", problem))
        else:
            cleaned.append(url)
    if problems:
        raise InvalidProfile(problems)
    return tuple(cleaned)


def _website_problem(url: str) -> str | None:
    if not url:
        return "must not be empty"
    if len(url) > WEBSITE_MAX:
        return f"must be at most {WEBSITE_MAX} characters"
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an absolute http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    # "https://lufthansa.com@evil.example" shows one host and opens another.
    if "@" in parts.netloc:
        return "must not contain a user name or password"
    return None


def clean_category(raw: str, field: str = "category") -> BusinessCategory:
    try:
        return BusinessCategory(raw)
    except ValueError:
        raise InvalidProfile.one(
            field, "must be one of " + ", ".join(c.value for c in BusinessCategory)
        ) from None


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def clean_timezone(raw: str, field: str = "timezone") -> str:
    """An IANA time zone name known to the tz database (``Europe/Berlin``, ``UTC``)."""
    if raw not in _time_zones():
        raise InvalidProfile.one(field, "must be an IANA time zone name such as Europe/Berlin")
    return raw


# --- opening hours ---------------------------------------------------------------------------

_START = re.compile(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$")


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """Open from ``start`` up to (not including) ``end``, in minutes after local midnight."""

    start: int
    end: int

    def to_json(self) -> list[str]:
        return [_hhmm(self.start), _hhmm(self.end)]


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    """A weekly schedule: for each weekday (Monday first) up to three sorted intervals."""

    days: tuple[tuple[Interval, ...], ...] = field(default=((),) * 7)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], field: str = "hours") -> WeeklyHours:
        """``{"mon": [["09:00", "17:30"]], ...}``; raises :class:`InvalidProfile`."""
        if not isinstance(raw, Mapping):
            raise InvalidProfile.one(field, 'must be an object like {"mon": [["09:00", "17:30"]]}')
        problems: list[Problem] = []
        days: list[tuple[Interval, ...]] = [()] * 7
        for key, value in raw.items():
            if key not in WEEKDAYS:
                problems.append(
                    Problem(f"{field}.{key}", "unknown day; use " + ", ".join(WEEKDAYS))
                )
                continue
            try:
                days[WEEKDAYS.index(key)] = _parse_day(value, f"{field}.{key}")
            except InvalidProfile as e:
                problems.extend(e.problems)
        if problems:
            raise InvalidProfile(problems)
        return cls(tuple(days))

    def to_json(self) -> dict[str, list[list[str]]]:
        """The canonical form: open days only, Monday first."""
        return {
            WEEKDAYS[i]: [interval.to_json() for interval in day]
            for i, day in enumerate(self.days)
            if day
        }

    @property
    def is_empty(self) -> bool:
        """No opening time at all: the business has published no hours."""
        return not any(self.days)


def _parse_day(value: Any, field: str) -> tuple[Interval, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidProfile.one(field, 'must be a list of ["HH:MM", "HH:MM"] intervals')
    if len(value) > MAX_INTERVALS_PER_DAY:
        raise InvalidProfile.one(field, f"at most {MAX_INTERVALS_PER_DAY} intervals a day")
    intervals: list[Interval] = []
    for i, pair in enumerate(value):
        where = f"{field}.{i}"
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(t, str) for t in pair)
        ):
            raise InvalidProfile.one(where, 'must be ["HH:MM", "HH:MM"]')
        start, end = pair
        if not _START.match(start):
            raise InvalidProfile.one(where, f"start {start!r} is not a time from 00:00 to 23:59")
        if not (_START.match(end) or end == "24:00"):
            raise InvalidProfile.one(where, f"end {end!r} is not a time from 00:01 to 24:00")
        interval = Interval(_minutes(start), _minutes(end))
        if interval.start >= interval.end:
            raise InvalidProfile.one(where, "start must be before end")
        if intervals and interval.start <= intervals[-1].end:
            raise InvalidProfile.one(
                where, "intervals must be in order and must neither overlap nor touch"
            )
        intervals.append(interval)
    return tuple(intervals)


def parse_closed_dates(raw: Sequence[str], field: str = "closed_dates") -> tuple[date, ...]:
    """At most 100 ISO dates (``2026-12-25``), returned sorted and without repeats."""
    if len(raw) > MAX_CLOSED_DATES:
        raise InvalidProfile.one(field, f"at most {MAX_CLOSED_DATES} dates")
    problems: list[Problem] = []
    dates: set[date] = set()
    for i, text in enumerate(raw):
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                raise ValueError
            dates.add(date.fromisoformat(text))
        except (TypeError, ValueError):
            problems.append(Problem(f"{field}.{i}", "must be a date written YYYY-MM-DD"))
    if problems:
        raise InvalidProfile(problems)
    return tuple(sorted(dates))


def _local(now_ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(now_ms // 1000, zone)


def _wall_ms(day: date, minute: int, zone: ZoneInfo, fold: int) -> int:
    moment = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone)
    return int(moment.replace(fold=fold).timestamp()) * 1000


def is_open(hours: WeeklyHours, closed_dates: Collection[date], timezone: str, now_ms: int) -> bool:
    """Whether the business is open at ``now_ms`` by its local wall clock."""
    local = _local(now_ms, ZoneInfo(timezone))
    if local.date() in closed_dates:
        return False
    minute = local.hour * 60 + local.minute
    return any(i.start <= minute < i.end for i in hours.days[local.weekday()])


def next_change(
    hours: WeeklyHours, closed_dates: Collection[date], timezone: str, now_ms: int
) -> int | None:
    """The instant (ms) the business next opens or closes, if that is within 8 days.

    The state only changes when the wall clock passes the start or end of an interval or a
    midnight, or when it jumps at a daylight-saving change. Every such instant is a candidate;
    the first one whose state differs from now's is the answer. A wall time that a clock
    change skips or repeats has two readings (``fold`` 0 and 1) with the jump between them,
    and all three are candidates.
    """
    zone = ZoneInfo(timezone)
    now_open = is_open(hours, closed_dates, timezone, now_ms)
    today = _local(now_ms, zone).date()
    horizon = now_ms + NEXT_CHANGE_HORIZON_DAYS * MS_PER_DAY
    candidates: set[int] = set()
    for offset in range(-1, NEXT_CHANGE_HORIZON_DAYS + 2):
        day = today + timedelta(days=offset)
        minutes = {0}
        for interval in hours.days[day.weekday()]:
            minutes.add(interval.start)
            minutes.add(interval.end % MINUTES_PER_DAY)  # 24:00 is the next day's 00:00
        for minute in minutes:
            first, second = (_wall_ms(day, minute, zone, fold) for fold in (0, 1))
            candidates.update((first, second))
            if first != second:
                candidates.add(_offset_change(zone, min(first, second), max(first, second)))
    for candidate in sorted(candidates):
        if candidate <= now_ms:
            continue
        if candidate > horizon:
            return None
        if is_open(hours, closed_dates, timezone, candidate) != now_open:
            return candidate
    return None


def _offset_change(zone: ZoneInfo, low_ms: int, high_ms: int) -> int:
    """The first second in (low, high] with the UTC offset of ``high``: the clock change."""
    target = _local(high_ms, zone).utcoffset()
    low, high = low_ms // 1000, high_ms // 1000
    while high - low > 1:
        middle = (low + high) // 2
        if _local(middle * 1000, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return high * 1000


# --- a whole profile -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CleanProfileEdit:
    """A validated, normalized :class:`ProfileEdit`; ``None`` still means "leave as is"."""

    display_name: str | None = None
    about: str | None = None
    description: str | None = None
    address: str | None = None
    email: str | None = None
    websites: tuple[str, ...] | None = None
    category: BusinessCategory | None = None
    timezone: str | None = None
    hours: WeeklyHours | None = None
    closed_dates: tuple[date, ...] | None = None


@dataclass(frozen=True, slots=True)
class ProfileEdit:
    """Fields of a business profile as sent; ``None`` leaves a field unchanged."""

    display_name: str | None = None
    about: str | None = None
    description: str | None = None
    address: str | None = None
    email: str | None = None
    websites: Sequence[str] | None = None
    category: str | None = None
    timezone: str | None = None
    hours: Mapping[str, Any] | None = None
    closed_dates: Sequence[str] | None = None

    def clean(self) -> CleanProfileEdit:
        """Validate every field; raises :class:`InvalidProfile` naming all offending ones."""
        problems: list[Problem] = []

        def check(value: Any, cleaner: Any) -> Any:
            if value is None:
                return None
            try:
                return cleaner(value)
            except InvalidProfile as e:
                problems.extend(e.problems)
                return None

        cleaned = CleanProfileEdit(
            display_name=check(self.display_name, normalize_display_name),
            about=check(self.about, lambda v: _clean_text(v, "about", ABOUT_MAX, multiline=False)),
            description=check(
                self.description,
                lambda v: _clean_text(v, "description", DESCRIPTION_MAX, multiline=True),
            ),
            address=check(
                self.address, lambda v: _clean_text(v, "address", ADDRESS_MAX, multiline=True)
            ),
            email=check(self.email, clean_email),
            websites=check(self.websites, clean_websites),
            category=check(self.category, clean_category),
            timezone=check(self.timezone, clean_timezone),
            hours=check(self.hours, WeeklyHours.parse),
            closed_dates=check(self.closed_dates, parse_closed_dates),
        )
        if problems:
            raise InvalidProfile(problems)
        return cleaned
