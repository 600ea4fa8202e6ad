"""The business's bills in the inbox's JSON API (``/inbox/api/v1/billing/{month}``): the
operator's statement of a month held against the customers' delivery receipts. Owners and
admins only (it shows what the business pays)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from tresen.gateway.billing.report import as_json
from tresen.gateway.billing.service import Bills, InvalidMonth, StatementUnavailable
from tresen.gateway.inbox.api import PREFIX, ApiError, ApiRoute, Who
from tresen.gateway.inbox.api_models import error_responses
from tresen.gateway.inbox.i18n import N_

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, route_class=ApiRoute, tags=["billing"])

MonthPath = Annotated[str, PathParam(min_length=1, max_length=16, description="YYYY-MM (UTC)")]


def bills_of(request: Request) -> Bills:
    found: Bills | None = getattr(request.app.state, "bills", None)
    if found is None:
        raise ApiError(404, "not_found", N_("bills are not available here"))
    return found


@router.get(
    "/billing/{month}",
    responses=error_responses(),
    summary="A month's statement from the operator, checked against the delivery receipts",
)
async def verify_month(request: Request, who: Who, month: MonthPath) -> dict[str, Any]:
    """Every charge of the month's statement, matched to a delivery receipt signed by the
    customer's device; ``clean`` when every charge is proven, else each unproven charge in
    ``unproven_items`` with its ``reason`` (no_receipt, other_customer, other_template,
    outside_month, bad_signature, charged_twice)."""
    if not who.agent.role.manages:
        raise ApiError(403, "forbidden", N_("only owners and admins see the bills"))
    try:
        found = await bills_of(request).verify(month)
    except InvalidMonth:
        raise ApiError(400, "invalid_month", N_("a month is written like 2026-01")) from None
    except StatementUnavailable as exc:
        raise ApiError(
            409, "statement_unavailable", N_("the statement cannot be fetched: {why}"), why=str(exc)
        ) from None
    return as_json(found)
