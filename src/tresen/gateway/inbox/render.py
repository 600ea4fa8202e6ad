"""Messages as the customer sees them, for the inbox's thread and composer.

A stored message is the Cloud API object of its type (``messages.content``). Here it becomes a
:class:`View`: the text, the header and footer, the buttons or list rows with the one the
customer chose, a template filled in with its parameters. Reactions are not lines of their
own: they are folded into the message they react to, and an answer (a button tapped, a row
picked) marks its choice on the message it answers.

Templates are rendered by :func:`fill_template`, which goes the same way a template send does
(``parameters_from_cloud_components`` → ``render``) and is what the customer's client renders
from the operator-signed template: the preview, the thread and the customer's screen agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from tresen.wire.templates import (
    Body,
    CopyCodeButton,
    Header,
    HeaderFormat,
    ParameterFormat,
    RenderedTemplate,
    SignedTemplateBody,
    TemplateCategory,
    UrlButton,
    component_keys,
    parameters_from_cloud_components,
    placeholders,
    plain_parameters,
    render,
)

__all__ = [
    "MAX_PARAMETER",
    "MEDIA_KINDS",
    "MEDIA_NOT_RECEIVED",
    "Attached",
    "Field",
    "Kind",
    "Option",
    "Quote",
    "Reacted",
    "SignedTemplates",
    "Stored",
    "Threaded",
    "View",
    "arrange",
    "cloud_components",
    "fill_template",
    "parameter_fields",
    "template_lines",
    "template_view",
    "view_of",
]

MAX_PARAMETER = 1024
MEDIA_KINDS = frozenset({"image", "video", "audio", "document", "sticker"})
"""The Cloud API's message types that carry a file."""
MEDIA_NOT_RECEIVED = 131052
"""The Cloud API's code of a customer's file the gateway could not have (tampered, expired)."""


class Kind(StrEnum):
    TEXT = "text"
    INTERACTIVE = "interactive"
    ANSWER = "answer"
    TEMPLATE = "template"
    REACTION = "reaction"
    MEDIA = "media"
    MEDIA_FAILED = "media_failed"
    """A customer's file that could not be received (changed on its way, or gone)."""
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class Attached:
    """The file of a media message, as its stored Cloud API object names it."""

    kind: str
    """``image``, ``video``, ``audio``, ``document`` or ``sticker``."""
    media_id: str | None
    """The media id it is kept under here (``None``: sent by link, or by another device)."""
    mime_type: str | None
    filename: str | None
    link: str | None = None
    voice: bool = False


@dataclass(frozen=True, slots=True)
class Option:
    """A button or list row of a message; ``detail`` is a list row's description, or where a
    template's button leads (its URL, phone number or code)."""

    title: str
    detail: str | None = None
    chosen: bool = False


@dataclass(frozen=True, slots=True)
class View:
    """One message as its reader sees it."""

    kind: Kind
    body: str = ""
    header: str | None = None
    footer: str | None = None
    options: tuple[Option, ...] = ()
    menu: str | None = None
    """A list message's menu button."""
    chosen: str | None = None
    """An answer: the title of the button or row chosen."""
    template: str | None = None
    """A template message: the template's name."""
    rendered: bool = True
    """False for a template that could not be filled in here (only its name is shown)."""
    attached: Attached | None = None
    """A media message's file (its caption is the ``body``)."""


@dataclass(frozen=True, slots=True)
class Quote:
    """The message a reply quotes, in one line."""

    wamid: str
    incoming: bool
    text: str


@dataclass(frozen=True, slots=True)
class Reacted:
    emoji: str
    by_customer: bool


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored message as this module reads it."""

    wamid: str
    incoming: bool
    kind: str
    content: dict[str, Any]
    context_wamid: str | None = None
    template: RenderedTemplate | None = None
    """An outbound template message, filled in (``None``: not renderable here)."""
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class Threaded:
    """A message of the thread: how it looks, what it quotes, and the reactions on it."""

    wamid: str
    view: View
    quoted: Quote | None = None
    reactions: tuple[Reacted, ...] = field(default_factory=tuple)
    business_reaction: str = ""
    """The emoji the business put on it (empty: none)."""


class SignedTemplates(Protocol):
    async def signed(self, name: str, language: str) -> SignedTemplateBody | None:
        """The business's approved template ``name`` in ``language``, operator-signed; ``None``
        when it cannot be had now."""
        ...


# --- templates -----------------------------------------------------------------------------


def fill_template(
    template: SignedTemplateBody, components: Sequence[Mapping[str, Any]]
) -> RenderedTemplate:
    """``template`` filled in with the Cloud API ``components`` of a send, as the customer's
    client will show it. Raises ``ValueError`` (``ParameterMismatch`` among them) when they do
    not fit."""
    return render(template, plain_parameters(parameters_from_cloud_components(components)))


def template_view(rendered: RenderedTemplate) -> View:
    header = None
    if rendered.header is not None:
        header = rendered.header.text
        if header is None:
            header = f"[{rendered.header.format.lower()}] {rendered.header.media or ''}".rstrip()
    return View(
        Kind.TEMPLATE,
        body=rendered.body,
        header=header,
        footer=rendered.footer or None,
        options=tuple(
            Option(b.text, b.url or b.phone_number or b.code or None) for b in rendered.buttons
        ),
        template=rendered.name,
    )


def template_lines(view: View) -> list[str]:
    """A template's view as the lines of ``RenderedTemplate.text()``: what a plain client shows."""
    lines = [] if view.header is None else [view.header]
    lines.append(view.body)
    if view.footer:
        lines.append(view.footer)
    lines.extend(f"[{o.title}]" + (f" {o.detail}" if o.detail else "") for o in view.options)
    return lines


@dataclass(frozen=True, slots=True)
class Field:
    """One value a template needs: ``key`` is its component (``header``, ``body``,
    ``button:N``), ``name`` its placeholder (``1``, ``first_name``); ``what`` says what it is
    (``text``, ``media``, ``url``, ``code``) and ``context`` is the component's text around it."""

    key: str
    name: str
    what: str
    context: str

    @property
    def form_name(self) -> str:
        return f"p.{self.key}.{self.name}"


def _names(text: str, fmt: ParameterFormat) -> list[str]:
    seen: list[str] = []
    for name in placeholders(text):
        if name not in seen:
            seen.append(name)
    if fmt is ParameterFormat.POSITIONAL:
        seen.sort(key=int)
    return seen


def parameter_fields(template: SignedTemplateBody) -> list[Field]:
    """The values ``template`` needs, in the order of its components."""
    fmt = template.parameter_format
    fields: list[Field] = []
    for key, component in component_keys(template.components):
        if isinstance(component, Body):
            if template.category is TemplateCategory.AUTHENTICATION:
                fields.append(Field(key, "1", "code", ""))
                continue
            text = component.text or ""
            fields.extend(Field(key, n, "text", text) for n in _names(text, fmt))
        elif isinstance(component, Header):
            if component.format is HeaderFormat.TEXT:
                text = component.text or ""
                fields.extend(Field(key, n, "text", text) for n in _names(text, fmt))
            else:
                fields.append(Field(key, "1", "media", str(component.format).lower()))
        elif isinstance(component, UrlButton):
            if placeholders(component.url):
                fields.append(Field(key, "1", "url", component.url))
        elif isinstance(component, CopyCodeButton):
            fields.append(Field(key, "1", "code", ""))
    return fields


def cloud_components(
    template: SignedTemplateBody, fields: Sequence[Field], values: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The Cloud API ``template.components`` of a send of ``template`` with ``values`` (by
    :attr:`Field.form_name`); missing values are sent empty, for :func:`fill_template` to name."""
    named = template.parameter_format is ParameterFormat.NAMED
    by_key: dict[str, list[dict[str, Any]]] = {}
    for f in fields:
        value = values.get(f.form_name, "").strip()
        parameter: dict[str, Any]
        if f.what == "media":
            parameter = {"type": f.context, f.context: {"link": value}}
        elif f.what == "code" and f.key.startswith("button:"):
            parameter = {"type": "coupon_code", "coupon_code": value}
        else:
            parameter = {"type": "text", "text": value}
            if named and f.what == "text":
                parameter["parameter_name"] = f.name
        by_key.setdefault(f.key, []).append(parameter)
    components: list[dict[str, Any]] = []
    for key, parameters in by_key.items():
        if key.startswith("button:"):
            index = key.split(":", 1)[1]
            sub_type = "copy_code" if parameters[0]["type"] == "coupon_code" else "url"
            components.append(
                {"type": "button", "sub_type": sub_type, "index": index, "parameters": parameters}
            )
        else:
            components.append({"type": key, "parameters": parameters})
    return components


# --- messages ------------------------------------------------------------------------------


def _text_of(part: Any) -> str | None:
    if isinstance(part, dict) and isinstance(part.get("text"), str):
        return str(part["text"])
    return None


def _file_header(part: Any) -> str | None:
    """``[image] jacket.png``: the file header of reply buttons, as a template's is shown."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in ("image", "video", "document"):
        return None
    file = part.get(kind)
    name = file.get("filename") if isinstance(file, dict) else None
    return f"[{kind}] {name}" if isinstance(name, str) and name else f"[{kind}]"


def _interactive(content: dict[str, Any]) -> View:
    kind = content.get("type")
    answer = content.get(str(kind)) if isinstance(kind, str) else None
    if isinstance(answer, dict) and "title" in answer:  # the customer's answer
        return View(Kind.ANSWER, chosen=str(answer["title"]))
    action = content.get("action") if isinstance(content.get("action"), dict) else {}
    assert isinstance(action, dict)
    options: list[Option] = []
    for button in action.get("buttons") or ():
        reply = button.get("reply") if isinstance(button, dict) else None
        if isinstance(reply, dict) and reply.get("title"):
            options.append(Option(str(reply["title"])))
    for section in action.get("sections") or ():
        for row in (section.get("rows") if isinstance(section, dict) else None) or ():
            if isinstance(row, dict) and row.get("title"):
                detail = row.get("description")
                options.append(Option(str(row["title"]), str(detail) if detail else None))
    menu = action.get("button")
    return View(
        Kind.INTERACTIVE,
        body=_text_of(content.get("body")) or "",
        header=_text_of(content.get("header")) or _file_header(content.get("header")),
        footer=_text_of(content.get("footer")),
        options=tuple(options),
        menu=str(menu) if isinstance(menu, str) else None,
    )


def _optional_text(content: dict[str, Any], key: str) -> str | None:
    value = content.get(key)
    return value if isinstance(value, str) and value else None


def _media(kind: str, content: dict[str, Any]) -> View:
    media_id = content.get("id")
    attached = Attached(
        kind=kind,
        media_id=str(media_id) if isinstance(media_id, str | int) and media_id else None,
        mime_type=_optional_text(content, "mime_type"),
        filename=_optional_text(content, "filename"),
        link=_optional_text(content, "link"),
        voice=content.get("voice") is True,
    )
    return View(Kind.MEDIA, body=_optional_text(content, "caption") or "", attached=attached)


def view_of(message: Stored) -> View:
    """How ``message`` looks to the customer (its answers and reactions not yet applied)."""
    content = message.content
    if message.kind in MEDIA_KINDS:
        return _media(message.kind, content)
    if message.kind == "unsupported" and message.error_code == MEDIA_NOT_RECEIVED:
        return View(Kind.MEDIA_FAILED)
    if message.kind == "text":
        return View(Kind.TEXT, body=str(content.get("body", "")))
    if message.kind == "interactive":
        return _interactive(content)
    if message.kind == "button":  # a template's quick reply tapped
        return View(Kind.ANSWER, chosen=str(content.get("text", "")))
    if message.kind == "reaction":
        return View(Kind.REACTION, body=str(content.get("emoji") or ""))
    if message.kind == "template":
        if message.template is not None:
            return template_view(message.template)
        return View(Kind.TEMPLATE, template=str(content.get("name") or ""), rendered=False)
    return View(Kind.UNSUPPORTED)


def _one_line(view: View) -> str:
    if view.kind is Kind.ANSWER:
        return view.chosen or ""
    if view.kind is Kind.TEMPLATE and not view.rendered:
        return view.template or ""
    if view.kind is Kind.MEDIA and view.attached is not None and not view.body:
        return view.attached.filename or f"[{view.attached.kind}]"
    return " ".join((view.body or view.header or "").split())[:160]


def _choose(view: View, title: str) -> View:
    options = tuple(
        Option(o.title, o.detail, chosen=o.chosen or o.title == title) for o in view.options
    )
    return View(
        view.kind,
        body=view.body,
        header=view.header,
        footer=view.footer,
        options=options,
        menu=view.menu,
        chosen=view.chosen,
        template=view.template,
        rendered=view.rendered,
        attached=view.attached,
    )


def arrange(messages: Sequence[Stored], earlier: Iterable[Stored] = ()) -> list[Threaded]:
    """``messages`` (oldest first) as the thread shows them: reactions folded into the
    message they react to (the latest of each side counts; an empty emoji takes it back),
    answers marked on the message they answer, replies with the message they quote.
    ``earlier`` are messages quoted from before the first of ``messages``."""
    known = {m.wamid: m for m in earlier}
    known.update({m.wamid: m for m in messages})
    views = {m.wamid: view_of(m) for m in known.values()}
    reactions: dict[str, dict[bool, str]] = {}
    for m in messages:
        if m.kind == "reaction":
            target = m.content.get("message_id")
            if isinstance(target, str) and target in views:
                reactions.setdefault(target, {})[m.incoming] = str(m.content.get("emoji") or "")
        elif m.context_wamid in views and views[m.wamid].kind is Kind.ANSWER:
            chosen = views[m.wamid].chosen or ""
            views[m.context_wamid] = _choose(views[m.context_wamid], chosen)
    shown: list[Threaded] = []
    for m in messages:
        if m.kind == "reaction":
            continue
        quoted = None
        if m.context_wamid is not None:
            source = known.get(m.context_wamid)
            quoted = Quote(
                m.context_wamid,
                source.incoming if source else not m.incoming,
                _one_line(views[m.context_wamid]) if source else "",
            )
        on = reactions.get(m.wamid, {})
        shown.append(
            Threaded(
                m.wamid,
                views[m.wamid],
                quoted,
                tuple(Reacted(e, by) for by, e in sorted(on.items(), reverse=True) if e),
                on.get(False, ""),
            )
        )
    return shown
