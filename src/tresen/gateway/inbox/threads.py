"""The conversation list and a conversation's thread: answering, notes, assignment, status
and labels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from tresen.gateway.inbox import web
from tresen.gateway.inbox.actions import SNOOZE_CHOICES
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.composer import composing
from tresen.gateway.inbox.conversations import Mine, Status
from tresen.gateway.inbox.files import files_for
from tresen.gateway.inbox.i18n import Refused

__all__ = ["router"]

router = APIRouter()


@router.get("")
async def home(
    request: Request, mine: str = "all", status: str = "open", label: str = ""
) -> Response:
    who = await web.signed_in(request)
    if who is None:
        return web.redirect("/inbox/login")
    whose = Mine(mine) if mine in {str(m) for m in Mine} else Mine.ALL
    shown = Status(status) if status in {str(s) for s in Status} else Status.OPEN
    inbox = web.conversations_of(request)
    known = await inbox.labels.all()
    chosen = label if label in known else None
    listed = await inbox.list(me=who.agent.id, mine=whose, status=shown, label=chosen)
    return web.page(
        request,
        "home.html",
        who=who,
        conversations=listed,
        names=await web.names(request),
        whose=["mine", "unassigned", "all"],
        mine=str(whose),
        statuses=[str(s) for s in Status],
        status=str(shown),
        labels=known,
        label=chosen or "",
    )


@router.get("/c/{contact}")
async def thread(request: Request, contact: web.ContactId, reply: str = "") -> Response:
    who = await web.signed_in(request)
    if who is None:
        return web.redirect("/inbox/login")
    shown = await web.conversations_of(request).show(contact)
    if shown is None:
        _ = web.gettext_for(request, who)
        return web.page(
            request,
            "error.html",
            who=who,
            status_code=404,
            error=_("There is no such conversation."),
        )
    return web.page(
        request,
        "thread.html",
        who=who,
        c=shown.conversation,
        timeline=shown.timeline(),
        files=await files_for(request, contact, shown.messages),
        names=await web.names(request),
        statuses=[str(s) for s in Status],
        snooze_choices=SNOOZE_CHOICES,
        labels=await web.conversations_of(request).labels.all(),
        shortcuts=[q.shortcut for q in await web.quick_of(request).all()],
        **await composing(request, shown, reply[:80]),
    )


def _back(contact: str) -> str:
    return f"/inbox/c/{contact}"


@router.post("/c/{contact}/reply")
async def reply(request: Request, contact: web.ContactId) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> None:
        context = web.field(form, "context") or None
        await web.actions_of(request).reply(who.agent, contact, web.field(form, "text"), context)

    return await web.act(request, _back(contact), deed)


@router.post("/c/{contact}/label")
async def label(request: Request, contact: web.ContactId) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        name, actions = web.field(form, "label"), web.actions_of(request)
        if not name:
            return str(_("Name a label."))
        if form.get("remove"):
            await actions.unlabel(who.agent, contact, name)
            return str(_("Label {name} removed.").format(name=name))
        added = await actions.label(who.agent, contact, name)
        return str(_("Labelled {name}.").format(name=added))

    return await web.act(request, _back(contact), deed)


@router.post("/c/{contact}/note")
async def note(request: Request, contact: web.ContactId) -> Response:
    """A private note: kept in the gateway for the team, never sent to anyone."""

    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        await web.actions_of(request).note(who.agent, contact, web.field(form, "note"))
        return str(_("Note kept for the team."))

    return await web.act(request, _back(contact), deed)


@router.post("/c/{contact}/assign")
async def assign(request: Request, contact: web.ContactId) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        agent = web.field(form, "agent")
        if agent and (not agent.isdigit() or len(agent) > 18):
            raise Refused("there is no such agent")
        target = await web.actions_of(request).assign(
            who.agent, contact, int(agent) if agent else None
        )
        if target is None:
            return str(_("Unassigned."))
        if target.id == who.agent.id:
            return str(_("Assigned to you."))
        return str(_("Assigned to {name}.").format(name=target.display_name))

    return await web.act(request, _back(contact), deed)


@router.post("/c/{contact}/status")
async def set_status(request: Request, contact: web.ContactId) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        now = await web.actions_of(request).set_status(
            who.agent, contact, web.field(form, "status"), web.field(form, "snooze") or None
        )
        return str(_("Now {status}.").format(status=_(str(now))))

    return await web.act(request, _back(contact), deed)
