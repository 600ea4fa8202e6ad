"""Message templates as the relay and the clients both read them.

A business submits a template in the WhatsApp Cloud API shape (``name``, ``language``,
``category``, ``parameter_format``, ``components``); the relay checks it
(``relay/templates/validation.py``) and keeps its components as the structs below. When the
operator approves it, the relay signs its canonical form, :class:`SignedTemplateBody`: the
msgpack map of that struct, fields in declaration order, unset optional fields left out,
signed as ``TEMPLATE_PREFIX + body`` by the operator key named in ``key_id``.

A business sends a template message as the end-to-end ``Template`` payload (template id,
name, language and the parameters of each component). The recipient's client renders the
signed template with those parameters (:func:`render`) and shows only that rendering, so a
business cannot put its own text into a message the relay priced and let through as a
template.

Parameters are given per component: ``"header"``, ``"body"`` and ``"button:N"`` (``N`` the
button's index in the BUTTONS component). A component with positional placeholders takes a
list (``["Anna", "4711"]`` for ``{{1}}`` and ``{{2}}``), one with named placeholders a map
(``{"name": "Anna"}``). URL buttons always use ``{{1}}``, as in the Cloud API. A media header
takes one value (a link or media id), a COPY_CODE button the code, and an authentication
template its one-time code as the only body parameter. A QUICK_REPLY button may take one value:
the payload a tap on it returns to the business (carried apart from the parameters, in
``Template.button_payloads``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import msgspec

from tresen.wire.business import Problem

__all__ = [
    "AUTH_BODY",
    "AUTH_FOOTER",
    "AUTH_SECURITY",
    "BODY_MAX",
    "BUTTON_TEXT_MAX",
    "FOOTER_MAX",
    "HEADER_TEXT_MAX",
    "MAX_BUTTONS",
    "NAME_MAX",
    "PARAMETER_MAX",
    "QUICK_REPLY_PAYLOAD_MAX",
    "RENDERED_BODY_MAX",
    "TEMPLATE_PREFIX",
    "TEMPLATE_VERSION",
    "AnyButton",
    "AnyComponent",
    "Body",
    "BodyExample",
    "Buttons",
    "CopyCodeButton",
    "Footer",
    "Header",
    "HeaderExample",
    "HeaderFormat",
    "NamedExample",
    "OtpButton",
    "OtpType",
    "ParameterFormat",
    "ParameterMismatch",
    "Parameters",
    "PhoneNumberButton",
    "QuickReplyButton",
    "RenderedButton",
    "RenderedHeader",
    "RenderedTemplate",
    "SignedTemplate",
    "SignedTemplateBody",
    "TemplateCategory",
    "TemplateQuality",
    "TemplateStatus",
    "UrlButton",
    "component_keys",
    "decode_components",
    "decode_signed_body",
    "encode_components",
    "header_takes_file",
    "parameters_from_cloud_components",
    "placeholders",
    "plain_parameters",
    "quick_reply_payloads",
    "render",
]

TEMPLATE_VERSION = 1
TEMPLATE_PREFIX = b"tresen-template-v1\x00"

NAME_MAX = 512
HEADER_TEXT_MAX = 60
BODY_MAX = 1024
FOOTER_MAX = 60
BUTTON_TEXT_MAX = 25
MAX_BUTTONS = 10
PARAMETER_MAX = 1024
RENDERED_BODY_MAX = 4096
CODE_MAX = 15
MEDIA_REF_MAX = 2048
URL_MAX = 2000
QUICK_REPLY_PAYLOAD_MAX = 256

# The fixed texts of authentication templates (the Cloud API writes them for the business).
AUTH_BODY = "{code} is your verification code."
AUTH_SECURITY = "For your security, do not share this code."
AUTH_FOOTER = "This code expires in {minutes} minutes."


class TemplateCategory(StrEnum):
    MARKETING = "MARKETING"
    UTILITY = "UTILITY"
    AUTHENTICATION = "AUTHENTICATION"


class TemplateStatus(StrEnum):
    """Where a template stands. Only APPROVED templates can be sent; PAUSED ones again once
    ``paused_until_ms`` has passed."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"
    DELETED = "DELETED"


class TemplateQuality(StrEnum):
    UNKNOWN = "UNKNOWN"
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"


class ParameterFormat(StrEnum):
    POSITIONAL = "POSITIONAL"
    NAMED = "NAMED"


class HeaderFormat(StrEnum):
    TEXT = "TEXT"
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    DOCUMENT = "DOCUMENT"
    LOCATION = "LOCATION"
    GIF = "GIF"


class OtpType(StrEnum):
    COPY_CODE = "COPY_CODE"
    ONE_TAP = "ONE_TAP"
    ZERO_TAP = "ZERO_TAP"


# --- components (the Cloud API shape, canonical once validated) ------------------------------


class _Shape(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    pass


class NamedExample(_Shape):
    param_name: str
    example: str


class HeaderExample(_Shape):
    header_text: list[str] | None = None
    header_text_named_params: list[NamedExample] | None = None
    header_handle: list[str] | None = None


class BodyExample(_Shape):
    body_text: list[list[str]] | None = None
    body_text_named_params: list[NamedExample] | None = None


class _Button(_Shape, tag_field="type"):
    pass


class QuickReplyButton(_Button, tag="QUICK_REPLY"):
    text: str


class UrlButton(_Button, tag="URL"):
    text: str
    url: str
    example: list[str] | None = None


class PhoneNumberButton(_Button, tag="PHONE_NUMBER"):
    text: str
    phone_number: str


class CopyCodeButton(_Button, tag="COPY_CODE"):
    """A coupon code the customer can copy; ``example`` is a sample code."""

    example: str


class OtpButton(_Button, tag="OTP"):
    """The one-time-code button of an authentication template."""

    otp_type: OtpType
    text: str | None = None
    autofill_text: str | None = None
    package_name: str | None = None
    signature_hash: str | None = None


AnyButton = QuickReplyButton | UrlButton | PhoneNumberButton | CopyCodeButton | OtpButton


class _Component(_Shape, tag_field="type"):
    pass


class Header(_Component, tag="HEADER"):
    format: HeaderFormat
    text: str | None = None
    example: HeaderExample | None = None


class Body(_Component, tag="BODY"):
    """``text`` for marketing and utility templates; authentication templates have the fixed
    text instead, with ``add_security_recommendation``."""

    text: str | None = None
    add_security_recommendation: bool | None = None
    example: BodyExample | None = None


class Footer(_Component, tag="FOOTER"):
    text: str | None = None
    code_expiration_minutes: int | None = None


class Buttons(_Component, tag="BUTTONS"):
    buttons: list[AnyButton]


AnyComponent = Header | Body | Footer | Buttons

_components_json = msgspec.json.Decoder(list[AnyComponent])


def encode_components(components: Sequence[AnyComponent]) -> str:
    """The components as JSON in the Cloud API shape (how the relay stores them)."""
    return msgspec.json.encode(list(components)).decode()


def decode_components(text: str | bytes) -> list[AnyComponent]:
    return _components_json.decode(text)


# --- the signed form -------------------------------------------------------------------------


class SignedTemplateBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What the operator vouches for: this business may send exactly this template.

    Encoded as a msgpack map in this field order; ``key_id`` names the operator key that
    signed it, so that a client picks the key from its key ring before checking.
    """

    v: int = TEMPLATE_VERSION
    key_id: str
    id: int
    business_account: str
    name: str
    language: str
    category: TemplateCategory
    parameter_format: ParameterFormat
    components: list[AnyComponent]
    approved_ms: int


_signed_decoder = msgspec.msgpack.Decoder(SignedTemplateBody)


def decode_signed_body(body: bytes) -> SignedTemplateBody:
    """The template in ``body``, decoded strictly; no signature check (the client's
    ``client/templates.py`` checks it). Raises ``ValueError``."""
    try:
        decoded = _signed_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a signed template: {exc}") from None
    if decoded.v != TEMPLATE_VERSION:
        raise ValueError(f"unsupported template version {decoded.v}")
    return decoded


@dataclass(frozen=True, slots=True)
class SignedTemplate:
    """The template's exact signed bytes and the operator's signature over them."""

    template_id: int
    body: bytes
    signature: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": str(self.template_id),
            "body": base64.b64encode(self.body).decode("ascii"),
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedTemplate:
        """Raises ``ValueError`` for anything but ``{"id", "body", "signature"}`` strings."""
        if not isinstance(data, dict):
            raise ValueError("a signed template is an object with id, body and signature")
        template_id, body, signature = data.get("id"), data.get("body"), data.get("signature")
        if not (
            isinstance(template_id, str)
            and template_id.isdigit()
            and isinstance(body, str)
            and isinstance(signature, str)
        ):
            raise ValueError("a signed template needs id, body and signature as strings")
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the body of a signed template is not base64") from None
        return cls(int(template_id), raw, signature)


# --- placeholders ----------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
POSITIONAL_NAME = re.compile(r"[1-9][0-9]{0,2}")
NAMED_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def placeholders(text: str) -> list[str]:
    """What stands between ``{{`` and ``}}`` in ``text``, in order (repeats included)."""
    return _PLACEHOLDER.findall(text)


def _fill(text: str, values: Mapping[str, str]) -> str:
    # One pass: a value that itself looks like "{{2}}" is never substituted again.
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _spec_of(text: str, fmt: ParameterFormat) -> list[str]:
    """The distinct placeholder names of ``text``: "1", "2", … or the names, in order."""
    seen: list[str] = []
    for name in placeholders(text):
        if name not in seen:
            seen.append(name)
    if fmt is ParameterFormat.POSITIONAL:
        seen.sort(key=int)
    return seen


# --- rendering -------------------------------------------------------------------------------

Parameters = Mapping[str, Sequence[str] | Mapping[str, str]]


def plain_parameters(parameters: Parameters) -> dict[str, list[str] | dict[str, str]]:
    """``parameters`` as plain lists and dicts (the ``Template`` payload's field)."""
    return {
        key: dict(value) if isinstance(value, Mapping) else list(value)
        for key, value in parameters.items()
    }


class ParameterMismatch(ValueError):
    """The parameters do not fit the template (Cloud API 132000): wrong count, missing or
    extra components, or values the template's format does not allow. ``problems`` name the
    component (``body``, ``button:0``) and never repeat a parameter's value."""

    code = 132000

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class RenderedHeader:
    format: HeaderFormat
    text: str | None = None
    media: str | None = None
    """For media headers: the link or media id the sender gave."""


@dataclass(frozen=True, slots=True)
class RenderedButton:
    type: str
    text: str
    url: str | None = None
    phone_number: str | None = None
    code: str | None = None
    payload: str | None = None
    """For QUICK_REPLY buttons: the payload the business set, returned when tapped."""


@dataclass(frozen=True, slots=True)
class RenderedTemplate:
    """A template message as the recipient sees it: the signed template, filled in."""

    template_id: int
    name: str
    language: str
    category: TemplateCategory
    body: str
    header: RenderedHeader | None = None
    footer: str | None = None
    buttons: list[RenderedButton] = field(default_factory=list)

    def text(self) -> str:
        """Header, body, footer and buttons as plain text lines, for simple displays."""
        lines: list[str] = []
        if self.header is not None:
            if self.header.text is not None:
                lines.append(self.header.text)
            else:
                lines.append(f"[{self.header.format.lower()}] {self.header.media or ''}".rstrip())
        lines.append(self.body)
        if self.footer:
            lines.append(self.footer)
        for b in self.buttons:
            target = b.url or b.phone_number or b.code
            lines.append(f"[{b.text}]" + (f" {target}" if target else ""))
        return "\n".join(lines)


def header_takes_file(template: SignedTemplateBody, kind: str) -> bool:
    """Whether ``template``'s header is a file of ``kind`` (``image``, ``video``,
    ``document``): what a template message's ``header_media`` must be."""
    for component in template.components:
        if isinstance(component, Header):
            return component.format.lower() == kind and component.format in _FILE_HEADERS
    return False


_FILE_HEADERS = frozenset({HeaderFormat.IMAGE, HeaderFormat.VIDEO, HeaderFormat.DOCUMENT})


def component_keys(
    components: Sequence[AnyComponent],
) -> Iterator[tuple[str, AnyComponent | AnyButton]]:
    """``("header", …)``, ``("body", …)``, ``("footer", …)``, ``("button:N", button)``."""
    for component in components:
        if isinstance(component, Buttons):
            for i, button in enumerate(component.buttons):
                yield f"button:{i}", button
        elif isinstance(component, Header):
            yield "header", component
        elif isinstance(component, Body):
            yield "body", component
        else:
            yield "footer", component


_SPACES = re.compile(r" {5,}")


def _text_value(key: str, value: str, problems: list[Problem], limit: int = PARAMETER_MAX) -> None:
    if not value.strip():
        problems.append(Problem(key, "a parameter must not be empty"))
    elif len(value) > limit:
        problems.append(Problem(key, f"a parameter has at most {limit} characters"))
    elif "\n" in value or "\t" in value or "\r" in value:
        problems.append(Problem(key, "a parameter must not contain new lines or tabs"))
    elif _SPACES.search(value):
        problems.append(Problem(key, "a parameter must not contain more than 4 spaces in a row"))


def _token_value(key: str, value: str, limit: int, what: str, problems: list[Problem]) -> None:
    if not value or len(value) > limit or any(c.isspace() for c in value):
        problems.append(Problem(key, f"{what} is 1 to {limit} characters without spaces"))


def _values(
    key: str,
    given: Sequence[str] | Mapping[str, str] | None,
    names: list[str],
    fmt: ParameterFormat,
    problems: list[Problem],
) -> dict[str, str] | None:
    """The values for the placeholder ``names`` of one component, or ``None`` (problems)."""
    if given is None:
        problems.append(Problem(key, f"expects {len(names)} parameter(s), got none"))
        return None
    if fmt is ParameterFormat.NAMED:
        if not isinstance(given, Mapping):
            problems.append(Problem(key, "named parameters are given as a map of name to value"))
            return None
        missing = [n for n in names if n not in given]
        extra = sorted(set(given) - set(names))
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing))
            if extra:
                parts.append("unknown " + ", ".join(extra))
            problems.append(Problem(key, "named parameters do not match: " + "; ".join(parts)))
            return None
        values = {n: given[n] for n in names}
    else:
        if isinstance(given, Mapping | str):
            problems.append(Problem(key, "positional parameters are given as a list"))
            return None
        if len(given) != len(names):
            problems.append(Problem(key, f"expects {len(names)} parameter(s), got {len(given)}"))
            return None
        values = {n: given[int(n) - 1] for n in names}
    if not all(isinstance(v, str) for v in values.values()):
        problems.append(Problem(key, "parameters are text"))
        return None
    return values


def _single(
    key: str, given: Sequence[str] | Mapping[str, str] | None, problems: list[Problem]
) -> str | None:
    if given is None or isinstance(given, Mapping | str) or len(given) != 1:
        problems.append(Problem(key, "expects exactly 1 parameter"))
        return None
    value = given[0]
    if not isinstance(value, str):
        problems.append(Problem(key, "parameters are text"))
        return None
    return value


def quick_reply_payloads(
    template: SignedTemplateBody, parameters: Parameters
) -> tuple[Parameters, dict[str, str]]:
    """``parameters`` apart from the payloads of QUICK_REPLY buttons, and those payloads
    (``{"button:N": payload}``), as the ``Template`` payload carries them. Entries that are
    not a single text stay among the parameters, for :func:`render` to name."""
    quick = {k for k, c in component_keys(template.components) if isinstance(c, QuickReplyButton)}
    rest: dict[str, Sequence[str] | Mapping[str, str]] = {}
    payloads: dict[str, str] = {}
    for key, value in parameters.items():
        if (
            key in quick
            and not isinstance(value, Mapping | str)
            and len(value) == 1
            and isinstance(value[0], str)
        ):
            payloads[key] = value[0]
        else:
            rest[key] = value
    return rest, payloads


def render(template: SignedTemplateBody, parameters: Parameters) -> RenderedTemplate:
    """The template filled in with ``parameters``; raises :class:`ParameterMismatch`.

    Every component that has placeholders (or a media header, a COPY_CODE button, the code
    of an authentication template) needs its parameters, with exactly the count or names the
    template has; components without any take none, except a QUICK_REPLY button, which may
    take one: the payload its tap returns (1-256 characters).
    """
    problems: list[Problem] = []
    fmt = template.parameter_format
    keyed = list(component_keys(template.components))
    known = {k for k, _ in keyed}
    for key in parameters:
        if key not in known:
            problems.append(Problem(key, "this template has no such component"))
    auth = template.category is TemplateCategory.AUTHENTICATION
    # An authentication template's code is its body parameter; its OTP button copies it.
    code = _single("body", parameters.get("body"), problems) if auth else None
    if code is not None:
        _token_value("body", code, CODE_MAX, "the code", problems)

    def no_parameters(key: str) -> None:
        if key in parameters:
            problems.append(Problem(key, "this component takes no parameters"))

    def filled(key: str, source: str, fmt: ParameterFormat, limit: int) -> str:
        names = _spec_of(source, fmt)
        if not names:
            no_parameters(key)
            return source
        values = _values(key, parameters.get(key), names, fmt, problems)
        if values is None:
            return source
        for value in values.values():
            _text_value(key, value, problems, min(limit, PARAMETER_MAX))
        return _fill(source, values)

    header: RenderedHeader | None = None
    body = ""
    footer: str | None = None
    buttons: list[RenderedButton] = []
    for key, component in keyed:
        if isinstance(component, Body):
            if auth:
                body = AUTH_BODY.format(code=code or "")
                if component.add_security_recommendation:
                    body += " " + AUTH_SECURITY
                continue
            body = filled(key, component.text or "", fmt, RENDERED_BODY_MAX)
            if len(body) > RENDERED_BODY_MAX:
                problems.append(
                    Problem(key, f"the filled-in body exceeds {RENDERED_BODY_MAX} characters")
                )
        elif isinstance(component, Header):
            if component.format is HeaderFormat.TEXT:
                text = filled(key, component.text or "", fmt, HEADER_TEXT_MAX)
                if len(text) > HEADER_TEXT_MAX:
                    problems.append(
                        Problem(key, f"the filled-in header exceeds {HEADER_TEXT_MAX} characters")
                    )
                header = RenderedHeader(HeaderFormat.TEXT, text=text)
                continue
            media = _single(key, parameters.get(key), problems)
            if media is not None:
                _token_value(key, media, MEDIA_REF_MAX, "a media link or id", problems)
            header = RenderedHeader(component.format, media=media)
        elif isinstance(component, Footer):
            no_parameters(key)
            if component.code_expiration_minutes is not None:
                footer = AUTH_FOOTER.format(minutes=component.code_expiration_minutes)
            else:
                footer = component.text
        elif isinstance(component, UrlButton):
            url = component.url
            if _spec_of(url, ParameterFormat.POSITIONAL):
                suffix = _single(key, parameters.get(key), problems)
                if suffix is not None:
                    _token_value(key, suffix, URL_MAX, "a URL parameter", problems)
                    url = _fill(url, {"1": suffix})
                    if not _http_url(url):
                        problems.append(Problem(key, "the filled-in URL is not an http(s) URL"))
                    elif len(url) > URL_MAX:
                        problems.append(Problem(key, f"the filled-in URL exceeds {URL_MAX}"))
            else:
                no_parameters(key)
            buttons.append(RenderedButton("URL", component.text, url=url))
        elif isinstance(component, CopyCodeButton):
            coupon = _single(key, parameters.get(key), problems)
            if coupon is not None:
                _token_value(key, coupon, CODE_MAX, "a coupon code", problems)
            buttons.append(RenderedButton("COPY_CODE", "Copy offer code", code=coupon))
        elif isinstance(component, OtpButton):
            no_parameters(key)
            buttons.append(RenderedButton("OTP", component.text or "Copy code", code=code))
        elif isinstance(component, PhoneNumberButton):
            no_parameters(key)
            buttons.append(
                RenderedButton("PHONE_NUMBER", component.text, phone_number=component.phone_number)
            )
        elif isinstance(component, QuickReplyButton):
            # Its one optional parameter is the payload the tap returns (Cloud API).
            payload = None
            if key in parameters:
                payload = _single(key, parameters.get(key), problems)
                if payload is not None and not 1 <= len(payload) <= QUICK_REPLY_PAYLOAD_MAX:
                    problems.append(
                        Problem(key, f"a payload is 1 to {QUICK_REPLY_PAYLOAD_MAX} characters")
                    )
            buttons.append(RenderedButton("QUICK_REPLY", component.text, payload=payload))
    if problems:
        raise ParameterMismatch(problems)
    return RenderedTemplate(
        template_id=template.id,
        name=template.name,
        language=template.language,
        category=template.category,
        body=body,
        header=header,
        footer=footer,
        buttons=buttons,
    )


# --- the Cloud API's send shape ----------------------------------------------------------------


def parameters_from_cloud_components(components: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Parameters in this module's form from the ``template.components`` of a Cloud API send
    (``[{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}, {"type":
    "button", "sub_type": "url", "index": "0", "parameters": [...]}]``).

    Text parameters with ``parameter_name`` become named ones; media parameters give their
    ``link`` or ``id``; ``coupon_code`` parameters their code. Raises ``ValueError`` for a
    shape it cannot read.
    """
    out: dict[str, Any] = {}
    for i, component in enumerate(components):
        kind = str(component.get("type", "")).lower()
        if kind == "button":
            key = f"button:{int(component.get('index', 0))}"
        elif kind in ("header", "body"):
            key = kind
        else:
            raise ValueError(f"components.{i}: unknown component type {kind!r}")
        named: dict[str, str] = {}
        positional: list[str] = []
        for parameter in component.get("parameters", ()):
            value = _cloud_value(parameter)
            name = parameter.get("parameter_name")
            if name is not None:
                named[str(name)] = value
            else:
                positional.append(value)
        if named and positional:
            raise ValueError(f"components.{i}: mixes named and positional parameters")
        out[key] = named if named else positional
    return out


def _cloud_value(parameter: Mapping[str, Any]) -> str:
    kind = parameter.get("type")
    if kind == "text":
        return str(parameter.get("text", ""))
    if kind in ("image", "video", "document"):
        media = parameter.get(kind) or {}
        return str(media.get("link") or media.get("id") or "")
    if kind == "coupon_code":
        return str(parameter.get("coupon_code", ""))
    if kind == "payload":
        return str(parameter.get("payload", ""))
    if kind in ("currency", "date_time"):
        # Shown as the sender's fallback_value, as WhatsApp does where it cannot localize.
        value = parameter.get(kind) or {}
        fallback = value.get("fallback_value") if isinstance(value, Mapping) else None
        if not isinstance(fallback, str) or not fallback:
            raise ValueError(f"a {kind} parameter needs its fallback_value")
        return fallback
    raise ValueError(f"unsupported parameter type {kind!r}")


def _http_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host; one ``urlsplit`` cannot even split
    (an unbalanced ``[`` of an IPv6 host) is not."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)
