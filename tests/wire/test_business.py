"""Business profile rules and opening hours, as the relay and the clients both apply them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tresen.wire.business import (
    BusinessCategory,
    InvalidProfile,
    ProfileEdit,
    WeeklyHours,
    is_open,
    next_change,
    normalize_display_name,
    parse_closed_dates,
)

BERLIN = "Europe/Berlin"
WEEKDAYS_9_TO_1730 = {d: [["09:00", "17:30"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def local_ms(zone: str, *args: int, fold: int = 0) -> int:
    moment = datetime(*args, tzinfo=ZoneInfo(zone)).replace(fold=fold)  # type: ignore[misc]
    return int(moment.timestamp() * 1000)


def fields_of(error: InvalidProfile) -> list[str]:
    return [p.field for p in error.problems]


# --- the weekly schedule ---------------------------------------------------------------------


def test_a_schedule_round_trips_in_canonical_form() -> None:
    hours = WeeklyHours.parse(
        {"sun": [], "sat": [["10:00", "14:00"]], "mon": [["00:00", "12:00"], ["13:00", "24:00"]]}
    )
    assert hours.to_json() == {
        "mon": [["00:00", "12:00"], ["13:00", "24:00"]],
        "sat": [["10:00", "14:00"]],
    }
    assert WeeklyHours.parse(hours.to_json()) == hours
    assert not hours.is_empty
    assert WeeklyHours.parse({}).is_empty
    assert WeeklyHours.parse({"mon": []}) == WeeklyHours()


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        ({"Mon": [["09:00", "10:00"]]}, ["hours.Mon"]),
        ({"mon": [["09:00", "10:00"]], "xyz": []}, ["hours.xyz"]),
        ({"mon": "09:00-17:00"}, ["hours.mon"]),
        ({"mon": [["09:00", "10:00", "11:00"]]}, ["hours.mon.0"]),
        ({"mon": [[9, 17]]}, ["hours.mon.0"]),
        ({"mon": [["9:00", "10:00"]]}, ["hours.mon.0"]),
        ({"mon": [["09:60", "10:00"]]}, ["hours.mon.0"]),
        ({"mon": [["24:00", "24:00"]]}, ["hours.mon.0"]),
        ({"mon": [["09:00", "24:01"]]}, ["hours.mon.0"]),
        ({"mon": [["10:00", "10:00"]]}, ["hours.mon.0"]),
        ({"mon": [["12:00", "13:00"], ["09:00", "10:00"]]}, ["hours.mon.1"]),
        ({"mon": [["09:00", "12:00"], ["12:00", "13:00"]]}, ["hours.mon.1"]),
        ({"mon": [["09:00", "10:00"]] * 4}, ["hours.mon"]),
        ({"tue": [["1", "2"]], "wed": [["3", "4"]]}, ["hours.tue.0", "hours.wed.0"]),
    ],
)
def test_a_bad_schedule_names_the_day_and_interval(raw: dict[str, Any], fields: list[str]) -> None:
    with pytest.raises(InvalidProfile) as caught:
        WeeklyHours.parse(raw)
    assert fields_of(caught.value) == fields


def test_three_intervals_a_day_and_the_whole_day() -> None:
    three = [["06:00", "08:00"], ["09:00", "12:00"], ["13:00", "24:00"]]
    assert WeeklyHours.parse({"fri": three}).to_json() == {"fri": three}
    all_day = WeeklyHours.parse({"sun": [["00:00", "24:00"]]})
    assert is_open(all_day, (), "UTC", utc_ms(2026, 1, 4, 0, 0))  # a Sunday
    assert is_open(all_day, (), "UTC", utc_ms(2026, 1, 4, 23, 59, 59))
    assert not is_open(all_day, (), "UTC", utc_ms(2026, 1, 5, 0, 0))


# --- open now ----------------------------------------------------------------------------


def test_open_by_the_local_wall_clock() -> None:
    hours = WeeklyHours.parse(WEEKDAYS_9_TO_1730)
    # Friday 2026-01-02, Berlin is UTC+1 in winter.
    assert not is_open(hours, (), BERLIN, local_ms(BERLIN, 2026, 1, 2, 8, 59))
    assert is_open(hours, (), BERLIN, local_ms(BERLIN, 2026, 1, 2, 9, 0))
    assert is_open(hours, (), BERLIN, local_ms(BERLIN, 2026, 1, 2, 17, 29, 59))
    assert not is_open(hours, (), BERLIN, local_ms(BERLIN, 2026, 1, 2, 17, 30))
    assert not is_open(hours, (), BERLIN, local_ms(BERLIN, 2026, 1, 3, 12, 0))  # Saturday
    # The same instant in UTC terms is an hour earlier on the wall in London.
    assert not is_open(hours, (), "Europe/London", local_ms(BERLIN, 2026, 1, 2, 9, 30))
    # And in summer too: 09:00 is 09:00 local, not 09:00 winter time.
    assert is_open(hours, (), BERLIN, local_ms(BERLIN, 2026, 7, 3, 9, 0))
    assert not is_open(hours, (), BERLIN, local_ms(BERLIN, 2026, 7, 3, 8, 59))


def test_closed_dates_close_the_whole_local_day() -> None:
    hours = WeeklyHours.parse({"fri": [["00:00", "24:00"]]})
    holiday = (date(2026, 12, 25),)  # a Friday
    assert not is_open(hours, holiday, BERLIN, local_ms(BERLIN, 2026, 12, 25, 0, 0))
    assert not is_open(hours, holiday, BERLIN, local_ms(BERLIN, 2026, 12, 25, 23, 59))
    # 23:30 UTC on the 24th is already the 25th in Berlin.
    assert not is_open(hours, holiday, BERLIN, utc_ms(2026, 12, 24, 23, 30))
    assert is_open(hours, (), BERLIN, utc_ms(2026, 12, 24, 23, 30))


# --- the next change ----------------------------------------------------------------------


def test_next_change_within_a_day_and_over_a_weekend() -> None:
    hours = WeeklyHours.parse(WEEKDAYS_9_TO_1730)
    friday_morning = local_ms(BERLIN, 2026, 1, 2, 7, 0)
    assert next_change(hours, (), BERLIN, friday_morning) == local_ms(BERLIN, 2026, 1, 2, 9, 0)
    at_nine = local_ms(BERLIN, 2026, 1, 2, 9, 0)
    assert next_change(hours, (), BERLIN, at_nine) == local_ms(BERLIN, 2026, 1, 2, 17, 30)
    friday_evening = local_ms(BERLIN, 2026, 1, 2, 17, 30)
    assert next_change(hours, (), BERLIN, friday_evening) == local_ms(BERLIN, 2026, 1, 5, 9, 0)


def test_next_change_skips_closed_dates() -> None:
    hours = WeeklyHours.parse(WEEKDAYS_9_TO_1730)
    closed = parse_closed_dates(["2026-01-05", "2026-01-06"])
    friday_evening = local_ms(BERLIN, 2026, 1, 2, 18, 0)
    assert next_change(hours, closed, BERLIN, friday_evening) == local_ms(BERLIN, 2026, 1, 7, 9)


def test_an_opening_across_midnight_is_one_opening() -> None:
    hours = WeeklyHours.parse({"fri": [["18:00", "24:00"]], "sat": [["00:00", "02:00"]]})
    friday_night = local_ms(BERLIN, 2026, 1, 2, 23, 0)
    assert is_open(hours, (), BERLIN, friday_night)
    assert next_change(hours, (), BERLIN, friday_night) == local_ms(BERLIN, 2026, 1, 3, 2, 0)
    # A closed Saturday ends the night at midnight.
    closed = (date(2026, 1, 3),)
    assert next_change(hours, closed, BERLIN, friday_night) == local_ms(BERLIN, 2026, 1, 3, 0, 0)


def test_no_change_within_eight_days() -> None:
    every_day = WeeklyHours.parse(
        {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    )
    assert next_change(every_day, (), BERLIN, utc_ms(2026, 1, 1)) is None
    never = WeeklyHours()
    assert next_change(never, (), BERLIN, utc_ms(2026, 1, 1)) is None
    # Open again after a closed fortnight: beyond the horizon.
    closed = tuple(date(2026, 1, d) for d in range(1, 15))
    assert next_change(every_day, closed, BERLIN, utc_ms(2026, 1, 1, 12)) is None
    # Open once a week is within it.
    mondays = WeeklyHours.parse({"mon": [["09:00", "10:00"]]})
    tuesday = local_ms(BERLIN, 2026, 1, 6, 12, 0)
    assert next_change(mondays, (), BERLIN, tuesday) == local_ms(BERLIN, 2026, 1, 12, 9, 0)


def test_next_change_across_the_spring_clock_change() -> None:
    # Berlin, Sunday 2026-03-29: at 01:00 UTC the clocks jump from 02:00 to 03:00.
    daily = WeeklyHours.parse({"sat": [["09:00", "17:00"]], "sun": [["09:00", "17:00"]]})
    saturday_evening = local_ms(BERLIN, 2026, 3, 28, 18, 0)
    opens = next_change(daily, (), BERLIN, saturday_evening)
    assert opens == utc_ms(2026, 3, 29, 7, 0)  # 09:00 summer time, not 08:00 UTC
    assert opens - saturday_evening == 14 * 3600 * 1000  # 15 wall hours, 14 real ones

    # An opening time the clocks skip: the shop opens when the clock jumps past it.
    night = WeeklyHours.parse({"sun": [["02:30", "04:00"]]})
    before = utc_ms(2026, 3, 29, 0, 30)  # 01:30 winter time
    assert not is_open(night, (), BERLIN, before)
    assert next_change(night, (), BERLIN, before) == utc_ms(2026, 3, 29, 1, 0)
    assert is_open(night, (), BERLIN, utc_ms(2026, 3, 29, 1, 0))
    assert next_change(night, (), BERLIN, utc_ms(2026, 3, 29, 1, 0)) == utc_ms(2026, 3, 29, 2, 0)


def test_next_change_across_the_autumn_clock_change() -> None:
    # Berlin, Sunday 2026-10-25: at 01:00 UTC the clocks go back from 03:00 to 02:00, so
    # 02:30 happens twice and the shop below opens twice.
    hours = WeeklyHours.parse({"sun": [["02:30", "03:30"]]})
    first_0230 = local_ms(BERLIN, 2026, 10, 25, 2, 30, fold=0)
    second_0230 = local_ms(BERLIN, 2026, 10, 25, 2, 30, fold=1)
    assert (first_0230, second_0230) == (utc_ms(2026, 10, 25, 0, 30), utc_ms(2026, 10, 25, 1, 30))
    steps = [utc_ms(2026, 10, 25, 0, 0)]
    while (step := next_change(hours, (), BERLIN, steps[-1])) is not None and len(steps) < 6:
        steps.append(step)
    assert steps == [
        utc_ms(2026, 10, 25, 0, 0),
        first_0230,  # opens at the first 02:30
        utc_ms(2026, 10, 25, 1, 0),  # 03:00 summer time becomes 02:00: closed again
        second_0230,  # opens at the second 02:30
        utc_ms(2026, 10, 25, 2, 30),  # closes at 03:30 winter time
        local_ms(BERLIN, 2026, 11, 1, 2, 30),  # next Sunday
    ]
    for open_, close in zip(steps[1::2], steps[2::2], strict=False):
        assert is_open(hours, (), BERLIN, open_)
        assert not is_open(hours, (), BERLIN, close)


def test_midnight_in_a_zone_far_from_utc() -> None:
    hours = WeeklyHours.parse({"mon": [["00:00", "01:00"]]})
    zone = "Pacific/Kiritimati"  # UTC+14
    sunday_late = local_ms(zone, 2026, 1, 4, 23, 0)
    assert next_change(hours, (), zone, sunday_late) == local_ms(zone, 2026, 1, 5, 0, 0)
    assert next_change(hours, (), zone, sunday_late) == utc_ms(2026, 1, 4, 10, 0)


# --- the other fields ---------------------------------------------------------------------


def test_display_names_are_tidied() -> None:
    assert normalize_display_name("  Bäckerei \t  Morgenrot\u00a0") == "Bäckerei Morgenrot"
    assert normalize_display_name("Cafe\u0301") == "Café"  # NFC
    assert normalize_display_name("x" * 100) == "x" * 100
    for bad in ("", "  ", "x" * 101, "a\x00b", "a\u202eb", "a\ue000b"):
        with pytest.raises(InvalidProfile):
            normalize_display_name(bad)


def test_a_profile_edit_is_cleaned_whole() -> None:
    clean = ProfileEdit(
        display_name=" Morgenrot ",
        about=" Brot ",
        description="a\r\nb",
        email="Laden@Morgenrot.EXAMPLE.org",
        websites=[" https://morgenrot.example.org "],
        category="GROCERY",
        timezone="Europe/Berlin",
        hours={"mon": [["09:00", "17:00"]]},
        closed_dates=["2026-12-26", "2026-12-25"],
    ).clean()
    assert clean.display_name == "Morgenrot"
    assert clean.about == "Brot"
    assert clean.description == "a\nb"
    assert clean.address is None
    assert clean.email == "Laden@morgenrot.example.org"
    assert clean.websites == ("https://morgenrot.example.org",)
    assert clean.category is BusinessCategory.GROCERY
    assert clean.hours == WeeklyHours.parse({"mon": [["09:00", "17:00"]]})
    assert clean.closed_dates == (date(2026, 12, 25), date(2026, 12, 26))
    assert ProfileEdit(email="").clean().email == ""

    with pytest.raises(InvalidProfile) as caught:
        ProfileEdit(
            display_name="",
            about="\n",
            email="x",
            websites=["javascript:alert(1)", "https://a.example:99999"],
            category="x",
            timezone="Mars/Olympus",
            hours={"mon": [["1", "2"]]},
            closed_dates=["tomorrow"],
        ).clean()
    assert fields_of(caught.value) == [
        "display_name",
        "email",
        "websites.0",
        "websites.1",
        "category",
        "timezone",
        "hours.mon.0",
        "closed_dates.0",
    ]


def test_closed_dates_are_at_most_a_hundred() -> None:
    dates = [date.fromordinal(date(2026, 1, 1).toordinal() + i).isoformat() for i in range(101)]
    assert len(parse_closed_dates(dates[:100])) == 100
    with pytest.raises(InvalidProfile):
        parse_closed_dates(dates)
