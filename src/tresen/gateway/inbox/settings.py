"""The business's settings (owners and admins): its profile, opening hours, the verification
request and the labels. API tokens, webhooks and templates are in ``settings_api``.

A business that has just registered its gateway sets itself up here: saving the profile with a
display name makes the number a business that customers find in the directory. The profile is
saved through the gateway's one profile path (:meth:`Gateway.save_business_profile`), which
the Cloud API's ``whatsapp_business_profile`` route takes too.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from zoneinfo import available_timezones

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from tresen.client.api import RelayError
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.i18n import N_, Refused
from tresen.gateway.service import Gateway
from tresen.wire.business import (
    ABOUT_MAX,
    ADDRESS_MAX,
    DESCRIPTION_MAX,
    DISPLAY_NAME_MAX,
    MAX_CLOSED_DATES,
    MAX_INTERVALS_PER_DAY,
    MAX_WEBSITES,
    WEEKDAYS,
    BusinessCategory,
    InvalidProfile,
    Problem,
    ProfileEdit,
)

__all__ = ["field", "gateway_of", "relay_sentence", "router"]

log = get_logger("tresen.gateway.inbox")

router = APIRouter()

DAY_NAMES = (
    N_("Monday"),
    N_("Tuesday"),
    N_("Wednesday"),
    N_("Thursday"),
    N_("Friday"),
    N_("Saturday"),
    N_("Sunday"),
)
# The categories as the WhatsApp Business app names them.
CATEGORY_NAMES = {
    BusinessCategory.AUTO: N_("Automotive"),
    BusinessCategory.BEAUTY: N_("Beauty, spa and salon"),
    BusinessCategory.APPAREL: N_("Clothing and apparel"),
    BusinessCategory.EDU: N_("Education"),
    BusinessCategory.ENTERTAIN: N_("Entertainment"),
    BusinessCategory.EVENT_PLAN: N_("Event planning and service"),
    BusinessCategory.FINANCE: N_("Finance and banking"),
    BusinessCategory.GROCERY: N_("Food and grocery"),
    BusinessCategory.GOVT: N_("Public service"),
    BusinessCategory.HOTEL: N_("Hotel and lodging"),
    BusinessCategory.HEALTH: N_("Medical and health"),
    BusinessCategory.NONPROFIT: N_("Non-profit organisation"),
    BusinessCategory.PROF_SERVICES: N_("Professional services"),
    BusinessCategory.RETAIL: N_("Shopping and retail"),
    BusinessCategory.TRAVEL: N_("Travel and transportation"),
    BusinessCategory.RESTAURANT: N_("Restaurant"),
    BusinessCategory.OTHER: N_("Other"),
}
# Where the verification request stands, as the settings show it.
VERIFICATION_STATES = (N_("not requested"), N_("requested"), N_("verified"), N_("refused"))
VERIFICATION_NOTE_MAX = 512
FIELD_MAX = 4096
_TIME = re.compile(r"^([0-9]{1,2})(?::?([0-9]{2}))?$")
PROFILE_FIELDS = (
    "display_name",
    "about",
    "description",
    "address",
    "email",
    "website1",
    "website2",
    "category",
)
HOURS_FIELDS = ("timezone", "closed_dates", *(f"hours_{day}" for day in WEEKDAYS))


def gateway_of(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found


def field(form: FormData, name: str) -> str:
    """A text field of ``form`` (empty when missing), cut to the longest any setting takes."""
    value = form.get(name)
    return value[:FIELD_MAX] if isinstance(value, str) else ""


@functools.cache
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


# --- sentences for what the profile rules and the relay refuse ------------------------------


def problem_sentence(field_path: str, _: Any) -> str:
    """The sentence for a refused profile field (``hours.mon.0``), in the agent's language."""
    top, _dot, rest = field_path.partition(".")
    if top == "display_name":
        return str(
            _(
                "Enter the name customers should find the business by: 1 to {n} characters, "
                "without control characters."
            )
        ).format(n=DISPLAY_NAME_MAX)
    if top == "about":
        return str(_("“About” is one line of at most {n} characters.")).format(n=ABOUT_MAX)
    if top == "description":
        return str(_("The description has at most {n} characters.")).format(n=DESCRIPTION_MAX)
    if top == "address":
        return str(_("The address has at most {n} characters.")).format(n=ADDRESS_MAX)
    if top == "email":
        return str(_("Enter an e-mail address such as service@example.com, or leave it empty."))
    if top == "websites":
        return str(
            _("Enter each website as a full address such as https://example.com (at most {n}).")
        ).format(n=MAX_WEBSITES)
    if top == "category":
        return str(_("Choose a category from the list."))
    if top == "timezone":
        return str(_("Enter the time zone by its name, such as Europe/Berlin or America/New_York."))
    if top == "hours":
        day = rest.split(".")[0]
        name = _(DAY_NAMES[WEEKDAYS.index(day)]) if day in WEEKDAYS else day
        return str(
            _(
                "Opening hours on {day}: write them like 09:00-12:30, 14:00-18:00 (at most {n} "
                "a day, in order, each ending after it starts)."
            )
        ).format(day=name, n=MAX_INTERVALS_PER_DAY)
    if top == "closed_dates":
        return str(_("Write the closed dates one a line as YYYY-MM-DD (at most {n}).")).format(
            n=MAX_CLOSED_DATES
        )
    return str(_("The field {field} is not valid.")).format(field=field_path[:40])


def relay_sentence(exc: Exception, _: Any) -> str:
    """What to tell the team when the relay refused a change or could not be asked."""
    if not isinstance(exc, RelayError):
        log.warning("relay not reached from the settings", error=type(exc).__name__)
        return str(_("The relay cannot be reached now; nothing was changed. Try again."))
    if exc.code == ErrorCode.NAME_CONFUSABLE:
        return str(_("The name can be mistaken for a verified business; choose another one."))
    if exc.code == ErrorCode.VERIFICATION_PENDING:
        return str(_("A verification request is already waiting for the operator."))
    if exc.code == ErrorCode.ALREADY_VERIFIED:
        return str(_("The business is verified already."))
    if exc.code == ErrorCode.BUSINESS_SUSPENDED:
        return str(_("The operator has suspended this business; please contact the operator."))
    if exc.code == ErrorCode.NOT_A_BUSINESS:
        return str(_("Save the business profile first."))
    # str() carries the relay's reasons field by field, as the relay wrote them.
    reason = str(exc).partition(": ")[2] or exc.message
    return str(_("The relay refused the change: {reason}")).format(reason=reason[:300])


def _problems(exc: Exception, _: Any) -> tuple[list[str], set[str]]:
    """The sentences for a refused save, and the form's fields they are about."""
    if isinstance(exc, InvalidProfile):
        paths = [p.field for p in exc.problems]
    elif isinstance(exc, RelayError) and isinstance(exc.details.get("problems"), list):
        paths = [str(p.get("field", "")) for p in exc.details["problems"] if isinstance(p, dict)]
    else:
        return [relay_sentence(exc, _)], set()
    sentences = list(dict.fromkeys(problem_sentence(p, _) for p in paths))
    return sentences, {_form_field(p) for p in paths}


def _form_field(path: str) -> str:
    """The form field a profile field is typed into (``websites.1`` → ``website2``)."""
    top, _dot, rest = path.partition(".")
    if top == "websites":
        index = rest.split(".")[0]
        return f"website{int(index) + 1}" if index.isdigit() else "website1"
    if top == "hours":
        return "hours_" + rest.split(".")[0]
    return top


# --- the profile and the verification request ------------------------------------------------


def _verification(profile: dict[str, Any] | None) -> dict[str, Any]:
    """Where the green tick stands: not requested, requested, verified or refused."""
    if profile is None:
        return {"state": "not requested", "may_request": False, "reason": None}
    kind = str(profile.get("verification", "unverified"))
    state = {
        "verified": "verified",
        "pending": "requested",
        "rejected": "refused",
        "revoked": "refused",
    }.get(kind, "not requested")
    decision = profile.get("last_decision") or {}
    pending = profile.get("pending_request") or {}
    return {
        "state": state,
        "may_request": state in ("not requested", "refused"),
        "reason": decision.get("reason") if state == "refused" else None,
        "requested_ms": pending.get("requested_ms"),
        "suspended": bool(profile.get("suspended")),
    }


async def _profile(request: Request, _: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The business's profile (``None`` before it has one) and, when the relay could not be
    asked, the sentence saying so."""
    try:
        return await gateway_of(request).business_profile(), None
    except Exception as exc:
        return None, relay_sentence(exc, _)


def _profile_values(profile: dict[str, Any] | None) -> dict[str, str]:
    p = profile or {}
    websites = [*(p.get("websites") or []), "", ""]
    return {
        "display_name": str(p.get("display_name", "")),
        "about": str(p.get("about", "")),
        "description": str(p.get("description", "")),
        "address": str(p.get("address", "")),
        "email": str(p.get("email", "")),
        "website1": str(websites[0]),
        "website2": str(websites[1]),
        "category": str(p.get("category", "OTHER")),
    }


async def _profile_page(
    request: Request,
    who: SignedIn,
    *,
    typed: dict[str, str] | None = None,
    problems: list[str] | None = None,
    invalid: set[str] | None = None,
) -> HTMLResponse:
    profile, trouble = await _profile(request, web.gettext_for(request, who))
    return web.page(
        request,
        "settings.html",
        who=who,
        status_code=400 if problems else 200,
        section="profile",
        profile=profile,
        values=typed or _profile_values(profile),
        categories=[(c.value, CATEGORY_NAMES[c]) for c in BusinessCategory],
        verification=_verification(profile),
        problems=problems or ([trouble] if trouble else []),
        invalid=invalid or set(),
        note_max=VERIFICATION_NOTE_MAX,
        limits={
            "display_name": DISPLAY_NAME_MAX,
            "about": ABOUT_MAX,
            "description": DESCRIPTION_MAX,
            "address": ADDRESS_MAX,
        },
        picture=bool(profile and profile.get("has_picture")),
    )


@router.get("/settings")
async def settings_home(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _profile_page(request, who)


@router.post("/settings/profile")
async def save_profile(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    typed = {name: field(form, name) for name in PROFILE_FIELDS}
    edit = ProfileEdit(
        display_name=typed["display_name"],
        about=typed["about"],
        description=typed["description"],
        address=typed["address"],
        email=typed["email"],
        websites=[w.strip() for w in (typed["website1"], typed["website2"]) if w.strip()],
        category=typed["category"],
    )
    try:
        await gateway_of(request).save_business_profile(edit)
    except Exception as exc:
        problems, invalid = _problems(exc, _)
        return await _profile_page(request, who, typed=typed, problems=problems, invalid=invalid)
    return web.redirect("/inbox/settings", _("The business profile is saved."))


PICTURE_MAX_BYTES = 512 * 1024
PICTURE_TYPES = {"image/jpeg", "image/png"}


@router.post("/settings/picture")
async def set_picture(request: Request) -> Response:
    """The profile picture, from a file chosen on the page (multipart, one file)."""
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    _ = web.gettext_for(request, who)
    if int(request.headers.get("content-length") or 0) > PICTURE_MAX_BYTES + 16 * 1024:
        raise web.FormTooLarge
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=PICTURE_MAX_BYTES)
    except HTTPException:  # a malformed multipart body, or a part too large
        return await _profile_page(
            request, who, problems=[_("Choose a JPEG or PNG picture of at most 512 KiB.")]
        )
    try:
        if not web.csrf_ok(form.get("csrf"), who.csrf):
            return web.refused(request, who)
        if form.get("remove"):
            await gateway_of(request).remove_profile_picture()
            return web.redirect("/inbox/settings", _("The profile picture is removed."))
        upload = form.get("picture")
        data = await upload.read(PICTURE_MAX_BYTES + 1) if isinstance(upload, UploadFile) else b""
        kind = upload.content_type if isinstance(upload, UploadFile) else None
        if not data or len(data) > PICTURE_MAX_BYTES or kind not in PICTURE_TYPES:
            return await _profile_page(
                request, who, problems=[_("Choose a JPEG or PNG picture of at most 512 KiB.")]
            )
        try:
            await gateway_of(request).set_profile_picture(data, str(kind))
        except Exception as exc:
            return await _profile_page(request, who, problems=[relay_sentence(exc, _)])
    finally:
        await form.close()
    return web.redirect("/inbox/settings", _("The profile picture is saved."))


@router.post("/settings/verification")
async def request_verification(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    note = " ".join(field(form, "note").split())[:VERIFICATION_NOTE_MAX]
    try:
        await gateway_of(request).request_verification(note)
    except Exception as exc:
        return await _profile_page(request, who, problems=[relay_sentence(exc, _)])
    return web.redirect(
        "/inbox/settings", _("Verification is requested; the operator will look at it.")
    )


# --- opening hours ---------------------------------------------------------------------------


def _hhmm(text: str) -> str | None:
    """``9``, ``9:30``, ``0930`` → ``09:00``, ``09:30``; the hour's range is the rules' job."""
    found = _TIME.match(text.strip())
    if found is None:
        return None
    return f"{int(found.group(1)):02d}:{int(found.group(2) or 0):02d}"


def _day_spans(text: str) -> list[list[str]] | None:
    """``09:00-12:30, 14:00-18:00`` as ``[["09:00", "12:30"], ["14:00", "18:00"]]``;
    ``None`` when it is not written that way. Empty: closed."""
    spans: list[list[str]] = []
    for part in re.split(r"[,;]", text):
        if not part.strip():
            continue
        bounds = re.split("[-\u2013\u2014]", part)  # a hyphen, or an en or em dash
        times = [_hhmm(b) for b in bounds]
        if len(times) != 2 or times[0] is None or times[1] is None:
            return None
        spans.append([times[0], times[1]])
    return spans


def _hours_values(profile: dict[str, Any] | None) -> dict[str, str]:
    p = profile or {}
    hours = p.get("hours") or {}
    values = {
        "timezone": str(p.get("timezone") or "UTC"),
        "closed_dates": "\n".join(str(d) for d in p.get("closed_dates") or []),
    }
    for day in WEEKDAYS:
        values[f"hours_{day}"] = ", ".join(f"{a}-{b}" for a, b in hours.get(day, []))
    return values


async def _hours_page(
    request: Request,
    who: SignedIn,
    *,
    typed: dict[str, str] | None = None,
    problems: list[str] | None = None,
    invalid: set[str] | None = None,
) -> HTMLResponse:
    profile, trouble = await _profile(request, web.gettext_for(request, who))
    return web.page(
        request,
        "settings_hours.html",
        who=who,
        status_code=400 if problems else 200,
        section="hours",
        profile=profile,
        values=typed or _hours_values(profile),
        days=list(zip(WEEKDAYS, DAY_NAMES, strict=True)),
        zones=time_zones(),
        problems=problems or ([trouble] if trouble else []),
        invalid=invalid or set(),
    )


@router.get("/settings/hours")
async def hours_page(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _hours_page(request, who)


@router.post("/settings/hours")
async def save_hours(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    typed = {name: field(form, name) for name in HOURS_FIELDS}
    unreadable: list[Problem] = []
    hours: dict[str, list[list[str]]] = {}
    for day in WEEKDAYS:
        spans = _day_spans(typed[f"hours_{day}"])
        if spans is None:
            unreadable.append(Problem(f"hours.{day}", "unreadable"))
        elif spans:
            hours[day] = spans
    edit = ProfileEdit(
        timezone=typed["timezone"].strip(),
        hours=hours,
        closed_dates=typed["closed_dates"].replace(",", " ").split(),
    )
    try:
        if await gateway_of(request).business_profile() is None:
            # Hours alone cannot make a business: the relay needs its name first.
            return await _hours_page(
                request,
                who,
                typed=typed,
                problems=[_("Save the business profile first; then its opening hours.")],
            )
        if unreadable:
            try:
                edit.clean()
            except InvalidProfile as exc:
                raise InvalidProfile([*unreadable, *exc.problems]) from None
            raise InvalidProfile(unreadable)
        await gateway_of(request).save_business_profile(edit)
    except Exception as exc:
        problems, invalid = _problems(exc, _)
        return await _hours_page(request, who, typed=typed, problems=problems, invalid=invalid)
    return web.redirect("/inbox/settings/hours", _("The opening hours are saved."))


# --- labels ----------------------------------------------------------------------------------


async def _labels_page(
    request: Request, who: SignedIn, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return web.page(
        request,
        "settings_labels.html",
        who=who,
        status_code=status_code,
        section="labels",
        labels=await web.conversations_of(request).labels.counts(),
        error=error,
    )


@router.get("/settings/labels")
async def labels_page(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _labels_page(request, who)


@router.post("/settings/labels/rename")
async def rename_label(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    try:
        renamed = await web.conversations_of(request).labels.rename(
            field(form, "label"), field(form, "new_name"), agent_id=who.agent.id
        )
    except Refused as exc:
        return await _labels_page(request, who, error=exc.sentence(_), status_code=400)
    return web.redirect(
        "/inbox/settings/labels", _("The label is now called {name}.").format(name=renamed)
    )


@router.post("/settings/labels/remove")
async def remove_label(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    try:
        await web.conversations_of(request).labels.remove(
            field(form, "label"), agent_id=who.agent.id
        )
    except Refused as exc:
        return await _labels_page(request, who, error=exc.sentence(_), status_code=400)
    return web.redirect("/inbox/settings/labels", _("The label is removed."))
