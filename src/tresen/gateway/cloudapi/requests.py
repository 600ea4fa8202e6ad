"""Reading the body of ``POST /{version}/{phone_number_id}/messages``.

Bodies are checked field by field; the first problem found becomes error 100 with a
``details`` naming the parameter, as the Cloud API does. A valid send becomes a
:class:`SendRequest` (the end-to-end payload to encrypt, plus the Cloud API object kept in
the gateway's store); a ``"status": "read"`` body becomes a :class:`ReadRequest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.ids import InvalidWamid, decode_wamid, is_user_id
from tresen.gateway.media.library import OutgoingMedia
from tresen.wire.e2e import (
    Button,
    Interactive,
    InteractiveKind,
    InvalidPayload,
    ListRow,
    ListSection,
    MediaKind,
    Payload,
    PayloadTooLarge,
    Reaction,
    ReplyContext,
    Text,
    encode_payload,
)

__all__ = ["ReadRequest", "Recipient", "SendRequest", "TemplateSend", "parse_message_request"]

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
SUPPORTED_TYPES = ("text", "interactive", "reaction", "template", *MEDIA_TYPES)
UNSUPPORTED_TYPES = ("location", "contacts", "order")
MAX_CALLBACK_DATA = 512
MAX_CAPTION = 1024
MAX_FILENAME = 255
MAX_LINK = 2048
_CAPTIONED = ("image", "video", "document")
_HEADER_MEDIA = ("image", "video", "document")


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a send goes to: ``phone`` (E.164, from ``to``) or ``user_id`` (from ``recipient``);
    ``input`` is what the client wrote, echoed in the response."""

    input: str
    phone: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateSend:
    name: str
    language: str
    components: list[dict[str, Any]]
    header_media: OutgoingMedia | None = None
    """The file of a media header, delivered as an attachment with the template."""


@dataclass(frozen=True, slots=True)
class SendRequest:
    recipient: Recipient
    type: str
    content: dict[str, Any]
    """The Cloud API object of ``type`` as sent, kept in the store."""
    payload: Payload | None = None
    """The end-to-end payload, for every type but ``template`` (built from the template)
    and the media types (built once the file is encrypted and uploaded)."""
    template: TemplateSend | None = None
    media: OutgoingMedia | None = None
    header_media: OutgoingMedia | None = None
    """The file header of reply buttons (``interactive``), sent with them."""
    reply_to: str | None = None
    """The relay id of the quoted message (``context``)."""
    context_wamid: str | None = None
    callback_data: str | None = None


@dataclass(frozen=True, slots=True)
class ReadRequest:
    message_id: str
    relay_message_id: str
    typing: bool


def _bad(details: str) -> GraphError:
    return GraphError(100, details)


def _object(body: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise _bad(f"Param {where}{key} must be a JSON object")
    return value


def _name(where: str, key: str) -> str:
    return f"{where}['{key}']" if where else key


def _optional(
    body: dict[str, Any], key: str, where: str = "", *, max_length: int, allow_empty: bool = False
) -> str | None:
    param = _name(where, key)
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"Param {param} must be a string")
    if not allow_empty and not value.strip():
        raise _bad(f"Param {param} must not be empty or blank")
    if len(value) > max_length:
        raise _bad(f"Param {param} must be at most {max_length} characters long")
    return value


def _required(
    body: dict[str, Any], key: str, where: str = "", *, max_length: int, allow_empty: bool = False
) -> str:
    value = _optional(body, key, where, max_length=max_length, allow_empty=allow_empty)
    if value is None:
        raise _bad(f"The parameter {_name(where, key)} is required.")
    return value


def _relay_id(wamid: Any, where: str) -> str:
    if not isinstance(wamid, str):
        raise _bad(f"Param {where} must be a message id (wamid.…)")
    try:
        return decode_wamid(wamid)
    except InvalidWamid:
        raise _bad(f"Param {where} is not a message id of this number: {wamid[:80]}") from None


def _recipient(body: dict[str, Any]) -> Recipient:
    to, recipient = body.get("to"), body.get("recipient")
    if to is not None:
        if not isinstance(to, str) or not to.strip():
            raise _bad("Param to must be a phone number or wa_id")
        if is_user_id(to):
            return Recipient(input=to, user_id=to)
        digits = "".join(ch for ch in to if ch.isdigit())
        if not 6 <= len(digits) <= 15 or any(ch not in "+0123456789 ()-." for ch in to):
            raise _bad(f"Param to is not a valid phone number: {to[:40]}")
        return Recipient(input=to, phone="+" + digits)
    if recipient is not None:
        if not isinstance(recipient, str) or not is_user_id(recipient):
            raise _bad("Param recipient must be a user id (CC.digits)")
        return Recipient(input=recipient, user_id=recipient)
    raise _bad("The parameter to is required (or recipient, a user id).")


def parse_message_request(body: Any) -> SendRequest | ReadRequest:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object")
    product = body.get("messaging_product")
    if product != "whatsapp":
        raise _bad("The parameter messaging_product is required and must be 'whatsapp'.")
    if "status" in body:
        return _read(body)
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type != "individual":
        raise _bad("Param recipient_type: only 'individual' recipients are supported")
    recipient = _recipient(body)
    kind = body.get("type", "text")
    if not isinstance(kind, str):
        raise _bad("Param type must be a string")
    if kind in UNSUPPORTED_TYPES:
        raise GraphError(131051, f"Messages of type {kind} are not supported by this gateway yet")
    if kind not in SUPPORTED_TYPES:
        raise _bad(f"Param type must be one of {', '.join(SUPPORTED_TYPES)}; got {kind[:40]}")
    callback = _optional(body, "biz_opaque_callback_data", max_length=MAX_CALLBACK_DATA)
    context_wamid: str | None = None
    context: ReplyContext | None = None
    if body.get("context") is not None:
        raw_context = _object(body, "context")
        relay_id = _relay_id(raw_context.get("message_id"), "context['message_id']")
        context_wamid = str(raw_context["message_id"])
        context = ReplyContext(message_id=relay_id)
    content = _object(body, kind)
    payload: Payload | None = None
    template: TemplateSend | None = None
    media: OutgoingMedia | None = None
    header_media: OutgoingMedia | None = None
    if kind in MEDIA_TYPES:
        media = _media(kind, content)
    elif kind == "text":
        payload = _text(content, context)
    elif kind == "reaction":
        payload = _reaction(content)
    elif kind == "interactive":
        payload = _interactive(content, context)
        header_media = _interactive_header_media(content)
    else:
        template = _template(content)
    return SendRequest(
        recipient=recipient,
        type=kind,
        content=content,
        payload=payload,
        template=template,
        media=media,
        header_media=header_media,
        reply_to=None if context is None else context.message_id,
        context_wamid=context_wamid,
        callback_data=callback,
    )


def _read(body: dict[str, Any]) -> ReadRequest:
    if body.get("status") != "read":
        raise _bad("Param status must be 'read'")
    wamid = body.get("message_id")
    relay_id = _relay_id(wamid, "message_id")
    typing = False
    indicator = body.get("typing_indicator")
    if indicator is not None:
        if not isinstance(indicator, dict) or indicator.get("type") != "text":
            raise _bad('Param typing_indicator must be {"type": "text"}')
        typing = True
    return ReadRequest(message_id=str(wamid), relay_message_id=relay_id, typing=typing)


def _text(content: dict[str, Any], context: ReplyContext | None) -> Text:
    text = _required(content, "body", "text", max_length=4096)
    preview = content.get("preview_url", False)
    if not isinstance(preview, bool):
        raise _bad("Param text['preview_url'] must be a boolean")
    return Text(text=text, preview_url=preview, context=context)


def _media(kind: str, content: dict[str, Any], where: str | None = None) -> OutgoingMedia:
    """A media object: ``{"id"|"link", "caption"?, "filename"?, "voice"?}``."""
    where = where or kind
    media_id, link = content.get("id"), content.get("link")
    if (media_id is None) == (link is None):
        raise _bad(f"Param {where} needs 'id' (an uploaded media) or 'link', one of the two")
    if media_id is not None:
        if isinstance(media_id, int) and not isinstance(media_id, bool):
            media_id = str(media_id)
        if not isinstance(media_id, str) or not media_id.isdigit() or len(media_id) > 20:
            raise _bad(f"Param {where}['id'] must be a media id (digits)")
    if link is not None:
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise _bad(f"Param {where}['link'] must be an http or https URL")
        if len(link) > MAX_LINK:
            raise _bad(f"Param {where}['link'] must be at most {MAX_LINK} characters long")
    caption = _optional(content, "caption", where, max_length=MAX_CAPTION)
    if caption is not None and kind not in _CAPTIONED:
        raise _bad(f"Param {where}['caption']: only images, videos and documents have captions")
    filename = _optional(content, "filename", where, max_length=MAX_FILENAME)
    if filename is not None and kind != "document":
        raise _bad(f"Param {where}['filename']: only documents have a file name")
    voice = content.get("voice")
    if voice is not None and (not isinstance(voice, bool) or (voice and kind != "audio")):
        raise _bad(f"Param {where}['voice'] must be a boolean, and only audio is a voice note")
    return OutgoingMedia(
        kind=MediaKind(kind),
        media_id=media_id,
        link=link,
        caption=caption,
        filename=filename,
        voice=voice,
        param=where,
    )


def _header_media(components: list[dict[str, Any]]) -> OutgoingMedia | None:
    """The file of a template's media header parameter, if it has one."""
    for i, component in enumerate(components):
        if str(component.get("type", "")).lower() != "header":
            continue
        for j, parameter in enumerate(component.get("parameters", [])):
            kind = parameter.get("type")
            if kind not in _HEADER_MEDIA:
                continue
            where = f"template['components'][{i}]['parameters'][{j}]['{kind}']"
            content = parameter.get(kind)
            if not isinstance(content, dict):
                raise _bad(f"Param {where} must be a JSON object")
            # A header's file has no caption of its own (the template's body says it).
            return _media(kind, {k: v for k, v in content.items() if k != "caption"}, where)
    return None


def _reaction(content: dict[str, Any]) -> Reaction:
    relay_id = _relay_id(content.get("message_id"), "reaction['message_id']")
    emoji = _required(content, "emoji", "reaction", max_length=16, allow_empty=True)
    return Reaction(message_id=relay_id, emoji=emoji)


def _section_text(content: dict[str, Any], key: str, limit: int) -> str | None:
    part = content.get(key)
    if part is None:
        return None
    if not isinstance(part, dict):
        raise _bad(f"Param interactive['{key}'] must be a JSON object")
    if key == "header" and part.get("type", "text") != "text":
        if part.get("type") in _HEADER_MEDIA and content.get("type") == "button":
            return None  # a file header: _interactive_header_media
        raise _bad(
            "Param interactive['header']['type'] must be 'text', or for reply buttons "
            "'image', 'video' or 'document'"
        )
    return _required(part, "text", f"interactive['{key}']", max_length=limit)


def _interactive_header_media(content: dict[str, Any]) -> OutgoingMedia | None:
    """The file header of reply buttons, if they have one (checked by ``_section_text``)."""
    header = content.get("header")
    if not isinstance(header, dict) or header.get("type") not in _HEADER_MEDIA:
        return None
    kind = str(header["type"])
    where = f"interactive['header']['{kind}']"
    file = header.get(kind)
    if not isinstance(file, dict):
        raise _bad(f"Param {where} must be a JSON object")
    if "caption" in file:
        raise _bad(f"Param {where}['caption']: a header's file has no caption (the body says it)")
    return _media(kind, file, where)


def _interactive(content: dict[str, Any], context: ReplyContext | None) -> Interactive:
    kind = content.get("type")
    if kind not in ("button", "list"):
        raise _bad("Param interactive['type'] must be 'button' or 'list'")
    body = _section_text(content, "body", 1024)
    if body is None:
        raise _bad("The parameter interactive['body'] is required.")
    header = _section_text(content, "header", 60)
    footer = _section_text(content, "footer", 60)
    action = content.get("action")
    if not isinstance(action, dict):
        raise _bad("The parameter interactive['action'] is required.")
    if kind == "button":
        raw_buttons = action.get("buttons")
        if not isinstance(raw_buttons, list) or not 1 <= len(raw_buttons) <= 3:
            raise _bad("Param interactive['action']['buttons'] must hold 1 to 3 buttons")
        buttons = []
        for i, raw in enumerate(raw_buttons):
            where = f"interactive['action']['buttons'][{i}]"
            reply = raw.get("reply") if isinstance(raw, dict) else None
            if not isinstance(reply, dict) or raw.get("type", "reply") != "reply":
                raise _bad(f'Param {where} must be {{"type": "reply", "reply": {{…}}}}')
            button_id = _required(reply, "id", f"{where}['reply']", max_length=256)
            title = _required(reply, "title", f"{where}['reply']", max_length=20)
            buttons.append(Button(id=button_id, title=title))
        if len({b.id for b in buttons}) != len(buttons):
            raise _bad("Param interactive['action']['buttons']: button ids must be unique")
        if len({b.title for b in buttons}) != len(buttons):
            raise _bad("Param interactive['action']['buttons']: button titles must be unique")
        return _build_interactive(
            InteractiveKind.BUTTON, body, header, footer, context, buttons=buttons
        )
    label = _required(action, "button", "interactive['action']", max_length=20)
    raw_sections = action.get("sections")
    if not isinstance(raw_sections, list) or not 1 <= len(raw_sections) <= 10:
        raise _bad("Param interactive['action']['sections'] must hold 1 to 10 sections")
    sections = []
    total_rows = 0
    for i, raw in enumerate(raw_sections):
        where = f"interactive['action']['sections'][{i}]"
        if not isinstance(raw, dict):
            raise _bad(f"Param {where} must be a JSON object")
        section_title = (
            _required(raw, "title", where, max_length=24)
            if len(raw_sections) > 1
            else _optional(raw, "title", where, max_length=24)
        )
        raw_rows = raw.get("rows")
        if not isinstance(raw_rows, list) or not raw_rows:
            raise _bad(f"Param {where}['rows'] must hold at least one row")
        rows = []
        for j, raw_row in enumerate(raw_rows):
            row_where = f"{where}['rows'][{j}]"
            if not isinstance(raw_row, dict):
                raise _bad(f"Param {where}['rows'][{j}] must be a JSON object")
            row_id = _required(raw_row, "id", row_where, max_length=200)
            row_title = _required(raw_row, "title", row_where, max_length=24)
            description = _optional(raw_row, "description", row_where, max_length=72)
            rows.append(ListRow(id=row_id, title=row_title, description=description))
        total_rows += len(rows)
        sections.append(ListSection(title=section_title, rows=rows))
    if total_rows > 10:
        raise _bad("Param interactive['action']['sections']: at most 10 rows in all sections")
    ids = [row.id for s in sections for row in s.rows]
    if len(set(ids)) != len(ids):
        raise _bad("Param interactive['action']['sections']: row ids must be unique")
    return _build_interactive(
        InteractiveKind.LIST, body, header, footer, context, sections=sections, label=label
    )


def _build_interactive(
    kind: InteractiveKind,
    body: str,
    header: str | None,
    footer: str | None,
    context: ReplyContext | None,
    *,
    buttons: list[Button] | None = None,
    sections: list[ListSection] | None = None,
    label: str | None = None,
) -> Interactive:
    interactive = _interactive_payload(
        kind, body, header, footer, context, buttons=buttons, sections=sections, label=label
    )
    # The end-to-end payload has rules of its own (a receiver checks them too): a message
    # that breaks one is the client's error 100 now, not a failure while sending.
    try:
        encode_payload(interactive)
    except (InvalidPayload, PayloadTooLarge) as exc:
        raise _bad(f"Param interactive: {exc}") from None
    return interactive


def _interactive_payload(
    kind: InteractiveKind,
    body: str,
    header: str | None,
    footer: str | None,
    context: ReplyContext | None,
    *,
    buttons: list[Button] | None = None,
    sections: list[ListSection] | None = None,
    label: str | None = None,
) -> Interactive:
    return Interactive(
        type=kind,
        body=body,
        header=header,
        footer=footer,
        button=label,
        buttons=buttons or [],
        sections=sections or [],
        context=context,
    )


def _template(content: dict[str, Any]) -> TemplateSend:
    name = _required(content, "name", "template", max_length=512)
    language = content.get("language")
    if not isinstance(language, dict):
        raise _bad('The parameter template[\'language\'] is required: {"code": "en_US"}')
    code = _required(language, "code", "template['language']", max_length=15)
    components = content.get("components", [])
    if not isinstance(components, list) or len(components) > 20:
        raise _bad("Param template['components'] must be a list of at most 20 components")
    for i, component in enumerate(components):
        if not isinstance(component, dict):
            raise _bad(f"Param template['components'][{i}] must be a JSON object")
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list) or len(parameters) > 100:
            raise _bad(
                f"Param template['components'][{i}]['parameters'] must be a list of at most "
                "100 parameters"
            )
        if not all(isinstance(p, dict) for p in parameters):
            raise _bad(f"Param template['components'][{i}]['parameters'] must hold objects")
    return TemplateSend(
        name=name, language=code, components=components, header_media=_header_media(components)
    )
