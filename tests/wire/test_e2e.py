"""End-to-end payloads: round trips, padding, forward compatibility and limits."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest

from tresen.wire.e2e import (
    MAX_PAYLOAD_BYTES,
    MAX_TRANSCRIPT_BYTES,
    Button,
    Interactive,
    InteractiveKind,
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
    SentTranscript,
    Template,
    Text,
    Unsupported,
    decode_payload,
    encode_payload,
    padded_size,
)

MESSAGE_ID = "a96e06c32341d70992556bac22cec2e7"
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
    Interactive(
        type=InteractiveKind.LIST,
        body="Pick a delivery slot",
        sections=[
            ListSection(
                title="Tomorrow",
                rows=[ListRow(id="am", title="Morning"), ListRow(id="pm", title="Afternoon")],
            )
        ],
    ),
    Media(
        kind=MediaKind.DOCUMENT,
        blob_id="blob-1",
        key=os.urandom(32),
        sha256=os.urandom(32),
        size=123_456,
        mime_type="application/pdf",
        caption="Your invoice",
        filename="invoice.pdf",
    ),
    Media(
        kind=MediaKind.IMAGE,
        blob_id="blob-2",
        key=os.urandom(32),
        sha256=os.urandom(32),
        size=1,
        mime_type="image/jpeg",
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
            "mime_type": "x/y",
        },
        {"v": 1, "text": "no tag"},
        {"t": 7, "v": 1},
    ],
)
def test_invalid_fields_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload) as raised:
        decode_payload(frame(body))
    assert isinstance(raised.value.__cause__, msgspec.ValidationError)


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
