"""The team and its quick replies (owners and admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import Agent, AgentError, Role, SignedIn
from tresen.gateway.inbox.quick import QuickReplyError

__all__ = ["router"]

router = APIRouter()


async def _team_page(
    request: Request, who: SignedIn, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return web.page(
        request,
        "agents.html",
        who=who,
        status_code=status_code,
        agents=await web.agents_of(request).all(),
        roles=[str(r) for r in Role],
        error=error,
    )


@router.get("/agents")
async def team(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _team_page(request, who)


@router.post("/agents")
async def add_agent(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    fields = [form.get(k) for k in ("username", "display_name", "role", "password")]
    try:
        username, name, role, password = (f if isinstance(f, str) else "" for f in fields)
        if role not in {str(r) for r in Role}:
            raise AgentError("choose a role: owner, admin or agent")
        if Role(role) is Role.OWNER and who.agent.role is not Role.OWNER:
            raise AgentError("only an owner makes someone owner")
        added = await web.agents_of(request).create(username, name, Role(role), password)
    except AgentError as exc:
        return await _team_page(request, who, error=exc.sentence(_), status_code=400)
    return web.redirect("/inbox/agents", _("Added {name}.").format(name=added.username))


async def _change(request: Request, agent_id: int, action: str) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    agents = web.agents_of(request)
    try:
        target = await agents.get(agent_id)
        if target is None:
            raise AgentError("there is no agent {id}", id=agent_id)
        _may_change(who.agent, target, form.get("role"))
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
        return await _team_page(request, who, error=exc.sentence(_), status_code=400)
    return web.redirect("/inbox/agents", _("Saved."))


def _may_change(me: Agent, target: Agent, role: object) -> None:
    """Admins manage agents and admins; only owners touch owners or make owners."""
    if role is not None and role not in {str(r) for r in Role}:
        raise AgentError("choose a role: owner, admin or agent")
    if me.role is Role.OWNER:
        return
    if target.role is Role.OWNER or role == str(Role.OWNER):
        raise AgentError("only an owner changes an owner or makes someone owner")


@router.post("/agents/{agent_id}/role")
async def change_role(request: Request, agent_id: web.RowId) -> Response:
    return await _change(request, agent_id, "role")


@router.post("/agents/{agent_id}/disable")
async def disable_agent(request: Request, agent_id: web.RowId) -> Response:
    return await _change(request, agent_id, "disable")


@router.post("/agents/{agent_id}/enable")
async def enable_agent(request: Request, agent_id: web.RowId) -> Response:
    return await _change(request, agent_id, "enable")


async def _quick_page(
    request: Request, who: SignedIn, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return web.page(
        request,
        "quick.html",
        who=who,
        status_code=status_code,
        replies=await web.quick_of(request).all(),
        error=error,
    )


@router.get("/quick-replies")
async def quick_replies(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _quick_page(request, who)


@router.post("/quick-replies")
async def add_quick_reply(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    shortcut, text = form.get("shortcut"), form.get("text")
    try:
        if not isinstance(shortcut, str) or not isinstance(text, str):
            raise QuickReplyError("a quick reply needs a shortcut and a text")
        added = await web.quick_of(request).add(shortcut, text)
    except QuickReplyError as exc:
        return await _quick_page(request, who, error=exc.sentence(_), status_code=400)
    return web.redirect(
        "/inbox/quick-replies", _("Added /{shortcut}.").format(shortcut=added.shortcut)
    )


@router.post("/quick-replies/{reply_id}/remove")
async def remove_quick_reply(request: Request, reply_id: web.RowId) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, _form = got
    await web.quick_of(request).remove(reply_id)
    return web.redirect("/inbox/quick-replies", web.gettext_for(request, who)("Removed."))
