"""The composer: reactions, reply buttons, and templates with their parameters and preview.

Replies quoting a message go through the thread's reply form (its ``context`` field); the
thread page asks :func:`composing` for what the composer shows. Everything works without
JavaScript: a preview is a GET of the parameters form, a send a POST of what was previewed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from tresen.gateway.inbox import web
from tresen.gateway.inbox.actions import MAX_BUTTON_TITLE, REACTIONS
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.attaching import ACCEPTED_TYPES, MAX_CAPTION, human_size
from tresen.gateway.inbox.conversations import Shown, ThreadMessage
from tresen.gateway.inbox.i18n import Refused
from tresen.gateway.inbox.message_templates import MessageTemplates
from tresen.gateway.inbox.render import (
    MAX_PARAMETER,
    Field,
    View,
    cloud_components,
    fill_template,
    parameter_fields,
    template_lines,
    template_view,
)
from tresen.wire.templates import ParameterMismatch, SignedTemplateBody

__all__ = ["composing", "router"]

router = APIRouter()

MAX_TEMPLATE_ID = 2**63 - 1


def templates_of(request: Request) -> MessageTemplates:
    found: MessageTemplates = request.app.state.inbox_templates
    return found


def _replying(shown: Shown, reply: str) -> ThreadMessage | None:
    if not reply:
        return None
    return next((m for m in shown.messages if m.wamid == reply), None)


async def composing(request: Request, shown: Shown, reply: str = "") -> dict[str, Any]:
    """What the thread page's composer shows: the message being answered (``reply``, a wamid
    of this thread), the reactions offered, and while the window is closed the approved
    templates (the only thing that may be sent then)."""
    largest = web.actions_of(request).gateway.media.max_upload_bytes
    context: dict[str, Any] = {
        "reactions": REACTIONS,
        "replying": _replying(shown, reply),
        "button_title_max": MAX_BUTTON_TITLE,
        "templates": [],
        "templates_trouble": "",
        "attach_accept": ACCEPTED_TYPES,
        "attach_largest": largest,
        "attach_largest_size": human_size(largest),
        "caption_max": MAX_CAPTION,
    }
    if not shown.conversation.window_open:
        try:
            context["templates"] = await templates_of(request).approved()
        except Refused as exc:
            who = await web.signed_in(request)
            context["templates_trouble"] = exc.sentence(web.gettext_for(request, who))
    return context


def _back(contact: str) -> str:
    return f"/inbox/c/{contact}"


@router.post("/c/{contact}/react")
async def react(request: Request, contact: web.ContactId) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        wamid, emoji = form.get("wamid"), form.get("emoji")
        if not isinstance(wamid, str) or not isinstance(emoji, str):
            return str(_("Choose a reaction."))
        await web.actions_of(request).react(who.agent, contact, wamid, emoji)
        if not emoji:
            return str(_("Reaction taken back."))
        return str(_("Reacted {emoji}.").format(emoji=emoji))

    return await web.act(request, _back(contact), deed)


@router.post("/c/{contact}/buttons")
async def buttons(request: Request, contact: web.ContactId) -> Response:
    async def deed(who: SignedIn, form: FormData, _: Any) -> str:
        titles = [web.field(form, f"button{i}") for i in (1, 2, 3)]
        await web.actions_of(request).buttons(
            who.agent,
            contact,
            web.field(form, "body"),
            titles,
            web.field(form, "context") or None,
        )
        return str(_("Sent with buttons."))

    return await web.act(request, _back(contact), deed)


def _template_id(raw: object) -> int | None:
    if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_TEMPLATE_ID else None


def _values(fields: list[Field], given: Mapping[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for f in fields:
        value = given.get(f.form_name)
        if isinstance(value, str):
            values[f.form_name] = value[:MAX_PARAMETER]
    return values


def _preview(
    signed: SignedTemplateBody, fields: list[Field], values: dict[str, str]
) -> tuple[View | None, list[str]]:
    """The template filled in with ``values`` as the customer will see it, or the problems."""
    components = cloud_components(signed, fields, values)
    try:
        return template_view(fill_template(signed, components)), []
    except ParameterMismatch as exc:
        return None, [f"{p.field}: {p.problem}" for p in exc.problems]
    except ValueError as exc:
        return None, [str(exc)]


@router.get("/c/{contact}/template")
async def template_page(request: Request, contact: web.ContactId, t: str = "") -> Response:
    who = await web.signed_in(request)
    if who is None:
        return web.redirect("/inbox/login")
    _ = web.gettext_for(request, who)
    if len(request.query_params) > web.MAX_FIELDS:
        return web.redirect(_back(contact), _("That form is larger than any of the inbox's."))
    shown = await web.conversations_of(request).show(contact, limit=1)
    if shown is None:
        return web.page(
            request,
            "error.html",
            who=who,
            status_code=404,
            error=_("There is no such conversation."),
        )
    shelf = templates_of(request)
    context: dict[str, Any] = {
        "c": shown.conversation,
        "templates": [],
        "chosen": None,
        "fields": [],
        "values": {},
        "preview": None,
        "problems": [],
    }
    try:
        context["templates"] = await shelf.approved()
        chosen_id = _template_id(t)
        if t and chosen_id is None:
            raise Refused("there is no such approved template")
        if chosen_id is not None:
            chosen, signed = await shelf.get(chosen_id)
            fields = parameter_fields(signed)
            values = _values(fields, request.query_params)
            context.update(chosen=chosen, fields=fields, values=values)
            # A preview once the form was filled in (or when the template takes nothing).
            if not fields or "preview" in request.query_params:
                view, problems = _preview(signed, fields, values)
                context.update(preview=view, problems=problems)
    except Refused as exc:
        context["trouble"] = exc.sentence(_)
    return web.page(request, "compose_template.html", who=who, **context)


@router.post("/c/{contact}/template")
async def send_template(request: Request, contact: web.ContactId) -> Response:
    got = await web.posted(request)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    chosen_id = _template_id(form.get("t"))
    back = f"/inbox/c/{contact}/template" + (f"?t={chosen_id}" if chosen_id else "")
    try:
        if chosen_id is None:
            raise Refused("there is no such approved template")
        chosen, signed = await templates_of(request).get(chosen_id)
        fields = parameter_fields(signed)
        values = _values(fields, form)
        view, problems = _preview(signed, fields, values)
        if view is None:
            return web.redirect(
                back,
                _("The values do not fit the template: {problems}").format(
                    problems="; ".join(problems)
                ),
            )
        await web.actions_of(request).send_template(
            who.agent,
            contact,
            chosen.name,
            chosen.language,
            cloud_components(signed, fields, values),
            "\n".join(template_lines(view)),
        )
    except Refused as exc:
        return web.redirect(back, exc.sentence(_))
    return web.redirect(_back(contact), _("Template {name} sent.").format(name=chosen.name))
