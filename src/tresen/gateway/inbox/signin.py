"""Signing in and out, and the language an agent reads the inbox in."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import AgentError, LoginThrottled
from tresen.gateway.inbox.i18n import translator

__all__ = ["router"]

router = APIRouter()


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await web.signed_in(request) is not None:
        return web.redirect("/inbox")
    token = secrets.token_urlsafe(32)
    response = web.page(request, "login.html", csrf=token)
    response.set_cookie(
        web.LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/inbox",
        secure=web.secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await web.read_form(request)
    expected = request.cookies.get(web.LOGIN_COOKIE, "")
    if not web.csrf_ok(form.get("csrf"), expected):
        return web.refused(request, None)
    username, password = form.get("username"), form.get("password")
    source = request.client.host if request.client else "unknown"
    _ = web.gettext_for(request, None)
    try:
        if not isinstance(username, str) or not isinstance(password, str):
            raise AgentError("the user name or the password is wrong")
        token, _who = await web.agents_of(request).sign_in(username, password, source)
    except LoginThrottled as exc:
        held = web.page(
            request, "login.html", status_code=429, csrf=expected, error=exc.sentence(_)
        )
        held.headers["Retry-After"] = str(exc.retry_after_s)
        return held
    except AgentError as exc:
        return web.page(
            request, "login.html", status_code=401, csrf=expected, error=exc.sentence(_)
        )
    response = web.redirect("/inbox")
    response.set_cookie(
        web.COOKIE,
        token,
        path="/inbox",
        secure=web.secure(request),
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(web.LOGIN_COOKIE, path="/inbox")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, _form = got
    await web.agents_of(request).sign_out(who.token_hash)
    _ = web.gettext_for(request, who)
    response = web.redirect("/inbox/login", _("Signed out."))
    response.delete_cookie(web.COOKIE, path="/inbox")
    return response


@router.post("/logout-everywhere")
async def logout_everywhere(request: Request) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, _form = got
    await web.agents_of(request).sign_out_everywhere(who.agent.id)
    _ = web.gettext_for(request, who)
    response = web.redirect("/inbox/login", _("Signed out everywhere."))
    response.delete_cookie(web.COOKIE, path="/inbox")
    return response


@router.post("/language")
async def choose_language(request: Request) -> Response:
    """The agent's language, kept with the agent (every browser of theirs follows)."""
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    language = form.get("language")
    try:
        await web.agents_of(request).set_language(who.agent.id, str(language))
    except AgentError as exc:
        return web.redirect("/inbox", exc.sentence(web.gettext_for(request, who)))
    back = form.get("back")
    to = back if isinstance(back, str) and _local(back) else "/inbox"
    _ = translator(str(language))
    return web.redirect(to, _("Language changed."))


def _local(path: str) -> bool:
    """Whether ``path`` is a page of the inbox (never another site)."""
    return path.startswith("/inbox") and "//" not in path and "\\" not in path
