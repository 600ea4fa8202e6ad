"""The inbox's pages: sign in and out, and the team (owners and admins).

Server-rendered (Jinja2, autoescaped) with a strict Content-Security-Policy: no script, no
inline style, nothing from elsewhere. Every state change is a form POST that carries the
session's CSRF token (sign-in carries a token of its own, from a cookie set with the form),
and answers with a redirect. The session cookie is HttpOnly, SameSite=Strict, limited to
``/inbox`` and, by default, Secure.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote_plus

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData, UploadFile

from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.cloudapi.requests import SendRequest, parse_message_request
from tresen.gateway.inbox.agents import Agent, AgentError, Agents, LoginThrottled, Role, SignedIn
from tresen.gateway.inbox.conversations import Conversations, Mine, Status
from tresen.gateway.inbox.quick import QuickReplies, QuickReplyError

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "FormTooLarge",
    "form_too_large",
    "router",
]

COOKIE = "tresen_inbox"
LOGIN_COOKIE = "tresen_inbox_login"
STATIC_DIR = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_FIELDS = 16
MAX_FORM_BYTES = 16 * 1024
AgentId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]

router = APIRouter(prefix="/inbox", include_in_schema=False)
_templates = Environment(
    loader=PackageLoader("tresen.gateway.inbox", "templates"),
    autoescape=select_autoescape(["html"]),
)
_TICKS = {"sent": "✓", "delivered": "✓✓", "read": "✓✓ read", "failed": "✗ failed"}


def _clock(ms: int) -> str:
    return time.strftime("%d.%m. %H:%M", time.gmtime(ms / 1000)) + " UTC"


def _window(left_ms: int) -> str:
    if left_ms <= 0:
        return "window closed"
    hours, rest = divmod(left_ms // 60_000, 60)
    return f"window {hours} h {rest} min left"


_templates.filters["clock"] = _clock
_templates.filters["window"] = _window
_templates.filters["tick"] = lambda status: _TICKS.get(str(status), "")


def _agents(request: Request) -> Agents:
    agents: Agents = request.app.state.inbox_agents
    return agents


def _secure(request: Request) -> bool:
    return bool(request.app.state.inbox_secure_cookies)


def _page(
    request: Request,
    template: str,
    *,
    signed_in: SignedIn | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    gateway = getattr(request.app.state, "gateway", None)
    html = _templates.get_template(template).render(
        business=gateway.phone if gateway is not None else "Tresen",
        me=None if signed_in is None else signed_in.agent,
        csrf=context.pop("csrf", None) or (signed_in.csrf if signed_in else ""),
        notice=request.query_params.get("notice", "")[:200],
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + "."


def _redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)


class FormTooLarge(Exception):
    """A form larger than any of the inbox's."""


async def form_too_large(request: Request, _exc: Exception) -> Response:
    return HTMLResponse(
        "That form is larger than any of the inbox's.", status_code=413, headers=SECURITY_HEADERS
    )


async def _form(request: Request) -> FormData:
    """The page's URL-encoded form, read up to ``MAX_FORM_BYTES``."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge
    fields: list[tuple[str, str | UploadFile]] = list(
        parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    )
    if len(fields) > MAX_FIELDS:
        raise FormTooLarge
    return FormData(fields)


async def _signed_in(request: Request) -> SignedIn | None:
    return await _agents(request).session(request.cookies.get(COOKIE, ""))


def _csrf_ok(given: object, expected: str) -> bool:
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(given, expected)


def _refused(request: Request, signed_in: SignedIn | None) -> HTMLResponse:
    return _page(
        request,
        "home.html" if signed_in else "login.html",
        signed_in=signed_in,
        status_code=403,
        error="This form has expired or did not come from the inbox; nothing was changed. "
        "Try again.",
        csrf=None if signed_in else "",
    )


# --- signing in and out ------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await _signed_in(request) is not None:
        return _redirect("/inbox")
    token = secrets.token_urlsafe(32)
    response = _page(request, "login.html", csrf=token)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/inbox",
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not _csrf_ok(form.get("csrf"), expected):
        return _refused(request, None)
    username, password = form.get("username"), form.get("password")
    source = request.client.host if request.client else "unknown"
    try:
        if not isinstance(username, str) or not isinstance(password, str):
            raise AgentError("the user name or the password is wrong")
        token, _ = await _agents(request).sign_in(username, password, source)
    except LoginThrottled as exc:
        held = _page(request, "login.html", status_code=429, csrf=expected, error=_sentence(exc))
        held.headers["Retry-After"] = str(exc.retry_after_s)
        return held
    except AgentError as exc:
        return _page(request, "login.html", status_code=401, csrf=expected, error=_sentence(exc))
    response = _redirect("/inbox")
    response.set_cookie(
        COOKIE, token, path="/inbox", secure=_secure(request), httponly=True, samesite="strict"
    )
    response.delete_cookie(LOGIN_COOKIE, path="/inbox")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    got = await _posted(request)
    if isinstance(got, Response):
        return got
    signed_in, _ = got
    await _agents(request).sign_out(signed_in.token_hash)
    response = _redirect("/inbox/login?notice=Signed+out.")
    response.delete_cookie(COOKIE, path="/inbox")
    return response


@router.post("/logout-everywhere")
async def logout_everywhere(request: Request) -> Response:
    got = await _posted(request)
    if isinstance(got, Response):
        return got
    signed_in, _ = got
    await _agents(request).sign_out_everywhere(signed_in.agent.id)
    response = _redirect("/inbox/login?notice=Signed+out+everywhere.")
    response.delete_cookie(COOKIE, path="/inbox")
    return response


def _quick(request: Request) -> QuickReplies:
    found: QuickReplies = request.app.state.inbox_quick_replies
    return found


def _conversations(request: Request) -> Conversations:
    found: Conversations = request.app.state.inbox_conversations
    return found


async def _names(request: Request) -> dict[int, str]:
    return {a.id: a.display_name for a in await _agents(request).all()}


@router.get("")
async def home(
    request: Request, mine: str = "all", status: str = "open", label: str = ""
) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _redirect("/inbox/login")
    whose = Mine(mine) if mine in {str(m) for m in Mine} else Mine.ALL
    shown = Status(status) if status in {str(s) for s in Status} else Status.OPEN
    inbox = _conversations(request)
    known = await inbox.all_labels()
    chosen = label if label in known else None
    listed = await inbox.list(me=signed_in.agent.id, mine=whose, status=shown, label=chosen)
    return _page(
        request,
        "home.html",
        signed_in=signed_in,
        conversations=listed,
        names=await _names(request),
        whose=[("mine", "Mine"), ("unassigned", "Unassigned"), ("all", "All")],
        mine=str(whose),
        statuses=[str(s) for s in Status],
        status=str(shown),
        labels=known,
        label=chosen or "",
    )


SNOOZE_CHOICES = {"3600": "1 hour", "14400": "4 hours", "86400": "1 day", "604800": "1 week"}
ContactId = Annotated[str, PathParam(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


@router.get("/c/{contact}")
async def thread(request: Request, contact: ContactId) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _redirect("/inbox/login")
    shown = await _conversations(request).show(contact)
    if shown is None:
        return _page(
            request,
            "home.html",
            signed_in=signed_in,
            status_code=404,
            error="There is no such conversation.",
            conversations=[],
            names={},
            whose=[],
            mine="all",
            statuses=[],
            status="open",
        )
    return _page(
        request,
        "thread.html",
        signed_in=signed_in,
        c=shown.conversation,
        timeline=shown.timeline(),
        names=await _names(request),
        statuses=[str(s) for s in Status],
        snooze_choices=SNOOZE_CHOICES,
        labels=await _conversations(request).all_labels(),
        shortcuts=[q.shortcut for q in await _quick(request).all()],
    )


async def _posted(
    request: Request, *, manage: bool = False
) -> tuple[SignedIn, FormData] | Response:
    """The signed-in agent and the form they posted, its CSRF token checked; for ``manage``,
    an owner or admin. Otherwise the answer to give instead."""
    signed_in = await _manager(request) if manage else await _signed_in(request)
    if signed_in is None:
        return _redirect("/inbox/login")
    if isinstance(signed_in, Response):
        return signed_in
    form = await _form(request)
    if not _csrf_ok(form.get("csrf"), signed_in.csrf):
        return _refused(request, signed_in)
    return signed_in, form


@router.post("/c/{contact}/reply")
async def reply(request: Request, contact: ContactId) -> Response:
    got = await _posted(request)
    if isinstance(got, Response):
        return got
    signed_in, form = got
    text = form.get("text")
    if not isinstance(text, str) or not text.strip():
        return _redirect(f"/inbox/c/{contact}?notice=Nothing+to+send.")
    expanded = await _quick(request).expand(text)
    if expanded is None and text.strip().startswith("/") and " " not in text.strip():
        return _redirect(
            f"/inbox/c/{contact}?notice=" + quote_plus(f"There is no quick reply {text.strip()}.")
        )
    text = expanded or text
    gateway = request.app.state.gateway
    found = await gateway.store.contact(contact)
    if found is None:
        return _redirect("/inbox?notice=There+is+no+such+conversation.")
    body = {
        "messaging_product": "whatsapp",
        "recipient": found.user_id,
        "type": "text",
        "text": {"body": text.replace("\r\n", "\n")},
    }
    try:
        request_ = parse_message_request(body)
        assert isinstance(request_, SendRequest)
        await gateway.send(request_)
    except GraphError as exc:
        return _redirect(
            f"/inbox/c/{contact}?notice=" + quote_plus(f"Not sent: {exc.details}"[:200])
        )
    await _conversations(request).record(contact, signed_in.agent.id, "reply", text[:200])
    return _redirect(f"/inbox/c/{contact}")


@router.post("/c/{contact}/label")
async def label(request: Request, contact: ContactId) -> Response:
    got = await _posted(request)
    if isinstance(got, Response):
        return got
    signed_in, form = got
    name, remove = form.get("label"), form.get("remove")
    inbox = _conversations(request)
    if not isinstance(name, str):
        return _redirect(f"/inbox/c/{contact}?notice=Name+a+label.")
    if remove:
        await inbox.unlabel(contact, name)
        await inbox.record(contact, signed_in.agent.id, "unlabel", name)
        return _redirect(f"/inbox/c/{contact}?notice=" + quote_plus(f"Label {name} removed."))
    try:
        added = await inbox.label(contact, name)
    except ValueError as exc:
        return _redirect(f"/inbox/c/{contact}?notice=" + quote_plus(_sentence(exc)))
    await inbox.record(contact, signed_in.agent.id, "label", added)
    return _redirect(f"/inbox/c/{contact}?notice=" + quote_plus(f"Labelled {added}."))


@router.post("/c/{contact}/note")
async def note(request: Request, contact: ContactId) -> Response:
    """A private note: kept in the gateway for the team, never sent to anyone."""
    got = await _posted(request)
    if isinstance(got, Response):
        return got
    signed_in, form = got
    text = form.get("note")
    if not isinstance(text, str) or not text.strip():
        return _redirect(f"/inbox/c/{contact}?notice=An+empty+note+was+not+kept.")
    await _conversations(request).record(contact, signed_in.agent.id, "note", text.strip())
    return _redirect(f"/inbox/c/{contact}?notice=Note+kept+for+the+team.")


@router.post("/c/{contact}/assign")
async def assign(request: Request, contact: ContactId) -> Response:
    got = await _posted(request)
    if isinstance(got, Response):
        return got
    signed_in, form = got
    agent = form.get("agent")
    if agent in (None, ""):
        await _conversations(request).assign(contact, None)
        await _conversations(request).record(contact, signed_in.agent.id, "assign", "")
        return _redirect(f"/inbox/c/{contact}?notice=Unassigned.")
    if not isinstance(agent, str) or not agent.isdigit() or len(agent) > 18:
        return _redirect(f"/inbox/c/{contact}?notice=No+such+agent.")
    target = await _agents(request).get(int(agent))
    if target is None or not target.active:
        return _redirect(f"/inbox/c/{contact}?notice=No+such+agent.")
    await _conversations(request).assign(contact, target.id)
    await _conversations(request).record(contact, signed_in.agent.id, "assign", target.display_name)
    who = "you" if target.id == signed_in.agent.id else target.display_name
    return _redirect(f"/inbox/c/{contact}?notice=" + quote_plus(f"Assigned to {who}."))


@router.post("/c/{contact}/status")
async def set_status(request: Request, contact: ContactId) -> Response:
    got = await _posted(request)
    if isinstance(got, Response):
        return got
    signed_in, form = got
    status = form.get("status")
    if status not in {str(s) for s in Status}:
        return _redirect(f"/inbox/c/{contact}?notice=Choose+a+status.")
    until = None
    if status == str(Status.SNOOZED):
        seconds = form.get("snooze")
        if seconds not in SNOOZE_CHOICES:
            return _redirect(f"/inbox/c/{contact}?notice=Choose+how+long+to+snooze.")
        until = _conversations(request).clock.now_ms() + int(str(seconds)) * 1000
    await _conversations(request).set_status(contact, Status(str(status)), until)
    await _conversations(request).record(contact, signed_in.agent.id, "status", str(status))
    return _redirect(f"/inbox/c/{contact}?notice=" + quote_plus(f"Now {status}."))


# --- the team (owners and admins) --------------------------------------------------------------


async def _manager(request: Request) -> SignedIn | Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _redirect("/inbox/login")
    if not signed_in.agent.role.manages:
        return _page(
            request,
            "home.html",
            signed_in=signed_in,
            status_code=403,
            error="Only owners and admins manage the team.",
        )
    return signed_in


async def _team_page(
    request: Request, signed_in: SignedIn, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return _page(
        request,
        "agents.html",
        signed_in=signed_in,
        status_code=status_code,
        agents=await _agents(request).all(),
        roles=[str(r) for r in Role],
        error=error,
    )


@router.get("/agents")
async def team(request: Request) -> Response:
    signed_in = await _manager(request)
    if isinstance(signed_in, Response):
        return signed_in
    return await _team_page(request, signed_in)


@router.post("/agents")
async def add_agent(request: Request) -> Response:
    got = await _posted(request, manage=True)
    if isinstance(got, Response):
        return got
    signed_in, form = got
    fields = [form.get(k) for k in ("username", "display_name", "role", "password")]
    try:
        username, name, role, password = (f if isinstance(f, str) else "" for f in fields)
        if role not in {str(r) for r in Role}:
            raise AgentError("choose a role: owner, admin or agent")
        if Role(role) is Role.OWNER and signed_in.agent.role is not Role.OWNER:
            raise AgentError("only an owner makes someone owner")
        added = await _agents(request).create(username, name, Role(role), password)
    except AgentError as exc:
        return await _team_page(request, signed_in, error=_sentence(exc), status_code=400)
    return _redirect(f"/inbox/agents?notice=Added+{added.username}.")


async def _change(request: Request, agent_id: int, action: str) -> Response:
    got = await _posted(request, manage=True)
    if isinstance(got, Response):
        return got
    signed_in, form = got
    agents = _agents(request)
    try:
        target = await agents.get(agent_id)
        if target is None:
            raise AgentError(f"there is no agent {agent_id}")
        _may_change(signed_in.agent, target, form.get("role"))
        if action == "role":
            role = form.get("role")
            if role not in {str(r) for r in Role}:
                raise AgentError("choose a role: owner, admin or agent")
            await agents.set_role(agent_id, Role(str(role)))
        elif action == "disable":
            await agents.disable(agent_id)
        else:
            await agents.enable(agent_id)
    except AgentError as exc:
        return await _team_page(request, signed_in, error=_sentence(exc), status_code=400)
    return _redirect("/inbox/agents?notice=Saved.")


def _may_change(me: Agent, target: Agent, role: object) -> None:
    """Admins manage agents and admins; only owners touch owners or make owners."""
    if role is not None and role not in {str(r) for r in Role}:
        raise AgentError("choose a role: owner, admin or agent")
    if me.role is Role.OWNER:
        return
    if target.role is Role.OWNER or role == str(Role.OWNER):
        raise AgentError("only an owner changes an owner or makes someone owner")


@router.post("/agents/{agent_id}/role")
async def change_role(request: Request, agent_id: AgentId) -> Response:
    return await _change(request, agent_id, "role")


@router.post("/agents/{agent_id}/disable")
async def disable_agent(request: Request, agent_id: AgentId) -> Response:
    return await _change(request, agent_id, "disable")


@router.post("/agents/{agent_id}/enable")
async def enable_agent(request: Request, agent_id: AgentId) -> Response:
    return await _change(request, agent_id, "enable")


# --- quick replies (owners and admins) ---------------------------------------------------------


async def _quick_page(
    request: Request, signed_in: SignedIn, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return _page(
        request,
        "quick.html",
        signed_in=signed_in,
        status_code=status_code,
        replies=await _quick(request).all(),
        error=error,
    )


@router.get("/quick-replies")
async def quick_replies(request: Request) -> Response:
    signed_in = await _manager(request)
    if isinstance(signed_in, Response):
        return signed_in
    return await _quick_page(request, signed_in)


@router.post("/quick-replies")
async def add_quick_reply(request: Request) -> Response:
    got = await _posted(request, manage=True)
    if isinstance(got, Response):
        return got
    signed_in, form = got
    shortcut, text = form.get("shortcut"), form.get("text")
    try:
        if not isinstance(shortcut, str) or not isinstance(text, str):
            raise QuickReplyError("a quick reply needs a shortcut and a text")
        added = await _quick(request).add(shortcut, text)
    except QuickReplyError as exc:
        return await _quick_page(request, signed_in, error=_sentence(exc), status_code=400)
    return _redirect("/inbox/quick-replies?notice=" + quote_plus(f"Added /{added.shortcut}."))


@router.post("/quick-replies/{reply_id}/remove")
async def remove_quick_reply(request: Request, reply_id: AgentId) -> Response:
    got = await _posted(request, manage=True)
    if isinstance(got, Response):
        return got
    await _quick(request).remove(reply_id)
    return _redirect("/inbox/quick-replies?notice=Removed.")
