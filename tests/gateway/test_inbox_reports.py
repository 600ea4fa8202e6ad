"""Reports from a constructed activity line: first-response and resolution times, openings
and resolutions per day, by agent and by label, in UTC and in a time zone; the page, the CSV,
and who may see them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from gateway_support import RunningGateway
from inbox_browser import FAST, PASSWORD, Browser

from tresen.core.clock import ManualClock
from tresen.core.db import Database
from tresen.gateway.database import open_database
from tresen.gateway.inbox.agents import Agents, Role
from tresen.gateway.inbox.conversations import Conversations
from tresen.gateway.inbox.reports import Reports, as_csv

A, B, C = "a" * 32, "b" * 32, "c" * 32
ANNA, BEN = 1, 2
NAMES = {ANNA: "Anna", BEN: "Ben"}
JAN_1, JAN_2, JAN_3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)

EXPECTED_CSV = (
    "date,agent,label,opened,resolved,first_responses,first_response_avg_s,resolution_avg_s\r\n"
    "2026-01-01,,vip,0,1,0,,10800\r\n"
    "2026-01-01,Anna,refund,1,1,1,900,7200\r\n"
    "2026-01-01,Ben,,1,0,0,,\r\n"
    "2026-01-02,Ben,,0,1,1,2400,7200\r\n"
    "2026-01-03,Anna,,1,0,1,360,\r\n"
)


def at(day: int, hour: int, minute: int = 0, month: int = 1, year: int = 2026) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


async def write_history(db: Database) -> None:
    """Three conversations around 1 to 3 January 2026 (UTC):

    A: opened 1 Jan 09:00, labelled refund, assigned to Anna 09:10, answered 09:15 and 09:30,
       resolved 11:00.
    B: opened 1 Jan 23:30, answered by Ben 2 Jan 00:10, resolved 01:30; opened again 3 Jan
       10:00, assigned automatically to Anna 10:05, answered by her 10:06.
    C: opened 31 Dec 22:00, labelled vip, resolved 1 Jan 01:00 without an answer.
    """
    clock = ManualClock()
    inbox = Conversations(db, clock)
    history = [
        (at(31, 22, month=12, year=2025), C, None, "opened", ""),
        (at(31, 22, month=12, year=2025), C, BEN, "label", "vip"),
        (at(1, 1), C, BEN, "status", "resolved"),
        (at(1, 9), A, None, "opened", ""),
        (at(1, 9), A, ANNA, "label", "refund"),
        (at(1, 9, 10), A, ANNA, "assign", "Anna"),
        (at(1, 9, 15), A, ANNA, "reply", "Gern, ich schaue nach."),
        (at(1, 9, 30), A, ANNA, "note", "Erstattung angewiesen"),
        (at(1, 9, 30), A, ANNA, "reply", "Erledigt."),
        (at(1, 11), A, ANNA, "status", "resolved"),
        (at(1, 23, 30), B, None, "opened", ""),
        (at(2, 0, 10), B, BEN, "reply", "Guten Morgen!"),
        (at(2, 1, 30), B, BEN, "status", "resolved"),
        (at(3, 10), B, None, "opened", ""),
        (at(3, 10, 5), B, None, "assign", "Anna"),
        (at(3, 10, 6), B, ANNA, "reply", "Ja?"),
        (at(4, 8), A, None, "opened", ""),  # after the range
    ]
    for when, contact, agent_id, kind, detail in history:
        clock.set(when)
        await inbox.record(contact, agent_id, kind, detail)


def summary(figures: object) -> tuple[object, ...]:
    return (
        figures.opened,  # type: ignore[attr-defined]
        figures.resolved,  # type: ignore[attr-defined]
        figures.first_response_avg_s,  # type: ignore[attr-defined]
        figures.resolution_avg_s,  # type: ignore[attr-defined]
    )


async def test_the_figures_of_a_constructed_history(db: Database) -> None:
    await write_history(db)
    reports = Reports(db, ManualClock())
    report = await reports.report(JAN_1, JAN_3, UTC, NAMES)

    assert summary(report.total) == (3, 3, 1220, 8400)
    assert report.total.first_response_median_s == 900
    assert report.total.resolution_median_s == 7200
    assert {day: summary(f) for day, f in report.days.items()} == {
        JAN_1: (2, 2, 900, 9000),
        JAN_2: (0, 1, 2400, 7200),
        JAN_3: (1, 0, 360, None),
    }
    assert {name: summary(f) for name, f in report.agents.items()} == {
        "": (0, 1, None, 10800),
        "Anna": (2, 1, 630, 7200),
        "Ben": (1, 1, 2400, 7200),
    }
    assert {name: summary(f) for name, f in report.labels.items()} == {
        "": (2, 1, 1380, 7200),
        "refund": (1, 1, 900, 7200),
        "vip": (0, 1, None, 10800),
    }
    assert as_csv(report) == EXPECTED_CSV

    # In Berlin (UTC+1 in January) B's first opening falls on 2 January, and C's on 31
    # December is still before the range.
    berlin = await reports.report(JAN_1, JAN_3, ZoneInfo("Europe/Berlin"), NAMES)
    assert [f.opened for f in berlin.days.values()] == [1, 1, 1]
    assert [f.resolved for f in berlin.days.values()] == [2, 1, 0]

    # One day only: what happened on 2 January.
    one = await reports.report(JAN_2, JAN_2, UTC, NAMES)
    assert summary(one.total) == (0, 1, 2400, 7200)


async def test_a_range_is_checked(db: Database) -> None:
    reports = Reports(db, ManualClock())
    with pytest.raises(ValueError, match="ends before it starts"):
        await reports.report(JAN_3, JAN_1)
    with pytest.raises(ValueError, match="at most 366 days"):
        await reports.report(date(2025, 1, 1), JAN_3)
    empty = await reports.report(JAN_1, JAN_3)
    assert summary(empty.total) == (0, 0, None, None)
    assert as_csv(empty) == EXPECTED_CSV.splitlines(keepends=True)[0]


async def test_owners_and_admins_see_reports_and_download_them_agents_do_not(
    gw: RunningGateway,
) -> None:
    db = await open_database(gw.settings)
    try:
        agents = Agents(db, ManualClock(), hasher=FAST)
        anna = await agents.create("anna", "Anna", Role.OWNER, PASSWORD)
        ben = await agents.create("ben", "Ben", Role.ADMIN, PASSWORD)
        await agents.create("cem", "Cem", Role.AGENT, PASSWORD)
        assert (anna.id, ben.id) == (ANNA, BEN)
        await write_history(db)
    finally:
        await db.dispose()
    admin, agent = Browser(gw.url), Browser(gw.url)
    try:
        await agent.sign_in("cem")
        query = "start=2026-01-01&end=2026-01-03"
        for path in ("/inbox/reports", f"/inbox/reports?{query}", f"/inbox/reports.csv?{query}"):
            refused = await agent.get(path)
            assert refused.status_code == 403
            assert "Only owners and admins" in refused.text
        assert 'href="/inbox/reports"' not in (await agent.get("/inbox")).text

        await admin.sign_in("ben")
        page = await admin.get(f"/inbox/reports?{query}")
        assert page.status_code == 200
        assert 'href="/inbox/reports"' in page.text
        assert "<svg" in page.text
        assert "style=" not in page.text  # the policy forbids inline styles
        assert '<tr><th scope="row">2026-01-01</th><td>2</td><td>2</td>' in page.text
        assert "<td>15 min 0 s</td><td>2 h 30 min</td>" in page.text  # 1 January's averages
        assert '<th scope="row">refund</th><td>1</td><td>1</td>' in page.text

        csv = await admin.get(f"/inbox/reports.csv?{query}")
        assert csv.status_code == 200
        assert csv.headers["content-type"] == "text/csv; charset=utf-8"
        assert "attachment" in csv.headers["content-disposition"]
        assert csv.text == EXPECTED_CSV

        for bad in ("start=2026-13-01", "zone=Mars/Olympus", "start=2026-01-05&end=2026-01-01"):
            answer = await admin.get(f"/inbox/reports?{bad}")
            assert answer.status_code == 400
            assert 'role="alert"' in answer.text
        assert (await admin.get("/inbox/reports.csv?start=x")).status_code == 400
        german = await admin.get(f"/inbox/reports?{query}&zone=Europe/Berlin")
        assert german.status_code == 200
        assert "Europe/Berlin" in german.text
    finally:
        await admin.close()
        await agent.close()
