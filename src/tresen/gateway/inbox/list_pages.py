"""The subscriber lists' pages: every list with its counts, a list made or changed, its
subscribers, the link and QR code that bring a customer to its keyword, and a CSV import
with the report of every row (shown, and downloadable).

Every agent sees lists; owners and admins change them. Forms are plain POSTs with the
session's CSRF token, answered with a redirect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData
from starlette.requests import ClientDisconnect

from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.i18n import N_, Refused
from tresen.gateway.inbox.problems import refusal
from tresen.gateway.subscribers import Subscribers
from tresen.gateway.subscribers.importing import (
    KEPT_IMPORTS,
    MAX_BYTES,
    ImportRefused,
)
from tresen.gateway.subscribers.model import (
    ListInvalid,
    ListNotFound,
    ListSpec,
    Purpose,
    State,
    SubscriberList,
)

__all__ = ["router"]

router = APIRouter()

SHOWN_SUBSCRIBERS = 1_000
WORDS = (
    N_("subscribed"),
    N_("unsubscribed"),
    N_("keyword"),
    N_("link"),
    N_("import"),
    # The import report's CSV: its columns and outcomes.
    N_("row"),
    N_("phone"),
    N_("result"),
    N_("state"),
    N_("reason"),
    N_("accepted"),
    N_("refused"),
)


def _subscribers(request: Request) -> Subscribers | None:
    found: Subscribers | None = getattr(request.app.state, "subscribers", None)
    return found


def _local(request: Request, ms: int) -> str:
    """``ms`` as the business's local day and time."""
    gateway = getattr(request.app.state, "gateway", None)
    try:
        zone = ZoneInfo(str(getattr(gateway, "time_zone", None) or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%d.%m.%Y %H:%M")


async def _reader(request: Request) -> tuple[SignedIn, Subscribers] | Response:
    return await web.reading(
        request, _subscribers(request), N_("Subscriber lists are not available on this gateway.")
    )


async def _one(
    request: Request, who: SignedIn, service: Subscribers, list_id: int
) -> SubscriberList | Response:
    try:
        return await service.lists.get_list(list_id)
    except ListNotFound:
        _ = web.gettext_for(request, who)
        return web.page(
            request, "error.html", who=who, status_code=404, error=_("There is no such list.")
        )


def _spec(form: FormData) -> ListSpec:
    purpose = web.field(form, "purpose", 20)
    if purpose not in set(Purpose):
        raise Refused("choose what the list is for")
    return ListSpec(
        name=web.field(form, "name", 200),
        purpose=Purpose(purpose),
        keyword=web.field(form, "keyword", 60) or None,
        description=web.field(form, "description", 1000),
        confirmation=web.field(form, "confirmation", 2000),
    )


@router.get("/lists")
async def lists_page(request: Request) -> Response:
    got = await _reader(request)
    if isinstance(got, Response):
        return got
    who, service = got
    found = await service.lists.lists()
    return web.page(
        request, "lists.html", who=who, lists=found, states=list(State), edit=None, purposes=Purpose
    )


@router.post("/lists")
async def create_list(request: Request) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        service = _subscribers(request)
        if service is None:
            raise Refused("subscriber lists are not available on this gateway")
        try:
            made = await service.lists.create_list(_spec(form))
        except ListInvalid as exc:
            raise refusal(exc) from None
        return str(_("List {name} made.").format(name=made.name))

    return await web.act(request, "/inbox/lists", deed, manage=True)


@router.get("/lists/{list_id}")
async def list_page(request: Request, list_id: web.RowId) -> Response:
    got = await _reader(request)
    if isinstance(got, Response):
        return got
    who, service = got
    found = await _one(request, who, service, list_id)
    if isinstance(found, Response):
        return found
    people = await service.lists.subscribers(list_id)
    link = await service.lists.link(list_id) if found.keyword else None
    imports = await service.imports.recent(list_id)
    return web.page(
        request,
        "list.html",
        who=who,
        l=found,
        states=list(State),
        subscribers=people[:SHOWN_SUBSCRIBERS],
        more=max(0, len(people) - SHOWN_SUBSCRIBERS),
        link=link,
        purposes=Purpose,
        largest_mb=MAX_BYTES // 2**20,
        imports=[(i, _local(request, i.created_ms)) for i in imports],
        kept_imports=KEPT_IMPORTS,
    )


@router.post("/lists/{list_id}")
async def edit_list(request: Request, list_id: web.RowId) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        service = _subscribers(request)
        if service is None:
            raise Refused("subscriber lists are not available on this gateway")
        try:
            await service.lists.edit_list(list_id, _spec(form))
        except ListInvalid as exc:
            raise refusal(exc) from None
        except ListNotFound:
            raise Refused("there is no such list") from None
        return str(_("List saved."))

    return await web.act(request, f"/inbox/lists/{list_id}", deed, manage=True)


@router.post("/lists/{list_id}/delete")
async def delete_list(request: Request, list_id: web.RowId) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        service = _subscribers(request)
        if service is None:
            raise Refused("subscriber lists are not available on this gateway")
        try:
            await service.lists.delete_list(list_id)
        except ListNotFound:
            raise Refused("there is no such list") from None
        return str(_("List deleted."))

    return await web.act(request, "/inbox/lists", deed, manage=True)


@router.post("/lists/{list_id}/remove")
async def remove_subscriber(request: Request, list_id: web.RowId) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        service = _subscribers(request)
        if service is None:
            raise Refused("subscriber lists are not available on this gateway")
        account = web.field(form, "account", 40)
        if not await service.lists.remove_subscriber(list_id, account):
            raise Refused("that customer is not on the list")
        return str(_("Taken off the list."))

    return await web.act(request, f"/inbox/lists/{list_id}", deed, manage=True)


@router.get("/lists/{list_id}/qr.{kind}")
async def list_qr(request: Request, list_id: web.RowId, kind: str) -> Response:
    got = await _reader(request)
    if isinstance(got, Response):
        return got
    who, service = got
    found = await _one(request, who, service, list_id)
    if isinstance(found, Response):
        return found
    if kind not in ("svg", "png") or found.keyword is None:
        return Response(status_code=404, headers=web.SECURITY_HEADERS)
    image = await service.lists.qr_code(list_id, kind)
    headers = {**web.SECURITY_HEADERS, "Content-Security-Policy": "default-src 'none'; sandbox"}
    if request.query_params.get("download"):
        headers["Content-Disposition"] = f'attachment; filename="list-{list_id}.{kind}"'
    media = "image/svg+xml" if kind == "svg" else "image/png"
    return Response(image, media_type=media, headers=headers)


@router.post("/lists/{list_id}/import")
async def import_csv(request: Request, list_id: web.RowId) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    _ = web.gettext_for(request, who)
    back = f"/inbox/lists/{list_id}"
    service = _subscribers(request)
    if service is None:
        return web.redirect("/inbox", _("Subscriber lists are not available on this gateway."))
    form: FormData | None = None
    try:
        form = await web.read_upload(request, MAX_BYTES)
        if not web.csrf_ok(form.get("csrf"), who.csrf):
            return web.refused(request, who)
        upload = form.get("file")
        data = b"" if isinstance(upload, str) or upload is None else await upload.read()
        if not data:
            raise Refused("choose a CSV file to import")
        await service.lists.get_list(list_id)
        report = await service.imports.import_csv(
            list_id, data, by=who.agent.display_name or who.agent.username
        )
    except ImportRefused as exc:
        return web.redirect(back, refusal(exc).sentence(_))
    except ListNotFound:
        return web.redirect("/inbox/lists", _("There is no such list."))
    except ClientDisconnect:
        return Response(status_code=400, headers=web.SECURITY_HEADERS)
    except Refused as exc:
        return web.redirect(back, exc.sentence(_))
    finally:
        if form is not None:
            await form.close()
    return web.redirect(
        f"/inbox/lists/{list_id}/imports/{report.id}",
        _("Imported: {accepted} accepted, {refused} refused.").format(
            accepted=report.accepted, refused=report.refused
        ),
    )


@router.get("/lists/{list_id}/imports/{import_id}.csv")
async def import_report_csv(request: Request, list_id: web.RowId, import_id: web.RowId) -> Response:
    got = await _reader(request)
    if isinstance(got, Response):
        return got
    who, service = got
    report = await service.imports.report(list_id, import_id)
    if report is None:
        return Response(status_code=404, headers=web.SECURITY_HEADERS)
    _ = web.gettext_for(request, who)
    return Response(
        report.to_csv(lambda text: str(_(text))),
        media_type="text/csv; charset=utf-8",
        headers={
            **web.SECURITY_HEADERS,
            "Content-Disposition": (
                f'attachment; filename="import-list-{list_id}-{import_id}.csv"'
            ),
        },
    )


@router.get("/lists/{list_id}/imports/{import_id}")
async def import_report(request: Request, list_id: web.RowId, import_id: web.RowId) -> Response:
    got = await _reader(request)
    if isinstance(got, Response):
        return got
    who, service = got
    found = await _one(request, who, service, list_id)
    if isinstance(found, Response):
        return found
    _ = web.gettext_for(request, who)
    report = await service.imports.report(list_id, import_id)
    if report is None:
        return web.page(
            request,
            "error.html",
            who=who,
            status_code=404,
            error=_(
                "That import report is no longer kept (a list keeps its last {n}); import "
                "the file again to see one."
            ).format(n=KEPT_IMPORTS),
        )
    return web.page(
        request,
        "list_import.html",
        who=who,
        l=found,
        report=report,
        when=_local(request, report.created_ms),
        reasons=[r.why.said(_) for r in report.rows],
    )
