"""The bills report (owners and admins): the operator's statement of a month held against
the customers' delivery receipts, with every charge no receipt proves."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tresen.core.clock import Clock
from tresen.gateway.billing.report import money
from tresen.gateway.billing.service import Bills, InvalidMonth, StatementUnavailable
from tresen.gateway.inbox import web

__all__ = ["router"]

router = APIRouter()


def _this_month(clock: Clock) -> str:
    return datetime.fromtimestamp(clock.now_ms() / 1000, UTC).strftime("%Y-%m")


@router.get("/reports/bills")
async def bills_page(request: Request, month: str = "") -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    _ = web.gettext_for(request, who)
    bills: Bills | None = getattr(request.app.state, "bills", None)
    if bills is None:
        return web.page(
            request,
            "bills.html",
            who=who,
            status_code=404,
            error=_("Bills are not available here."),
            month=month[:16],
            result=None,
        )
    month = month.strip()[:16] or _this_month(bills.clock)
    try:
        result = await bills.verify(month)
    except InvalidMonth:
        error = _("A month is written like 2026-01.")
    except StatementUnavailable as exc:
        error = _("The statement cannot be fetched: {why}").format(why=str(exc))
    else:
        return web.page(request, "bills.html", who=who, month=month, result=result, money=money)
    return web.page(
        request, "bills.html", who=who, status_code=400, error=error, month=month, result=None
    )
