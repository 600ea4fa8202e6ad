"""Campaigns in the inbox's JSON API (``/inbox/api/v1/campaigns``): create one from an
approved template, see its cost before it goes, send a test, start, pause, resume or cancel
it, follow each recipient, and take its results (also as CSV). Owners and admins change
campaigns; every agent may read them. Same authentication, rate limits and error envelope as
the rest of the API (``inbox/api.py``)."""

from __future__ import annotations

import csv
import io
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tresen.gateway.campaigns import (
    AudienceSpec,
    CampaignDraft,
    CampaignId,
    CampaignProblem,
    Campaigns,
    CampaignState,
    CampaignSummary,
    Condition,
    Recipient,
    RecipientState,
    Schedule,
)
from tresen.gateway.campaigns.repo import RecipientRow
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.inbox.api import PREFIX, ApiError, ApiRoute, Caller, Who
from tresen.gateway.inbox.api_models import error_responses
from tresen.gateway.inbox.i18n import N_

__all__ = ["CSV_COLUMNS", "csv_cell", "router"]

router = APIRouter(prefix=PREFIX, route_class=ApiRoute, tags=["campaigns"])


class CreateRoute(ApiRoute):
    """Making a campaign may list its recipients: up to ``MAX_RECIPIENTS`` in the body."""

    max_body = 8 * 1024 * 1024


creating = APIRouter(prefix=PREFIX, route_class=CreateRoute, tags=["campaigns"])

CampaignPath = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
MAX_RECIPIENTS = 50_000
"""Explicit recipients in one request (a larger audience is a list)."""
HOUR = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecipientIn(_Strict):
    phone: str | None = Field(default=None, min_length=4, max_length=32)
    account_id: str | None = Field(default=None, max_length=32, pattern=r"^[0-9a-f]{1,32}$")
    name: str | None = Field(default=None, max_length=128)
    attributes: dict[
        Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1024)]
    ] = Field(default_factory=dict, max_length=64)

    @model_validator(mode="after")
    def _someone(self) -> RecipientIn:
        if self.phone is None and self.account_id is None:
            raise ValueError("a recipient needs a phone number or an account id")
        return self


class ConditionIn(_Strict):
    attribute: str = Field(min_length=1, max_length=64)
    op: Literal["equals", "in", "has"] = Field(
        description="equals: the first value; in: one of the values; has: any value at all"
    )
    values: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=100
    )

    @model_validator(mode="after")
    def _values_fit(self) -> ConditionIn:
        if self.op == "has" and self.values:
            raise ValueError("has takes no values")
        if self.op != "has" and not self.values:
            raise ValueError(f"{self.op} takes at least one value")
        return self


class AudienceIn(_Strict):
    recipients: list[RecipientIn] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    lists: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        default_factory=list, max_length=20
    )
    labels: list[Annotated[str, Field(pattern=r"^[\w-]{1,32}$")]] = Field(
        default_factory=list, max_length=20
    )
    conditions: list[ConditionIn] = Field(default_factory=list, max_length=20)


class ScheduleIn(_Strict):
    start_ms: int | None = Field(default=None, ge=0, le=2**53)
    spread_s: int = Field(default=0, ge=0, le=7 * 86_400)
    quiet_hours: list[Annotated[str, Field(pattern=HOUR)]] | None = Field(
        default=None,
        max_length=2,
        description='["21:00", "08:00"]; [] for none; null: 21:00-08:00 for marketing',
    )
    time_zone: str | None = Field(default=None, max_length=64)


class CampaignCreate(_Strict):
    name: str = Field(min_length=1, max_length=100)
    template: str = Field(min_length=1, max_length=512, description="An approved template")
    language: str = Field(min_length=2, max_length=15)
    audience: AudienceIn
    components: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=20,
        description="As in a Cloud API template send; {{attribute}}, {{name}} and {{phone}} "
        "are filled per recipient",
    )
    schedule: ScheduleIn = Field(default_factory=ScheduleIn)


class TestSend(_Strict):
    phone: str = Field(min_length=4, max_length=32)


class CampaignPublic(BaseModel):
    id: int
    name: str
    template: str
    language: str
    category: str
    state: CampaignState
    reason: str | None
    start_ms: int | None
    resume_ms: int | None = Field(description="While waiting: when the tier's budget allows more")
    created_ms: int
    finished_ms: int | None
    total: int
    counts: dict[str, int] = Field(description="Recipients per state")

    @classmethod
    def of(cls, c: CampaignSummary) -> CampaignPublic:
        return cls(
            id=c.id,
            name=c.name,
            template=c.template_name,
            language=c.language,
            category=c.category,
            state=c.state,
            reason=c.reason,
            start_ms=c.start_ms,
            resume_ms=c.resume_ms,
            created_ms=c.created_ms,
            finished_ms=c.finished_ms,
            total=c.total,
            counts=c.counts,
        )


class CampaignsPublic(BaseModel):
    campaigns: list[CampaignPublic]


class RecipientPublic(BaseModel):
    account_id: str
    phone: str
    state: RecipientState
    reason: str | None
    error_code: int | None
    sent_ms: int | None
    delivered_ms: int | None
    read_ms: int | None
    replied_ms: int | None

    @classmethod
    def of(cls, r: RecipientRow) -> RecipientPublic:
        return cls(
            account_id=r.account_id,
            phone=r.phone,
            state=r.state,
            reason=r.reason,
            error_code=r.error_code,
            sent_ms=r.sent_ms,
            delivered_ms=r.delivered_ms,
            read_ms=r.read_ms,
            replied_ms=r.replied_ms,
        )


class RecipientsPublic(BaseModel):
    recipients: list[RecipientPublic]


class CostPublic(BaseModel):
    currency: str | None
    total_micros: int = Field(description="Millionths of the currency")
    recipients: int
    unpriced: int = Field(description="Recipients the rate card has no price for")
    by_country: dict[str, dict[str, int]] = Field(description="Country code: recipients and micros")


class ResultsPublic(BaseModel):
    campaign: CampaignPublic
    sent: int
    delivered: int
    read: int
    replied: int
    opted_out: int
    failed: int
    delivery_rate: float
    read_rate: float
    reply_rate: float
    cost_micros: int
    currency: str | None


class TestSent(BaseModel):
    message_id: str


def _campaigns(request: Request) -> Campaigns:
    found: Campaigns | None = getattr(request.app.state, "campaigns", None)
    if found is None:
        raise ApiError(404, "not_found", N_("campaigns are not available on this gateway"))
    return found


def _managing(who: Caller) -> None:
    if not who.agent.role.manages:
        raise ApiError(403, "forbidden", N_("only owners and admins run campaigns"))


def _problem(exc: CampaignProblem) -> ApiError:
    return ApiError(400, "refused", N_("{reason}"), reason=str(exc))


async def _summary(request: Request, campaign_id: int) -> CampaignSummary:
    try:
        return await _campaigns(request).get(CampaignId(campaign_id))
    except CampaignProblem:
        raise ApiError(404, "not_found", N_("there is no such campaign")) from None


def _draft(body: CampaignCreate) -> CampaignDraft:
    audience = AudienceSpec(
        recipients=tuple(
            Recipient(phone=r.phone, account_id=r.account_id, name=r.name, attributes=r.attributes)
            for r in body.audience.recipients
        ),
        lists=tuple(body.audience.lists),
        labels=tuple(label.lower() for label in body.audience.labels),
        conditions=tuple(
            Condition(c.attribute, c.op, tuple(c.values)) for c in body.audience.conditions
        ),
    )
    hours = body.schedule.quiet_hours
    quiet: tuple[str, str] | tuple[()] | None
    if hours is None:
        quiet = None
    elif len(hours) == 2:
        quiet = (hours[0], hours[1])
    elif not hours:
        quiet = ()
    else:
        raise ApiError(400, "invalid", N_("quiet hours are two times, from and until"))
    schedule = Schedule(
        start_ms=body.schedule.start_ms,
        spread_s=body.schedule.spread_s,
        quiet_hours=quiet,
        time_zone=body.schedule.time_zone,
    )
    return CampaignDraft(
        name=body.name,
        template_name=body.template,
        language=body.language,
        audience=audience,
        components=body.components,
        schedule=schedule,
    )


@router.get("/campaigns", responses=error_responses(), summary="Every campaign, newest first")
async def campaigns(request: Request, who: Who) -> CampaignsPublic:
    found = await _campaigns(request).all()
    found.sort(key=lambda c: c.created_ms, reverse=True)
    return CampaignsPublic(campaigns=[CampaignPublic.of(c) for c in found])


@creating.post(
    "/campaigns",
    status_code=201,
    responses=error_responses(body=True),
    summary="Create a campaign (a draft) of an approved template (owners and admins)",
)
async def create_campaign(request: Request, who: Who, body: CampaignCreate) -> CampaignPublic:
    _managing(who)
    service = _campaigns(request)
    try:
        made = await service.create(_draft(body))
    except CampaignProblem as exc:
        raise _problem(exc) from None
    return CampaignPublic.of(await service.get(made))


@router.get(
    "/campaigns/{campaign_id}", responses=error_responses(), summary="One campaign, with counts"
)
async def campaign(request: Request, who: Who, campaign_id: CampaignPath) -> CampaignPublic:
    return CampaignPublic.of(await _summary(request, campaign_id))


@router.get(
    "/campaigns/{campaign_id}/cost",
    responses=error_responses(),
    summary="What the campaign costs if every message is delivered, at the rate card",
)
async def campaign_cost(request: Request, who: Who, campaign_id: CampaignPath) -> CostPublic:
    await _summary(request, campaign_id)
    try:
        preview = await _campaigns(request).preview_cost(CampaignId(campaign_id))
    except CampaignProblem as exc:
        raise _problem(exc) from None
    return CostPublic(
        currency=preview.currency,
        total_micros=preview.total_micros,
        recipients=preview.recipients,
        unpriced=preview.unpriced,
        by_country={
            country: {"recipients": count, "micros": micros}
            for country, (count, micros) in preview.by_country.items()
        },
    )


@router.post(
    "/campaigns/{campaign_id}/test",
    responses=error_responses(body=True),
    summary="Send the campaign's template once to a phone number (owners and admins)",
)
async def test_campaign(
    request: Request, who: Who, campaign_id: CampaignPath, body: TestSend
) -> TestSent:
    _managing(who)
    await _summary(request, campaign_id)
    try:
        accepted = await _campaigns(request).test_send(CampaignId(campaign_id), body.phone)
    except CampaignProblem as exc:
        raise _problem(exc) from None
    except GraphError as exc:
        raise ApiError(
            409, "not_sent", N_("({number}) {reason}"), number=exc.code, reason=exc.details
        ) from None
    return TestSent(message_id=accepted.wamid)


@router.post(
    "/campaigns/{campaign_id}/{action}",
    responses=error_responses(),
    summary="Start, pause, resume or cancel a campaign (owners and admins)",
)
async def change_campaign(
    request: Request,
    who: Who,
    campaign_id: CampaignPath,
    action: Literal["start", "pause", "resume", "cancel"],
) -> CampaignPublic:
    _managing(who)
    await _summary(request, campaign_id)
    service = _campaigns(request)
    act = {
        "start": service.start,
        "pause": service.pause,
        "resume": service.resume,
        "cancel": service.cancel,
    }[action]
    try:
        return CampaignPublic.of(await act(CampaignId(campaign_id)))
    except CampaignProblem as exc:
        raise _problem(exc) from None


@router.get(
    "/campaigns/{campaign_id}/recipients",
    responses=error_responses(),
    summary="Each recipient's state, optionally only those in one state",
)
async def campaign_recipients(
    request: Request,
    who: Who,
    campaign_id: CampaignPath,
    state: Annotated[RecipientState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> RecipientsPublic:
    await _summary(request, campaign_id)
    rows = await _campaigns(request).recipients(CampaignId(campaign_id), state)
    return RecipientsPublic(recipients=[RecipientPublic.of(r) for r in rows[:limit]])


@router.get(
    "/campaigns/{campaign_id}/results",
    responses=error_responses(),
    summary="Delivery, read and reply rates, opt-outs and cost",
)
async def campaign_results(request: Request, who: Who, campaign_id: CampaignPath) -> ResultsPublic:
    summary = await _summary(request, campaign_id)
    results = await _campaigns(request).results(CampaignId(campaign_id))
    return ResultsPublic(
        campaign=CampaignPublic.of(summary),
        sent=results.sent,
        delivered=results.delivered,
        read=results.read,
        replied=results.replied,
        opted_out=results.opted_out,
        failed=results.failed,
        delivery_rate=results.rate(results.delivered),
        read_rate=results.rate(results.read),
        reply_rate=results.rate(results.replied),
        cost_micros=results.cost_micros,
        currency=results.currency,
    )


CSV_COLUMNS = (
    "phone",
    "account_id",
    "state",
    "reason",
    "error_code",
    "sent_ms",
    "delivered_ms",
    "read_ms",
    "replied_ms",
)


@router.get(
    "/campaigns/{campaign_id}/results.csv",
    responses={**error_responses(), 200: {"content": {"text/csv": {}}}},
    response_class=Response,
    summary="Each recipient's outcome as CSV",
)
async def campaign_results_csv(request: Request, who: Who, campaign_id: CampaignPath) -> Response:
    await _summary(request, campaign_id)
    rows = await _campaigns(request).recipients(CampaignId(campaign_id))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [csv_cell(getattr(r, column)) for column in CSV_COLUMNS],
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )


def csv_cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula (a phone number
    in E.164 is no formula and stays as it is)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@") and not E164.match(text):
        return "'" + text
    return text


E164 = re.compile(r"^\+[0-9]{4,15}$")
