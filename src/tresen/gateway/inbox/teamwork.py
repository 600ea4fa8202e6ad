"""Teamwork: an agent's availability, automatic assignment's settings, and reports (owners
and admins)."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, date, timedelta, tzinfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.assignment import MAX_LIMIT, Assignment
from tresen.gateway.inbox.automation import bot_report
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.inbox.reports import MAX_DAYS, Report, Reports, as_csv, bar_chart

__all__ = ["router"]

router = APIRouter()
DEFAULT_DAYS = 7


def assignment_of(request: Request) -> Assignment:
    found: Assignment = request.app.state.inbox_assignment
    return found


def reports_of(request: Request) -> Reports:
    found: Reports = request.app.state.inbox_reports
    return found


def _local(path: object) -> str | None:
    """``path`` if it is a page of the inbox (never another site)."""
    if not isinstance(path, str) or not path.startswith("/inbox") or len(path) > 512:
        return None
    return None if "//" in path or "\\" in path else path


@router.post("/availability")
async def availability(request: Request) -> Response:
    """Available or away: nothing is assigned automatically to an agent who is away."""
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    available = form.get("available") == "1"
    await assignment_of(request).set_available(who.agent.id, available)
    back = _local(form.get("back")) or "/inbox"
    if available:
        return web.redirect(back, _("You are available."))
    return web.redirect(back, _("You are away: nothing is assigned to you automatically."))


# --- automatic assignment (owners and admins) ----------------------------------------------------


async def _assignment_page(
    request: Request, who: SignedIn, *, error: str | None = None, status_code: int = 200
) -> Response:
    assignment = assignment_of(request)
    return web.page(
        request,
        "assignment.html",
        who=who,
        status_code=status_code,
        settings=await assignment.settings(),
        members=await assignment.team(),
        max_limit=MAX_LIMIT,
        error=error,
    )


def _limit(given: object) -> int | None:
    """A limit from a form: a whole number, or empty (``None``); else refused."""
    if given in (None, ""):
        return None
    if not isinstance(given, str) or not given.strip().isdigit() or len(given.strip()) > 6:
        raise Refused("a limit is a number from 0 to {high}", high=MAX_LIMIT)
    return int(given.strip())


@router.get("/assignment")
async def assignment_settings(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _assignment_page(request, who)


@router.post("/assignment")
async def configure_assignment(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    try:
        limit = _limit(form.get("default_limit"))
        if limit is None:
            raise Refused("a limit is a number from 0 to {high}", high=MAX_LIMIT)
        enabled = form.get("enabled") == "on"
        await assignment_of(request).configure(enabled=enabled, default_limit=limit)
    except Refused as exc:
        return await _assignment_page(request, who, error=exc.sentence(_), status_code=400)
    if enabled:
        return web.redirect("/inbox/assignment", _("Automatic assignment is on."))
    return web.redirect("/inbox/assignment", _("Automatic assignment is off."))


@router.post("/assignment/agents/{agent_id}")
async def agent_limit(request: Request, agent_id: web.RowId) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    try:
        await assignment_of(request).set_limit(agent_id, _limit(form.get("limit")))
    except Refused as exc:
        return await _assignment_page(request, who, error=exc.sentence(_), status_code=400)
    return web.redirect("/inbox/assignment", _("Saved."))


# --- reports (owners and admins) -----------------------------------------------------------------


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _zone(name: str) -> tzinfo:
    if name in ("", "UTC"):
        return UTC
    if len(name) > 64 or name not in _zones():
        raise Refused("there is no time zone {name}", name=name[:64])
    return zoneinfo.ZoneInfo(name)


def _day(text: str, default: date) -> date:
    if not text:
        return default
    try:
        if len(text) != 10:
            raise ValueError(text[:20])
        return date.fromisoformat(text)
    except ValueError:
        raise Refused("a day is written like 2026-01-31") from None


def _business_zone(request: Request) -> str:
    """The time zone of the business's opening hours, else UTC."""
    gateway = getattr(request.app.state, "gateway", None)
    return str(getattr(gateway, "time_zone", None) or "UTC")


async def _report(request: Request, start: str, end: str, zone: str) -> tuple[Report, str]:
    """The report the query asks for, and the name of its time zone."""
    chosen = _zone(zone.strip())
    reports = reports_of(request)
    last = _day(end, reports.today(chosen))
    first = _day(start, last - timedelta(days=DEFAULT_DAYS - 1))
    names = await web.names(request)
    report = await reports.report(first, last, chosen, names)
    return report, "UTC" if chosen is UTC else zone.strip()


@router.get("/reports")
async def reports_page(
    request: Request, start: str = "", end: str = "", zone: str = ""
) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    zone = zone or _business_zone(request)
    _ = web.gettext_for(request, who)
    try:
        report, zone_name = await _report(request, start, end, zone)
    except Refused as exc:
        return web.page(
            request,
            "reports.html",
            who=who,
            status_code=400,
            error=exc.sentence(_),
            report=None,
            start=start[:10],
            end=end[:10],
            zone=zone[:64],
            max_days=MAX_DAYS,
        )
    days = list(report.days.items())
    counts = bar_chart([(d.isoformat()[5:], [f.opened, f.resolved]) for d, f in days])
    minutes = bar_chart(
        [
            (
                d.isoformat()[5:],
                [
                    None if f.first_response_avg_s is None else f.first_response_avg_s / 60,
                    None if f.resolution_avg_s is None else f.resolution_avg_s / 60,
                ],
            )
            for d, f in days
        ]
    )
    return web.page(
        request,
        "reports.html",
        who=who,
        report=report,
        counts=counts,
        minutes=minutes,
        bot=await bot_report(request, report),
        start=report.start.isoformat(),
        end=report.end.isoformat(),
        zone=zone_name,
        max_days=MAX_DAYS,
    )


@router.get("/reports.csv")
async def reports_csv(request: Request, start: str = "", end: str = "", zone: str = "") -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    zone = zone or _business_zone(request)
    _ = web.gettext_for(request, who)
    try:
        report, _zone_name = await _report(request, start, end, zone)
    except Refused as exc:
        return Response(
            exc.sentence(_),
            status_code=400,
            media_type="text/plain; charset=utf-8",
            headers=web.SECURITY_HEADERS,
        )
    filename = f"inbox-report-{report.start.isoformat()}-{report.end.isoformat()}.csv"
    return Response(
        as_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={
            **web.SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )
