"""The inbox's routes, gathered from its rooms under ``/inbox``.

Each room (signing in, conversations, the team, …) has a router of its own; what they share
(rendering, forms, sessions, languages) is in ``web``.
"""

from __future__ import annotations

from fastapi import APIRouter

from tresen.gateway.inbox import live, signin, team, threads
from tresen.gateway.inbox.web import STATIC_DIR, FormTooLarge, form_too_large

__all__ = ["STATIC_DIR", "FormTooLarge", "form_too_large", "router"]

router = APIRouter()
for room in (signin, threads, team, live):
    router.include_router(room.router, prefix="/inbox", include_in_schema=False)
