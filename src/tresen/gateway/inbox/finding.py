"""Searching every message: the conversations that said something, with the words marked."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tresen.gateway.inbox import web
from tresen.gateway.inbox.conversations import Mine, Status
from tresen.gateway.inbox.search import MAX_QUERY, Search

__all__ = ["router", "search_of"]

router = APIRouter()

ANY = "any"


def search_of(request: Request) -> Search:
    found: Search = request.app.state.inbox_search
    return found


@router.get("/search")
async def search(
    request: Request, q: str = "", mine: str = "all", status: str = ANY, label: str = ""
) -> Response:
    who = await web.signed_in(request)
    if who is None:
        return web.redirect("/inbox/login")
    q = q[:MAX_QUERY]
    whose = Mine(mine) if mine in {str(m) for m in Mine} else Mine.ALL
    shown = Status(status) if status in {str(s) for s in Status} else None
    known = await web.conversations_of(request).labels.all()
    chosen = label if label in known else None
    found = await search_of(request).find(
        q, me=who.agent.id, mine=whose, status=shown, label=chosen
    )
    return web.page(
        request,
        "search.html",
        who=who,
        q=q,
        found=found,
        mine=str(whose),
        status=str(shown) if shown else ANY,
        label=chosen or "",
        narrowed=whose is not Mine.ALL or shown is not None or chosen is not None,
    )
