"""The live inbox: the event stream of a page, the fragments its script fetches, typing.

Pages work without JavaScript; with it (``static/inbox.js``) they follow ``/inbox/events``
and replace or append the fragments served here, rendered by the same templates as the
pages themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from tresen.gateway.inbox import web
from tresen.gateway.inbox.actions import REACTIONS
from tresen.gateway.inbox.conversations import Mine, Status
from tresen.gateway.inbox.files import files_for
from tresen.gateway.inbox.presence import Typing
from tresen.gateway.inbox.streams import Streams

__all__ = ["router"]

router = APIRouter()

MAX_MS = 2**53


def streams_of(request: Request) -> Streams:
    found: Streams = request.app.state.inbox_streams
    return found


def typing_of(request: Request) -> Typing:
    found: Typing = request.app.state.inbox_typing
    return found


def _plain(text: str, status_code: int) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status_code, headers=web.SECURITY_HEADERS)


@router.get("/events")
async def events(request: Request) -> Response:
    """What changes in the inbox, as Server-Sent Events, for a signed-in agent's page."""
    who = await web.signed_in(request)
    _ = web.gettext_for(request, who)
    if who is None:
        return _plain(_("Sign in to the inbox to follow it live."), 401)
    streams = streams_of(request)
    if not streams.room_for(who.agent.id):
        return _plain(_("Too many inbox pages are open live; close some and reload this one."), 429)
    headers = {
        **web.SECURITY_HEADERS,
        "Cache-Control": "no-store, no-transform",
        "X-Accel-Buffering": "no",  # a proxy in front (nginx) must not hold events back
    }
    return StreamingResponse(
        streams.follow(who.agent.id, request.cookies.get(web.COOKIE, "")),
        media_type="text/event-stream",
        headers=headers,
    )


@router.get("/list-items")
async def list_items(
    request: Request, mine: str = "all", status: str = "open", label: str = ""
) -> Response:
    """The rows of the conversation list with the filters of ``/inbox``."""
    who = await web.signed_in(request)
    if who is None:
        return _plain(web.gettext_for(request, None)("Sign in to the inbox first."), 401)
    whose = Mine(mine) if mine in {str(m) for m in Mine} else Mine.ALL
    shown = Status(status) if status in {str(s) for s in Status} else Status.OPEN
    inbox = web.conversations_of(request)
    chosen = label if label in await inbox.labels.all() else None
    listed = await inbox.list(me=who.agent.id, mine=whose, status=shown, label=chosen)
    return web.page(
        request,
        "_conversation_items.html",
        who=who,
        conversations=listed,
        names=await web.names(request),
    )


@router.get("/unread")
async def unread(request: Request) -> Response:
    """How many conversations have unread messages (the page's title shows it)."""
    who = await web.signed_in(request)
    if who is None:
        return _plain(web.gettext_for(request, None)("Sign in to the inbox first."), 401)
    count = await web.conversations_of(request).unread_count()
    return JSONResponse({"conversations": count}, headers=web.SECURITY_HEADERS)


@router.get("/c/{contact}/items")
async def thread_items(
    request: Request,
    contact: web.ContactId,
    after: Annotated[int, Query(ge=0, le=MAX_MS)] = 0,
) -> Response:
    """The thread's items (messages, notes, activity) after ``after`` (ms); the newest
    item's time in ``X-Inbox-Until``, for the next fetch."""
    who = await web.signed_in(request)
    _ = web.gettext_for(request, who)
    if who is None:
        return _plain(_("Sign in to the inbox first."), 401)
    shown = await web.conversations_of(request).show(contact)
    if shown is None:
        return _plain(_("There is no such conversation."), 404)
    timeline = [item for item in shown.timeline() if item.at_ms > after]
    # With the conversation and the reactions, as on the thread page: a message fetched here
    # replaces or joins the page's and must keep its Reply and reaction controls.
    response = web.page(
        request,
        "_thread_items.html",
        who=who,
        c=shown.conversation,
        reactions=REACTIONS,
        timeline=timeline,
        files=await files_for(request, contact, timeline),
        names=await web.names(request),
    )
    response.headers["X-Inbox-Until"] = str(max([after, *(i.at_ms for i in timeline)]))
    return response


@router.post("/c/{contact}/typing")
async def typing(request: Request, contact: web.ContactId) -> Response:
    """The agent is typing an answer (the page says so every few seconds)."""
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, _form = got
    if await web.actions_of(request).gateway.store.contact(contact) is None:
        return _plain(web.gettext_for(request, who)("There is no such conversation."), 404)
    await typing_of(request).typing(who.agent, contact)
    return Response(status_code=204, headers=web.SECURITY_HEADERS)
