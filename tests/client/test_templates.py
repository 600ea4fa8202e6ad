"""Rendering a template with a message's parameters, as a recipient's client does: the count,
names and format of the parameters must fit, or the message is refused (132000)."""

from __future__ import annotations

from typing import Any

import pytest

from tresen.relay.templates.validation import validate_submission
from tresen.wire.templates import (
    HeaderFormat,
    ParameterMismatch,
    RenderedButton,
    SignedTemplateBody,
    parameters_from_cloud_components,
    quick_reply_payloads,
    render,
)

ORDER: dict[str, Any] = {
    "name": "order_shipped",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "HEADER",
            "format": "TEXT",
            "text": "Order {{1}}",
            "example": {"header_text": ["#1"]},
        },
        {
            "type": "BODY",
            "text": "Hi {{1}}, your order ships on {{2}}. Thanks, {{1}}!",
            "example": {"body_text": [["Anna", "Monday"]]},
        },
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Track"},
                {
                    "type": "URL",
                    "text": "View",
                    "url": "https://shop.example/o/{{1}}",
                    "example": ["1"],
                },
                {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+4930123456"},
            ],
        },
    ],
}

NAMED: dict[str, Any] = {
    "name": "order_named",
    "language": "de",
    "category": "UTILITY",
    "parameter_format": "NAMED",
    "components": [
        {
            "type": "BODY",
            "text": "Hallo {{first_name}}, Bestellung {{order_id}} ist unterwegs.",
            "example": {
                "body_text_named_params": [
                    {"param_name": "first_name", "example": "Anna"},
                    {"param_name": "order_id", "example": "4711"},
                ]
            },
        }
    ],
}

LOGIN: dict[str, Any] = {
    "name": "login_code",
    "language": "en",
    "category": "AUTHENTICATION",
    "components": [
        {"type": "BODY", "add_security_recommendation": True},
        {"type": "FOOTER", "code_expiration_minutes": 10},
        {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE"}]},
    ],
}

PROMO: dict[str, Any] = {
    "name": "summer_sale",
    "language": "en",
    "category": "MARKETING",
    "components": [
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Our summer sale is on."},
        {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "SUMMER25"}]},
    ],
}


def signed(template: dict[str, Any], template_id: int = 7) -> SignedTemplateBody:
    clean = validate_submission(template)
    return SignedTemplateBody(
        key_id="0" * 16,
        id=template_id,
        business_account="b" * 32,
        name=clean.name,
        language=clean.language,
        category=clean.category,
        parameter_format=clean.parameter_format,
        components=clean.components,
        approved_ms=1,
    )


def problems(template: dict[str, Any], parameters: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ParameterMismatch) as caught:
        render(signed(template), parameters)
    assert caught.value.code == 132000
    return [(p.field, p.problem) for p in caught.value.problems]


GOOD = {"header": ["#4711"], "body": ["Anna", "Monday"], "button:1": ["4711"]}


def test_a_positional_template_renders_every_component() -> None:
    shown = render(signed(ORDER), GOOD)

    assert shown.header is not None
    assert shown.header.text == "Order #4711"
    assert shown.body == "Hi Anna, your order ships on Monday. Thanks, Anna!"
    assert shown.footer == "Reply STOP to opt out"
    assert shown.buttons == [
        RenderedButton("QUICK_REPLY", "Track"),
        RenderedButton("URL", "View", url="https://shop.example/o/4711"),
        RenderedButton("PHONE_NUMBER", "Call us", phone_number="+4930123456"),
    ]
    assert shown.text().splitlines() == [
        "Order #4711",
        "Hi Anna, your order ships on Monday. Thanks, Anna!",
        "Reply STOP to opt out",
        "[Track]",
        "[View] https://shop.example/o/4711",
        "[Call us] +4930123456",
    ]


def test_a_value_that_looks_like_a_placeholder_is_shown_as_it_is() -> None:
    shown = render(signed(ORDER), {**GOOD, "body": ["{{2}}", "Monday"]})

    assert shown.body == "Hi {{2}}, your order ships on Monday. Thanks, {{2}}!"


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "one body parameter short",
        {**GOOD, "body": ["Anna"]},
        "body",
        "expects 2 parameter(s), got 1",
    ),
    ("one too many", {**GOOD, "body": ["Anna", "Monday", "x"]}, "body", "got 3"),
    ("no header parameter", {k: v for k, v in GOOD.items() if k != "header"}, "header", "got none"),
    (
        "no URL parameter",
        {k: v for k, v in GOOD.items() if k != "button:1"},
        "button:1",
        "exactly 1",
    ),
    ("a parameter for the footer", {**GOOD, "footer": ["x"]}, "footer", "takes no parameters"),
    ("two payloads for a quick reply", {**GOOD, "button:0": ["x", "y"]}, "button:0", "exactly 1"),
    ("a quick-reply payload too long", {**GOOD, "button:0": ["x" * 257]}, "button:0", "1 to 256"),
    ("an unknown component", {**GOOD, "button:7": ["x"]}, "button:7", "no such component"),
    ("names for positional placeholders", {**GOOD, "body": {"1": "Anna"}}, "body", "as a list"),
    ("a new line", {**GOOD, "body": ["Anna\nBUY NOW", "Monday"]}, "body", "new lines"),
    ("five spaces in a row", {**GOOD, "body": ["Anna     x", "Monday"]}, "body", "4 spaces"),
    ("an empty value", {**GOOD, "body": ["", "Monday"]}, "body", "empty"),
    ("a value too long", {**GOOD, "body": ["x" * 1025, "Monday"]}, "body", "1024"),
    ("a header over 60 characters", {**GOOD, "header": ["x" * 60]}, "header", "60"),
    ("a URL parameter with spaces", {**GOOD, "button:1": ["47 11"]}, "button:1", "without spaces"),
    ("a parameter that is no text", {**GOOD, "body": ["Anna", 7]}, "body", "text"),
]


@pytest.mark.parametrize(
    ("parameters", "field", "word"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_parameters_that_do_not_fit_are_refused(
    parameters: dict[str, Any], field: str, word: str
) -> None:
    found = problems(ORDER, parameters)

    assert [p for f, p in found if f == field and word in p], found


def test_named_parameters() -> None:
    shown = render(signed(NAMED), {"body": {"order_id": "4711", "first_name": "Anna"}})

    assert shown.body == "Hallo Anna, Bestellung 4711 ist unterwegs."
    assert problems(NAMED, {"body": {"first_name": "Anna"}}) == [
        ("body", "named parameters do not match: missing order_id")
    ]
    assert problems(NAMED, {"body": {"first_name": "A", "order_id": "1", "coupon": "x"}}) == [
        ("body", "named parameters do not match: unknown coupon")
    ]
    assert problems(NAMED, {"body": ["Anna", "4711"]}) == [
        ("body", "named parameters are given as a map of name to value")
    ]


def test_an_authentication_template_shows_the_platform_text_and_the_code() -> None:
    shown = render(signed(LOGIN), {"body": ["493021"]})

    assert shown.body == (
        "493021 is your verification code. For your security, do not share this code."
    )
    assert shown.footer == "This code expires in 10 minutes."
    assert shown.buttons == [RenderedButton("OTP", "Copy code", code="493021")]
    assert problems(LOGIN, {"body": ["49 30 21"]}) == [
        ("body", "the code is 1 to 15 characters without spaces")
    ]
    assert problems(LOGIN, {}) == [("body", "expects exactly 1 parameter")]


def test_media_headers_and_coupon_codes_take_one_value() -> None:
    shown = render(
        signed(PROMO), {"header": ["https://cdn.example/sale.jpg"], "button:0": ["SUMMER25"]}
    )

    assert shown.header is not None
    assert (shown.header.format, shown.header.media) == (
        HeaderFormat.IMAGE,
        "https://cdn.example/sale.jpg",
    )
    assert shown.buttons == [RenderedButton("COPY_CODE", "Copy offer code", code="SUMMER25")]
    assert problems(PROMO, {"button:0": ["SUMMER25"]}) == [
        ("header", "expects exactly 1 parameter")
    ]
    assert problems(PROMO, {"header": ["x"], "button:0": ["A CODE WITH SPACES"]}) == [
        ("button:0", "a coupon code is 1 to 15 characters without spaces")
    ]


def test_cloud_api_send_components_become_parameters() -> None:
    components = [
        {"type": "header", "parameters": [{"type": "text", "text": "#4711"}]},
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "Monday"}],
        },
        {
            "type": "button",
            "sub_type": "url",
            "index": "1",
            "parameters": [{"type": "text", "text": "4711"}],
        },
    ]

    assert parameters_from_cloud_components(components) == GOOD
    named = [
        {
            "type": "body",
            "parameters": [{"type": "text", "parameter_name": "first_name", "text": "Anna"}],
        },
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x/y.jpg"}}]},
    ]
    assert parameters_from_cloud_components(named) == {
        "body": {"first_name": "Anna"},
        "header": ["https://x/y.jpg"],
    }
    with pytest.raises(ValueError, match="unsupported parameter type"):
        parameters_from_cloud_components([{"type": "body", "parameters": [{"type": "location"}]}])
    with pytest.raises(ValueError, match="needs its fallback_value"):
        parameters_from_cloud_components([{"type": "body", "parameters": [{"type": "currency"}]}])
    priced = [
        {
            "type": "body",
            "parameters": [
                {
                    "type": "currency",
                    "currency": {"fallback_value": "€12.50", "code": "EUR", "amount_1000": 12500},
                },
                {"type": "date_time", "date_time": {"fallback_value": "Monday, 3 May"}},
            ],
        }
    ]
    assert parameters_from_cloud_components(priced) == {"body": ["€12.50", "Monday, 3 May"]}


def test_a_quick_reply_may_carry_the_payload_its_tap_returns() -> None:
    template = signed(ORDER)
    components = [
        {"type": "header", "parameters": [{"type": "text", "text": "#4711"}]},
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "Monday"}],
        },
        {
            "type": "button",
            "sub_type": "QUICK_REPLY",
            "index": 0,
            "parameters": [{"type": "payload", "payload": "track-4711"}],
        },
        {
            "type": "button",
            "sub_type": "url",
            "index": "1",
            "parameters": [{"type": "text", "text": "4711"}],
        },
    ]
    parameters = parameters_from_cloud_components(components)
    assert parameters == {**GOOD, "button:0": ["track-4711"]}

    shown = render(template, parameters)

    assert shown.buttons[0] == RenderedButton("QUICK_REPLY", "Track", payload="track-4711")
    assert "track-4711" not in shown.text()  # the customer never sees it
    # A Template payload carries it apart from the parameters, so that clients that do not
    # know quick-reply payloads still render the message.
    assert quick_reply_payloads(template, parameters) == (GOOD, {"button:0": "track-4711"})
    # Without a payload, a tap returns the button's text (the client's part).
    assert render(template, GOOD).buttons[0] == RenderedButton("QUICK_REPLY", "Track")


def test_a_url_parameter_that_breaks_the_host_is_refused_not_raised() -> None:
    # A link whose host is the parameter: "[x" would make urlsplit raise ("Invalid IPv6 URL").
    whole_link: dict[str, Any] = {
        "name": "open_link",
        "language": "en",
        "category": "UTILITY",
        "components": [
            {"type": "BODY", "text": "Your link"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {
                        "type": "URL",
                        "text": "Open",
                        "url": "https://{{1}}",
                        "example": ["shop.example"],
                    }
                ],
            },
        ],
    }
    assert problems(whole_link, {"button:0": ["[x"]}) == [
        ("button:0", "the filled-in URL is not an http(s) URL")
    ]
