"""The agent's own page: who they are, and their personal access tokens for the inbox's
JSON API (made, shown once, and revoked here)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.tokens import AgentTokens, TokenError

__all__ = ["router"]

router = APIRouter()


def tokens_of(request: Request) -> AgentTokens:
    found: AgentTokens = request.app.state.inbox_tokens
    return found


async def _me_page(
    request: Request,
    who: SignedIn,
    *,
    new_token: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return web.page(
        request,
        "me.html",
        who=who,
        status_code=status_code,
        tokens=await tokens_of(request).of(who.agent.id),
        new_token=new_token,
        error=error,
    )


@router.get("/me")
async def me(request: Request) -> Response:
    who = await web.signed_in(request)
    if who is None:
        return web.redirect("/inbox/login")
    return await _me_page(request, who)


@router.post("/me/tokens")
async def create_token(request: Request) -> Response:
    """A new token, shown on the answer itself (never in a URL, never again)."""
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    name = form.get("name")
    try:
        if not isinstance(name, str):
            raise TokenError("a token's name is 1 to 64 characters on one line")
        _listed, token = await tokens_of(request).create(who.agent.id, name)
    except TokenError as exc:
        _ = web.gettext_for(request, who)
        return await _me_page(request, who, error=exc.sentence(_), status_code=400)
    return await _me_page(request, who, new_token=token)


@router.post("/me/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: web.RowId) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, _form = got
    _ = web.gettext_for(request, who)
    if not await tokens_of(request).revoke(who.agent.id, token_id):
        return web.redirect("/inbox/me", _("There is no such token."))
    return web.redirect("/inbox/me", _("Token revoked; it no longer works."))
