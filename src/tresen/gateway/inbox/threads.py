"""The conversation list and a conversation's thread: answering, notes, assignment, status
and labels."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tresen.gateway.inbox import web
from tresen.gateway.inbox.actions import SNOOZE_CHOICES
from tresen.gateway.inbox.composer import composing
from tresen.gateway.inbox.conversations import Mine, Status
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
    known = await inbox.all_labels()
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
        names=await web.names(request),
        statuses=[str(s) for s in Status],
        snooze_choices=SNOOZE_CHOICES,
        labels=await web.conversations_of(request).all_labels(),
        shortcuts=[q.shortcut for q in await web.quick_of(request).all()],
        **await composing(request, shown, reply[:80]),
    )


@router.post("/c/{contact}/reply")
async def reply(request: Request, contact: web.ContactId) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    text, context = form.get("text"), form.get("context")
    try:
        await web.actions_of(request).reply(
            who.agent, contact, str(text or ""), context if isinstance(context, str) else None
        )
    except Refused as exc:
        return web.redirect(f"/inbox/c/{contact}", exc.sentence(web.gettext_for(request, who)))
    return web.redirect(f"/inbox/c/{contact}")


@router.post("/c/{contact}/label")
async def label(request: Request, contact: web.ContactId) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    back = f"/inbox/c/{contact}"
    name = form.get("label")
    actions = web.actions_of(request)
    if not isinstance(name, str):
        return web.redirect(back, _("Name a label."))
    try:
        if form.get("remove"):
            await actions.unlabel(who.agent, contact, name)
            return web.redirect(back, _("Label {name} removed.").format(name=name))
        added = await actions.label(who.agent, contact, name)
    except Refused as exc:
        return web.redirect(back, exc.sentence(_))
    return web.redirect(back, _("Labelled {name}.").format(name=added))


@router.post("/c/{contact}/note")
async def note(request: Request, contact: web.ContactId) -> Response:
    """A private note: kept in the gateway for the team, never sent to anyone."""
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    back = f"/inbox/c/{contact}"
    try:
        await web.actions_of(request).note(who.agent, contact, str(form.get("note") or ""))
    except Refused as exc:
        return web.redirect(back, exc.sentence(_))
    return web.redirect(back, _("Note kept for the team."))


@router.post("/c/{contact}/assign")
async def assign(request: Request, contact: web.ContactId) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    back = f"/inbox/c/{contact}"
    agent = form.get("agent")
    if agent not in (None, "") and (
        not isinstance(agent, str) or not agent.isdigit() or len(agent) > 18
    ):
        return web.redirect(back, _("There is no such agent."))
    try:
        target = await web.actions_of(request).assign(
            who.agent, contact, int(agent) if isinstance(agent, str) and agent else None
        )
    except Refused as exc:
        return web.redirect(back, exc.sentence(_))
    if target is None:
        return web.redirect(back, _("Unassigned."))
    if target.id == who.agent.id:
        return web.redirect(back, _("Assigned to you."))
    return web.redirect(back, _("Assigned to {name}.").format(name=target.display_name))


@router.post("/c/{contact}/status")
async def set_status(request: Request, contact: web.ContactId) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    back = f"/inbox/c/{contact}"
    status, snooze = form.get("status"), form.get("snooze")
    try:
        now = await web.actions_of(request).set_status(
            who.agent, contact, str(status or ""), snooze if isinstance(snooze, str) else None
        )
    except Refused as exc:
        return web.redirect(back, exc.sentence(_))
    return web.redirect(back, _("Now {status}.").format(status=_(str(now))))
