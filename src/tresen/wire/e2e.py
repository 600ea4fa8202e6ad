"""End-to-end payloads: what a client encrypts into a ciphertext's ``body`` (msgpack, msgspec).

The relay never sees these. Every payload is a map with a tag ``t`` and a schema version
``v``, framed and padded before encryption so the ciphertext's length says little about the
text (``docs/protocol.md`` §8)::

    u16 big-endian length n || n bytes of msgpack || zero bytes up to the padded size

Forward compatibility, decided deliberately (unlike the relay frames, which are strict):

- an unknown tag, or a ``v`` newer than :data:`PAYLOAD_VERSION`, decodes to
  :class:`Unsupported`, so an old client can show "update to see this message" instead of
  failing;
- unknown fields of a known tag are ignored, so a newer sender may add optional fields that
  older clients can safely skip. A change that must not be skipped raises ``v``.

Known tags with missing, mistyped or out-of-range fields are refused (:class:`InvalidPayload`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, get_args

import msgspec

__all__ = [
    "MAX_EXPORT_INLINE_BYTES",
    "MAX_INLINE_BLOB_BYTES",
    "MAX_LIST_ROWS",
    "MAX_PAYLOAD_BYTES",
    "MAX_REPLY_BUTTONS",
    "MAX_THUMBNAIL_BYTES",
    "MAX_TRANSCRIPT_BYTES",
    "PAYLOAD_VERSION",
    "TYPING_MS",
    "AnyPayload",
    "Button",
    "ButtonReply",
    "DataExport",
    "DataRequest",
    "DeliveryReceipt",
    "Interactive",
    "InteractiveKind",
    "InteractiveReply",
    "InvalidPayload",
    "ListRow",
    "ListSection",
    "Media",
    "MediaKind",
    "Payload",
    "PayloadTooLarge",
    "Reaction",
    "ReadReceipt",
    "ReplyContext",
    "ReplyKind",
    "RetryRefused",
    "RetryRequest",
    "SentTranscript",
    "Template",
    "Text",
    "Typing",
    "Unsupported",
    "attached_file",
    "decode_payload",
    "encode_payload",
    "padded_size",
]

PAYLOAD_VERSION = 1

MAX_PAYLOAD_BYTES = 48 * 1024
"""Largest framed and padded payload. The relay's default ``max_ciphertext_bytes`` is 64 KiB;
Olm adds a header, a MAC and up to 16 bytes of block padding, well inside the rest."""

MAX_TRANSCRIPT_BYTES = MAX_PAYLOAD_BYTES + 2 * 1024
"""A :class:`SentTranscript` wraps a payload of up to ``MAX_PAYLOAD_BYTES`` plus ids and a
time: the next padding bucket above ``MAX_PAYLOAD_BYTES``."""

_LENGTH_BYTES = 2
_PAD_QUANTUM = 64

MessageRef = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
AccountRef = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


def _version() -> int:
    return PAYLOAD_VERSION


class Payload(msgspec.Struct, tag_field="t", kw_only=True, omit_defaults=True):
    """Base of every payload. Unset optional fields are left off the wire (smaller before
    padding); ``v`` uses a default factory, which ``omit_defaults`` never omits, so it is
    always written."""

    v: int = msgspec.field(default_factory=_version)


class InvalidPayload(ValueError):
    """Bytes that are not a well-formed payload of a known tag (the cause says why)."""


# --- messages --------------------------------------------------------------------------------


class ReplyContext(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The message being quoted (Cloud API ``context``)."""

    message_id: MessageRef
    sender: AccountRef | None = None


class Text(Payload, tag="text"):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    preview_url: bool = False
    context: ReplyContext | None = None


class Reaction(Payload, tag="reaction"):
    """An emoji on a message; the empty string removes this sender's reaction (Cloud API)."""

    message_id: MessageRef
    emoji: Annotated[str, msgspec.Meta(max_length=16)]


class ReadReceipt(Payload, tag="read_receipt"):
    """The user read these messages: keeps read markers in step across the user's devices.

    Distinct from the relay's ``receipt`` frame, which tells the *sender* (as ``read``); this
    one travels end-to-end, so the relay does not learn which device read what.
    """

    message_ids: Annotated[list[MessageRef], msgspec.Meta(min_length=1, max_length=256)]


class SentTranscript(Payload, tag="sent_transcript"):
    """A copy of a message this account sent, for the account's other devices.

    Sent once the relay has accepted the original, so it names the relay's ``message_id``
    (the other devices match the ``delivered`` and ``read`` events that name it) and its
    accept time ``server_ms`` (they place the message in the conversation where it belongs,
    not where the transcript arrived). ``payload`` is the :func:`encode_payload` output of the
    message sent (decode it with :func:`decode_payload`); it is never itself a transcript.
    """

    to: AccountRef
    message_id: MessageRef
    client_msg_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    server_ms: Annotated[int, msgspec.Meta(ge=0)]
    payload: bytes


# --- templates, interactive messages and their answers -----------------------------------------


ButtonKey = Annotated[str, msgspec.Meta(pattern=r"^button:[0-9]$")]
QuickReplyPayload = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Template(Payload, tag="template"):
    """A message made of the operator-signed template ``template_id`` (``wire/templates.py``).

    ``template_id`` is the decimal id the send names as its ``template_ref``; ``name`` and
    ``language`` repeat the template's. ``parameters`` maps a component (``"header"``,
    ``"body"``, ``"button:0"``, ...) to its parameters: a list in the order of the template's
    ``{{1}}``, ``{{2}}``, ..., or a map of name to value for named placeholders. Recipients
    show only the signed template rendered with these parameters.

    ``button_payloads`` maps a QUICK_REPLY button (``"button:N"``) to the payload the
    business set for it: never shown, it comes back in the customer's :class:`ButtonReply`.
    It is a field of its own, not a parameter, so that clients that do not know it still
    render the template (an unknown field is skipped; a parameter they do not expect would
    be a mismatch).
    """

    template_id: Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{0,18}$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    language: Annotated[str, msgspec.Meta(min_length=2, max_length=15)]
    parameters: dict[str, list[str] | dict[str, str]] = {}
    button_payloads: Annotated[dict[ButtonKey, QuickReplyPayload], msgspec.Meta(max_length=10)] = {}
    header_media: Media | None = None
    """The file of an IMAGE, VIDEO or DOCUMENT header, as an attachment (``Media``, encrypted
    and uploaded like any other): the header parameter names it (the sender's media id or
    link), this carries it, so the recipient gets the file itself rather than a reference.
    Clients that do not know the field skip it and show the reference."""

    def __post_init__(self) -> None:
        media = self.header_media
        if media is not None and media.kind not in _HEADER_KINDS:
            raise InvalidPayload(f"template: a {media.kind} cannot be a header")
        if media is not None and (media.caption is not None or media.context is not None):
            raise InvalidPayload("template: a header's file has no caption or reply of its own")


class InteractiveKind(StrEnum):
    BUTTON = "button"
    LIST = "list"


class Button(msgspec.Struct, kw_only=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]


class ListRow(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=24)]
    description: Annotated[str, msgspec.Meta(max_length=72)] | None = None


class ListSection(msgspec.Struct, kw_only=True, omit_defaults=True):
    title: Annotated[str, msgspec.Meta(max_length=24)] | None = None
    rows: Annotated[list[ListRow], msgspec.Meta(min_length=1, max_length=10)]


MAX_REPLY_BUTTONS = 3
MAX_LIST_ROWS = 10


class Interactive(Payload, tag="interactive"):
    """Reply buttons or a list to choose from (the Cloud API's interactive ``button`` and
    ``list`` messages, with their limits).

    ``button``: 1-3 ``buttons`` with distinct ids and distinct titles. ``list``: the menu
    button's label ``button`` and 1-10 ``sections`` with at most 10 rows in all, row ids
    distinct, every section titled when there is more than one. The recipient answers with
    an :class:`InteractiveReply`.
    """

    type: InteractiveKind
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    buttons: Annotated[list[Button], msgspec.Meta(max_length=MAX_REPLY_BUTTONS)] = []
    sections: Annotated[list[ListSection], msgspec.Meta(max_length=10)] = []
    header: Annotated[str, msgspec.Meta(min_length=1, max_length=60)] | None = None
    footer: Annotated[str, msgspec.Meta(min_length=1, max_length=60)] | None = None
    button: Annotated[str, msgspec.Meta(min_length=1, max_length=20)] | None = None
    context: ReplyContext | None = None
    header_media: Media | None = None
    """Reply buttons may have an image, a video or a document as their header instead of a
    text, as in the Cloud API."""

    def __post_init__(self) -> None:
        # Raised while decoding, msgspec wraps it as a ValidationError (→ InvalidPayload).
        problem = self._header_problem() or (
            self._button_problem() if self.type == InteractiveKind.BUTTON else self._list_problem()
        )
        if problem is not None:
            raise InvalidPayload(f"interactive {self.type}: {problem}")

    def _header_problem(self) -> str | None:
        media = self.header_media
        if media is None:
            return None
        if self.type != InteractiveKind.BUTTON:
            return "only reply buttons have a file as their header"
        if self.header is not None:
            return "the header is a text or a file, not both"
        if media.kind not in _HEADER_KINDS:
            return f"a header's file is an image, a video or a document, not {media.kind}"
        if media.context is not None or media.caption is not None:
            return "a header's file has no caption and quotes nothing"
        return None

    def _button_problem(self) -> str | None:
        if not self.buttons:
            return f"needs 1 to {MAX_REPLY_BUTTONS} buttons"
        if self.sections or self.button is not None:
            return "has buttons only, no list sections or menu button"
        if _repeated(b.id for b in self.buttons):
            return "button ids must differ"
        if _repeated(b.title for b in self.buttons):
            return "button titles must differ"
        return None

    def _list_problem(self) -> str | None:
        if self.button is None:
            return "needs the label of its menu button (button)"
        if not self.sections:
            return "needs 1 to 10 sections"
        if self.buttons:
            return "has list sections only, no reply buttons"
        rows = [row for section in self.sections for row in section.rows]
        if len(rows) > MAX_LIST_ROWS:
            return f"has {len(rows)} rows, at most {MAX_LIST_ROWS} in all sections together"
        if _repeated(row.id for row in rows):
            return "row ids must differ"
        if len(self.sections) > 1 and any(not (s.title or "").strip() for s in self.sections):
            return "every section needs a title when there is more than one"
        return None


def _repeated(values: Iterable[str]) -> bool:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return True
        seen.add(value)
    return False


class ReplyKind(StrEnum):
    BUTTON_REPLY = "button_reply"
    LIST_REPLY = "list_reply"


class InteractiveReply(Payload, tag="interactive_reply"):
    """The recipient's answer to an :class:`Interactive` message (relay id ``message_id``):
    the ``id`` and ``title`` of the button tapped or the list row picked (with the row's
    ``description``)."""

    kind: ReplyKind
    message_id: MessageRef
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=24)]
    description: Annotated[str, msgspec.Meta(max_length=72)] | None = None

    def __post_init__(self) -> None:
        if self.kind == ReplyKind.BUTTON_REPLY and self.description is not None:
            raise InvalidPayload("a button reply has no description")


class ButtonReply(Payload, tag="button_reply"):
    """The recipient tapped a QUICK_REPLY button of the template message ``message_id``:
    ``payload`` is what the business set for that button when it sent the message (else the
    button's text), ``text`` the button's text."""

    message_id: MessageRef
    payload: QuickReplyPayload
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=25)]


TYPING_MS = 25_000
"""How long a :class:`Typing` indicator shows at most (as in WhatsApp)."""


class Typing(Payload, tag="typing"):
    """The sender is typing an answer to ``message_id``. Sent with class SYSTEM; receivers
    show "typing…" until the sender's next message or :data:`TYPING_MS`, whichever comes
    first, and store nothing."""

    message_id: MessageRef


class RetryRequest(Payload, tag="retry"):
    """A device could not decrypt ``message_id`` (a lost, stale or damaged session, a used-up
    one-time key): it asks the device that sent it, ``sender_device``, to encrypt it again
    over the new session this request arrives on. Sent with class SYSTEM to every device of
    the sender's account; devices other than ``sender_device`` ignore it. ``attempt`` counts
    the requests for this message from 1; the sender resends a bounded number of times."""

    message_id: MessageRef
    sender_device: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    attempt: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


class RetryRefused(Payload, tag="retry_refused"):
    """The answer of ``sender_device`` to a :class:`RetryRequest` it cannot serve: it holds
    no message ``message_id`` that it sent to the requester. Sent with class SYSTEM; the
    requester stops waiting and shows the message as failed."""

    message_id: MessageRef


class DeliveryReceipt(Payload, tag="delivery_receipt"):
    """A customer's device received the template message ``message_id`` (the relay's id)
    and accepted it (its template checks passed): evidence for the business's bill.

    Sent with class RECEIPT by the recipient device to the sending business, once per
    template message. ``signature`` is the device's Ed25519 identity key's signature over
    the bytes :func:`tresen.crypto.delivery.delivery_message` builds (``docs/protocol.md``
    §12.5), which bind the message, both accounts, the device, the template and
    ``delivered_ms`` (the device's clock when it decrypted the message).
    """

    message_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
    template_id: Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{0,18}$")]
    delivered_ms: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


# --- attachments -----------------------------------------------------------------------------


class MediaKind(StrEnum):
    IMAGE = "image"
    DOCUMENT = "document"
    AUDIO = "audio"
    VIDEO = "video"
    STICKER = "sticker"


MAX_THUMBNAIL_BYTES = 12 * 1024
"""Largest thumbnail carried inside a ``media`` payload (a small JPEG of an image)."""

MAX_INLINE_BLOB_BYTES = 16 * 1024
"""Largest blob carried inside a ``media`` payload instead of the relay's blob store.

A boarding pass, an invoice or a voice note of a few seconds is a few kilobytes: sending it
inside the message spares four authenticated requests (create, upload, download, delete) and
the blob store's ``fsync``. With a thumbnail and a template around it, the payload stays well
under ``MAX_PAYLOAD_BYTES``."""

_VISUAL_KINDS = frozenset({MediaKind.IMAGE, MediaKind.VIDEO, MediaKind.STICKER})
_HEADER_KINDS = frozenset({MediaKind.IMAGE, MediaKind.VIDEO, MediaKind.DOCUMENT})
_TIMED_KINDS = frozenset({MediaKind.AUDIO, MediaKind.VIDEO})

BlobId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Pixels = Annotated[int, msgspec.Meta(ge=1, le=65_535)]


class Media(Payload, tag="media"):
    """An attachment: a file encrypted by its sender with a fresh ``key`` into a blob
    (``crypto/attachments.py``), either uploaded to the relay as the opaque blob ``blob_id``
    or, when small, carried here as ``blob`` (exactly one of the two).

    ``sha256`` and ``size`` describe the blob (checked before decrypting), ``plain_size`` the
    file. The relay never sees the name, type, caption or thumbnail: they travel here,
    encrypted with the message. ``blob_id`` is URL-safe, so a sender cannot point a
    recipient's download anywhere but at a blob.
    """

    kind: MediaKind
    key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    sha256: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    size: Annotated[int, msgspec.Meta(ge=1, le=2**53)]
    plain_size: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    mime_type: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    blob_id: BlobId | None = None
    blob: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_INLINE_BLOB_BYTES)] | None = (
        None
    )
    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    caption: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None
    width: Pixels | None = None
    height: Pixels | None = None
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=2**53)] | None = None
    voice: bool = False
    thumbnail: (
        Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_THUMBNAIL_BYTES)] | None
    ) = None
    context: ReplyContext | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise InvalidPayload(f"media {self.kind}: {problem}")

    def _problem(self) -> str | None:
        if (self.blob_id is None) == (self.blob is None):
            return "exactly one of blob_id and blob names the file"
        if self.blob is not None and len(self.blob) != self.size:
            return "the inline blob's length is not its size"
        if (self.width is None) != (self.height is None):
            return "width and height come together"
        if self.width is not None and self.kind not in _VISUAL_KINDS:
            return "only images, videos and stickers have dimensions"
        if self.thumbnail is not None and self.kind not in _VISUAL_KINDS:
            return "only images, videos and stickers have a thumbnail"
        if self.duration_ms is not None and self.kind not in _TIMED_KINDS:
            return "only audio and video have a duration"
        if self.voice and self.kind != MediaKind.AUDIO:
            return "only audio is a voice note"
        return None


# --- a person's data, asked of a business ---------------------------------------------------

MAX_EXPORT_INLINE_BYTES = 40 * 1024
"""Largest export document carried inside a :class:`DataExport`; a larger one travels as a
JSON document attachment (``file``)."""

RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class DataRequest(Payload, tag="data_request"):
    """A customer asks a business for a copy of everything it holds about them (the right
    of access). Sent with class SESSION (it is the customer writing to the business); the
    business's gateway answers with a :class:`DataExport` naming ``request_id``."""

    request_id: RequestId


class DataExport(Payload, tag="data_export"):
    """A business's answer to a :class:`DataRequest`: the JSON document inline
    (``document``, UTF-8), or as a document attachment (``file``) when it is larger than
    :data:`MAX_EXPORT_INLINE_BYTES`, or why it cannot answer (``error``): exactly one."""

    request_id: RequestId
    document: (
        Annotated[bytes, msgspec.Meta(min_length=2, max_length=MAX_EXPORT_INLINE_BYTES)] | None
    ) = None
    file: Media | None = None
    error: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.document, self.file, self.error) if x is not None]
        if len(given) != 1:
            raise InvalidPayload("data_export: exactly one of document, file and error")


AnyPayload = (
    Text
    | Reaction
    | ReadReceipt
    | SentTranscript
    | Template
    | Interactive
    | InteractiveReply
    | ButtonReply
    | Typing
    | Media
    | RetryRequest
    | RetryRefused
    | DataRequest
    | DataExport
    | DeliveryReceipt
)


def attached_file(payload: object) -> Media | None:
    """The file a message carries: a ``media`` message's, or the file header of a template
    or of reply buttons (``None``: it carries none)."""
    if isinstance(payload, Media):
        return payload
    if isinstance(payload, Template | Interactive):
        return payload.header_media
    return None


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A payload this client does not understand: a tag it does not know, or a newer ``v``."""

    tag: str
    v: int


class PayloadTooLarge(ValueError):
    """The encoded payload exceeds :data:`MAX_PAYLOAD_BYTES` (or, for a transcript,
    :data:`MAX_TRANSCRIPT_BYTES`)."""


class _Header(msgspec.Struct):
    """Just enough of any payload, from any version, to route it: other fields are skipped."""

    t: str
    v: Annotated[int, msgspec.Meta(ge=1)] = PAYLOAD_VERSION


_KNOWN_TAGS = frozenset(str(cls.__struct_config__.tag) for cls in get_args(AnyPayload))
_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(_Header)
_payload_decoder = msgspec.msgpack.Decoder(AnyPayload)


def padded_size(n: int) -> int:
    """The size ``n`` framed bytes are padded to.

    A multiple of 64 bytes (so short texts all look alike), and above 1 KiB the Padmé bucket
    (Nikitin et al., 2019): at most 12 % overhead, and a length reveals only O(log log n) bits.
    """
    size = -(-n // _PAD_QUANTUM) * _PAD_QUANTUM
    if size <= 1024:
        return size
    exponent = size.bit_length() - 1
    mask = (1 << (exponent - exponent.bit_length())) - 1
    return (size + mask) & ~mask


def encode_payload(payload: Payload) -> bytes:
    """The framed, padded plaintext of ``payload``, ready to encrypt for every device.

    The payload is validated as a receiver would (so a sender learns of a bad field, not its
    peers), and refused with :class:`PayloadTooLarge` above the size limit.
    """
    body = _encoder.encode(payload)
    if isinstance(_decode_body(body), Unsupported):
        raise InvalidPayload(f"only payloads of version {PAYLOAD_VERSION} can be encoded")
    limit = MAX_PAYLOAD_BYTES
    if isinstance(payload, SentTranscript):
        _check_transcribed(payload.payload)
        limit = MAX_TRANSCRIPT_BYTES
    size = padded_size(_LENGTH_BYTES + len(body))
    if size > limit:
        raise PayloadTooLarge(
            f"a {payload.__struct_config__.tag} payload of {size} bytes once padded "
            f"exceeds the limit of {limit}"
        )
    return len(body).to_bytes(_LENGTH_BYTES, "big") + body + bytes(size - _LENGTH_BYTES - len(body))


def _check_transcribed(raw: bytes) -> None:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"a transcribed payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    if isinstance(decode_payload(raw), SentTranscript | Unsupported):
        raise InvalidPayload("a transcript must wrap a message payload of a known version")


def decode_payload(raw: bytes) -> AnyPayload | Unsupported:
    """The payload framed in ``raw`` (a decrypted plaintext); padding is ignored."""
    if len(raw) > MAX_TRANSCRIPT_BYTES:
        raise InvalidPayload(f"payload of {len(raw)} bytes exceeds {MAX_TRANSCRIPT_BYTES}")
    if len(raw) < _LENGTH_BYTES:
        raise InvalidPayload("payload is shorter than its length prefix")
    n = int.from_bytes(raw[:_LENGTH_BYTES], "big")
    if _LENGTH_BYTES + n > len(raw):
        raise InvalidPayload(f"length prefix says {n} bytes, only {len(raw) - 2} follow")
    return _decode_body(raw[_LENGTH_BYTES : _LENGTH_BYTES + n])


def _decode_body(body: bytes) -> AnyPayload | Unsupported:
    try:
        header = _header_decoder.decode(body)
        if header.t not in _KNOWN_TAGS or header.v > PAYLOAD_VERSION:
            return Unsupported(tag=header.t, v=header.v)
        payload: AnyPayload = _payload_decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise InvalidPayload(f"invalid payload: {exc}") from exc
    except UnicodeDecodeError as exc:  # a str that is not UTF-8
        raise InvalidPayload(f"invalid payload: {exc}") from exc
    return payload
