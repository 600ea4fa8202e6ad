"""A recipient trusts a template only with the operator's signature under its pinned key
ring, checked offline; and a message only as that template allows it."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import pytest

from tresen.client.templates import (
    ForgedTemplate,
    RetiredTemplateKey,
    TemplateBook,
    TemplateMismatch,
    TemplateUnavailable,
    check_template_message,
    verify_template,
)
from tresen.core.clock import ManualClock
from tresen.crypto.certificates import (
    CERTIFICATE_PREFIX,
    KeyRing,
    OperatorKey,
    PublishedKey,
    UnknownOperatorKey,
)
from tresen.relay.templates.validation import validate_submission
from tresen.wire.e2e import Media, MediaKind, Template, Text, Unsupported
from tresen.wire.relay import MessageClass
from tresen.wire.templates import TEMPLATE_PREFIX, SignedTemplate, SignedTemplateBody

BUSINESS = "b" * 32
NOW = 1_767_225_600_000

ORDER: dict[str, Any] = {
    "name": "order_shipped",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "BODY",
            "text": "Hi {{1}}, your order ships on {{2}}.",
            "example": {"body_text": [["Anna", "Monday"]]},
        }
    ],
}


def body_for(key: OperatorKey, template_id: int = 7, **changes: Any) -> bytes:
    clean = validate_submission(ORDER)
    fields: dict[str, Any] = {
        "key_id": key.key_id,
        "id": template_id,
        "business_account": BUSINESS,
        "name": clean.name,
        "language": clean.language,
        "category": clean.category,
        "parameter_format": clean.parameter_format,
        "components": clean.components,
        "approved_ms": NOW,
    }
    fields.update(changes)
    return msgspec.msgpack.encode(SignedTemplateBody(**fields))


def sign(
    key: OperatorKey, template_id: int = 7, *, prefix: bytes = TEMPLATE_PREFIX, **changes: Any
) -> SignedTemplate:
    body = body_for(key, template_id, **changes)
    return SignedTemplate(template_id, body, key.sign(prefix + body))


def test_the_operators_signature_verifies() -> None:
    operator = OperatorKey.generate()

    template = verify_template(sign(operator), KeyRing(operator.public_key), NOW)

    assert (template.id, template.name, template.business_account) == (7, "order_shipped", BUSINESS)


def test_a_changed_byte_is_refused() -> None:
    operator = OperatorKey.generate()
    signed = sign(operator)
    tampered = signed.body.replace(b"ships on", b"wins ONE")
    assert tampered != signed.body

    with pytest.raises(ForgedTemplate, match="does not verify"):
        verify_template(
            SignedTemplate(7, tampered, signed.signature), KeyRing(operator.public_key), NOW
        )


def test_another_key_is_refused() -> None:
    operator, impostor = OperatorKey.generate(), OperatorKey.generate()
    ring = KeyRing(operator.public_key)

    # Signed by a key the client never pinned (and no trusted key endorsed).
    with pytest.raises(UnknownOperatorKey):
        verify_template(sign(impostor), ring, NOW)
    # Naming the pinned key, signed by another one.
    forged = body_for(operator)
    with pytest.raises(ForgedTemplate):
        verify_template(
            SignedTemplate(7, forged, impostor.sign(TEMPLATE_PREFIX + forged)), ring, NOW
        )


def test_a_certificate_signature_is_no_template_signature() -> None:
    operator = OperatorKey.generate()

    with pytest.raises(ForgedTemplate):
        verify_template(
            sign(operator, prefix=CERTIFICATE_PREFIX), KeyRing(operator.public_key), NOW
        )


def test_the_signed_id_must_be_the_id_asked_for() -> None:
    operator = OperatorKey.generate()
    signed = sign(operator, 7)

    with pytest.raises(ForgedTemplate, match="is 7, not 8"):
        verify_template(
            SignedTemplate(8, signed.body, signed.signature), KeyRing(operator.public_key), NOW
        )


def test_a_retired_key_no_longer_vouches() -> None:
    old, new = OperatorKey.generate(), OperatorKey.generate()
    ring = KeyRing(old.public_key)
    ring.update(
        [
            PublishedKey(old.key_id, old.public_key, None, 0, retires_ms=NOW + 1000),
            PublishedKey(new.key_id, new.public_key, old.endorse(new.public_key, NOW), NOW),
        ]
    )

    assert verify_template(sign(old), ring, NOW + 999).id == 7
    with pytest.raises(RetiredTemplateKey):
        verify_template(sign(old), ring, NOW + 1000)
    # The relay signs it again with the new key, which the ring follows by endorsement.
    assert verify_template(sign(new), ring, NOW + 1000).id == 7


def payload(**changes: Any) -> Template:
    fields: dict[str, Any] = {
        "template_id": "7",
        "name": "order_shipped",
        "language": "en_US",
        "parameters": {"body": ["Anna", "Monday"]},
    }
    fields.update(changes)
    return Template(**fields)


def test_a_message_must_be_what_its_template_allows() -> None:
    operator = OperatorKey.generate()
    template = verify_template(sign(operator), KeyRing(operator.public_key), NOW)

    shown = check_template_message(template, payload(), sender=BUSINESS, template_ref="7")
    assert shown.body == "Hi Anna, your order ships on Monday."

    refused = [
        (payload(), "c" * 32, "7", "another business"),
        (payload(), BUSINESS, "3", "the relay was told 3"),
        (payload(name="order_delayed"), BUSINESS, "7", "'order_delayed'"),
        (payload(language="de"), BUSINESS, "7", "in de"),
        (payload(parameters={"body": ["Anna"]}), BUSINESS, "7", "132000"),
        (payload(button_payloads={"button:0": "x"}), BUSINESS, "7", "not a quick reply"),
    ]
    for message, sender, ref, word in refused:
        with pytest.raises(TemplateMismatch) as caught:
            check_template_message(template, message, sender=sender, template_ref=ref)
        assert word in caught.value.reason
        assert caught.value.report
    # Reasons go to the operator in a report: they never repeat a parameter's value.
    with pytest.raises(TemplateMismatch) as caught:
        check_template_message(
            template,
            payload(parameters={"body": ["secret\nline", "Monday"]}),
            sender=BUSINESS,
            template_ref=None,
        )
    assert "secret" not in caught.value.reason


async def test_a_template_message_must_carry_a_template_payload() -> None:
    async def no_refresh() -> None:
        raise AssertionError("no template is fetched for this")

    # Decided from the payload alone, before any template is fetched.
    book = TemplateBook(
        cast(Any, None), cast(Any, None), ManualClock(NOW), lambda: None, no_refresh
    )

    with pytest.raises(TemplateMismatch, match="text payload"):
        await book.check(
            Text(text="WIN"), sender=BUSINESS, klass=MessageClass.TEMPLATE, template_ref="7"
        )
    with pytest.raises(TemplateMismatch, match="media payload"):
        await book.check(
            Unsupported("media", 1), sender=BUSINESS, klass=MessageClass.TEMPLATE, template_ref="7"
        )
    # A newer sender's template payload is nobody's fault: refused, not reported.
    with pytest.raises(TemplateUnavailable) as newer:
        await book.check(
            Unsupported("template", 2),
            sender=BUSINESS,
            klass=MessageClass.TEMPLATE,
            template_ref="7",
        )
    assert not newer.value.report


def attachment(kind: MediaKind) -> Media:
    return Media(
        kind=kind,
        blob_id="b" * 43,
        key=bytes(32),
        sha256=bytes(32),
        size=100,
        plain_size=76,
        mime_type="application/pdf" if kind is MediaKind.DOCUMENT else "image/png",
        filename="pass.pdf",
    )


def test_a_header_file_must_be_what_the_header_is() -> None:
    """A template message attaches its header's file: only a file of the header's format."""
    operator = OperatorKey.generate()
    with_document = {
        **ORDER,
        "components": [
            {
                "type": "HEADER",
                "format": "DOCUMENT",
                "example": {"header_handle": ["https://a.example/b.pdf"]},
            },
            *ORDER["components"],
        ],
    }
    clean = validate_submission(with_document)
    ring = KeyRing(operator.public_key)
    template = verify_template(sign(operator, components=clean.components), ring, NOW)
    parameters = {"header": ["4127785590014437"], "body": ["Anna", "Monday"]}
    document = payload(parameters=parameters, header_media=attachment(MediaKind.DOCUMENT))
    shown = check_template_message(template, document, sender=BUSINESS, template_ref="7")
    assert shown.header is not None
    image = payload(parameters=parameters, header_media=attachment(MediaKind.IMAGE))
    with pytest.raises(TemplateMismatch, match="attaches a image"):
        check_template_message(template, image, sender=BUSINESS, template_ref="7")
    # A template without a media header takes no file.
    plain = verify_template(sign(operator), ring, NOW)
    with pytest.raises(TemplateMismatch, match="attaches a document"):
        check_template_message(
            plain,
            payload(header_media=attachment(MediaKind.DOCUMENT)),
            sender=BUSINESS,
            template_ref="7",
        )
