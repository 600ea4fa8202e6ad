"""The inbox's JSON API under ``/inbox/api/v1``: what the pages' script, other tools and bots
use, described in the gateway's OpenAPI document.

A caller is an agent, either by ``Authorization: Bearer <token>`` (a personal access token,
see ``tokens``) or by the inbox's session cookie, in which case every state change also
carries the session's CSRF token in ``X-CSRF-Token``. Both act with the agent's role and are
rate limited per token or session. Every refusal is ``{"error": {"code", "message"}}`` with a
4xx status: ``code`` is stable for programs, ``message`` is for people, in the agent's
language. The routes only authenticate, parse and answer; what they do is ``Actions``'.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
)
from pydantic import BaseModel, ConfigDict, Field

from tresen.core.ratelimit import TokenBuckets
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.customers.service import CustomerData, CustomerNotFound
from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import Agent
from tresen.gateway.inbox.api_models import (
    ActivityPublic,
    AgentPublic,
    AgentsPublic,
    AssigneeSet,
    ConversationDetail,
    ConversationPage,
    ConversationPublic,
    HandoffCreate,
    LabelAdd,
    LabelsPublic,
    MessageCreate,
    MessagePublic,
    MessageSent,
    NoteCreate,
    QuickRepliesPublic,
    QuickReplyCreate,
    QuickReplyPublic,
    StatusSet,
    error_responses,
)
from tresen.gateway.inbox.conversations import Mine, Status
from tresen.gateway.inbox.i18n import LANGUAGES, N_, Refused, from_accept_language, translator
from tresen.gateway.inbox.tokens import AgentTokens

__all__ = ["PREFIX", "ApiError", "router"]

PREFIX = "/inbox/api/v1"
MAX_BODY_BYTES = 64 * 1024
"""A JSON body holds at most one 4096-character text, escaped: far below this."""
MAX_PAGE = 100
CURSOR = r"^[0-9]{1,15}\.[0-9a-f]{1,32}$"
LabelPath = Annotated[str, PathParam(min_length=1, max_length=32, pattern=r"^[\w-]{1,32}$")]
QuickReplyId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
STATE_CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


class ApiError(Exception):
    """A refusal of the API: ``status``, a stable ``code`` and the English sentence ``text``
    (marked with ``N_`` where it is written) with ``{name}`` holes for ``values``."""

    def __init__(
        self,
        status: int,
        code: str,
        text: str,
        *,
        headers: dict[str, str] | None = None,
        **values: Any,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.code = code
        self.refusal = Refused(text, **values)
        self.headers = headers or {}

    def response(self, gettext: Any) -> JSONResponse:
        return answer_error(self.status, self.code, self.refusal.sentence(gettext), self.headers)


def answer_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _gettext(request: Request) -> Any:
    """``_`` in the calling agent's language (before authentication, the client's)."""
    agent: Agent | None = getattr(request.state, "inbox_api_agent", None)
    if agent is not None and agent.language in LANGUAGES:
        return translator(agent.language)
    return translator(from_accept_language(request.headers.get("accept-language", "")))


async def _read_body(request: Request, limit: int = MAX_BODY_BYTES) -> None:
    """Read the body up to ``limit`` bytes before anything parses it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", N_("the request is larger than {n} bytes"), n=limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, "too_large", N_("the request is larger than {n} bytes"), n=limit)
    request._body = bytes(body)  # what ``request.body()`` answers from now on


def _problems(exc: RequestValidationError) -> str:
    said = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        said.append(f"{where}: {error.get('msg', '')}"[:200])
    return "; ".join(said)


class ApiRoute(APIRoute):
    """A route of the inbox's API: its body bounded, and every refusal — its own, invalid
    input — in the API's envelope (the Cloud API's routes keep the Graph envelope)."""

    max_body = MAX_BODY_BYTES

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                if request.method in STATE_CHANGES:
                    await _read_body(request, self.max_body)
                response = await handler(request)
            except ApiError as exc:
                return exc.response(_gettext(request))
            except Refused as exc:
                # A refusal the route did not name more precisely.
                return _refused(exc).response(_gettext(request))
            except RequestValidationError as exc:
                _ = _gettext(request)
                return answer_error(
                    400,
                    "invalid_input",
                    _("The request is not valid: {problems}").format(problems=_problems(exc)),
                )
            # Conversations are the business's customers' words: no cache keeps them.
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return answer


router = APIRouter(prefix=PREFIX, route_class=ApiRoute, tags=["inbox"])

# --- who is calling -----------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="agent_token",
    description="A personal access token of an agent (the inbox's page *Me*, or "
    "`tresen gateway agents token create USER`); it acts with the agent's role",
)
_cookie = APIKeyCookie(
    name=web.COOKIE,
    auto_error=False,
    scheme_name="inbox_session",
    description="The inbox's session cookie; state changes also need `X-CSRF-Token`",
)
_csrf = APIKeyHeader(
    name="X-CSRF-Token",
    auto_error=False,
    scheme_name="inbox_csrf",
    description="The session's CSRF token (with the session cookie, on every state change)",
)


@dataclass(frozen=True, slots=True)
class Caller:
    agent: Agent
    rate_key: tuple[str, int | str]


async def caller(
    request: Request,
    _token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _session: Annotated[str | None, Depends(_cookie)],
    _csrf_token: Annotated[str | None, Depends(_csrf)],
) -> Caller:
    """The agent behind the request, within its rate; the parameters only document how
    (the headers are read here)."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        tokens: AgentTokens = request.app.state.inbox_tokens
        found = await tokens.agent_of(token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise ApiError(401, "unauthenticated", N_("that token is not a current agent token"))
        agent, listed = found
        who = Caller(agent, ("token", listed.id))
    else:
        session = await web.signed_in(request)
        if session is None:
            raise ApiError(401, "unauthenticated", N_("sign in, or send an agent token as Bearer"))
        if request.method in STATE_CHANGES and not web.csrf_ok(
            request.headers.get("x-csrf-token"), session.csrf
        ):
            request.state.inbox_api_agent = session.agent
            raise ApiError(
                403,
                "csrf_failed",
                N_("with the session cookie, a change needs the session's X-CSRF-Token header"),
            )
        agent = session.agent
        who = Caller(agent, ("session", session.token_hash))
    request.state.inbox_api_agent = agent
    buckets: TokenBuckets = request.app.state.inbox_api_buckets
    wait_ms = buckets.take(who.rate_key)
    if wait_ms:
        seconds = max(1, (wait_ms + 999) // 1000)
        raise ApiError(
            429,
            "rate_limited",
            N_("too many requests; try again in {seconds} s"),
            headers={"Retry-After": str(seconds)},
            seconds=seconds,
        )
    return who


Who = Annotated[Caller, Depends(caller)]


async def _conversation(request: Request, contact: str) -> ConversationPublic:
    shown = await web.conversations_of(request).show(contact, limit=0, mark_read=False)
    if shown is None:
        raise ApiError(404, "not_found", N_("there is no such conversation"))
    return ConversationPublic.of(shown.conversation)


def _refused(exc: Refused) -> ApiError:
    """A refused action: not sent (the gateway's send path said no) or not done."""
    if isinstance(exc.__cause__, GraphError):
        status = 400 if exc.__cause__.code == 100 else 409
        return ApiError(status, "not_sent", exc.text, **exc.values)
    return ApiError(400, "refused", exc.text, **exc.values)


# --- the routes ---------------------------------------------------------------------------------


class StatusFilter(StrEnum):
    """A status of ``Status``, or ``any``."""

    OPEN = "open"
    PENDING = "pending"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    BOT = "bot"
    ANY = "any"


@router.get("/me", responses=error_responses(), summary="The calling agent")
async def me(who: Who) -> AgentPublic:
    return AgentPublic.of(who.agent, full=True)


@router.get(
    "/conversations",
    responses=error_responses(),
    summary="Conversations, the latest message first, a page at a time",
)
async def conversations(
    request: Request,
    who: Who,
    mine: Annotated[Mine, Query(description="Whose conversations")] = Mine.ALL,
    status: Annotated[StatusFilter, Query()] = StatusFilter.OPEN,
    label: Annotated[
        str | None, Query(min_length=1, max_length=32, pattern=r"^[\w-]{1,32}$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=48, pattern=CURSOR, description="next_cursor of a page")
    ] = None,
) -> ConversationPage:
    after = None
    if cursor is not None:
        last_ms, _, contact = cursor.partition(".")
        after = (int(last_ms), contact)
    listed = await web.conversations_of(request).list(
        me=who.agent.id,
        mine=mine,
        status=None if status is StatusFilter.ANY else Status(str(status)),
        label=label.lower() if label else None,
        limit=limit + 1,
        after=after,
    )
    page, more = listed[:limit], len(listed) > limit
    return ConversationPage(
        conversations=[ConversationPublic.of(c) for c in page],
        next_cursor=f"{page[-1].last_ms}.{page[-1].contact}" if more else None,
    )


@router.get(
    "/conversations/{contact}",
    responses=error_responses(),
    summary="A conversation with its latest messages and the team's activity",
)
async def conversation(
    request: Request,
    who: Who,
    contact: web.ContactId,
    mark_read: Annotated[bool, Query(description="Mark its messages read")] = True,
) -> ConversationDetail:
    shown = await web.conversations_of(request).show(contact, mark_read=mark_read)
    if shown is None:
        raise ApiError(404, "not_found", N_("there is no such conversation"))
    return ConversationDetail(
        conversation=ConversationPublic.of(shown.conversation),
        messages=[MessagePublic.of(m) for m in shown.messages],
        activity=[ActivityPublic.of(a) for a in shown.activity],
    )


@router.post(
    "/conversations/{contact}/messages",
    status_code=201,
    responses=error_responses(body=True),
    summary="Answer the customer (``/shortcut`` sends that quick reply)",
)
async def send_message(
    request: Request, who: Who, contact: web.ContactId, body: MessageCreate
) -> MessageSent:
    await _conversation(request, contact)
    try:
        wamid = await web.actions_of(request).reply(
            who.agent, contact, body.text, context=body.reply_to
        )
    except Refused as exc:
        raise _refused(exc) from exc
    return MessageSent(wamid=wamid)


@router.post(
    "/conversations/{contact}/notes",
    status_code=201,
    responses=error_responses(body=True),
    summary="Keep a private note for the team (never sent to anyone)",
)
async def add_note(
    request: Request, who: Who, contact: web.ContactId, body: NoteCreate
) -> ActivityPublic:
    await _conversation(request, contact)
    actions = web.actions_of(request)
    try:
        await actions.note(who.agent, contact, body.text)
    except Refused as exc:
        raise _refused(exc) from exc
    return ActivityPublic(
        kind="note",
        agent_id=who.agent.id,
        detail=body.text.strip(),
        at_ms=actions.conversations.clock.now_ms(),
    )


@router.post(
    "/conversations/{contact}/handoff",
    responses=error_responses(body=True),
    summary="Hand the conversation from the bot to people (the business's own bot calls it)",
)
async def handoff(
    request: Request, who: Who, contact: web.ContactId, body: HandoffCreate
) -> ConversationPublic:
    """The conversation becomes open for the team, with the reason and the bot's transcript
    in its activity; the customer is told when people answer. Refused (409) when the bot does
    not hold the conversation."""
    found = await _conversation(request, contact)
    if found.status != Status.BOT:
        raise ApiError(409, "not_with_bot", N_("the bot does not answer this conversation"))
    automation = request.app.state.automation
    await automation.hand_over(contact, "external", detail=body.reason.strip())
    return await _conversation(request, contact)


@router.put(
    "/conversations/{contact}/assignee",
    responses=error_responses(body=True),
    summary="Assign the conversation to an agent, or to no one",
)
async def assign(
    request: Request, who: Who, contact: web.ContactId, body: AssigneeSet
) -> ConversationPublic:
    await _conversation(request, contact)
    try:
        await web.actions_of(request).assign(who.agent, contact, body.agent_id)
    except Refused as exc:
        raise ApiError(404, "not_found", exc.text, **exc.values) from exc
    return await _conversation(request, contact)


@router.put(
    "/conversations/{contact}/status",
    responses=error_responses(body=True),
    summary="Set the status (``snoozed`` for ``snooze_seconds``)",
)
async def set_status(
    request: Request, who: Who, contact: web.ContactId, body: StatusSet
) -> ConversationPublic:
    await _conversation(request, contact)
    try:
        await web.actions_of(request).set_status(
            who.agent, contact, str(body.status), body.snooze()
        )
    except Refused as exc:
        raise _refused(exc) from exc
    return await _conversation(request, contact)


@router.post(
    "/conversations/{contact}/labels",
    responses=error_responses(body=True),
    summary="Put a label on the conversation (made when it is new)",
)
async def add_label(
    request: Request, who: Who, contact: web.ContactId, body: LabelAdd
) -> ConversationPublic:
    await _conversation(request, contact)
    try:
        await web.actions_of(request).label(who.agent, contact, body.name)
    except Refused as exc:
        raise _refused(exc) from exc
    return await _conversation(request, contact)


@router.delete(
    "/conversations/{contact}/labels/{label}",
    responses=error_responses(),
    summary="Take a label off the conversation",
)
async def remove_label(
    request: Request, who: Who, contact: web.ContactId, label: LabelPath
) -> ConversationPublic:
    found = await _conversation(request, contact)
    if label.lower() not in found.labels:
        raise ApiError(404, "not_found", N_("the conversation has no label {name}"), name=label)
    await web.actions_of(request).unlabel(who.agent, contact, label.lower())
    return await _conversation(request, contact)


@router.get("/labels", responses=error_responses(), summary="Every label of the business")
async def labels(request: Request, who: Who) -> LabelsPublic:
    return LabelsPublic(labels=list(await web.conversations_of(request).labels.all()))


@router.get("/quick-replies", responses=error_responses(), summary="The quick replies")
async def quick_replies(request: Request, who: Who) -> QuickRepliesPublic:
    found = await web.quick_of(request).all()
    return QuickRepliesPublic(quick_replies=[QuickReplyPublic.of(q) for q in found])


@router.post(
    "/quick-replies",
    status_code=201,
    responses=error_responses(body=True),
    summary="Add a quick reply (owners and admins)",
)
async def add_quick_reply(request: Request, who: Who, body: QuickReplyCreate) -> QuickReplyPublic:
    _managing(who)
    quick = web.quick_of(request)
    shortcut = body.shortcut.lstrip("/")
    if any(q.shortcut == shortcut for q in await quick.all()):
        raise ApiError(409, "conflict", N_("/{shortcut} exists already"), shortcut=shortcut)
    try:
        added = await quick.add(shortcut, body.text)
    except Refused as exc:
        raise _refused(exc) from exc
    found = next(q for q in await quick.all() if q.shortcut == added.shortcut)
    return QuickReplyPublic.of(found)


@router.delete(
    "/quick-replies/{reply_id}",
    responses=error_responses(),
    summary="Remove a quick reply (owners and admins)",
)
async def remove_quick_reply(
    request: Request, who: Who, reply_id: QuickReplyId
) -> QuickRepliesPublic:
    _managing(who)
    quick = web.quick_of(request)
    if not await quick.remove(reply_id):
        raise ApiError(404, "not_found", N_("there is no such quick reply"))
    return QuickRepliesPublic(quick_replies=[QuickReplyPublic.of(q) for q in await quick.all()])


def _managing(who: Caller) -> None:
    if not who.agent.role.manages:
        raise ApiError(403, "forbidden", N_("only owners and admins change the quick replies"))


@router.get(
    "/agents",
    responses=error_responses(),
    response_model_exclude_none=True,
    summary="The team: in full for owners and admins, else the active agents' ids and names",
)
async def agents(request: Request, who: Who) -> AgentsPublic:
    full = who.agent.role.manages
    team = await web.agents_of(request).all()
    return AgentsPublic(
        agents=[AgentPublic.of(a, full=full) for a in team if full or a.active],
    )


class ErasureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1,
        max_length=512,
        description="why (e.g. the customer's request and its date); kept in the audit trail",
    )


class ErasedPublic(BaseModel):
    subject: str = Field(description="the customer as the audit trail names them")
    removed: dict[str, int] = Field(description="rows removed (or emptied), by table")


@router.delete(
    "/customers/{customer}",
    responses=error_responses(body=True),
    summary="Erase a customer (owners and admins): conversation, messages, files, contact",
    description="Deletes everything the gateway holds about the customer (an account id, or "
    "a phone number in E.164 or as digits): conversation, messages and their files, contact, "
    "labels, automation state, activity and notes, subscriptions, webhook events, the device "
    "store's rows; a campaign keeps a row without the person so its figures stay right. "
    "Writes an audit row with the reason. docs/privacy.md says what stays.",
)
async def erase_customer(
    request: Request,
    who: Who,
    customer: Annotated[str, PathParam(min_length=1, max_length=32)],
    body: ErasureCreate,
) -> ErasedPublic:
    if not who.agent.role.manages:
        raise ApiError(403, "forbidden", N_("only owners and admins erase a customer"))
    customers: CustomerData = request.app.state.customers
    try:
        erased = await customers.erase(customer, actor=f"agent:{who.agent.id}", reason=body.reason)
    except CustomerNotFound:
        raise ApiError(404, "not_found", N_("there is no such customer")) from None
    return ErasedPublic(subject=erased.subject, removed=erased.counts)


@router.api_route(
    "/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def no_such_endpoint(rest: str) -> Response:
    raise ApiError(404, "not_found", N_("the inbox's API has no such endpoint"))
