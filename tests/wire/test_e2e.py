"""End-to-end payloads: round trips, padding, forward compatibility and limits."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest

from tresen.wire.e2e import (
    MAX_PAYLOAD_BYTES,
    MAX_THUMBNAIL_BYTES,
    MAX_TRANSCRIPT_BYTES,
    Button,
    ButtonReply,
    Interactive,
    InteractiveKind,
    InteractiveReply,
    InvalidPayload,
    ListRow,
    ListSection,
    Media,
    MediaKind,
    Payload,
    PayloadTooLarge,
    Reaction,
    ReadReceipt,
    ReplyContext,
    ReplyKind,
    SentTranscript,
    Template,
    Text,
    Typing,
    Unsupported,
    decode_payload,
    encode_payload,
    padded_size,
)

MESSAGE_ID = "a96e06c32341d70992556bac22cec2e7"
BLOB_ID = "q3Jx0tL7n0b0Yk2H8sVwZc1dE4fG5hI6jK7lM8nO9pQ"
ACCOUNT_ID = "a6a8d2daa6ff17aebf0a720206b257c4"


def frame(body: dict[str, Any], pad_to: int = 64) -> bytes:
    """Frame a raw msgpack map the way a (possibly newer) sender would."""
    raw = msgspec.msgpack.encode(body)
    framed = len(raw).to_bytes(2, "big") + raw
    return framed + bytes(-len(framed) % pad_to)


def make_transcript(payload: bytes, **overrides: Any) -> SentTranscript:
    fields: dict[str, Any] = {
        "to": ACCOUNT_ID,
        "message_id": MESSAGE_ID,
        "client_msg_id": "c-0001",
        "server_ms": 1_763_700_000_000,
    }
    return SentTranscript(payload=payload, **(fields | overrides))


def unframe(raw: bytes) -> dict[str, Any]:
    n = int.from_bytes(raw[:2], "big")
    body: dict[str, Any] = msgspec.msgpack.decode(raw[2 : 2 + n])
    return body


EXAMPLES: list[Payload] = [
    Text(text="Hallo, ist meine Bestellung unterwegs?"),
    Text(
        text="Ja, morgen 🚚",
        preview_url=True,
        context=ReplyContext(message_id=MESSAGE_ID, sender=ACCOUNT_ID),
    ),
    Text(text="quote without sender", context=ReplyContext(message_id=MESSAGE_ID)),
    Reaction(message_id=MESSAGE_ID, emoji="👍"),
    Reaction(message_id=MESSAGE_ID, emoji=""),
    ReadReceipt(message_ids=[MESSAGE_ID, "b" * 32]),
    SentTranscript(
        to=ACCOUNT_ID,
        message_id=MESSAGE_ID,
        client_msg_id="c-0001",
        server_ms=1_763_700_000_000,
        payload=encode_payload(Text(text="sent elsewhere")),
    ),
    SentTranscript(
        to=ACCOUNT_ID,
        message_id=MESSAGE_ID,
        client_msg_id="c-0002",
        server_ms=0,
        payload=encode_payload(Reaction(message_id=MESSAGE_ID, emoji="❤️")),
    ),
    Template(
        template_id="4711",
        name="order_shipped",
        language="de",
        parameters={"body": ["Anna", "4711"], "header": {"order": "#1"}},
    ),
    Template(template_id="1", name="hello_world", language="en_US"),
    Interactive(
        type=InteractiveKind.BUTTON,
        body="Did this answer your question?",
        buttons=[Button(id="yes", title="Yes"), Button(id="no", title="No")],
    ),
    Template(
        template_id="12",
        name="order_shipped",
        language="en_US",
        parameters={"body": ["Anna"]},
        button_payloads={"button:1": "STOP-4711"},
    ),
    Interactive(
        type=InteractiveKind.LIST,
        body="Pick a delivery slot",
        button="Slots",
        sections=[
            ListSection(
                title="Tomorrow",
                rows=[ListRow(id="am", title="Morning"), ListRow(id="pm", title="Afternoon")],
            )
        ],
    ),
    Interactive(
        type=InteractiveKind.BUTTON,
        header="Your order #4711",
        body="Shall we leave it with a neighbour?",
        footer="Tresen Versand",
        buttons=[Button(id="yes", title="Yes"), Button(id="no", title="No")],
        context=ReplyContext(message_id=MESSAGE_ID),
    ),
    InteractiveReply(kind=ReplyKind.BUTTON_REPLY, message_id=MESSAGE_ID, id="yes", title="Yes"),
    InteractiveReply(
        kind=ReplyKind.LIST_REPLY,
        message_id=MESSAGE_ID,
        id="pm",
        title="Afternoon",
        description="12 to 6 pm",
    ),
    ButtonReply(message_id=MESSAGE_ID, payload="STOP-4711", text="Stop promotions"),
    Typing(message_id=MESSAGE_ID),
    Media(
        kind=MediaKind.DOCUMENT,
        blob_id=BLOB_ID,
        key=os.urandom(32),
        sha256=os.urandom(32),
        size=123_456,
        plain_size=123_400,
        mime_type="application/pdf",
        caption="Your invoice",
        filename="invoice.pdf",
        context=ReplyContext(message_id=MESSAGE_ID),
    ),
    Media(
        kind=MediaKind.IMAGE,
        blob_id=BLOB_ID,
        key=os.urandom(32),
        sha256=os.urandom(32),
        size=24,
        plain_size=0,
        mime_type="image/jpeg",
        width=1280,
        height=960,
        thumbnail=os.urandom(MAX_THUMBNAIL_BYTES),
    ),
    Media(
        kind=MediaKind.AUDIO,
        blob_id=BLOB_ID,
        key=os.urandom(32),
        sha256=os.urandom(32),
        size=9_000,
        plain_size=8_000,
        mime_type="audio/ogg",
        duration_ms=4_200,
        voice=True,
    ),
    Media(
        kind=MediaKind.STICKER,
        blob_id=BLOB_ID,
        key=os.urandom(32),
        sha256=os.urandom(32),
        size=9_000,
        plain_size=8_000,
        mime_type="image/webp",
        width=512,
        height=512,
    ),
]


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: type(p).__name__)
def test_every_payload_round_trips(payload: Payload) -> None:
    raw = encode_payload(payload)

    assert decode_payload(raw) == payload
    assert len(raw) % 64 == 0


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: type(p).__name__)
def test_every_payload_carries_its_tag_and_version(payload: Payload) -> None:
    body = unframe(encode_payload(payload))

    assert body["t"] == payload.__struct_config__.tag
    assert body["v"] == 1


def test_unset_optional_fields_stay_off_the_wire() -> None:
    assert unframe(encode_payload(Text(text="hi"))) == {"t": "text", "v": 1, "text": "hi"}


def test_a_transcript_carries_the_sent_payload() -> None:
    sent = Text(text="see you at 5", context=ReplyContext(message_id=MESSAGE_ID))
    transcript = decode_payload(encode_payload(make_transcript(encode_payload(sent))))

    assert isinstance(transcript, SentTranscript)
    assert decode_payload(transcript.payload) == sent


# --- padding ---------------------------------------------------------------------------------


def test_padding_hides_the_exact_length() -> None:
    short, longer = encode_payload(Text(text="a")), encode_payload(Text(text="x" * 40))

    assert len(short) == len(longer) == 64


def test_padding_is_ignored_on_decode() -> None:
    raw = encode_payload(Text(text="hi"))

    assert decode_payload(raw + bytes(64)) == decode_payload(raw)
    assert decode_payload(raw[:-1] + b"\xff") == Text(text="hi")  # padding content is not checked


@pytest.mark.parametrize(
    ("n", "size"),
    [(1, 64), (64, 64), (65, 128), (1000, 1024), (1024, 1024), (1025, 1088), (2100, 2176)],
)
def test_padded_sizes(n: int, size: int) -> None:
    assert padded_size(n) == size


def test_large_payloads_fall_in_coarser_buckets() -> None:
    sizes = {padded_size(n) for n in range(16 * 1024, 20 * 1024)}

    assert len(sizes) <= 5
    for n in range(1, MAX_PAYLOAD_BYTES, 97):
        assert n <= padded_size(n) <= max(64, int(n * 1.12) + 64)


# --- forward compatibility -------------------------------------------------------------------


def test_an_unknown_tag_is_unsupported_not_an_error() -> None:
    raw = frame({"t": "poll", "v": 1, "question": "Lunch?", "options": ["yes", "no"]})

    assert decode_payload(raw) == Unsupported(tag="poll", v=1)


def test_a_newer_version_of_a_known_tag_is_unsupported() -> None:
    raw = frame({"t": "text", "v": 2, "text": "hi", "view_once": True})

    assert decode_payload(raw) == Unsupported(tag="text", v=2)


def test_unknown_fields_of_a_known_tag_are_ignored() -> None:
    raw = frame({"t": "text", "v": 1, "text": "hi", "mentions": [ACCOUNT_ID]})

    assert decode_payload(raw) == Text(text="hi")


def test_a_missing_version_counts_as_version_1() -> None:
    assert decode_payload(frame({"t": "text", "text": "hi"})) == Text(text="hi")


# --- invalid payloads ------------------------------------------------------------------------

MEDIA: dict[str, Any] = {
    "t": "media",
    "v": 1,
    "kind": "image",
    "blob_id": BLOB_ID,
    "key": bytes(32),
    "sha256": bytes(32),
    "size": 100,
    "plain_size": 60,
    "mime_type": "image/png",
}


@pytest.mark.parametrize(
    "body",
    [
        {"t": "text", "v": 1, "text": ""},
        {"t": "text", "v": 1, "text": "x" * 4097},
        {"t": "text", "v": 1},
        {"t": "text", "v": 1, "text": 5},
        {"t": "text", "v": 0, "text": "hi"},
        {"t": "text", "v": "1", "text": "hi"},
        {"t": "reaction", "v": 1, "message_id": MESSAGE_ID, "emoji": "x" * 17},
        {"t": "reaction", "v": 1, "message_id": "", "emoji": "👍"},
        {"t": "read_receipt", "v": 1, "message_ids": []},
        {"t": "read_receipt", "v": 1, "message_ids": ["m"] * 257},
        {
            "t": "media",
            "v": 1,
            "kind": "hologram",
            "blob_id": "b",
            "key": bytes(32),
            "sha256": bytes(32),
            "size": 1,
            "plain_size": 0,
            "mime_type": "x/y",
        },
        {**MEDIA, "blob_id": "../../v1/me"},
        {**MEDIA, "key": bytes(16)},
        {**MEDIA, "size": 0},
        {**MEDIA, "thumbnail": bytes(MAX_THUMBNAIL_BYTES + 1)},
        {**MEDIA, "filename": "x" * 256},
        {**MEDIA, "caption": "x" * 1025},
        {key: value for key, value in MEDIA.items() if key != "plain_size"},
        {"v": 1, "text": "no tag"},
        {"t": 7, "v": 1},
    ],
)
def test_invalid_fields_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload) as raised:
        decode_payload(frame(body))
    assert isinstance(raised.value.__cause__, msgspec.ValidationError)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"width": 10}, "width and height come together"),
        ({"kind": "document", "width": 10, "height": 10}, "only images, videos and stickers"),
        ({"kind": "audio", "thumbnail": b"jpeg"}, "only images, videos and stickers"),
        ({"duration_ms": 1000}, "only audio and video have a duration"),
        ({"kind": "video", "voice": True}, "only audio is a voice note"),
    ],
)
def test_media_fields_must_fit_the_kind(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidPayload, match=problem):
        decode_payload(frame({**MEDIA, **fields}))


def test_a_media_payload_with_every_field_is_well_inside_the_limit() -> None:
    media = Media(
        kind=MediaKind.IMAGE,
        blob_id=BLOB_ID,
        key=bytes(32),
        sha256=bytes(32),
        size=2**40,
        plain_size=2**40,
        mime_type="m" * 255,
        filename="f" * 255,
        caption="ü" * 1024,
        width=65_535,
        height=65_535,
        thumbnail=bytes(MAX_THUMBNAIL_BYTES),
        context=ReplyContext(message_id=MESSAGE_ID, sender="a" * 32),
    )

    assert len(encode_payload(media)) <= MAX_PAYLOAD_BYTES // 2


def test_the_longest_text_is_accepted() -> None:
    text = Text(text="ü" * 4096)

    assert decode_payload(encode_payload(text)) == text


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00", b"\x00\x10short", b"\x00\x03\xc1\xc1\xc1", frame({"t": "text"})[:2] + b"\x93"],
)
def test_broken_framing_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidPayload):
        decode_payload(raw)


def test_invalid_payloads_are_refused_when_encoding() -> None:
    with pytest.raises(InvalidPayload, match="invalid payload"):
        encode_payload(Text(text=""))
    with pytest.raises(InvalidPayload):
        encode_payload(Text(text="hi", v=2))
    nested = make_transcript(encode_payload(make_transcript(encode_payload(Text(text="x")))))
    with pytest.raises(InvalidPayload, match="transcript must wrap"):
        encode_payload(nested)
    with pytest.raises(InvalidPayload):
        encode_payload(make_transcript(b"junk"))
    with pytest.raises(InvalidPayload):
        encode_payload(make_transcript(encode_payload(Text(text="x")), server_ms=-1))


# --- size limits -----------------------------------------------------------------------------


def template_of_size(n: int) -> Template:
    """A template whose framed encoding is about ``n`` bytes."""
    return Template(
        template_id="1", name="big", language="en", parameters={"body": ["x" * (n - 56)]}
    )


def test_oversized_payloads_are_refused() -> None:
    with pytest.raises(PayloadTooLarge, match=f"limit of {MAX_PAYLOAD_BYTES}"):
        encode_payload(template_of_size(MAX_PAYLOAD_BYTES + 1))


def test_the_largest_payload_fits_and_so_does_its_transcript() -> None:
    largest = template_of_size(MAX_PAYLOAD_BYTES - 40)
    raw = encode_payload(largest)
    assert len(raw) == MAX_PAYLOAD_BYTES

    transcript = make_transcript(
        raw, to="a" * 32, message_id="m" * 64, client_msg_id="c" * 64, server_ms=2**63 - 1
    )
    sealed = encode_payload(transcript)

    assert len(sealed) <= MAX_TRANSCRIPT_BYTES
    assert decode_payload(sealed) == transcript


def test_oversized_input_is_refused_on_decode() -> None:
    with pytest.raises(InvalidPayload, match="exceeds"):
        decode_payload(bytes(MAX_TRANSCRIPT_BYTES + 1))


# --- interactive messages and their answers --------------------------------------------------


def buttons(*titles: str) -> list[dict[str, str]]:
    return [{"id": t.lower(), "title": t} for t in titles]


def rows(n: int, prefix: str = "r") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "title": f"Row {i}"} for i in range(n)]


def interactive(**fields: Any) -> dict[str, Any]:
    return {"t": "interactive", "v": 1, "body": "Choose"} | fields


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (interactive(type="button"), "needs 1 to 3 buttons"),
        (interactive(type="button", buttons=buttons("A", "B", "C", "D")), "Expected `array`"),
        (
            interactive(
                type="button", buttons=[{"id": "x", "title": "A"}, {"id": "x", "title": "B"}]
            ),
            "button ids must differ",
        ),
        (
            interactive(
                type="button", buttons=[{"id": "a", "title": "Ja"}, {"id": "b", "title": "Ja"}]
            ),
            "button titles must differ",
        ),
        (
            interactive(type="button", buttons=buttons("A"), sections=[{"rows": rows(1)}]),
            "no list sections",
        ),
        (interactive(type="button", buttons=buttons("A"), button="Menu"), "no list sections"),
        (interactive(type="list", sections=[{"rows": rows(1)}]), "label of its menu button"),
        (interactive(type="list", button="Menu"), "needs 1 to 10 sections"),
        (
            interactive(
                type="list", button="Menu", sections=[{"rows": rows(1)}], buttons=buttons("A")
            ),
            "no reply buttons",
        ),
        (
            interactive(
                type="list",
                button="Menu",
                sections=[
                    {"title": "One", "rows": rows(6, "a")},
                    {"title": "Two", "rows": rows(5, "b")},
                ],
            ),
            "has 11 rows, at most 10",
        ),
        (
            interactive(
                type="list",
                button="Menu",
                sections=[{"title": "One", "rows": rows(2)}, {"title": "Two", "rows": rows(1)}],
            ),
            "row ids must differ",
        ),
        (
            interactive(
                type="list",
                button="Menu",
                sections=[{"title": "One", "rows": rows(1, "a")}, {"rows": rows(1, "b")}],
            ),
            "every section needs a title",
        ),
        (
            interactive(
                type="list",
                button="Menu",
                sections=[{"title": "One", "rows": rows(1, "a")}, {"title": " ", "rows": rows(1)}],
            ),
            "every section needs a title",
        ),
        (interactive(type="button", buttons=buttons("A"), header="h" * 61), "length <= 60"),
        (interactive(type="button", buttons=buttons("A"), footer="f" * 61), "length <= 60"),
        (interactive(type="button", buttons=buttons("A"), header=""), "length >= 1"),
        (interactive(type="list", button="m" * 21, sections=[{"rows": rows(1)}]), "length <= 20"),
        (interactive(type="button", buttons=[{"id": "a", "title": "t" * 21}]), "length <= 20"),
        (
            {
                "t": "interactive_reply",
                "kind": "button_reply",
                "message_id": MESSAGE_ID,
                "id": "yes",
                "title": "Yes",
                "description": "no such thing",
            },
            "a button reply has no description",
        ),
        (
            {
                "t": "interactive_reply",
                "kind": "nfm_reply",
                "message_id": MESSAGE_ID,
                "id": "yes",
                "title": "Yes",
            },
            "Invalid enum value",
        ),
        (
            {
                "t": "interactive_reply",
                "kind": "list_reply",
                "message_id": MESSAGE_ID,
                "id": "r",
                "title": "t" * 25,
            },
            "length <= 24",
        ),
        (
            {"t": "button_reply", "message_id": MESSAGE_ID, "payload": "p" * 257, "text": "Stop"},
            "length <= 256",
        ),
        (
            {"t": "button_reply", "message_id": MESSAGE_ID, "payload": "", "text": "Stop"},
            "length >= 1",
        ),
        (
            {"t": "button_reply", "message_id": MESSAGE_ID, "payload": "p", "text": "t" * 26},
            "length <= 25",
        ),
        ({"t": "typing"}, "missing required field `message_id`"),
        (
            {
                "t": "template",
                "template_id": "1",
                "name": "n",
                "language": "en",
                "button_payloads": {"body": "p"},
            },
            "button_payloads",
        ),
    ],
)
def test_interactive_limits_are_enforced(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidPayload, match="invalid payload") as raised:
        decode_payload(frame(body))
    assert isinstance(raised.value.__cause__, msgspec.ValidationError)
    assert problem in str(raised.value)


def test_a_sender_learns_of_a_broken_interactive_message_at_once() -> None:
    with pytest.raises(InvalidPayload, match="interactive button: button titles must differ"):
        Interactive(
            type=InteractiveKind.BUTTON,
            body="Choose",
            buttons=[Button(id="a", title="Same"), Button(id="b", title="Same")],
        )
    with pytest.raises(InvalidPayload, match="interactive list: needs the label"):
        Interactive(
            type=InteractiveKind.LIST,
            body="Choose",
            sections=[ListSection(rows=[ListRow(id="a", title="A")])],
        )
    too_long = Interactive(
        type=InteractiveKind.BUTTON,
        body="Choose",
        header="h" * 61,
        buttons=[Button(id="a", title="A")],
    )
    with pytest.raises(InvalidPayload, match="length <= 60"):
        encode_payload(too_long)


def test_the_largest_interactive_messages_are_accepted() -> None:
    three = Interactive(
        type=InteractiveKind.BUTTON,
        header="h" * 60,
        body="b" * 1024,
        footer="f" * 60,
        buttons=[Button(id=str(i) * 256, title=f"{i}" * 20) for i in range(3)],
    )
    ten_rows = Interactive(
        type=InteractiveKind.LIST,
        body="Choose",
        button="m" * 20,
        sections=[
            ListSection(
                title=f"Section {s}",
                rows=[
                    ListRow(id=f"{s}-{r}" + "x" * 190, title="t" * 24, description="d" * 72)
                    for r in range(n)
                ],
            )
            for s, n in enumerate((4, 3, 3))
        ],
    )
    one_untitled = Interactive(
        type=InteractiveKind.LIST,
        body="Choose",
        button="Menu",
        sections=[ListSection(rows=[ListRow(id="a", title="A")])],
    )
    for payload in (three, ten_rows, one_untitled):
        assert decode_payload(encode_payload(payload)) == payload


def test_newer_fields_of_interactive_messages_and_answers_are_skipped() -> None:
    raw = frame(
        interactive(
            type="button",
            buttons=buttons("Yes"),
            header_location={"latitude": 52.52, "longitude": 13.40},
        )
    )
    assert decode_payload(raw) == Interactive(
        type=InteractiveKind.BUTTON, body="Choose", buttons=[Button(id="yes", title="Yes")]
    )
    reply = frame(
        {
            "t": "interactive_reply",
            "v": 1,
            "kind": "button_reply",
            "message_id": MESSAGE_ID,
            "id": "yes",
            "title": "Yes",
            "flow_token": "t",
        }
    )
    assert decode_payload(reply) == InteractiveReply(
        kind=ReplyKind.BUTTON_REPLY, message_id=MESSAGE_ID, id="yes", title="Yes"
    )
    typing = frame({"t": "typing", "v": 1, "message_id": MESSAGE_ID, "kind": "audio"})
    assert decode_payload(typing) == Typing(message_id=MESSAGE_ID)


def test_a_typing_indicator_is_as_small_as_a_short_text() -> None:
    assert len(encode_payload(Typing(message_id=MESSAGE_ID))) == 64


def test_a_template_carries_only_a_header_file() -> None:
    """``header_media``: an image, video or document, without a caption or reply of its own."""
    file = Media(
        kind=MediaKind.DOCUMENT,
        blob_id=BLOB_ID,
        key=os.urandom(32),
        sha256=os.urandom(32),
        size=100,
        plain_size=76,
        mime_type="application/pdf",
        filename="boarding-pass.pdf",
    )
    template = Template(template_id="7", name="boarding_pass", language="en_US", header_media=file)
    assert decode_payload(encode_payload(template)) == template
    for wrong in (
        msgspec.structs.replace(file, kind=MediaKind.STICKER, mime_type="image/webp"),
        msgspec.structs.replace(file, caption="Your pass"),
        msgspec.structs.replace(file, context=ReplyContext(message_id=MESSAGE_ID)),
    ):
        with pytest.raises(InvalidPayload):
            Template(template_id="7", name="boarding_pass", language="en_US", header_media=wrong)


def test_only_reply_buttons_have_a_file_header_and_never_beside_a_text_one() -> None:
    photo = Media(
        kind=MediaKind.IMAGE,
        blob=bytes(40),
        key=bytes(32),
        sha256=bytes(32),
        size=40,
        plain_size=16,
        mime_type="image/png",
    )
    buttons = [Button(id="a", title="A")]
    fine = Interactive(type=InteractiveKind.BUTTON, body="B", buttons=buttons, header_media=photo)
    assert decode_payload(encode_payload(fine)) == fine
    with pytest.raises(InvalidPayload, match="text or a file, not both"):
        Interactive(
            type=InteractiveKind.BUTTON, body="B", buttons=buttons, header="H", header_media=photo
        )
    with pytest.raises(InvalidPayload, match="only reply buttons have a file"):
        Interactive(
            type=InteractiveKind.LIST,
            body="B",
            button="Menu",
            sections=[ListSection(rows=[ListRow(id="a", title="A")])],
            header_media=photo,
        )
    sticker = msgspec.structs.replace(photo, kind=MediaKind.STICKER, mime_type="image/webp")
    with pytest.raises(InvalidPayload, match="not sticker"):
        Interactive(type=InteractiveKind.BUTTON, body="B", buttons=buttons, header_media=sticker)


def test_a_string_that_is_not_utf8_is_an_invalid_payload() -> None:
    body = b"\x82\xa1t\xa4text\xa4text\xa2\xff\xfe"  # {"t": "text", "text": <2 bytes not UTF-8>}
    framed = len(body).to_bytes(2, "big") + body
    with pytest.raises(InvalidPayload, match="invalid payload"):
        decode_payload(framed)
