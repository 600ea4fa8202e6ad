"""Automation in the inbox (owners and admins): greeting and away messages, which bot answers
first, the bot file's import and export, the actions it defines, and the bot's section of the
reports with the questions it could not answer. Intents and the "try it" box are in
``automation_intents``.

Everything is kept by the gateway's :class:`AutomationStore`; the running engine picks up a
change before the next customer message. Refusals of the store (``ConfigError``) are shown on
the form with what was typed kept.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, tzinfo
from typing import Any
from urllib.parse import urlencode

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from tresen.gateway.automation.config import (
    LANGUAGES,
    MAX_FILE,
    AutomationSettings,
    ConfigError,
    parse_bot_file,
)
from tresen.gateway.automation.engine import Automation
from tresen.gateway.automation.store import AutomationStore
from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.i18n import N_
from tresen.gateway.inbox.reports import Report, bounds_ms

__all__ = [
    "automation_of",
    "bot_report",
    "config_sentence",
    "engine_of",
    "router",
]

router = APIRouter()

HOME = "/inbox/settings/automation"
UNANSWERED_SHOWN = 50
# The texts of the bot settings, each in both languages: (field, its section, its key).
GREETING_TEXTS = (("greeting", "greeting", "text"), ("away", "away", "text"))
BOT_TEXTS = (
    ("not_understood", "bot", "not_understood"),
    ("did_you_mean", "bot", "did_you_mean"),
    ("handoff", "bot", "handoff"),
    ("handoff_closed", "bot", "handoff_closed"),
)
MODES = (
    ("off", N_("Nobody: people answer every message")),
    ("faq", N_("The FAQ bot")),
    ("external", N_("The business's own bot")),
)
# What the store and the bot file refuse, by the refusal's code; its own message follows.
CONFIG_SENTENCES = {
    "bad_text": N_("A text is missing or not a text"),
    "missing_text": N_("A text is missing"),
    "bad_language": N_("Texts are in English (en) and German (de) only"),
    "too_long": N_("A text is too long"),
    "bad_number": N_("A number is outside its range"),
    "bad_flag": N_("A switch is neither on nor off"),
    "bad_section": N_("A part of the file is not as expected"),
    "bad_mode": N_("Choose who answers first from the list"),
    "bad_keywords": N_("The hand-over words are too many or too long"),
    "bad_url": N_("Enter a full address starting with https:// or http://"),
    "bad_threshold": N_("The threshold to suggest must not be above the one to answer"),
    "bad_answer": N_("Choose what the intent answers"),
    "bad_choices": N_("Buttons need an id and a title each, at most three"),
    "bad_template": N_("Name a message template and its language"),
    "bad_action": N_("Choose one of the actions"),
    "bad_name": N_("A name is 1 to 40 small letters, digits or underscores"),
    "bad_examples": N_("The example phrasings are missing, too many or too long"),
    "too_many_intents": N_("The bot has too many intents"),
    "duplicate_intent": N_("There is an intent of that name already"),
    "unknown_action": N_("There is no such action"),
    "unknown_intent": N_("That intent does not exist"),
    "too_large": N_("The file is larger than 1 MiB"),
    "bad_yaml": N_("The file is not valid YAML"),
    "bad_value": N_("The file holds a value that is not allowed"),
    "action_in_use": N_("An intent still uses the action"),
    "unknown_question": N_("There is no such question"),
}
# Hand-over reasons are shown in words by settings_automation_reasons.html.


def automation_of(request: Request) -> AutomationStore:
    found: AutomationStore = request.app.state.automation_store
    return found


def engine_of(request: Request) -> Automation:
    found: Automation = request.app.state.automation
    return found


def config_sentence(exc: ConfigError, _: Any) -> str:
    """A refusal of the automation's configuration in the agent's language, with the
    store's own words on what exactly was refused."""
    general = CONFIG_SENTENCES.get(exc.code, N_("The bot's configuration refused this"))
    return f"{_(general)} ({exc.message})."


# --- the form's values -----------------------------------------------------------------------


def _values(settings: AutomationSettings) -> dict[str, str]:
    """The settings as the form shows them."""
    bot = settings.bot
    values = {
        "greeting_enabled": "on" if settings.greeting.enabled else "",
        "again_after_days": str(settings.greeting.again_after_days),
        "away_enabled": "on" if settings.away.enabled else "",
        "quiet_minutes": str(settings.quiet_after_agent_minutes),
        "mode": str(bot.mode),
        "external_url": bot.external_url,
        "answer_threshold": _percent(bot.answer_threshold),
        "suggest_threshold": _percent(bot.suggest_threshold),
        "misunderstood_limit": str(bot.misunderstood_limit),
        "handoff_keywords": "\n".join(bot.handoff_keywords),
    }
    data = settings.to_json()
    for name, section, key in (*GREETING_TEXTS, *BOT_TEXTS):
        texts = data[section][key]
        for language in LANGUAGES:
            values[f"{name}_{language}"] = str(texts.get(language, ""))
    return values


def _percent(share: float) -> str:
    return "" if not share else f"{share * 100:g}"


def _share(text: str, where: str) -> float:
    """A percentage typed in the form as a share (empty: 0, the matcher's default)."""
    text = text.strip().rstrip("%").strip().replace(",", ".")
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ConfigError("bad_number", f"{where} must be a percentage from 0 to 100") from None
    if not 0 <= value <= 100:
        raise ConfigError("bad_number", f"{where} must be a percentage from 0 to 100")
    return value / 100


def _whole(text: str, where: str) -> int:
    text = text.strip()
    if not text.isdigit() or len(text) > 6:
        raise ConfigError("bad_number", f"{where} must be a whole number")
    return int(text)


def _texts(form: FormData, name: str) -> dict[str, str]:
    return {language: web.field(form, f"{name}_{language}", 4096) for language in LANGUAGES}


def _put_texts(section: dict[str, Any], key: str, texts: dict[str, str]) -> None:
    """A text in both languages; both emptied, the default text again (a customer is never
    sent an empty message)."""
    if any(text.strip() for text in texts.values()):
        section[key] = texts
    else:
        section.pop(key, None)


# --- the page --------------------------------------------------------------------------------


async def _page(
    request: Request,
    who: SignedIn,
    *,
    typed: dict[str, str] | None = None,
    error: str | None = None,
    error_at: str = "",
    status_code: int = 200,
    new_secret: str | None = None,
) -> HTMLResponse:
    store = automation_of(request)
    settings = await store.settings()
    gateway = getattr(request.app.state, "gateway", None)
    profile = getattr(gateway, "profile", None) or {}
    return web.page(
        request,
        "settings_automation.html",
        who=who,
        status_code=status_code,
        section="automation",
        values={**_values(settings), **(typed or {})},
        modes=MODES,
        has_hours=bool(profile.get("hours")),
        has_secret=await store.agent_bot_secret() is not None,
        new_secret=new_secret,
        actions=await store.actions(with_headers=False),
        refusal=error,
        refusal_at=error_at,
    )


@router.get("/settings/automation")
async def automation_page(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _page(request, who)


@router.post("/settings/automation/greeting")
async def save_greeting(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    names = ("greeting_enabled", "away_enabled", "again_after_days", "quiet_minutes")
    typed = {name: web.field(form, name, 20) for name in names}
    store = automation_of(request)
    try:
        data = (await store.settings()).to_json()
        for name, section, key in GREETING_TEXTS:
            typed.update({f"{name}_{k}": v for k, v in _texts(form, name).items()})
            _put_texts(data[section], key, _texts(form, name))
        data["greeting"]["enabled"] = typed["greeting_enabled"] == "on"
        data["greeting"]["again_after_days"] = _whole(
            typed["again_after_days"], "greet again after"
        )
        data["away"]["enabled"] = typed["away_enabled"] == "on"
        data["quiet_after_agent_minutes"] = _whole(typed["quiet_minutes"], "quiet minutes")
        await store.save_settings(AutomationSettings.from_json(data))
    except ConfigError as exc:
        return await _page(
            request,
            who,
            typed=typed,
            error=config_sentence(exc, _),
            error_at="greeting",
            status_code=400,
        )
    return web.redirect(HOME, _("The greeting and away messages are saved."))


@router.post("/settings/automation/bot")
async def save_bot(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    typed = {
        "mode": web.field(form, "mode", 20),
        "external_url": web.field(form, "external_url", 2048).strip(),
        "answer_threshold": web.field(form, "answer_threshold", 10),
        "suggest_threshold": web.field(form, "suggest_threshold", 10),
        "misunderstood_limit": web.field(form, "misunderstood_limit", 10),
        "handoff_keywords": web.field(form, "handoff_keywords", 4096),
    }
    store = automation_of(request)
    try:
        data = (await store.settings()).to_json()
        bot = data["bot"]
        for name, _section, key in BOT_TEXTS:
            typed.update({f"{name}_{k}": v for k, v in _texts(form, name).items()})
            _put_texts(bot, key, _texts(form, name))
        bot["mode"] = typed["mode"]
        bot["external_url"] = typed["external_url"]
        bot["answer_threshold"] = _share(typed["answer_threshold"], "the threshold to answer")
        bot["suggest_threshold"] = _share(typed["suggest_threshold"], "the threshold to suggest")
        bot["misunderstood_limit"] = _whole(
            typed["misunderstood_limit"], "misunderstood messages before hand-over"
        )
        bot["handoff_keywords"] = typed["handoff_keywords"].splitlines()
        await store.save_settings(AutomationSettings.from_json(data))
    except ConfigError as exc:
        return await _page(
            request,
            who,
            typed=typed,
            error=config_sentence(exc, _),
            error_at="bot",
            status_code=400,
        )
    return web.redirect(HOME, _("The bot's settings are saved."))


@router.post("/settings/automation/secret")
async def new_secret(request: Request) -> Response:
    """Answered with the page itself, not a redirect: the secret is shown this once and must
    not travel in a URL."""
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, _form = got
    secret = await automation_of(request).new_agent_bot_secret()
    return await _page(request, who, new_secret=secret)


@router.post("/settings/automation/actions/{name}/delete")
async def delete_action(request: Request, name: str) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, _form = got
    _ = web.gettext_for(request, who)
    try:
        await automation_of(request).delete_action(name[:40])
    except ConfigError as exc:
        return await _page(
            request, who, error=config_sentence(exc, _), error_at="actions", status_code=400
        )
    return web.redirect(HOME, _("The action {name} is deleted.").format(name=name[:40]))


# --- the bot file ----------------------------------------------------------------------------


@router.post("/settings/automation/import")
async def import_file(request: Request) -> Response:
    """A bot file chosen on the page (multipart, one file): it replaces the intents and
    actions (and the settings, when it has them) whole, or changes nothing."""
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    _ = web.gettext_for(request, who)

    async def refused(sentence: str) -> Response:
        return await _page(request, who, error=sentence, error_at="file", status_code=400)

    if int(request.headers.get("content-length") or 0) > MAX_FILE + 16 * 1024:
        return await refused(_("Choose a bot file (YAML) of at most 1 MiB."))
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=MAX_FILE)
    except HTTPException:  # a malformed multipart body, or a part too large
        return await refused(_("Choose a bot file (YAML) of at most 1 MiB."))
    try:
        if not web.csrf_ok(form.get("csrf"), who.csrf):
            return web.refused(request, who)
        upload = form.get("file")
        data = await upload.read(MAX_FILE + 1) if isinstance(upload, UploadFile) else b""
        if not data or len(data) > MAX_FILE:
            return await refused(_("Choose a bot file (YAML) of at most 1 MiB."))
        try:
            config = parse_bot_file(data)
            await automation_of(request).import_config(config)
        except ConfigError as exc:
            return await refused(
                _("The file was not imported; nothing changed: {reason}").format(
                    reason=config_sentence(exc, _)
                )
            )
    finally:
        await form.close()
    return web.redirect(
        HOME,
        _("The bot file is imported: {intents} intents, {actions} actions.").format(
            intents=len(config.intents), actions=len(config.actions)
        ),
    )


@router.get("/settings/automation/export")
async def export_file(request: Request) -> Response:
    """The current bot file; the values of actions' headers are hidden, and the business's
    own bot's signing secret is never in it."""
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    config = await automation_of(request).export_config(with_headers=False)
    text = yaml.safe_dump(config.to_json(), allow_unicode=True, sort_keys=False, width=100)
    return Response(
        text,
        media_type="application/yaml; charset=utf-8",
        headers={**web.SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="bot.yaml"'},
    )


# --- the reports' bot section ----------------------------------------------------------------


def _zone(name: str) -> tzinfo:
    try:
        return UTC if name in ("", "UTC") else zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


async def bot_report(request: Request, report: Report) -> dict[str, Any]:
    """What the bot did in the report's period, and the questions it could not answer (the
    latest first), for the reports page."""
    store = automation_of(request)
    since_ms, until_ms = bounds_ms(report.start, report.end, _zone(report.zone))
    figures = await store.figures(since_ms, until_ms)
    intents = await store.intents()
    language = web.language_of(request, await web.signed_in(request))
    titles = {i.name: i.title.get(language) or i.title.get("en") or i.name for i in intents}
    return {
        "figures": figures,
        "intents": [(titles.get(name, name), n) for name, n in figures.intents],
        "unanswered": await store.unanswered(limit=UNANSWERED_SHOWN),
        "choices": sorted(titles.items(), key=lambda pair: pair[1].casefold()),
        "back": urlencode({"start": report.start, "end": report.end, "zone": report.zone}),
    }


def _reports_back(form: FormData) -> str:
    query = {k: web.field(form, k, 64) for k in ("start", "end", "zone")}
    return "/inbox/reports?" + urlencode({k: v for k, v in query.items() if v})


@router.post("/reports/unanswered/{question_id}/adopt")
async def adopt_question(request: Request, question_id: web.RowId) -> Response:
    """The business approves what the bot learns: the question becomes an example."""
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    back = _reports_back(form)
    try:
        intent = await automation_of(request).adopt(question_id, web.field(form, "intent", 40))
    except ConfigError as exc:
        return web.redirect(back, config_sentence(exc, _))
    title = intent.title.get(web.language_of(request, who)) or intent.name
    return web.redirect(back, _("The question is now an example of {intent}.").format(intent=title))


@router.post("/reports/unanswered/{question_id}/dismiss")
async def dismiss_question(request: Request, question_id: web.RowId) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    back = _reports_back(form)
    try:
        await automation_of(request).dismiss(question_id)
    except ConfigError as exc:
        return web.redirect(back, config_sentence(exc, _))
    return web.redirect(back, _("The question is dismissed; the bot learns nothing from it."))
