"""What every inbox page shares: rendering, forms, the signed-in agent, and their language.

Server-rendered (Jinja2, autoescaped) under a strict Content-Security-Policy: scripts and
styles only from the inbox's own static files, nothing from elsewhere. Every state change is
a form POST that carries the session's CSRF token (sign-in carries a token of its own, from a
cookie set with the form), and answers with a redirect. The session cookie is HttpOnly,
SameSite=Strict, limited to ``/inbox`` and, by default, Secure.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, quote_plus

from fastapi import Path as PathParam
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from tresen.gateway.inbox.actions import Actions
from tresen.gateway.inbox.agents import Agents, SignedIn
from tresen.gateway.inbox.conversations import Conversations
from tresen.gateway.inbox.i18n import LANGUAGES, Refused, from_accept_language, translations
from tresen.gateway.inbox.quick import QuickReplies

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "ContactId",
    "Deed",
    "FormTooLarge",
    "RowId",
    "act",
    "actions_of",
    "agents_of",
    "conversations_of",
    "field",
    "form_too_large",
    "gettext_for",
    "language_of",
    "manager",
    "names",
    "page",
    "posted",
    "quick_of",
    "read_form",
    "read_upload",
    "reading",
    "redirect",
    "secure",
    "signed_in",
]

T = TypeVar("T")

COOKIE = "tresen_inbox"
LOGIN_COOKIE = "tresen_inbox_login"
STATIC_DIR = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "media-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_FIELDS = 64
MAX_FORM_BYTES = 16 * 1024
RowId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
ContactId = Annotated[str, PathParam(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]

_templates = Environment(
    loader=PackageLoader("tresen.gateway.inbox", "templates"),
    autoescape=select_autoescape(["html"]),
    extensions=["jinja2.ext.i18n"],
)


def _clock(ms: int) -> str:
    return time.strftime("%d.%m. %H:%M", time.gmtime(ms / 1000)) + " UTC"


_templates.filters["clock"] = _clock


def _from_json(text: str) -> Any:
    """A JSON text of an activity's detail as its value (``None`` when it is not JSON)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


_templates.filters["from_json"] = _from_json


def actions_of(request: Request) -> Actions:
    found: Actions = request.app.state.inbox_actions
    return found


def agents_of(request: Request) -> Agents:
    found: Agents = request.app.state.inbox_agents
    return found


def conversations_of(request: Request) -> Conversations:
    found: Conversations = request.app.state.inbox_conversations
    return found


def quick_of(request: Request) -> QuickReplies:
    found: QuickReplies = request.app.state.inbox_quick_replies
    return found


async def names(request: Request) -> dict[int, str]:
    """Every agent's display name by id."""
    return {a.id: a.display_name for a in await agents_of(request).all()}


def secure(request: Request) -> bool:
    return bool(request.app.state.inbox_secure_cookies)


def language_of(request: Request, who: SignedIn | None) -> str:
    """The agent's chosen language; before signing in, the browser's."""
    if who is not None and who.agent.language in LANGUAGES:
        return who.agent.language
    return from_accept_language(request.headers.get("accept-language", ""))


def gettext_for(request: Request, who: SignedIn | None) -> Any:
    """``_`` in the language of the agent (or browser) behind ``request``."""
    return translations(language_of(request, who)).gettext


def _business_name(gateway: Any) -> str:
    if gateway is None:
        return "Tresen"
    return str(gateway.display_name or gateway.phone)


def page(
    request: Request,
    template: str,
    *,
    who: SignedIn | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page of the inbox, rendered in the agent's language."""
    gateway = getattr(request.app.state, "gateway", None)
    language = language_of(request, who)
    catalogue = translations(language)
    html = _templates.get_template(template).render(
        business=_business_name(gateway),
        me=None if who is None else who.agent,
        csrf=context.pop("csrf", None) or (who.csrf if who else ""),
        notice=request.query_params.get("notice", "")[:200],
        language=language,
        languages=LANGUAGES,
        request_path=request.url.path,
        gettext=catalogue.gettext,
        ngettext=catalogue.ngettext,
        _=catalogue.gettext,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def redirect(to: str, notice: str | None = None) -> RedirectResponse:
    """See other: ``to``, with ``notice`` (already translated) shown on arrival."""
    if notice:
        to += ("&" if "?" in to else "?") + "notice=" + quote_plus(notice[:200])
    return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)


class FormTooLarge(Exception):
    """A form larger than any of the inbox's."""


async def form_too_large(request: Request, _exc: Exception) -> Response:
    _ = gettext_for(request, None)
    return HTMLResponse(
        _("That form is larger than any of the inbox's."),
        status_code=413,
        headers=SECURITY_HEADERS,
    )


async def read_form(request: Request) -> FormData:
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


async def reading(
    request: Request, service: T | None, unavailable: str
) -> tuple[SignedIn, T] | Response:
    """The signed-in agent and a service of the gateway's (campaigns, lists) for a page that
    shows it; else the answer to give: the login, or a 404 page saying ``unavailable``
    (marked with ``N_`` where it is written, translated here)."""
    who = await signed_in(request)
    if who is None:
        return redirect("/inbox/login")
    if service is None:
        _ = gettext_for(request, who)
        return page(request, "error.html", who=who, status_code=404, error=_(unavailable))
    return who, service


async def signed_in(request: Request) -> SignedIn | None:
    return await agents_of(request).session(request.cookies.get(COOKIE, ""))


def csrf_ok(given: object, expected: str) -> bool:
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(given, expected)


def refused(request: Request, who: SignedIn | None) -> HTMLResponse:
    """The answer to a form without the right CSRF token: nothing changed."""
    _ = gettext_for(request, who)
    return page(
        request,
        "error.html" if who else "login.html",
        who=who,
        status_code=403,
        error=_(
            "This form has expired or did not come from the inbox; nothing was changed. Try again."
        ),
        csrf=None if who else "",
    )


async def manager(request: Request) -> SignedIn | Response:
    """The signed-in owner or admin; otherwise the answer to give instead."""
    who = await signed_in(request)
    if who is None:
        return redirect("/inbox/login")
    if not who.agent.role.manages:
        _ = gettext_for(request, who)
        return page(
            request,
            "error.html",
            who=who,
            status_code=403,
            error=_("Only owners and admins manage the team and the business's settings."),
        )
    return who


def field(form: FormData, name: str, longest: int = MAX_FORM_BYTES) -> str:
    """A text field of ``form`` (empty when missing or not text), cut to ``longest``."""
    value = form.get(name)
    return value[:longest] if isinstance(value, str) else ""


Deed = Callable[[SignedIn, FormData, Any], Awaitable[str | None]]


async def act(request: Request, back: str, deed: Deed, *, manage: bool = False) -> Response:
    """Do ``deed`` (given the signed-in agent, their form and ``_``) for a posted form, then
    go back to ``back`` with the notice it returns, or with the sentence of its refusal."""
    got = await posted(request, manage=manage)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = gettext_for(request, who)
    try:
        said = await deed(who, form, _)
    except Refused as exc:
        return redirect(back, exc.sentence(_))
    return redirect(back, said)


async def posted(request: Request, *, manage: bool = False) -> tuple[SignedIn, FormData] | Response:
    """The signed-in agent and the form they posted, its CSRF token checked; for ``manage``,
    an owner or admin. Otherwise the answer to give instead."""
    who = await manager(request) if manage else await signed_in(request)
    if who is None:
        return redirect("/inbox/login")
    if isinstance(who, Response):
        return who
    form = await read_form(request)
    if not csrf_ok(form.get("csrf"), who.csrf):
        return refused(request, who)
    return who, form


class _TooLarge(Exception):
    pass


async def _bounded(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _TooLarge
        yield chunk


async def read_upload(request: Request, limit: int) -> FormData:
    """A multipart form with at most one file, read up to ``limit`` bytes. Raises
    :class:`Refused` for a form that is not one, or too large."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise Refused("the form did not come as the page sends it")
    parser = MultiPartParser(
        request.headers,
        _bounded(request, limit + 64 * 1024),
        max_files=1,
        max_fields=MAX_FIELDS,
        max_part_size=MAX_FORM_BYTES,
    )
    try:
        return await parser.parse()
    except _TooLarge:
        raise Refused("the file is too large (at most {limit} MB)", limit=limit // 2**20) from None
    except MultiPartException:
        raise Refused("the form did not come as the page sends it") from None
