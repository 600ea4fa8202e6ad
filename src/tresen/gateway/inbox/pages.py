"""The inbox's routes, gathered from its rooms under ``/inbox``.

Each room (signing in, conversations, the team, …) has a router of its own; what they share
(rendering, forms, sessions, languages) is in ``web``.
"""

from __future__ import annotations

from fastapi import APIRouter

from tresen.gateway.inbox import (
    automation,
    automation_intents,
    bills,
    campaign_pages,
    composer,
    files,
    finding,
    list_pages,
    live,
    me,
    settings,
    settings_api,
    signin,
    team,
    teamwork,
    threads,
)
from tresen.gateway.inbox.web import STATIC_DIR, FormTooLarge, form_too_large

__all__ = ["STATIC_DIR", "FormTooLarge", "form_too_large", "router"]

router = APIRouter()
ROOMS = (
    signin,
    threads,
    live,
    composer,
    files,
    team,
    me,
    teamwork,
    bills,
    finding,
    settings,
    settings_api,
    automation,
    automation_intents,
    campaign_pages,
    list_pages,
)
for room in ROOMS:
    router.include_router(room.router, prefix="/inbox", include_in_schema=False)
