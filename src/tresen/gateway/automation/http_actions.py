"""Actions: an intent of the bot that calls the business's own system over HTTP and answers
from the response (a flight's status, an order's cancellation).

An action is configuration (:class:`HttpAction`, read by :func:`parse_action` from YAML or
JSON, checked when it is made) and one call (:meth:`ActionCaller.call`). Its texts are
templates limited to lookups, ``{{ response.flights.0.gate }}``: no expressions, no code. A
value that is missing or not a single value fails the call with a clear error instead of
sending a half-rendered answer. Values from the customer's text are percent-encoded into the
URL and JSON-escaped into the body, so they can never change the request's shape.

The caller is deliberately narrow: one request per attempt, no redirects, no cookies, no proxy
from the environment, an answer that must be JSON and is read only up to a limit, retries only
where a retry can help (network errors, time-outs, 5xx and 429), and a bounded total time.
Errors are for people and never hold header values, which carry the business's secrets.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from tresen.core.logging import get_logger
from tresen.gateway.webhooks.outbox import USER_AGENT

__all__ = [
    "DEFAULT_FAILURE",
    "MAX_PARAMS",
    "ActionCaller",
    "ActionError",
    "ActionOutcome",
    "DocumentAnswer",
    "HttpAction",
    "Param",
    "TemplateAnswer",
    "action_to_json",
    "find_params",
    "in_language",
    "parse_action",
]

log = get_logger(__name__)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_BODY_METHODS = ("POST", "PUT", "PATCH")
MAX_PARAMS = 5
_MAX_HEADERS = 20
_MAX_HEADER_VALUE = 4096
_MAX_URL = 2048
_MAX_RENDERED_URL = 8192
_MAX_BODY = 16 * 1024
_MAX_PATTERN = 200
_MAX_VALUE = 200
_MAX_SEARCHED_TEXT = 4096
_MAX_TEXT = 4096  # a WhatsApp text message's body
_MAX_SHORT_TEXT = 1024
_MAX_FILENAME = 240
_MAX_LANGUAGES = 10
_MAX_TEMPLATE_PARAMS = 20
_MIN_TIMEOUT_S, _MAX_TIMEOUT_S = 0.1, 30.0
_MAX_RETRIES = 5
_BACKOFF_S = 0.2

_NAME = re.compile(r"[a-z0-9_]{1,40}")
_PARAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_LANGUAGE = re.compile(r"[a-z]{2,3}")
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]{1,512}")
_TEMPLATE_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
# Headers the gateway sets itself or that belong to the connection, not to the business.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "accept-encoding",
        "user-agent",
        "content-type",
    }
)
_ROOTS_OF_REQUEST = ("params", "customer")
_ROOTS_OF_ANSWER = ("params", "customer", "response")

DEFAULT_FAILURE: Mapping[str, str] = {
    "en": "Sorry, I cannot look that up right now.",
    "de": "Das kann ich gerade leider nicht nachsehen.",
}


class ActionError(ValueError):
    """An action's configuration that cannot be used: ``code`` is stable for programs,
    ``str(exc)`` a sentence for the business."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    """A value the action needs from the customer's text: ``pattern`` finds it (its first
    group if it has one, else the whole match); ``ask`` (language -> question) asks for it."""

    name: str
    pattern: str
    ask: Mapping[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _PARAM_NAME.fullmatch(self.name):
            raise ActionError(
                "bad_param",
                f"a parameter's name must be 1-32 of a-z, 0-9 and _, starting with a letter, "
                f"not {_shown(self.name)}",
            )
        _compiled(self.name, self.pattern)
        _check_texts(
            self.ask, f"the question for parameter {self.name}", required=True, code="bad_param"
        )
        for text in self.ask.values():
            if "{{" in text:
                raise ActionError(
                    "bad_template", f"the question for parameter {self.name} takes no values"
                )


@dataclass(frozen=True, slots=True)
class TemplateAnswer:
    """An answer with an approved message template: its body's parameters are text templates
    over the response."""

    name: str
    language: str
    body: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TEMPLATE_NAME.fullmatch(self.name):
            raise ActionError(
                "bad_answer", "a template's name is lower-case letters, digits and _ only"
            )
        if not isinstance(self.language, str) or not _TEMPLATE_LANGUAGE.fullmatch(self.language):
            raise ActionError(
                "bad_language",
                f"a template's language is a code such as de or en_US, not {_shown(self.language)}",
            )
        if len(self.body) > _MAX_TEMPLATE_PARAMS:
            raise ActionError(
                "bad_answer", f"a template takes at most {_MAX_TEMPLATE_PARAMS} body parameters"
            )
        for text in self.body:
            if not isinstance(text, str) or not text.strip() or len(text) > _MAX_SHORT_TEXT:
                raise ActionError(
                    "bad_answer",
                    f"a template's body parameter is a text of 1-{_MAX_SHORT_TEXT} characters",
                )


@dataclass(frozen=True, slots=True)
class DocumentAnswer:
    """A file sent with the answer, which becomes its caption: the business's system names
    it by a ``link`` in its response (``{{ response.pdf }}``), the gateway fetches it (with the
    limits and the address checks of any ``link``) and sends it encrypted. ``filename`` is
    a text template too."""

    link: str
    filename: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.link, str) or not 0 < len(self.link) <= _MAX_URL:
            raise ActionError("bad_document", f"a document's link is 1-{_MAX_URL} characters")
        if not _PLACEHOLDER.fullmatch(self.link.strip()) and not self.link.startswith(
            ("https://", "http://")
        ):
            raise ActionError(
                "bad_document",
                "a document's link is an http(s) URL or one value of the response, "
                "e.g. {{response.pdf}}",
            )
        if self.filename is not None and (
            not isinstance(self.filename, str) or not 0 < len(self.filename) <= _MAX_FILENAME
        ):
            raise ActionError(
                "bad_document", f"a document's file name is 1-{_MAX_FILENAME} characters"
            )


@dataclass(frozen=True, slots=True)
class HttpAction:
    """One call to the business's system and how to answer from it; checked when made."""

    name: str
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    timeout_s: float = 5.0
    retries: int = 1
    params: tuple[Param, ...] = ()
    answer: Mapping[str, str] = field(default_factory=dict)
    template: TemplateAnswer | None = None
    document: DocumentAnswer | None = None
    failure: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_action(self)

    @property
    def max_total_s(self) -> float:
        """The longest a call can take: every attempt's time-out plus the waits between."""
        waits = sum(_backoff_s(n) for n in range(1, self.retries + 1))
        return self.timeout_s * (self.retries + 1) + waits


def _check_action(action: HttpAction) -> None:
    if not isinstance(action.name, str) or not _NAME.fullmatch(action.name):
        raise ActionError(
            "bad_name",
            f"an action's name is 1-40 of a-z, 0-9 and _, not {_shown(action.name)}",
        )
    if not isinstance(action.method, str) or action.method not in METHODS:
        raise ActionError(
            "bad_method", f"the method is one of {', '.join(METHODS)}, not {_shown(action.method)}"
        )
    _check_url(action)
    _check_headers(action.headers)
    if len(action.params) > MAX_PARAMS:
        raise ActionError("too_many_params", f"an action takes at most {MAX_PARAMS} parameters")
    names = [p.name for p in action.params]
    if len(set(names)) != len(names):
        raise ActionError("bad_param", "two parameters have the same name")
    declared = frozenset(names)
    _check_body(action, declared)
    if isinstance(action.timeout_s, bool) or not isinstance(action.timeout_s, int | float):
        raise ActionError("bad_timeout", "the time-out is a number of seconds")
    if not _MIN_TIMEOUT_S <= action.timeout_s <= _MAX_TIMEOUT_S:
        raise ActionError(
            "bad_timeout",
            f"the time-out is {_MIN_TIMEOUT_S:g} to {_MAX_TIMEOUT_S:g} seconds, "
            f"not {action.timeout_s:g}",
        )
    if isinstance(action.retries, bool) or not isinstance(action.retries, int):
        raise ActionError("bad_retries", "retries is a whole number")
    if not 0 <= action.retries <= _MAX_RETRIES:
        raise ActionError("bad_retries", f"retries is 0 to {_MAX_RETRIES}, not {action.retries}")
    if bool(action.answer) == (action.template is not None):
        raise ActionError(
            "bad_answer", "an action answers either with a text (answer) or with a template"
        )
    if action.answer:
        _check_texts(action.answer, "the answer", required=True, limit=_MAX_TEXT)
        for text in action.answer.values():
            _check_template(text, _ROOTS_OF_ANSWER, declared, "the answer")
    if action.template is not None:
        for text in action.template.body:
            _check_template(text, _ROOTS_OF_ANSWER, declared, "the template's parameter")
    if action.document is not None:
        if not action.answer:
            raise ActionError("bad_document", "a document goes with a text answer (its caption)")
        _check_texts(action.answer, "the caption", required=True, limit=_MAX_SHORT_TEXT)
        # The link comes whole from the business's system, never from the customer's words.
        _check_template(action.document.link, ("response",), declared, "the document's link")
        if action.document.filename is not None:
            _check_template(
                action.document.filename, _ROOTS_OF_ANSWER, declared, "the document's file name"
            )
    _check_texts(action.failure, "the failure text", required=False)
    for text in action.failure.values():
        if "{{" in text:
            raise ActionError("bad_template", "the failure text takes no values")


def _check_url(action: HttpAction) -> None:
    url = action.url
    if not isinstance(url, str) or not url or len(url) > _MAX_URL:
        raise ActionError("bad_url", f"the URL is an http(s) URL of at most {_MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ActionError("bad_url", "the URL cannot be read") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ActionError("bad_url", "the URL must start with http:// or https:// and a host")
    if parts.username is not None or parts.password is not None:
        raise ActionError("bad_url", "the URL must not hold credentials; put them into a header")
    # Values are only allowed after the host, so a customer's text never chooses the server.
    if "{{" in parts.netloc or "}}" in parts.netloc:
        raise ActionError("bad_url", "values can go into the URL's path and query, not its host")
    if port == 0 or any(c.isspace() for c in url):
        raise ActionError("bad_url", "the URL has a bad port or blanks")
    _check_template(url, _ROOTS_OF_REQUEST, frozenset(p.name for p in action.params), "the URL")


def _check_headers(headers: Mapping[str, str]) -> None:
    if len(headers) > _MAX_HEADERS:
        raise ActionError("bad_headers", f"an action sends at most {_MAX_HEADERS} headers")
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ActionError("bad_headers", f"{_shown(name)} is not a header name")
        lower = name.lower()
        if lower in _RESERVED_HEADERS:
            raise ActionError("bad_headers", f"the gateway sets the header {name} itself")
        if lower in seen:
            raise ActionError("bad_headers", f"the header {name} is given twice")
        seen.add(lower)
        # The value is a secret: refusals name the header, never its value.
        if (
            not isinstance(value, str)
            or len(value) > _MAX_HEADER_VALUE
            or any(c in value for c in "\r\n\0")
        ):
            raise ActionError(
                "bad_headers",
                f"the value of header {name} must be text of at most {_MAX_HEADER_VALUE} "
                "characters on one line",
            )


def _check_body(action: HttpAction, declared: frozenset[str]) -> None:
    if action.body is None:
        return
    if action.method not in _BODY_METHODS:
        raise ActionError("bad_body", f"a {action.method} request has no body")
    if not isinstance(action.body, str) or len(action.body) > _MAX_BODY:
        raise ActionError("bad_body", f"the body is a JSON text of at most {_MAX_BODY} characters")
    _check_template(action.body, _ROOTS_OF_REQUEST, declared, "the body")
    # Every value must sit inside a JSON string: "@" is not JSON outside one, so the template
    # only parses when each placeholder is quoted. Values are then escaped as string content.
    try:
        json.loads(_PLACEHOLDER.sub("@", action.body))
    except (ValueError, RecursionError):
        raise ActionError(
            "bad_body",
            "the body must be JSON with each value inside quotes, "
            'e.g. {"order": "{{params.order}}"}',
        ) from None


def _check_template(
    text: str, roots: tuple[str, ...], declared: frozenset[str], where: str
) -> None:
    rest = _PLACEHOLDER.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise ActionError(
            "bad_template",
            f"{where} has a value that is not written as {{{{ name.path }}}}",
        )
    for match in _PLACEHOLDER.finditer(text):
        root, *path = match.group(1).split(".")
        if root not in roots:
            raise ActionError(
                "bad_template",
                f"{where} can use {', '.join(roots)}, not {root}",
            )
        if not path:
            raise ActionError("bad_template", f"{where} names {root} without a field")
        if root == "params" and (len(path) != 1 or path[0] not in declared):
            raise ActionError(
                "bad_template", f"{where} uses params.{'.'.join(path)}, which is not a parameter"
            )
        if root == "customer" and len(path) != 1:
            raise ActionError("bad_template", f"{where} uses customer with more than one field")


def _check_texts(
    texts: Mapping[str, str],
    what: str,
    *,
    required: bool,
    limit: int = _MAX_SHORT_TEXT,
    code: str = "bad_answer",
) -> None:
    if not isinstance(texts, Mapping) or (required and not texts):
        raise ActionError(code, f"{what} needs a text in at least one language")
    if len(texts) > _MAX_LANGUAGES:
        raise ActionError("bad_language", f"{what} has more than {_MAX_LANGUAGES} languages")
    for language, text in texts.items():
        if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
            raise ActionError(
                "bad_language",
                f"{what} is given by language code (en, de), not {_shown(language)}",
            )
        if not isinstance(text, str) or not text.strip() or len(text) > limit:
            raise ActionError(code, f"{what} in {language} must be 1-{limit} characters")


@lru_cache(maxsize=512)
def _compiled(name: str, pattern: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern or len(pattern) > _MAX_PATTERN:
        raise ActionError(
            "bad_pattern",
            f"the pattern of parameter {name} is a regular expression of 1-{_MAX_PATTERN} "
            "characters",
        )
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ActionError(
            "bad_pattern", f"the pattern of parameter {name} is not a regular expression: {exc}"
        ) from None
    if compiled.groups > 1:
        raise ActionError(
            "bad_pattern",
            f"the pattern of parameter {name} has more than one group; use (?:...) for the others",
        )
    return compiled


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- reading and writing configuration ------------------------------------------------------

_FIELDS = frozenset(
    {
        "name",
        "url",
        "method",
        "headers",
        "body",
        "timeout_s",
        "retries",
        "params",
        "answer",
        "template",
        "document",
        "failure",
    }
)


def parse_action(data: Mapping[str, Any]) -> HttpAction:
    """An action from its YAML or JSON form (the fields of :class:`HttpAction`; ``params`` a
    list of ``{name, pattern, ask}``, ``template`` ``{name, language, body: [...]}``)."""
    if not isinstance(data, Mapping):
        raise ActionError("bad_action", "an action is an object with name, url and answer")
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        raise ActionError("unknown_field", f"an action has no field {', '.join(unknown)}")
    for key in ("name", "url"):
        if key not in data:
            raise ActionError("bad_action", f"an action needs {key}")
    params = data.get("params") or []
    if not isinstance(params, list):
        raise ActionError("bad_param", "params is a list of {name, pattern, ask}")
    if len(params) > MAX_PARAMS:
        raise ActionError("too_many_params", f"an action takes at most {MAX_PARAMS} parameters")
    template = data.get("template")
    body = data.get("body")
    if isinstance(body, Mapping | list):
        body = json.dumps(body, ensure_ascii=False)
    method = data.get("method", "GET")
    return HttpAction(
        name=data["name"],
        url=data["url"],
        method=method.upper() if isinstance(method, str) else method,
        headers=_mapping(data.get("headers"), "headers", "bad_headers"),
        body=body,
        timeout_s=data.get("timeout_s", 5.0),
        retries=data.get("retries", 1),
        params=tuple(_param(p) for p in params),
        answer=_mapping(data.get("answer"), "answer", "bad_answer"),
        template=None if template is None else _template(template),
        document=_document(data.get("document")),
        failure=_mapping(data.get("failure"), "failure", "bad_answer"),
    )


def _mapping(value: Any, what: str, code: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ActionError(code, f"{what} maps names to texts")
    return dict(value)


def _param(data: Any) -> Param:
    if not isinstance(data, Mapping) or set(data) - {"name", "pattern", "ask"}:
        raise ActionError("bad_param", "a parameter is {name, pattern, ask}")
    return Param(
        name=data.get("name", ""),
        pattern=data.get("pattern", ""),
        ask=_mapping(data.get("ask"), "a parameter's ask", "bad_param"),
    )


def _template(data: Any) -> TemplateAnswer:
    if not isinstance(data, Mapping) or set(data) - {"name", "language", "body"}:
        raise ActionError("bad_answer", "a template answer is {name, language, body}")
    body = data.get("body") or []
    if not isinstance(body, list):
        raise ActionError("bad_answer", "a template's body is a list of texts")
    return TemplateAnswer(
        name=data.get("name", ""), language=data.get("language", ""), body=tuple(body)
    )


def _document(data: Any) -> DocumentAnswer | None:
    if data is None:
        return None
    if not isinstance(data, Mapping) or set(data) - {"link", "filename"} or "link" not in data:
        raise ActionError("bad_document", "a document answer is {link, filename}")
    return DocumentAnswer(link=data["link"], filename=data.get("filename"))


def action_to_json(action: HttpAction) -> dict[str, Any]:
    """The form :func:`parse_action` reads; it holds the headers (secrets): the caller decides
    where it may go."""
    out: dict[str, Any] = {
        "name": action.name,
        "url": action.url,
        "method": action.method,
        "timeout_s": action.timeout_s,
        "retries": action.retries,
    }
    if action.headers:
        out["headers"] = dict(action.headers)
    if action.body is not None:
        out["body"] = action.body
    if action.params:
        out["params"] = [
            {"name": p.name, "pattern": p.pattern, "ask": dict(p.ask)} for p in action.params
        ]
    if action.answer:
        out["answer"] = dict(action.answer)
    if action.template is not None:
        out["template"] = {
            "name": action.template.name,
            "language": action.template.language,
            "body": list(action.template.body),
        }
    if action.document is not None:
        out["document"] = {"link": action.document.link}
        if action.document.filename is not None:
            out["document"]["filename"] = action.document.filename
    if action.failure:
        out["failure"] = dict(action.failure)
    return out


# --- parameters and texts ----------------------------------------------------------------------


def find_params(action: HttpAction, text: str) -> tuple[dict[str, str], Param | None]:
    """The parameters found in the customer's ``text``, and the first one missing (to ask
    for; ``None`` when all are there)."""
    searched = text[:_MAX_SEARCHED_TEXT]
    found: dict[str, str] = {}
    missing: Param | None = None
    for param in action.params:
        match = _compiled(param.name, param.pattern).search(searched)
        value = ""
        if match is not None:
            value = (match.group(1) if match.re.groups else match.group(0)) or ""
            value = value.strip()
        if value and len(value) <= _MAX_VALUE:
            found[param.name] = value
        elif missing is None:
            missing = param
    return found, missing


def in_language(texts: Mapping[str, str], language: str) -> str:
    """The text in ``language`` (``de`` also for ``de-AT``), else in English, else the first
    one ("" if none)."""
    chosen = _chosen_language(texts, language)
    return texts[chosen] if chosen else ""


def _chosen_language(texts: Mapping[str, str], language: str) -> str:
    base = language.replace("_", "-").partition("-")[0].lower()
    for candidate in (base, "en"):
        if candidate in texts:
            return candidate
    return next(iter(texts), "")


# Languages that write 49,90 rather than 49.90: a number from the response is shown so.
_DECIMAL_COMMA = frozenset(
    {"de", "fr", "es", "it", "nl", "pt", "pl", "tr", "ru", "da", "sv", "nb", "fi", "cs"}
)


class _RenderError(Exception):
    pass


def _render(
    text: str,
    scope: Mapping[str, Any],
    escape: Callable[[str], str],
    *,
    decimal_comma: bool = False,
) -> str:
    def value(match: re.Match[str]) -> str:
        path = match.group(1)
        return escape(_lookup(scope, path, decimal_comma=decimal_comma))

    return _PLACEHOLDER.sub(value, text)


def _lookup(scope: Mapping[str, Any], path: str, *, decimal_comma: bool = False) -> str:
    current: Any = scope
    for segment in path.split("."):
        if isinstance(current, Mapping) and segment in current:
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            raise _RenderError(f"there is no value at {path}")
    if current is None:
        raise _RenderError(f"the value at {path} is null")
    if isinstance(current, bool):
        return "true" if current else "false"
    if isinstance(current, str):
        return current
    if isinstance(current, float) and decimal_comma:
        return json.dumps(current).replace(".", ",")
    if isinstance(current, int | float):
        return json.dumps(current)
    raise _RenderError(f"the value at {path} is not a single value")


def _as_is(value: str) -> str:
    return value


def _url_escape(value: str) -> str:
    return quote(value, safe="")


def _json_escape(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


# --- calling -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What a call came to: ``message`` is the answer to send (a Cloud API message body
    without recipient), the polite failure text when ``ok`` is false; ``error`` says what
    went wrong, for people."""

    ok: bool
    message: dict[str, Any] | None
    error: str = ""
    status: int | None = None
    attempts: int = 0
    elapsed_ms: int = 0


@dataclass(frozen=True, slots=True)
class _Attempt:
    status: int | None = None
    content: bytes = b""
    error: str = ""
    retry: bool = False
    timed_out: bool = False


def _backoff_s(retry: int) -> float:
    return float(_BACKOFF_S * 2 ** (retry - 1))


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


class ActionCaller:
    """Calls actions; one per gateway process (it keeps connections alive). Outbound HTTP
    goes through ``transport`` (by default httpx's, ignoring proxy settings); waits between
    attempts through ``sleep``."""

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int = 256 * 1024,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        self._owns_transport = transport is None
        self._transport = transport or httpx.AsyncHTTPTransport(trust_env=False, retries=0)
        self._max_bytes = max_response_bytes
        self._sleep = sleep

    async def aclose(self) -> None:
        if self._owns_transport:
            await self._transport.aclose()

    async def call(
        self,
        action: HttpAction,
        params: Mapping[str, str],
        *,
        customer: Mapping[str, str],
        language: str,
    ) -> ActionOutcome:
        """Call ``action`` with the customer's ``params`` and answer in ``language``; never
        raises for a failure of the business's system."""
        started = time.perf_counter()
        scope: dict[str, Any] = {"params": dict(params), "customer": dict(customer)}
        try:
            request = self._request(action, scope)
        except _RenderError as exc:
            return self._failed(action, language, f"the request cannot be made: {exc}", started)
        attempts = action.retries + 1
        result = _Attempt()
        made = 0
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await self._sleep(_backoff_s(attempt - 1))
            made = attempt
            result = await self._attempt(request, action.timeout_s)
            if not result.retry:
                break
        if result.error:
            error = result.error
            if result.retry:
                error = (
                    f"timed out after {_attempts(made)}"
                    if result.timed_out
                    else f"{result.error} after {_attempts(made)}"
                )
            return self._failed(
                action, language, error, started, status=result.status, attempts=made
            )
        try:
            scope["response"] = _decode(result)
            message = _answer(action, scope, language)
        except _RenderError as exc:
            return self._failed(
                action, language, str(exc), started, status=result.status, attempts=made
            )
        return ActionOutcome(
            ok=True,
            message=message,
            status=result.status,
            attempts=made,
            elapsed_ms=_ms_since(started),
        )

    def _request(self, action: HttpAction, scope: Mapping[str, Any]) -> httpx.Request:
        for param in action.params:
            value = scope["params"].get(param.name)
            if not isinstance(value, str) or not value.strip():
                raise _RenderError(f"the parameter {param.name} is missing")
            if len(value) > _MAX_VALUE:
                raise _RenderError(f"the parameter {param.name} is longer than {_MAX_VALUE}")
        url = _render(action.url, scope, _url_escape)
        if len(url) > _MAX_RENDERED_URL:
            raise _RenderError(f"the URL is longer than {_MAX_RENDERED_URL} characters")
        headers = [
            ("User-Agent", USER_AGENT),
            ("Accept", "application/json"),
            ("Accept-Encoding", "identity"),
        ]
        content = b""
        if action.body is not None:
            text = _render(action.body, scope, _json_escape)
            try:
                json.loads(text)
            except (ValueError, RecursionError):
                raise _RenderError("the body is not JSON once its values are in") from None
            content = text.encode()
            headers.append(("Content-Type", "application/json"))
        headers.extend(action.headers.items())
        t = action.timeout_s
        try:
            return httpx.Request(
                action.method,
                url,
                headers=headers,
                content=content,
                extensions={"timeout": {"connect": t, "read": t, "write": t, "pool": t}},
            )
        except httpx.InvalidURL:
            raise _RenderError("the URL is not valid once its values are in") from None

    async def _attempt(self, request: httpx.Request, timeout_s: float) -> _Attempt:
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._transport.handle_async_request(request)
                try:
                    return await self._read(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return _Attempt(error="timed out", retry=True, timed_out=True)
        except (httpx.TransportError, OSError) as exc:
            # The type only: an exception's text may repeat the URL, and with it a key.
            return _Attempt(error=f"network error ({type(exc).__name__})", retry=True)

    async def _read(self, response: httpx.Response) -> _Attempt:
        status = response.status_code
        if status == 429 or status >= 500:
            return _Attempt(status=status, error=f"HTTP {status}", retry=True)
        if 300 <= status < 400:
            return _Attempt(status=status, error=f"HTTP {status} (redirects are not followed)")
        if not 200 <= status < 300:
            return _Attempt(status=status, error=f"HTTP {status}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return _Attempt(status=status, error="the answer is compressed; send it plain")
        too_large = f"the answer is larger than {self._max_bytes} bytes"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            return _Attempt(status=status, error=too_large)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self._max_bytes:
                return _Attempt(status=status, error=too_large)
            chunks.append(chunk)
        return _Attempt(status=status, content=b"".join(chunks))

    def _failed(
        self,
        action: HttpAction,
        language: str,
        error: str,
        started: float,
        *,
        status: int | None = None,
        attempts: int = 0,
    ) -> ActionOutcome:
        log.warning("action failed", action=action.name, error=error, status=status)
        text = in_language(action.failure, language) or in_language(DEFAULT_FAILURE, language)
        return ActionOutcome(
            ok=False,
            message=_text(text),
            error=error,
            status=status,
            attempts=attempts,
            elapsed_ms=_ms_since(started),
        )


def _decode(result: _Attempt) -> Any:
    if not result.content:
        if result.status == 204:
            return None
        raise _RenderError("the answer is empty, not JSON")
    try:
        return json.loads(result.content.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _RenderError("the answer is not JSON") from None


def _answer(action: HttpAction, scope: Mapping[str, Any], language: str) -> dict[str, Any]:
    if action.template is not None:
        comma = action.template.language.partition("_")[0] in _DECIMAL_COMMA
        parameters = [
            {"type": "text", "text": _render(text, scope, _as_is, decimal_comma=comma)}
            for text in action.template.body
        ]
        template: dict[str, Any] = {
            "name": action.template.name,
            "language": {"policy": "deterministic", "code": action.template.language},
        }
        if parameters:
            template["components"] = [{"type": "body", "parameters": parameters}]
        return {"type": "template", "template": template}
    chosen = _chosen_language(action.answer, language)
    text = _render(
        action.answer[chosen], scope, _as_is, decimal_comma=chosen in _DECIMAL_COMMA
    ).strip()
    if not text:
        raise _RenderError("the answer is empty once its values are in")
    if len(text) > _MAX_TEXT:
        raise _RenderError(f"the answer is longer than {_MAX_TEXT} characters")
    if action.document is not None:
        return _document_message(action.document, scope, text)
    return _text(text)


def _document_message(
    document: DocumentAnswer, scope: Mapping[str, Any], caption: str
) -> dict[str, Any]:
    link = _render(document.link, scope, _as_is).strip()
    if not link.startswith(("https://", "http://")) or len(link) > _MAX_RENDERED_URL:
        raise _RenderError("the document's link is not an http(s) URL once its value is in")
    sent: dict[str, Any] = {"link": link}
    if len(caption) > _MAX_SHORT_TEXT:
        raise _RenderError(f"the caption is longer than {_MAX_SHORT_TEXT} characters")
    sent["caption"] = caption
    if document.filename is not None:
        filename = _render(document.filename, scope, _as_is).strip()
        if filename:
            sent["filename"] = filename[:_MAX_FILENAME]
    return {"type": "document", "document": sent}


def _text(body: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": body}}


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
