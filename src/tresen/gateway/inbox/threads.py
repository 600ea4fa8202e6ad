"""The conversation list and a conversation's thread: answering, notes, assignment, status
and labels."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.cloudapi.requests import SendRequest, parse_message_request
from tresen.gateway.inbox import web
from tresen.gateway.inbox.conversations import Mine, Status
from tresen.gateway.inbox.i18n import N_, Refused

__all__ = ["SNOOZE_CHOICES", "router"]

router = APIRouter()

SNOOZE_CHOICES = {
    "3600": N_("1 hour"),
    "14400": N_("4 hours"),
    "86400": N_("1 day"),
    "604800": N_("1 week"),
}


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
async def thread(request: Request, contact: web.ContactId) -> Response:
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
    )


@router.post("/c/{contact}/reply")
async def reply(request: Request, contact: web.ContactId) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    back = f"/inbox/c/{contact}"
    text = form.get("text")
    if not isinstance(text, str) or not text.strip():
        return web.redirect(back, _("Nothing to send."))
    expanded = await web.quick_of(request).expand(text)
    if expanded is None and text.strip().startswith("/") and " " not in text.strip():
        return web.redirect(
            back, _("There is no quick reply {shortcut}.").format(shortcut=text.strip())
        )
    text = expanded or text
    gateway = request.app.state.gateway
    found = await gateway.store.contact(contact)
    if found is None:
        return web.redirect("/inbox", _("There is no such conversation."))
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
        return web.redirect(back, _("Not sent: {reason}").format(reason=exc.details))
    await web.conversations_of(request).record(contact, who.agent.id, "reply", text[:200])
    return web.redirect(back)


@router.post("/c/{contact}/label")
async def label(request: Request, contact: web.ContactId) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    back = f"/inbox/c/{contact}"
    name, remove = form.get("label"), form.get("remove")
    inbox = web.conversations_of(request)
    if not isinstance(name, str):
        return web.redirect(back, _("Name a label."))
    if remove:
        await inbox.unlabel(contact, name)
        await inbox.record(contact, who.agent.id, "unlabel", name)
        return web.redirect(back, _("Label {name} removed.").format(name=name))
    try:
        added = await inbox.label(contact, name)
    except Refused as exc:
        return web.redirect(back, exc.sentence(_))
    await inbox.record(contact, who.agent.id, "label", added)
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
    text = form.get("note")
    if not isinstance(text, str) or not text.strip():
        return web.redirect(back, _("An empty note was not kept."))
    await web.conversations_of(request).record(contact, who.agent.id, "note", text.strip())
    return web.redirect(back, _("Note kept for the team."))


@router.post("/c/{contact}/assign")
async def assign(request: Request, contact: web.ContactId) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    back = f"/inbox/c/{contact}"
    inbox = web.conversations_of(request)
    agent = form.get("agent")
    if agent in (None, ""):
        await inbox.assign(contact, None)
        await inbox.record(contact, who.agent.id, "assign", "")
        return web.redirect(back, _("Unassigned."))
    if not isinstance(agent, str) or not agent.isdigit() or len(agent) > 18:
        return web.redirect(back, _("There is no such agent."))
    target = await web.agents_of(request).get(int(agent))
    if target is None or not target.active:
        return web.redirect(back, _("There is no such agent."))
    await inbox.assign(contact, target.id)
    await inbox.record(contact, who.agent.id, "assign", target.display_name)
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
    status = form.get("status")
    if status not in {str(s) for s in Status}:
        return web.redirect(back, _("Choose a status."))
    inbox = web.conversations_of(request)
    until = None
    if status == str(Status.SNOOZED):
        seconds = form.get("snooze")
        if seconds not in SNOOZE_CHOICES:
            return web.redirect(back, _("Choose how long to snooze."))
        until = inbox.clock.now_ms() + int(str(seconds)) * 1000
    await inbox.set_status(contact, Status(str(status)), until)
    await inbox.record(contact, who.agent.id, "status", str(status))
    return web.redirect(back, _("Now {status}.").format(status=_(str(status))))
