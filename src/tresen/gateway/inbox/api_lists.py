"""Subscriber lists in the inbox's JSON API (``/inbox/api/v1/lists``): newsletters and
notification lists, their subscribers, a CSV import with a report of every row, and the link
and QR code that bring a customer to the list's keyword. Owners and admins change lists;
every agent may read them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tresen.gateway.inbox.api import PREFIX, ApiError, ApiRoute, Caller, Who
from tresen.gateway.inbox.api_models import error_responses
from tresen.gateway.inbox.i18n import N_
from tresen.gateway.subscribers import Subscribers
from tresen.gateway.subscribers.importing import (
    KEPT_IMPORTS,
    KEPT_ROWS,
    MAX_BYTES,
    ImportRefused,
    ImportReport,
)
from tresen.gateway.subscribers.model import (
    ListInvalid,
    ListNotFound,
    ListSpec,
    Purpose,
    State,
    Subscriber,
    SubscriberList,
)

__all__ = ["imports", "router"]

router = APIRouter(prefix=PREFIX, route_class=ApiRoute, tags=["lists"])

ListPath = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
ImportPath = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
AccountPath = Annotated[str, PathParam(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


class ImportRoute(ApiRoute):
    """The CSV import's route: a file of up to ``MAX_BYTES``, not a JSON body."""

    max_body = MAX_BYTES


imports = APIRouter(prefix=PREFIX, route_class=ImportRoute, tags=["lists"])


class ListIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    purpose: Purpose = Field(
        description="marketing (only the customer's own opt-in) or utility (notifications)"
    )
    keyword: str | None = Field(
        default=None, max_length=30, description="START <KEYWORD> subscribes, e.g. NEWS"
    )
    description: str = Field(default="", max_length=500)
    confirmation: str = Field(
        default="", max_length=1024, description="Your words asking a customer to confirm"
    )


class ListPublic(BaseModel):
    id: int
    name: str
    purpose: Purpose
    keyword: str | None
    description: str
    confirmation: str
    created_ms: int
    counts: dict[str, int] = Field(description="Subscribers by state")

    @classmethod
    def of(cls, found: SubscriberList) -> ListPublic:
        return cls(
            id=found.id,
            name=found.name,
            purpose=found.purpose,
            keyword=found.keyword,
            description=found.description,
            confirmation=found.confirmation,
            created_ms=found.created_ms,
            counts={str(state): found.counts.get(state, 0) for state in State},
        )


class ListsPublic(BaseModel):
    lists: list[ListPublic]


class SubscriberPublic(BaseModel):
    account_id: str
    phone: str
    state: State
    source: str
    attributes: dict[str, str]
    evidence: str | None
    reason: str | None
    created_ms: int
    updated_ms: int

    @classmethod
    def of(cls, s: Subscriber) -> SubscriberPublic:
        return cls(
            account_id=s.account_id,
            phone=s.phone,
            state=s.state,
            source=str(s.source),
            attributes=s.attributes,
            evidence=s.evidence,
            reason=s.reason,
            created_ms=s.created_ms,
            updated_ms=s.updated_ms,
        )


class SubscribersPublic(BaseModel):
    subscribers: list[SubscriberPublic]


class ImportRowPublic(BaseModel):
    row: int = Field(description="The row's line in the file (the header is 1)")
    phone: str
    accepted: bool
    state: State | None
    reason: str
    code: str = Field(description="What became of the row, as a stable code (e.g. not_a_phone)")


class ImportSummaryPublic(BaseModel):
    id: int = Field(description="The import, for GET /lists/{list_id}/imports/{import_id}")
    by: str = Field(description="Who imported the file")
    created_ms: int
    accepted: int
    refused: int
    counts: dict[str, int]

    @classmethod
    def of(cls, report: ImportReport) -> ImportSummaryPublic:
        return cls(
            id=report.id or 0,
            by=report.by,
            created_ms=report.created_ms,
            accepted=report.accepted,
            refused=report.refused,
            counts=report.counts(),
        )


class ImportsPublic(BaseModel):
    imports: list[ImportSummaryPublic] = Field(description="Newest first")


class ImportPublic(BaseModel):
    accepted: int
    refused: int
    counts: dict[str, int]
    rows: list[ImportRowPublic]
    id: int = Field(description="The import, for GET /lists/{list_id}/imports/{import_id}")
    by: str = Field(description="Who imported the file")
    created_ms: int
    complete: bool = Field(
        description=f"Whether rows holds every row; a kept report holds at most {KEPT_ROWS}, "
        "the refused first"
    )

    @classmethod
    def of(cls, report: ImportReport) -> ImportPublic:
        return cls(
            accepted=report.accepted,
            refused=report.refused,
            counts=report.counts(),
            rows=[
                ImportRowPublic(
                    row=r.row,
                    phone=r.phone,
                    accepted=r.accepted,
                    state=r.state,
                    reason=r.reason,
                    code=r.why.code,
                )
                for r in report.rows
            ],
            id=report.id or 0,
            by=report.by,
            created_ms=report.created_ms,
            complete=report.complete,
        )


class LinkPublic(BaseModel):
    link: str = Field(description="Opens the chat with START <KEYWORD> ready to send")


def _subscribers(request: Request) -> Subscribers:
    found: Subscribers | None = getattr(request.app.state, "subscribers", None)
    if found is None:
        raise ApiError(404, "not_found", N_("subscriber lists are not available here"))
    return found


def _managing(who: Caller) -> None:
    if not who.agent.role.manages:
        raise ApiError(403, "forbidden", N_("only owners and admins change subscriber lists"))


def _spec(body: ListIn) -> ListSpec:
    return ListSpec(
        name=body.name,
        purpose=body.purpose,
        keyword=body.keyword,
        description=body.description,
        confirmation=body.confirmation,
    )


async def _list(request: Request, list_id: int) -> SubscriberList:
    try:
        return await _subscribers(request).lists.get_list(list_id)
    except ListNotFound:
        raise ApiError(404, "not_found", N_("there is no such list")) from None


@router.get("/lists", responses=error_responses(), summary="Every subscriber list, with counts")
async def lists(request: Request, who: Who) -> ListsPublic:
    return ListsPublic(lists=[ListPublic.of(x) for x in await _subscribers(request).lists.lists()])


@router.post(
    "/lists",
    status_code=201,
    responses=error_responses(body=True),
    summary="Make a subscriber list (owners and admins)",
)
async def create_list(request: Request, who: Who, body: ListIn) -> ListPublic:
    _managing(who)
    try:
        made = await _subscribers(request).lists.create_list(_spec(body))
    except ListInvalid as exc:
        raise ApiError(400, "invalid_input", N_("{reason}"), reason=str(exc)) from None
    return ListPublic.of(await _list(request, made.id))


@router.get("/lists/{list_id}", responses=error_responses(), summary="One list, with counts")
async def one_list(request: Request, who: Who, list_id: ListPath) -> ListPublic:
    return ListPublic.of(await _list(request, list_id))


@router.put(
    "/lists/{list_id}",
    responses=error_responses(body=True),
    summary="Change a list (owners and admins)",
)
async def edit_list(request: Request, who: Who, list_id: ListPath, body: ListIn) -> ListPublic:
    _managing(who)
    await _list(request, list_id)
    try:
        await _subscribers(request).lists.edit_list(list_id, _spec(body))
    except ListInvalid as exc:
        raise ApiError(400, "invalid_input", N_("{reason}"), reason=str(exc)) from None
    return ListPublic.of(await _list(request, list_id))


@router.delete(
    "/lists/{list_id}",
    responses=error_responses(),
    summary="Delete a list and its subscribers (owners and admins)",
)
async def delete_list(request: Request, who: Who, list_id: ListPath) -> ListsPublic:
    _managing(who)
    await _list(request, list_id)
    service = _subscribers(request).lists
    await service.delete_list(list_id)
    return ListsPublic(lists=[ListPublic.of(x) for x in await service.lists()])


@router.get(
    "/lists/{list_id}/subscribers",
    responses=error_responses(),
    summary="A list's subscribers, checked against the relay's consent records",
)
async def list_subscribers(
    request: Request,
    who: Who,
    list_id: ListPath,
    state: Annotated[State | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 1_000,
) -> SubscribersPublic:
    await _list(request, list_id)
    found = await _subscribers(request).lists.subscribers(list_id, states=(state,) if state else ())
    return SubscribersPublic(subscribers=[SubscriberPublic.of(s) for s in found[:limit]])


@router.delete(
    "/lists/{list_id}/subscribers/{account_id}",
    responses=error_responses(),
    summary="Take someone off a list (owners and admins)",
)
async def remove_subscriber(
    request: Request, who: Who, list_id: ListPath, account_id: AccountPath
) -> ListPublic:
    _managing(who)
    await _list(request, list_id)
    if not await _subscribers(request).lists.remove_subscriber(list_id, account_id):
        raise ApiError(404, "not_found", N_("that customer is not on the list"))
    return ListPublic.of(await _list(request, list_id))


@router.get(
    "/lists/{list_id}/link",
    responses=error_responses(),
    summary="The link that opens the chat with the list's keyword",
)
async def list_link(request: Request, who: Who, list_id: ListPath) -> LinkPublic:
    found = await _list(request, list_id)
    if found.keyword is None:
        raise ApiError(400, "refused", N_("the list has no keyword to link to"))
    return LinkPublic(link=await _subscribers(request).lists.link(list_id))


@router.get(
    "/lists/{list_id}/qr.{kind}",
    responses={**error_responses(), 200: {"content": {"image/svg+xml": {}, "image/png": {}}}},
    response_class=Response,
    summary="The link as a QR code (SVG or PNG), for posters and receipts",
)
async def list_qr(
    request: Request,
    who: Who,
    list_id: ListPath,
    kind: Annotated[str, PathParam(pattern="^(svg|png)$")],
) -> Response:
    found = await _list(request, list_id)
    if found.keyword is None:
        raise ApiError(400, "refused", N_("the list has no keyword to link to"))
    image = await _subscribers(request).lists.qr_code(list_id, kind)
    media = "image/svg+xml" if kind == "svg" else "image/png"
    return Response(
        image,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="list-{list_id}.{kind}"',
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "X-Content-Type-Options": "nosniff",
        },
    )


@imports.post(
    "/lists/{list_id}/import",
    responses=error_responses(body=True),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
    summary="Import subscribers from a CSV (phone, name, evidence, evidence_date, attributes)",
)
async def import_subscribers(request: Request, who: Who, list_id: ListPath) -> ImportPublic:
    _managing(who)
    await _list(request, list_id)
    try:
        report = await _subscribers(request).imports.import_csv(
            list_id, await request.body(), by=who.agent.display_name or who.agent.username
        )
    except ImportRefused as exc:
        raise ApiError(400, "refused", N_("{reason}"), reason=str(exc)) from None
    return ImportPublic.of(report)


@router.get(
    "/lists/{list_id}/imports",
    responses=error_responses(),
    summary=f"The list's last {KEPT_IMPORTS} imports, newest first, without their rows",
)
async def list_imports(request: Request, who: Who, list_id: ListPath) -> ImportsPublic:
    await _list(request, list_id)
    found = await _subscribers(request).imports.recent(list_id)
    return ImportsPublic(imports=[ImportSummaryPublic.of(r) for r in found])


@router.get(
    "/lists/{list_id}/imports/{import_id}",
    responses=error_responses(),
    summary="One kept import with the report of its rows",
)
async def one_import(
    request: Request, who: Who, list_id: ListPath, import_id: ImportPath
) -> ImportPublic:
    await _list(request, list_id)
    found = await _subscribers(request).imports.report(list_id, import_id)
    if found is None:
        raise ApiError(404, "not_found", N_("there is no such import of the list (any more)"))
    return ImportPublic.of(found)
