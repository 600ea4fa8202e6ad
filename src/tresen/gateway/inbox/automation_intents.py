"""The FAQ bot's intents in the inbox (owners and admins): the list, the form that adds or
changes one, deleting one (after a confirmation), and the "try it" box that shows what the bot
would make of a message now.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tresen.gateway.automation.config import (
    LANGUAGES,
    MAX_CHOICES,
    MAX_TITLE,
    AnswerKind,
    ConfigError,
    IntentSpec,
)
from tresen.gateway.automation.matcher import Decision, Match
from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.automation import automation_of, config_sentence, engine_of
from tresen.gateway.inbox.i18n import N_

__all__ = ["router"]

router = APIRouter()

INTENTS = "/inbox/settings/automation/intents"
TRY_MAX = 1000
KINDS = (
    ("text", N_("A text")),
    ("buttons", N_("A text with buttons")),
    ("template", N_("A message template")),
    ("action", N_("An action (the business's system)")),
    ("handoff", N_("Hand over to people")),
)
INTENT_FIELDS = (
    "name",
    "was",
    "enabled",
    "kind",
    "examples",
    "template_name",
    "template_language",
    "action",
    *(f"title_{lang}" for lang in LANGUAGES),
    *(f"text_{lang}" for lang in LANGUAGES),
    *(f"body_{lang}" for lang in LANGUAGES),
    *(f"choice{n}_id" for n in range(1, MAX_CHOICES + 1)),
    *(f"choice{n}_{lang}" for n in range(1, MAX_CHOICES + 1) for lang in LANGUAGES),
)


def _blank() -> dict[str, str]:
    return {**dict.fromkeys(INTENT_FIELDS, ""), "enabled": "on", "kind": "text"}


def _values(intent: IntentSpec) -> dict[str, str]:
    """The intent as its form shows it."""
    answer = intent.answer
    values = _blank()
    values.update(
        name=intent.name,
        was=intent.name,
        enabled="on" if intent.enabled else "",
        kind=str(answer.kind),
        examples="\n".join(intent.examples),
        action=answer.action or "",
    )
    for language in LANGUAGES:
        values[f"title_{language}"] = intent.title.get(language, "")
        text = answer.text.get(language, "")
        values[f"{'body' if answer.kind is AnswerKind.BUTTONS else 'text'}_{language}"] = text
    for n, choice in enumerate(answer.choices, start=1):
        values[f"choice{n}_id"] = choice.id
        for language in LANGUAGES:
            values[f"choice{n}_{language}"] = choice.title.get(language, "")
    if answer.template is not None:
        values["template_name"], values["template_language"] = answer.template
    return values


def _texts(typed: dict[str, str], prefix: str) -> dict[str, str]:
    return {lang: typed[f"{prefix}_{lang}"] for lang in LANGUAGES if typed[f"{prefix}_{lang}"]}


def _spec(typed: dict[str, str]) -> IntentSpec:
    """The intent the form describes, checked by the store's rules."""
    kind = typed["kind"]
    answer: dict[str, Any]
    if kind == "buttons":
        choices = [
            {"id": typed[f"choice{n}_id"].strip(), "title": _texts(typed, f"choice{n}")}
            for n in range(1, MAX_CHOICES + 1)
            if typed[f"choice{n}_id"].strip() or _texts(typed, f"choice{n}")
        ]
        answer = {"buttons": {"body": _texts(typed, "body"), "choices": choices}}
    elif kind == "template":
        answer = {
            "template": {
                "name": typed["template_name"].strip(),
                "language": typed["template_language"].strip() or "en",
            }
        }
    elif kind == "action":
        answer = {"action": typed["action"]}
    elif kind == "handoff":
        answer = {"handoff": _texts(typed, "text") or True}
    else:
        answer = {"text": _texts(typed, "text")}
    return IntentSpec.from_json(
        {
            "name": typed["name"].strip(),
            "title": _texts(typed, "title") or None,
            "examples": typed["examples"],
            "answer": answer,
            "enabled": typed["enabled"] == "on",
        }
    )


# --- "try it" --------------------------------------------------------------------------------


def _verdict(match: Match, title: Any, _: Any) -> dict[str, Any]:
    """What the bot would do with the text, as the page says it."""
    percent = round(match.score * 100)
    alternatives = [(title(name), round(score * 100)) for name, score in match.alternatives]
    if match.decision is Decision.ANSWER and match.intent:
        said = _("Would answer: {intent} ({score} %)").format(
            intent=title(match.intent), score=percent
        )
    elif match.decision is Decision.SUGGEST:
        said = _("Would ask: did you mean {choices}?").format(
            choices=", ".join(name for name, _score in alternatives)
        )
    elif match.decision is Decision.HANDOFF:
        said = _("Would hand over: asked for a person")
    else:
        said = _("Would not understand")
    return {
        "said": said,
        "decision": str(match.decision),
        "alternatives": alternatives,
        "language": match.language,
    }


async def _tried(request: Request, who: SignedIn, text: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    _ = web.gettext_for(request, who)
    engine = engine_of(request)
    match = await engine.match(text[:TRY_MAX])
    language = web.language_of(request, who)
    return {"text": text, **_verdict(match, lambda n: engine.intent_title(n, language), _)}


# --- the pages -------------------------------------------------------------------------------


async def _list_page(
    request: Request,
    who: SignedIn,
    *,
    tried: dict[str, Any] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    store = automation_of(request)
    return web.page(
        request,
        "settings_automation_intents.html",
        who=who,
        status_code=status_code,
        section="automation",
        intents=await store.intents(),
        bot_mode=str((await store.settings()).bot.mode),
        kinds=dict(KINDS),
        tried=tried,
        error=error,
    )


async def _intent_page(
    request: Request,
    who: SignedIn,
    values: dict[str, str],
    *,
    tried: dict[str, Any] | None = None,
    error: str | None = None,
    confirm_delete: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    store = automation_of(request)
    return web.page(
        request,
        "settings_automation_intent.html",
        who=who,
        status_code=status_code,
        section="automation",
        values=values,
        kinds=KINDS,
        actions=[str(a["name"]) for a in await store.actions(with_headers=False)],
        intent_names=[i.name for i in await store.intents()],
        choices=range(1, MAX_CHOICES + 1),
        text_languages=LANGUAGES,
        title_max=MAX_TITLE,
        tried=tried,
        error=error,
        confirm_delete=confirm_delete,
    )


def _unknown(request: Request, who: SignedIn) -> HTMLResponse:
    _ = web.gettext_for(request, who)
    return web.page(
        request, "error.html", who=who, status_code=404, error=_("There is no such intent.")
    )


@router.get("/settings/automation/intents")
async def intents_page(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _list_page(request, who)


@router.get("/settings/automation/new-intent")
async def new_intent(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _intent_page(request, who, _blank())


@router.get("/settings/automation/intents/{name}")
async def intent_page(request: Request, name: str, delete: str = "") -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    intent = await automation_of(request).intent(name[:40])
    if intent is None:
        return _unknown(request, who)
    return await _intent_page(request, who, _values(intent), confirm_delete=delete == "1")


@router.post("/settings/automation/intents")
async def save_intent(request: Request) -> Response:
    """Adds an intent, or changes the one named in ``was`` (renaming it keeps its place)."""
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    typed = {name: web.field(form, name, 16 * 1024) for name in INTENT_FIELDS}
    try:
        spec = _spec(typed)
        await automation_of(request).put_intent(spec, was=typed["was"] or None)
    except ConfigError as exc:
        return await _intent_page(
            request, who, typed, error=config_sentence(exc, _), status_code=400
        )
    title = spec.title.get(web.language_of(request, who)) or spec.name
    return web.redirect(
        f"{INTENTS}/{spec.name}", _("The intent {intent} is saved.").format(intent=title)
    )


@router.post("/settings/automation/intents/{name}/delete")
async def delete_intent(request: Request, name: str) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, _form = got
    _ = web.gettext_for(request, who)
    try:
        await automation_of(request).delete_intent(name[:40])
    except ConfigError as exc:
        return await _list_page(request, who, error=config_sentence(exc, _), status_code=400)
    return web.redirect(INTENTS, _("The intent {name} is deleted.").format(name=name[:40]))


@router.post("/settings/automation/try")
async def try_it(request: Request) -> Response:
    """What the bot would make of a message, shown on the page it was asked from (the list,
    or an intent's form)."""
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    tried = await _tried(request, who, web.field(form, "text", TRY_MAX))
    back = web.field(form, "intent", 40)
    if back:
        intent = await automation_of(request).intent(back)
        if intent is not None:
            return await _intent_page(request, who, _values(intent), tried=tried)
    return await _list_page(request, who, tried=tried)
