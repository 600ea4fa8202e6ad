"""Signatures and bodies as Cloud API receivers check them."""

from __future__ import annotations

import json

from pywa.utils import webhook_updates_validator

from tresen.gateway.webhooks import encode_event, sign, verify

SECRET = "app-secret-of-the-shop"


def message_body() -> bytes:
    return encode_event(
        waba_id="102290129340398",
        field="messages",
        value={"messages": [{"type": "text", "text": {"body": "Grüße aus Köln 👋"}}]},
    )


def test_pywa_accepts_our_signature_and_rejects_a_tampered_body() -> None:
    body = message_body()
    header = sign(SECRET.encode(), body)
    assert header.startswith("sha256=")
    assert webhook_updates_validator(SECRET, body, header)
    assert verify(SECRET.encode(), body, header)

    tampered = body.replace(b"K\\u00f6ln", b"Bonn")
    assert tampered != body
    assert not webhook_updates_validator(SECRET, tampered, header)
    assert not verify(SECRET.encode(), tampered, header)
    assert not webhook_updates_validator("another-secret", body, header)
    assert not verify(b"another-secret", body, header)


def test_verify_refuses_missing_and_malformed_headers() -> None:
    body = message_body()
    digest = sign(SECRET.encode(), body).removeprefix("sha256=")
    for header in (None, "", digest, "sha1=" + digest, "sha256=", "sha256=zz"):
        assert not verify(SECRET.encode(), body, header)
    assert verify(SECRET.encode(), body, "sha256=" + digest.upper())


def test_body_is_compact_json_with_non_ascii_escaped_like_meta() -> None:
    body = message_body()
    assert body.isascii()
    assert b"Gr\\u00fc\\u00dfe aus K\\u00f6ln \\ud83d\\udc4b" in body
    assert b": " not in body
    assert b", " not in body
    decoded = json.loads(body)
    assert decoded["object"] == "whatsapp_business_account"
    entry = decoded["entry"][0]
    assert entry == {
        "id": "102290129340398",
        "changes": [
            {
                "field": "messages",
                "value": {"messages": [{"type": "text", "text": {"body": "Grüße aus Köln 👋"}}]},
            }
        ],
    }


def test_time_appears_only_when_given() -> None:
    with_time = json.loads(
        encode_event(
            waba_id="1", field="message_template_status_update", value={}, time_s=1751247548
        )
    )
    assert list(with_time["entry"][0]) == ["id", "time", "changes"]
    assert with_time["entry"][0]["time"] == 1751247548
    assert (
        "time" not in json.loads(encode_event(waba_id="1", field="messages", value={}))["entry"][0]
    )
