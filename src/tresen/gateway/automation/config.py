"""What a business configures of its automation, and the bot file it imports.

Settings (greeting, away message, which bot answers first, its thresholds and texts) and
intents are checked here, whether they come from the inbox's forms, its JSON API or a YAML
file; a refused value raises :class:`ConfigError` with a stable code and a sentence. Texts a
customer reads exist in German and English (``Localized``); the customer's language picks one.

The bot file (``tresen gateway bot import FILE``)::

    settings:            # optional: greeting, away, bot (as AutomationSettings.to_json())
    intents:
      - name: baggage
        title: {en: Baggage, de: Gepäck}
        examples: ["How much luggage can I take?", "Wie viel Gepäck darf ich mitnehmen?"]
        answer: {text: {en: "...", de: "..."}}
    actions:             # HTTP calls into the business's systems (see http_actions)
      - name: flight_status
        url: https://...
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import yaml

__all__ = [
    "LANGUAGES",
    "MAX_EXAMPLES",
    "MAX_INTENTS",
    "Answer",
    "AnswerKind",
    "AutomationSettings",
    "AwaySettings",
    "BotConfig",
    "BotMode",
    "BotSettings",
    "Choice",
    "ConfigError",
    "GreetingSettings",
    "IntentSpec",
    "Localized",
    "localized",
    "parse_bot_file",
    "pick",
]

LANGUAGES = ("en", "de")
MAX_INTENTS = 200
MAX_EXAMPLES = 50
MAX_EXAMPLE = 300
MAX_TEXT = 4096
MAX_TITLE = 20
MAX_CHOICES = 3
MAX_ACTIONS = 50
MAX_KEYWORDS = 50
MAX_FILE = 1024 * 1024
NAME = re.compile(r"[a-z0-9_]{1,40}")

Localized = Mapping[str, str]
"""A text in the customer's languages: ``{"en": ..., "de": ...}`` (one may be missing)."""


class ConfigError(ValueError):
    """A refused configuration: ``code`` is stable (for the JSON API and tests), the message
    a sentence for the person who wrote it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def pick(texts: Localized, language: str) -> str:
    """The text in ``language``, else English, else any."""
    return texts.get(language) or texts.get("en") or next(iter(texts.values()), "")


def localized(value: Any, where: str, *, limit: int = MAX_TEXT, required: bool = True) -> Localized:
    """A ``Localized`` from a plain string (the same in both languages) or a mapping."""
    if isinstance(value, str):
        value = {language: value for language in LANGUAGES}
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("bad_text", f"{where} must be a text or a text per language (en, de)")
    texts: dict[str, str] = {}
    for language, text in value.items():
        if language not in LANGUAGES:
            raise ConfigError("bad_language", f"{where}: {language!r} is not a language (en, de)")
        if text is None or (isinstance(text, str) and not text.strip()):
            continue
        if not isinstance(text, str):
            raise ConfigError("bad_text", f"{where}.{language} must be a text")
        if len(text) > limit:
            raise ConfigError("too_long", f"{where}.{language} is longer than {limit} characters")
        texts[language] = text.strip()
    if required and not texts:
        raise ConfigError("missing_text", f"{where} needs a text")
    return texts


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError("bad_number", f"{where} must be a whole number from {low} to {high}")
    return value


def _share(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError("bad_number", f"{where} must be a number from 0 to 1")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError("bad_flag", f"{where} must be true or false")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("bad_section", f"{where} must be a mapping")
    return value


# --- settings ------------------------------------------------------------------------------------

DEFAULT_GREETING: Localized = {
    "en": "Hello and welcome to {name}! How can we help you?",
    "de": "Hallo und willkommen bei {name}! Wie können wir Ihnen helfen?",
}
DEFAULT_AWAY: Localized = {
    "en": "Thank you for your message. We are closed right now; our team answers from {opens}.",
    "de": "Danke für Ihre Nachricht. Wir sind gerade nicht da; unser Team antwortet ab {opens}.",
}
DEFAULT_NOT_UNDERSTOOD: Localized = {
    "en": "Sorry, I did not understand that. Could you say it in other words? "
    'Write "agent" to talk to a person.',
    "de": "Entschuldigung, das habe ich nicht verstanden. Können Sie es anders sagen? "
    'Schreiben Sie "Mitarbeiter", um mit einem Menschen zu sprechen.',
}
DEFAULT_DID_YOU_MEAN: Localized = {
    "en": "Did you mean one of these?",
    "de": "Meinten Sie eines davon?",
}
DEFAULT_HANDOFF: Localized = {
    "en": "I am passing you on to a colleague, who will answer here shortly.",
    "de": "Ich gebe Sie an eine Kollegin oder einen Kollegen weiter, die hier gleich antworten.",
}
DEFAULT_HANDOFF_CLOSED: Localized = {
    "en": "I am passing you on to our team. They are not in right now and will answer here "
    "from {opens}.",
    "de": "Ich gebe Sie an unser Team weiter. Es ist gerade nicht da und antwortet hier "
    "ab {opens}.",
}


@dataclass(frozen=True, slots=True)
class GreetingSettings:
    enabled: bool = False
    text: Localized = field(default_factory=lambda: dict(DEFAULT_GREETING))
    again_after_days: int = 14
    """Greet again after this many days of silence (0: only ever on the first message)."""


@dataclass(frozen=True, slots=True)
class AwaySettings:
    enabled: bool = False
    text: Localized = field(default_factory=lambda: dict(DEFAULT_AWAY))


class BotMode(StrEnum):
    OFF = "off"
    FAQ = "faq"
    EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class BotSettings:
    mode: BotMode = BotMode.OFF
    answer_threshold: float = 0.0
    """At or above: answer (0: the matcher's own default)."""
    suggest_threshold: float = 0.0
    """At or above, below ``answer_threshold``: "did you mean" (0: the matcher's default)."""
    misunderstood_limit: int = 2
    """Misunderstood messages in a row that hand the conversation over."""
    handoff_keywords: tuple[str, ...] = ()
    """Words or phrases that hand the conversation over at once (a rule of the business)."""
    external_url: str = ""
    """Where the business's own bot is posted each message (``mode`` external)."""
    not_understood: Localized = field(default_factory=lambda: dict(DEFAULT_NOT_UNDERSTOOD))
    did_you_mean: Localized = field(default_factory=lambda: dict(DEFAULT_DID_YOU_MEAN))
    handoff: Localized = field(default_factory=lambda: dict(DEFAULT_HANDOFF))
    handoff_closed: Localized = field(default_factory=lambda: dict(DEFAULT_HANDOFF_CLOSED))


@dataclass(frozen=True, slots=True)
class AutomationSettings:
    greeting: GreetingSettings = field(default_factory=GreetingSettings)
    away: AwaySettings = field(default_factory=AwaySettings)
    bot: BotSettings = field(default_factory=BotSettings)
    quiet_after_agent_minutes: int = 10
    """No greeting or away message when an agent answered within this many minutes."""

    @property
    def anything_on(self) -> bool:
        """Whether automation does anything at all (greeting, away message or a bot)."""
        return self.greeting.enabled or self.away.enabled or self.bot.mode is not BotMode.OFF

    def to_json(self) -> dict[str, Any]:
        bot = self.bot
        return {
            "greeting": {
                "enabled": self.greeting.enabled,
                "text": dict(self.greeting.text),
                "again_after_days": self.greeting.again_after_days,
            },
            "away": {"enabled": self.away.enabled, "text": dict(self.away.text)},
            "quiet_after_agent_minutes": self.quiet_after_agent_minutes,
            "bot": {
                "mode": str(bot.mode),
                "answer_threshold": bot.answer_threshold,
                "suggest_threshold": bot.suggest_threshold,
                "misunderstood_limit": bot.misunderstood_limit,
                "handoff_keywords": list(bot.handoff_keywords),
                "external_url": bot.external_url,
                "not_understood": dict(bot.not_understood),
                "did_you_mean": dict(bot.did_you_mean),
                "handoff": dict(bot.handoff),
                "handoff_closed": dict(bot.handoff_closed),
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> AutomationSettings:
        """Checked settings from JSON; what is missing keeps its default."""
        data = _mapping(data, "settings")
        base = cls()
        greeting_in = _mapping(data.get("greeting"), "greeting")
        greeting = GreetingSettings(
            enabled=_bool(greeting_in.get("enabled", False), "greeting.enabled"),
            text=localized(greeting_in.get("text", base.greeting.text), "greeting.text"),
            again_after_days=_int(
                greeting_in.get("again_after_days", 14), "greeting.again_after_days", 0, 365
            ),
        )
        away_in = _mapping(data.get("away"), "away")
        away = AwaySettings(
            enabled=_bool(away_in.get("enabled", False), "away.enabled"),
            text=localized(away_in.get("text", base.away.text), "away.text"),
        )
        bot_in = _mapping(data.get("bot"), "bot")
        try:
            mode = BotMode(bot_in.get("mode", "off"))
        except ValueError:
            raise ConfigError("bad_mode", "bot.mode must be off, faq or external") from None
        keywords = bot_in.get("handoff_keywords", [])
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise ConfigError("bad_keywords", "bot.handoff_keywords must be a list of words")
        keywords = [k.strip() for k in keywords if k.strip()]
        if len(keywords) > MAX_KEYWORDS or any(len(k) > 60 for k in keywords):
            raise ConfigError(
                "bad_keywords", f"at most {MAX_KEYWORDS} hand-over words of 60 characters"
            )
        url = bot_in.get("external_url", "")
        if not isinstance(url, str) or (url and not re.match(r"https?://[^\s/]+", url)):
            raise ConfigError("bad_url", "bot.external_url must be an http(s) URL")
        if mode is BotMode.EXTERNAL and not url:
            raise ConfigError("bad_url", "the business's own bot needs its URL")
        answer = _share(bot_in.get("answer_threshold", 0.0), "bot.answer_threshold")
        suggest = _share(bot_in.get("suggest_threshold", 0.0), "bot.suggest_threshold")
        if answer and suggest and suggest > answer:
            raise ConfigError(
                "bad_threshold", "the threshold to suggest must not be above the one to answer"
            )
        bot = BotSettings(
            mode=mode,
            answer_threshold=answer,
            suggest_threshold=suggest,
            misunderstood_limit=_int(
                bot_in.get("misunderstood_limit", 2), "bot.misunderstood_limit", 1, 10
            ),
            handoff_keywords=tuple(keywords),
            external_url=url[:2048],
            not_understood=localized(
                bot_in.get("not_understood", base.bot.not_understood), "bot.not_understood"
            ),
            did_you_mean=localized(
                bot_in.get("did_you_mean", base.bot.did_you_mean), "bot.did_you_mean"
            ),
            handoff=localized(bot_in.get("handoff", base.bot.handoff), "bot.handoff"),
            handoff_closed=localized(
                bot_in.get("handoff_closed", base.bot.handoff_closed), "bot.handoff_closed"
            ),
        )
        return cls(
            greeting=greeting,
            away=away,
            bot=bot,
            quiet_after_agent_minutes=_int(
                data.get("quiet_after_agent_minutes", 10), "quiet_after_agent_minutes", 0, 1440
            ),
        )

    def with_changes(self, **sections: Any) -> AutomationSettings:
        return replace(self, **sections)


# --- intents -------------------------------------------------------------------------------------


class AnswerKind(StrEnum):
    TEXT = "text"
    BUTTONS = "buttons"
    TEMPLATE = "template"
    ACTION = "action"
    HANDOFF = "handoff"


@dataclass(frozen=True, slots=True)
class Choice:
    """A reply button: ``id`` ``intent:NAME`` answers that intent when pressed."""

    id: str
    title: Localized


@dataclass(frozen=True, slots=True)
class Answer:
    kind: AnswerKind
    text: Localized = field(default_factory=dict)
    """The text (``text``), the body above the buttons (``buttons``), or what the customer is
    told before people take over (``handoff``, optional)."""
    choices: tuple[Choice, ...] = ()
    template: tuple[str, str] | None = None
    """A template's name and language (``template``)."""
    action: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.kind is AnswerKind.TEXT:
            return {"text": dict(self.text)}
        if self.kind is AnswerKind.BUTTONS:
            return {
                "buttons": {
                    "body": dict(self.text),
                    "choices": [{"id": c.id, "title": dict(c.title)} for c in self.choices],
                }
            }
        if self.kind is AnswerKind.TEMPLATE:
            assert self.template is not None
            return {"template": {"name": self.template[0], "language": self.template[1]}}
        if self.kind is AnswerKind.ACTION:
            return {"action": self.action}
        return {"handoff": dict(self.text) or True}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Answer:
        data = _mapping(data, where)
        kinds = [k for k in AnswerKind if k in data]
        if len(kinds) != 1:
            raise ConfigError(
                "bad_answer", f"{where} must be one of: text, buttons, template, action, handoff"
            )
        kind = kinds[0]
        value = data[kind]
        if kind is AnswerKind.TEXT:
            return cls(kind, text=localized(value, f"{where}.text"))
        if kind is AnswerKind.BUTTONS:
            buttons = _mapping(value, f"{where}.buttons")
            raw = buttons.get("choices")
            if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CHOICES:
                raise ConfigError(
                    "bad_choices", f"{where}.buttons needs 1 to {MAX_CHOICES} choices"
                )
            choices = []
            for i, item in enumerate(raw):
                item = _mapping(item, f"{where}.buttons.choices[{i}]")
                choice_id = item.get("id")
                if not isinstance(choice_id, str) or not 1 <= len(choice_id) <= 256:
                    raise ConfigError("bad_choices", f"{where}.buttons.choices[{i}] needs an id")
                title = localized(
                    item.get("title"), f"{where}.buttons.choices[{i}].title", limit=MAX_TITLE
                )
                choices.append(Choice(choice_id, title))
            body = localized(buttons.get("body"), f"{where}.buttons.body", limit=1024)
            return cls(kind, text=body, choices=tuple(choices))
        if kind is AnswerKind.TEMPLATE:
            template = _mapping(value, f"{where}.template")
            name, language = template.get("name"), template.get("language", "en")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,512}", name):
                raise ConfigError("bad_template", f"{where}.template needs a template's name")
            if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2}(_[A-Z]{2})?", language):
                raise ConfigError("bad_template", f"{where}.template.language is not a language")
            return cls(kind, template=(name, language))
        if kind is AnswerKind.ACTION:
            if not isinstance(value, str) or not NAME.fullmatch(value):
                raise ConfigError("bad_action", f"{where}.action must name an action")
            return cls(kind, action=value)
        if value is True:
            return cls(kind)
        return cls(kind, text=localized(value, f"{where}.handoff"))


@dataclass(frozen=True, slots=True)
class IntentSpec:
    name: str
    title: Localized
    examples: tuple[str, ...]
    answer: Answer
    enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": dict(self.title),
            "examples": list(self.examples),
            "answer": self.answer.to_json(),
            "enabled": self.enabled,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "intent") -> IntentSpec:
        data = _mapping(data, where)
        name = data.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(
                "bad_name", f"{where}.name must be 1-40 small letters, digits or underscores"
            )
        where = f"intent {name}"
        raw = data.get("examples")
        if isinstance(raw, str):
            raw = [line for line in raw.splitlines()]
        if not isinstance(raw, list) or not all(isinstance(e, str) for e in raw):
            raise ConfigError("bad_examples", f"{where}: examples must be a list of phrasings")
        examples: list[str] = []
        for example in raw:
            example = " ".join(example.split())
            if example and example.casefold() not in {e.casefold() for e in examples}:
                examples.append(example)
        if not examples:
            raise ConfigError("bad_examples", f"{where} needs at least one example")
        if len(examples) > MAX_EXAMPLES:
            raise ConfigError("bad_examples", f"{where} has more than {MAX_EXAMPLES} examples")
        if any(len(e) > MAX_EXAMPLE for e in examples):
            raise ConfigError(
                "bad_examples", f"{where}: an example is longer than {MAX_EXAMPLE} characters"
            )
        title = data.get("title") or name.replace("_", " ").capitalize()
        return cls(
            name=name,
            title=localized(title, f"{where}.title", limit=MAX_TITLE),
            examples=tuple(examples),
            answer=Answer.from_json(data.get("answer"), f"{where}.answer"),
            enabled=_bool(data.get("enabled", True), f"{where}.enabled"),
        )


@dataclass(frozen=True, slots=True)
class BotConfig:
    """A bot file: settings (``None``: keep the current ones), intents and actions (each
    action as its JSON, checked by ``http_actions``)."""

    settings: AutomationSettings | None
    intents: tuple[IntentSpec, ...]
    actions: tuple[Mapping[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.settings is not None:
            out["settings"] = self.settings.to_json()
        out["intents"] = [i.to_json() for i in self.intents]
        out["actions"] = [dict(a) for a in self.actions]
        return out


def check_intents(intents: Sequence[IntentSpec], actions: Sequence[str]) -> None:
    """Names unique, within the limits, and every action an intent names defined."""
    if len(intents) > MAX_INTENTS:
        raise ConfigError("too_many_intents", f"a bot has at most {MAX_INTENTS} intents")
    seen: set[str] = set()
    for intent in intents:
        if intent.name in seen:
            raise ConfigError("duplicate_intent", f"the intent {intent.name} is there twice")
        seen.add(intent.name)
    for intent in intents:
        if intent.answer.kind is AnswerKind.ACTION and intent.answer.action not in actions:
            raise ConfigError(
                "unknown_action",
                f"intent {intent.name} calls the action {intent.answer.action}, "
                "which is not defined",
            )
        for choice in intent.answer.choices:
            target = choice.id.removeprefix("intent:")
            if choice.id.startswith("intent:") and target not in seen:
                raise ConfigError(
                    "unknown_intent", f"intent {intent.name} has a button for unknown {target}"
                )


def parse_bot_file(text: str | bytes) -> BotConfig:
    """A bot file (YAML, or JSON, which is YAML too), checked whole: nothing of a refused
    file is taken."""
    if len(text) > MAX_FILE:
        raise ConfigError("too_large", "a bot file is at most 1 MiB")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError("bad_yaml", f"the file is not valid YAML{line}") from None
    data = _mapping(data, "the file")
    unknown = set(data) - {"settings", "intents", "actions"}
    if unknown:
        raise ConfigError("bad_section", f"unknown sections: {', '.join(sorted(unknown))}")
    settings = None
    if data.get("settings") is not None:
        settings = AutomationSettings.from_json(data["settings"])
    raw_intents = data.get("intents") or []
    if not isinstance(raw_intents, list):
        raise ConfigError("bad_section", "intents must be a list")
    intents = tuple(
        IntentSpec.from_json(item, f"intents[{i}]") for i, item in enumerate(raw_intents)
    )
    raw_actions = data.get("actions") or []
    if not isinstance(raw_actions, list) or len(raw_actions) > MAX_ACTIONS:
        raise ConfigError("bad_section", f"actions must be a list of at most {MAX_ACTIONS}")
    actions: list[Mapping[str, Any]] = []
    for i, item in enumerate(raw_actions):
        item = _mapping(item, f"actions[{i}]")
        if not isinstance(item.get("name"), str) or not NAME.fullmatch(item["name"]):
            raise ConfigError("bad_name", f"actions[{i}].name must be a name like order_status")
        try:
            actions.append(json.loads(json.dumps(item)))
        except (TypeError, ValueError):
            raise ConfigError("bad_value", f"actions[{i}] holds a value that is not JSON") from None
    check_intents(intents, [str(a["name"]) for a in actions])
    return BotConfig(settings, intents, tuple(actions))
