"""The campaigns' pages: every campaign with its progress, a new campaign of an approved
template (audience, values, schedule), its review with the cost and a test send before it
starts, and a campaign's live progress, recipients and results.

Every agent sees campaigns; owners and admins make and change them. Every form works
without JavaScript (a POST and a redirect); ``static/campaign.js`` only refreshes the
progress while a campaign sends, and ``static/campaign_form.js`` adds rows of attribute
conditions to the new-campaign form.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect

from tresen.gateway.campaigns import (
    AudienceSpec,
    CampaignDraft,
    CampaignId,
    CampaignProblem,
    Campaigns,
    CampaignState,
    CampaignSummary,
    Condition,
    CsvProblem,
    RecipientState,
    Schedule,
    recipients_from_csv,
)
from tresen.gateway.campaigns.cost import CostPreview
from tresen.gateway.campaigns.service import Results
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.api_campaigns import CSV_COLUMNS, HOUR, csv_cell
from tresen.gateway.inbox.composer import templates_of
from tresen.gateway.inbox.i18n import N_, Refused
from tresen.gateway.inbox.problems import refusal
from tresen.gateway.inbox.render import cloud_components, parameter_fields

__all__ = ["router"]

router = APIRouter()

MAX_UPLOAD = 2 * 1024 * 1024
"""A CSV of recipients in the new-campaign form (a larger audience is a list)."""
MAX_SPREAD_HOURS = 7 * 24
SHOWN_RECIPIENTS = 500
MAX_CONDITIONS = 10
"""Attribute conditions of the new-campaign form (the JSON API takes up to 20)."""
SHOWN_ATTRIBUTES = 100
ATTRIBUTE_MAX = 64
VALUE_MAX = 1024
VALUES_MAX = 100
OPS = ("equals", "in", "has")
WORDS = (
    N_("draft"),
    N_("scheduled"),
    N_("running"),
    N_("paused"),
    N_("waiting"),
    N_("done"),
    N_("cancelled"),
    N_("queued"),
    N_("sending"),
    N_("sent"),
    N_("delivered"),
    N_("read"),
    N_("failed"),
    N_("opted out"),
)


def _campaigns(request: Request) -> Campaigns | None:
    found: Campaigns | None = getattr(request.app.state, "campaigns", None)
    return found


def _zone(request: Request) -> str:
    gateway = getattr(request.app.state, "gateway", None)
    return str(getattr(gateway, "time_zone", None) or "UTC")


def _local(ms: int | None, zone: str) -> str:
    if ms is None:
        return ""
    try:
        tz = ZoneInfo(zone)
    except ZoneInfoNotFoundError:
        tz = ZoneInfo("UTC")
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%d.%m.%Y %H:%M")


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a results chart: ``part`` of ``whole`` (a percentage for the SVG)."""

    label: str
    part: int
    whole: int

    @property
    def percent(self) -> int:
        return round(100 * self.part / self.whole) if self.whole else 0


def _bars(results: Results, _: Any) -> list[Bar]:
    return [
        Bar(_("Delivered"), results.delivered, results.sent),
        Bar(_("Read"), results.read, results.sent),
        Bar(_("Replied"), results.replied, results.sent),
        Bar(_("Opted out"), results.opted_out, results.sent),
    ]


@dataclass(frozen=True, slots=True)
class ConditionRow:
    """A row of the new-campaign form's attribute conditions as it was filled in, with the
    condition it makes or what is wrong with it."""

    attribute: str = ""
    op: str = "equals"
    values: str = ""
    condition: Condition | None = None
    trouble: Refused | None = None

    @property
    def blank(self) -> bool:
        return not self.attribute and not self.values


def _condition(attribute: str, op: str, raw: str) -> Condition:
    if not attribute:
        raise Refused("name the attribute, like city")
    if len(attribute) > ATTRIBUTE_MAX:
        raise Refused("an attribute's name has at most {most} characters", most=ATTRIBUTE_MAX)
    if op not in OPS:
        raise Refused("choose equals, is one of or has a value")
    if op == "has":
        if raw:
            raise Refused("has a value compares with nothing: leave the values empty")
        return Condition(attribute, "has", ())
    if op == "equals":
        if not raw:
            raise Refused("give the value it must equal")
        if len(raw) > VALUE_MAX:
            raise Refused("a value has at most {most} characters", most=VALUE_MAX)
        return Condition(attribute, "equals", (raw,))
    values = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    if not values:
        raise Refused("give the values, separated by commas, like gold, silver")
    if len(values) > VALUES_MAX or any(len(v) > VALUE_MAX for v in values):
        raise Refused(
            "at most {most} values of at most {longest} characters each",
            most=VALUES_MAX,
            longest=VALUE_MAX,
        )
    return Condition(attribute, "in", values)


def _condition_rows(form: FormData | None) -> list[ConditionRow]:
    """The form's attribute conditions, row by row (rows left empty left out)."""
    if form is None:
        return []

    def column(name: str, most: int) -> list[str]:
        return [v.strip()[:most] for v in form.getlist(name) if isinstance(v, str)]

    attributes = column("cond_attribute", ATTRIBUTE_MAX + 1)
    ops = column("cond_op", 10)
    values = column("cond_values", VALUES_MAX * (VALUE_MAX + 2))
    rows: list[ConditionRow] = []
    for i, attribute in enumerate(attributes):
        op = ops[i] if i < len(ops) else "equals"
        raw = values[i] if i < len(values) else ""
        row = ConditionRow(attribute, op, raw)
        if row.blank:
            continue
        try:
            rows.append(ConditionRow(attribute, op, raw, condition=_condition(attribute, op, raw)))
        except Refused as exc:
            rows.append(ConditionRow(attribute, op, raw, trouble=exc))
    return rows


def _conditions(form: FormData) -> tuple[Condition, ...]:
    """The form's attribute conditions, or a refusal when one of them cannot be used (the
    form shows which, row by row)."""
    rows = _condition_rows(form)
    if len(rows) > MAX_CONDITIONS:
        raise Refused("at most {most} conditions", most=MAX_CONDITIONS)
    wrong = sum(1 for r in rows if r.trouble is not None)
    if wrong:
        raise Refused("check the conditions: {n} of them cannot be used as written", n=wrong)
    return tuple(r.condition for r in rows if r.condition is not None)


def _shown_rows(rows: list[ConditionRow]) -> list[ConditionRow]:
    """The rows the form shows: those filled in, and room for more (one blank row without
    JavaScript's button, which adds rows up to the most)."""
    return [*rows[:MAX_CONDITIONS], ConditionRow()][:MAX_CONDITIONS]


def condition_words(c: Condition, _: Any) -> str:
    """A condition as a person reads it, e.g. ``tier is one of gold, silver``."""
    if c.op == "has":
        return str(_("{attribute} has a value")).format(attribute=c.attribute)
    if c.op == "in":
        return str(_("{attribute} is one of {values}")).format(
            attribute=c.attribute, values=", ".join(c.values)
        )
    return str(_("{attribute} equals {value}")).format(
        attribute=c.attribute, value=c.values[0] if c.values else ""
    )


def _money(micros: int, currency: str | None) -> str:
    return f"{micros / 1_000_000:.2f} {currency or ''}".strip()


def _progress(c: CampaignSummary) -> tuple[int, int]:
    """How many recipients are settled (sent or beyond, failed, opted out) of all."""
    waiting = c.counts.get(str(RecipientState.QUEUED), 0) + c.counts.get(
        str(RecipientState.SENDING), 0
    )
    return c.total - waiting, c.total


async def _reader(request: Request) -> tuple[SignedIn, Campaigns] | Response:
    return await web.reading(
        request, _campaigns(request), N_("Campaigns are not available on this gateway.")
    )


async def _one(request: Request, who: SignedIn, service: Campaigns, campaign_id: int) -> Any:
    try:
        return await service.get(CampaignId(campaign_id))
    except CampaignProblem:
        _ = web.gettext_for(request, who)
        return web.page(
            request, "error.html", who=who, status_code=404, error=_("There is no such campaign.")
        )


@router.get("/campaigns")
async def campaigns_page(request: Request) -> Response:
    got = await _reader(request)
    if isinstance(got, Response):
        return got
    who, service = got
    found = sorted(await service.all(), key=lambda c: c.created_ms, reverse=True)
    zone = _zone(request)
    rows = [(c, *_progress(c), _local(c.created_ms, zone)) for c in found]
    return web.page(request, "campaigns.html", who=who, rows=rows, zone=zone)


# --- a new campaign --------------------------------------------------------------------------


def _template_id(raw: object) -> int | None:
    if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 1 <= value <= 2**63 - 1 else None


@router.get("/campaigns/new")
async def new_campaign(request: Request, t: str = "") -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _new_form(request, who, t)


async def _new_form(
    request: Request,
    who: SignedIn,
    t: str,
    given: FormData | None = None,
    trouble: str = "",
) -> Response:
    """The new-campaign form; after a refused POST again with what was ``given`` (all but
    the file, which a browser never fills in again) and the ``trouble`` with it."""
    _ = web.gettext_for(request, who)
    context: dict[str, Any] = {"templates": [], "chosen": None, "fields": [], "text": []}
    context["given"] = (
        {} if given is None else {k: v for k, v in given.items() if isinstance(v, str)}
    )
    context["given_lists"] = set() if given is None else {str(v) for v in given.getlist("list")}
    subscribers = getattr(request.app.state, "subscribers", None)
    context["lists"] = [] if subscribers is None else await subscribers.lists.lists()
    context["zone"] = _zone(request)
    context["conditions"] = _shown_rows(_condition_rows(given))
    context["condition_trouble"] = [
        "" if r.trouble is None else r.trouble.sentence(_) for r in context["conditions"]
    ]
    context["most_conditions"] = MAX_CONDITIONS
    context["attribute_names"] = (
        []
        if subscribers is None
        else await subscribers.lists.attribute_names(
            [x.id for x in context["lists"]], most=SHOWN_ATTRIBUTES
        )
    )
    try:
        shelf = templates_of(request)
        context["templates"] = await shelf.approved()
        chosen_id = _template_id(t)
        if t and chosen_id is None:
            raise Refused("there is no such approved template")
        if chosen_id is not None:
            chosen, signed = await shelf.get(chosen_id)
            context.update(
                chosen=chosen,
                fields=parameter_fields(signed),
                text=[
                    str(getattr(c, "text", ""))
                    for c in signed.components
                    if getattr(c, "text", None)
                ],
            )
    except Refused as exc:
        trouble = trouble or exc.sentence(_)
    return web.page(
        request,
        "campaign_new.html",
        who=who,
        status_code=400 if trouble else 200,
        trouble=trouble,
        **context,
    )


async def _file_text(form: FormData, name: str) -> str:
    upload = form.get(name)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return ""
    data = await upload.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Refused("the CSV is not UTF-8 text") from None


def _schedule(form: FormData, zone: str) -> Schedule:
    when = web.field(form, "when", 10)
    start_ms: int | None = None
    spread_s = 0
    if when == "at":
        raw = web.field(form, "at", 20)
        try:
            local = datetime.strptime(raw, "%Y-%m-%dT%H:%M").replace(tzinfo=ZoneInfo(zone))
        except (ValueError, ZoneInfoNotFoundError):
            raise Refused("choose the day and time to send at") from None
        start_ms = int(local.timestamp() * 1000)
    elif when == "spread":
        hours = web.field(form, "hours", 5)
        if not hours.isdigit() or not 1 <= int(hours) <= MAX_SPREAD_HOURS:
            raise Refused("spread over 1 to {most} hours", most=MAX_SPREAD_HOURS)
        spread_s = int(hours) * 3600
    quiet: tuple[str, str] | tuple[()] | None
    if web.field(form, "quiet", 10) == "none":
        quiet = ()
    else:
        begin, end = web.field(form, "quiet_from", 5), web.field(form, "quiet_until", 5)
        if not re.fullmatch(HOUR, begin) or not re.fullmatch(HOUR, end):
            raise Refused("quiet hours are two times like 21:00 and 08:00")
        quiet = (begin, end)
    return Schedule(start_ms=start_ms, spread_s=spread_s, quiet_hours=quiet, time_zone=zone)


@router.post("/campaigns/new")
async def create_campaign(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    _ = web.gettext_for(request, who)
    service = _campaigns(request)
    back = "/inbox/campaigns/new"
    if service is None:
        return web.redirect("/inbox/campaigns", _("Campaigns are not available on this gateway."))
    form: FormData | None = None
    chosen_id: int | None = None
    try:
        form = await web.read_upload(request, MAX_UPLOAD)
        if not web.csrf_ok(form.get("csrf"), who.csrf):
            return web.refused(request, who)
        chosen_id = _template_id(form.get("t"))
        if chosen_id is None:
            raise Refused("there is no such approved template")
        back += f"?t={chosen_id}"
        chosen, signed = await templates_of(request).get(chosen_id)
        fields = parameter_fields(signed)
        values = {f.form_name: web.field(form, f.form_name, 1024) for f in fields}
        if any(not v.strip() for v in values.values()):
            raise Refused("give every placeholder a value or an {{attribute}}")
        name = web.field(form, "name", 100).strip()
        if not name:
            raise Refused("give the campaign a name")
        lists = tuple(
            int(v)
            for v in form.getlist("list")
            if isinstance(v, str) and v.isdigit() and len(v) < 10
        )
        labels = tuple(
            word.strip().lower()
            for word in web.field(form, "labels", 400).split(",")
            if word.strip()
        )
        text = await _file_text(form, "csv")
        try:
            recipients = tuple(recipients_from_csv(text)) if text.strip() else ()
        except CsvProblem as exc:
            raise Refused("the CSV: {problem}", problem=exc.reason.said(_)) from None
        if not (lists or labels or recipients):
            raise Refused("choose who gets it: a list, a label or a CSV of recipients")
        conditions = _conditions(form)
        draft = CampaignDraft(
            name=name,
            template_name=chosen.name,
            language=chosen.language,
            audience=AudienceSpec(
                recipients=recipients, lists=lists, labels=labels, conditions=conditions
            ),
            components=cloud_components(signed, fields, values),
            schedule=_schedule(form, _zone(request)),
        )
        made = await service.create(draft)
    except CampaignProblem as exc:
        trouble = refusal(exc).sentence(_)
        return await _new_form(request, who, str(chosen_id or ""), form, trouble)
    except ClientDisconnect:
        return Response(status_code=400, headers=web.SECURITY_HEADERS)
    except Refused as exc:
        if form is None or chosen_id is None:
            return web.redirect(back, exc.sentence(_))
        return await _new_form(request, who, str(chosen_id), form, exc.sentence(_))
    finally:
        if form is not None:
            await form.close()
    return web.redirect(
        f"/inbox/campaigns/{made}",
        _("Campaign {name} made: check it, then start it.").format(name=name),
    )


# --- one campaign ----------------------------------------------------------------------------


async def _cost(service: Campaigns, campaign_id: CampaignId) -> CostPreview | None:
    try:
        return await service.preview_cost(campaign_id)
    except CampaignProblem:
        return None


@dataclass(frozen=True, slots=True)
class AudienceShown:
    """Who a draft goes to, as its review shows it."""

    lists: list[str]
    labels: tuple[str, ...]
    from_csv: int
    conditions: list[str]
    count: int | None
    """How many recipients the audience has now (``None`` when it cannot be told)."""


async def _audience(
    request: Request, service: Campaigns, c: CampaignSummary, _: Any
) -> AudienceShown:
    spec = c.audience
    subscribers = getattr(request.app.state, "subscribers", None)
    names = {} if subscribers is None else {x.id: x.name for x in await subscribers.lists.lists()}
    try:
        count: int | None = len(await service.audience(c.id))
    except (CampaignProblem, LookupError):
        count = None
    return AudienceShown(
        lists=[names.get(i, f"#{i}") for i in spec.lists],
        labels=spec.labels,
        from_csv=len(spec.recipients),
        conditions=[condition_words(x, _) for x in spec.conditions],
        count=count,
    )


@router.get("/campaigns/{campaign_id}")
async def campaign_page(request: Request, campaign_id: web.RowId, state: str = "") -> Response:
    got = await _reader(request)
    if isinstance(got, Response):
        return got
    who, service = got
    _ = web.gettext_for(request, who)
    c = await _one(request, who, service, campaign_id)
    if isinstance(c, Response):
        return c
    shown_state = RecipientState(state) if state in set(RecipientState) else None
    zone = _zone(request)
    done, total = _progress(c)
    context: dict[str, Any] = {
        "c": c,
        "done": done,
        "total": total,
        "zone": zone,
        "states": list(RecipientState),
        "shown_state": shown_state,
        "cost": None,
        "results": None,
        "bars": [],
        "recipients": [],
        "live": c.state not in (CampaignState.DRAFT, CampaignState.DONE, CampaignState.CANCELLED),
        "local": lambda ms: _local(ms, zone),
    }
    if c.state is CampaignState.DRAFT:
        context["cost"] = await _cost(service, c.id)
        context["audience"] = await _audience(request, service, c, _)
    else:
        results = await service.results(c.id)
        context.update(
            results=results,
            bars=_bars(results, _),
            spent=_money(results.cost_micros, results.currency),
        )
        rows = await service.recipients(c.id, shown_state)
        context["recipients"] = rows[:SHOWN_RECIPIENTS]
        context["more"] = max(0, len(rows) - SHOWN_RECIPIENTS)
    cost = context["cost"]
    if cost is not None:
        context["cost_total"] = _money(cost.total_micros, cost.currency)
        context["cost_by_country"] = [
            (country, count, _money(micros, cost.currency))
            for country, (count, micros) in sorted(cost.by_country.items())
        ]
    return web.page(request, "campaign.html", who=who, **context)


@router.post("/campaigns/{campaign_id}/{action}")
async def change_campaign(request: Request, campaign_id: web.RowId, action: str) -> Response:
    back = f"/inbox/campaigns/{campaign_id}"

    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        service = _campaigns(request)
        if service is None:
            raise Refused("campaigns are not available on this gateway")
        cid = CampaignId(campaign_id)
        try:
            if action == "test":
                phone = web.field(form, "phone", 32).strip()
                if len(phone) < 4:
                    raise Refused("give the phone number to send the test to")
                try:
                    await service.test_send(cid, phone)
                except GraphError as exc:
                    raise Refused(
                        "the test was not sent: ({number}) {reason}",
                        number=exc.code,
                        reason=exc.details,
                    ) from None
                return str(_("Test sent to {phone}.").format(phone=phone))
            acts: Mapping[str, Any] = {
                "start": (service.start, N_("Campaign started.")),
                "pause": (service.pause, N_("Campaign paused.")),
                "resume": (service.resume, N_("Campaign resumed.")),
                "cancel": (service.cancel, N_("Campaign cancelled.")),
            }
            if action not in acts:
                raise Refused("there is no such campaign action")
            act, said = acts[action]
            await act(cid)
            return str(_(said))
        except CampaignProblem as exc:
            raise refusal(exc) from None

    return await web.act(request, back, deed, manage=True)


@router.get("/campaigns/{campaign_id}/results.csv")
async def campaign_csv(request: Request, campaign_id: web.RowId) -> Response:
    got = await _reader(request)
    if isinstance(got, Response):
        return got
    who, service = got
    c = await _one(request, who, service, campaign_id)
    if isinstance(c, Response):
        return c
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in await service.recipients(c.id):
        writer.writerow([csv_cell(getattr(r, column)) for column in CSV_COLUMNS])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            **web.SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"',
        },
    )
