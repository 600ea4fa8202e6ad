"""Submitted templates that break the rules: each is refused with code 100 and a problem that
names the offending field, so the business can fix it without guessing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tresen.core.errors import ErrorCode
from tresen.relay.templates.validation import InvalidTemplate, validate_submission
from tresen.wire.templates import Body, Buttons, Header, HeaderFormat, ParameterFormat

BASE: dict[str, Any] = {
    "name": "order_shipped",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {
            "type": "HEADER",
            "format": "TEXT",
            "text": "Order {{1}}",
            "example": {"header_text": ["#4711"]},
        },
        {
            "type": "BODY",
            "text": "Hi {{1}}, your order ships on {{2}}.",
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
                    "example": ["4711"],
                },
            ],
        },
    ],
}

AUTH: dict[str, Any] = {
    "name": "login_code",
    "language": "en",
    "category": "AUTHENTICATION",
    "components": [
        {"type": "BODY", "add_security_recommendation": True},
        {"type": "FOOTER", "code_expiration_minutes": 10},
        {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE"}]},
    ],
}

Change = Callable[[dict[str, Any]], None]


def header(t: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = t["components"][0]
    return result


def body(t: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = t["components"][1]
    return result


def buttons(t: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = t["components"][3]["buttons"]
    return result


def named_body(t: dict[str, Any]) -> None:
    t["parameter_format"] = "NAMED"
    t["components"] = [
        {
            "type": "BODY",
            "text": "Hi {{first_name}}, your order {{order_id}} ships.",
            "example": {
                "body_text_named_params": [{"param_name": "first_name", "example": "Anna"}]
            },
        }
    ]


def too_many_url_buttons(t: dict[str, Any]) -> None:
    buttons(t).append({"type": "URL", "text": "Two", "url": "https://a.example/"})
    buttons(t).append({"type": "URL", "text": "Three", "url": "https://b.example/"})


# (what is wrong, the change, a field named, a word of its problem)
BAD: list[tuple[str, Change, str, str]] = [
    ("no name", lambda t: t.pop("name"), "name", "a-z"),
    ("capitals in the name", lambda t: t.update(name="Order_Shipped"), "name", "a-z"),
    ("name too long", lambda t: t.update(name="x" * 513), "name", "512"),
    ("language is not a code", lambda t: t.update(language="english"), "language", "en_US"),
    ("unknown category", lambda t: t.update(category="PROMO"), "category", "MARKETING"),
    ("unknown top-level field", lambda t: t.update(colour="red"), "colour", "unknown"),
    ("parameter format", lambda t: t.update(parameter_format="MIXED"), "parameter_format", "NAMED"),
    ("no components", lambda t: t.update(components=[]), "components", "BODY"),
    ("no body", lambda t: t["components"].pop(1), "components", "BODY component is required"),
    (
        "two bodies",
        lambda t: t["components"].append({"type": "BODY", "text": "again"}),
        "components.4.type",
        "only one BODY",
    ),
    (
        "unknown component",
        lambda t: t["components"].append({"type": "CAROUSEL"}),
        "components.4.type",
        "HEADER, BODY",
    ),
    ("body too long", lambda t: body(t).update(text="x" * 1025), "components.1.text", "1024"),
    (
        "a gap in the numbers",
        lambda t: body(t).update(text="Hi {{1}}, ships {{3}}."),
        "components.1.text",
        "without gaps",
    ),
    (
        "placeholders without examples",
        lambda t: body(t).pop("example"),
        "components.1.example",
        "required",
    ),
    (
        "fewer examples than placeholders",
        lambda t: body(t).update(example={"body_text": [["Anna"]]}),
        "components.1.example.body_text",
        "1 example value(s) for 2",
    ),
    (
        "body starts with a placeholder",
        lambda t: body(t).update(text="{{1}}, your order ships on {{2}}."),
        "components.1.text",
        "start or end",
    ),
    (
        "adjacent placeholders",
        lambda t: body(t).update(text="Hi {{1}} {{2}} there"),
        "components.1.text",
        "text between",
    ),
    (
        "an unclosed placeholder",
        lambda t: body(t).update(text="Hi {{1}, ships {{2}}."),
        "components.1.text",
        "not closed",
    ),
    (
        "a named placeholder in the positional format",
        lambda t: body(t).update(text="Hi {{name}}, ships {{2}}."),
        "components.1.text",
        "parameter_format NAMED",
    ),
    (
        "named examples missing a name",
        named_body,
        "components.0.example.body_text_named_params",
        "missing order_id",
    ),
    (
        "two placeholders in the header",
        lambda t: header(t).update(text="Order {{1}} {{2}}"),
        "components.0.text",
        "at most 1",
    ),
    ("header too long", lambda t: header(t).update(text="x" * 61), "components.0.text", "60"),
    (
        "unknown header format",
        lambda t: header(t).update(format="AUDIO"),
        "components.0.format",
        "IMAGE",
    ),
    (
        "a parameter in the footer",
        lambda t: t["components"][2].update(text="Reply {{1}}"),
        "components.2.text",
        "no placeholders",
    ),
    (
        "footer too long",
        lambda t: t["components"][2].update(text="x" * 61),
        "components.2.text",
        "60",
    ),
    (
        "eleven buttons",
        lambda t: t["components"][3].update(
            buttons=[{"type": "QUICK_REPLY", "text": f"B{i}"} for i in range(11)]
        ),
        "components.3.buttons",
        "at most 10",
    ),
    ("three URL buttons", too_many_url_buttons, "components.3.buttons", "at most 2 URL"),
    (
        "URL placeholder in the middle",
        lambda t: buttons(t)[1].update(url="https://shop.example/{{1}}/track"),
        "components.3.buttons.1.url",
        "at the end",
    ),
    (
        "URL that is not http(s)",
        lambda t: buttons(t)[1].update(url="ftp://shop.example/{{1}}"),
        "components.3.buttons.1.url",
        "http(s)",
    ),
    (
        "button text too long",
        lambda t: buttons(t)[0].update(text="x" * 26),
        "components.3.buttons.0.text",
        "25",
    ),
    (
        "phone number with letters",
        lambda t: buttons(t).append(
            {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "call-us"}
        ),
        "components.3.buttons.2.phone_number",
        "digits",
    ),
    (
        "an OTP button outside authentication",
        lambda t: buttons(t).append({"type": "OTP", "otp_type": "COPY_CODE"}),
        "components.3.buttons.2.type",
        "authentication",
    ),
    (
        "unknown field in a component",
        lambda t: body(t).update(colour="red"),
        "components.1.colour",
        "unknown",
    ),
]


def problems_of(template: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidTemplate) as caught:
        validate_submission(template)
    return [(p.field, p.problem) for p in caught.value.problems]


@pytest.mark.parametrize(("change", "field", "word"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_template_names_its_field(change: Change, field: str, word: str) -> None:
    template = copy.deepcopy(BASE)
    change(template)

    problems = problems_of(template)

    assert [p for f, p in problems if f == field and word in p], problems


AUTH_BAD: list[tuple[str, Change, str, str]] = [
    (
        "own text in an authentication body",
        lambda t: t["components"][0].update(text="Your code is {{1}}"),
        "components.0.text",
        "fixed text",
    ),
    (
        "a header in an authentication template",
        lambda t: t["components"].insert(0, {"type": "HEADER", "format": "TEXT", "text": "Hi"}),
        "components.0",
        "no header",
    ),
    (
        "a quick reply instead of the OTP button",
        lambda t: t["components"][2].update(buttons=[{"type": "QUICK_REPLY", "text": "Hi"}]),
        "components.2.buttons",
        "exactly one OTP",
    ),
    (
        "code expiry out of range",
        lambda t: t["components"][1].update(code_expiration_minutes=91),
        "components.1.code_expiration_minutes",
        "90",
    ),
    (
        "one-tap without the app",
        lambda t: t["components"][2]["buttons"][0].update(otp_type="ONE_TAP"),
        "components.2.buttons.0.package_name",
        "package",
    ),
]


@pytest.mark.parametrize(
    ("change", "field", "word"), [b[1:] for b in AUTH_BAD], ids=[b[0] for b in AUTH_BAD]
)
def test_a_bad_authentication_template_names_its_field(
    change: Change, field: str, word: str
) -> None:
    template = copy.deepcopy(AUTH)
    change(template)

    problems = problems_of(template)

    assert [p for f, p in problems if f == field and word in p], problems


def test_every_problem_at_once() -> None:
    template = copy.deepcopy(BASE)
    template["name"] = "Bad Name"
    template["category"] = "SPAM"
    buttons(template)[0]["text"] = ""

    fields = [f for f, _ in problems_of(template)]

    assert fields == ["name", "category", "components.3.buttons.0.text"]


def test_valid_templates_come_out_canonical() -> None:
    template = copy.deepcopy(BASE)
    template["components"][0]["type"] = "header"  # any case is accepted
    template["components"][0]["format"] = "text"

    clean = validate_submission(template)

    assert clean.name == "order_shipped"
    assert clean.parameter_format is ParameterFormat.POSITIONAL
    first, second, _, last = clean.components
    assert isinstance(first, Header)
    assert first.format is HeaderFormat.TEXT
    assert isinstance(second, Body)
    assert second.example is not None
    assert second.example.body_text == [["Anna", "Monday"]]
    assert isinstance(last, Buttons)
    assert len(last.buttons) == 2
    assert validate_submission(copy.deepcopy(AUTH)).category.value == "AUTHENTICATION"
    named = copy.deepcopy(BASE)
    named_body(named)
    named["components"][0]["example"]["body_text_named_params"].append(
        {"param_name": "order_id", "example": "4711"}
    )
    assert validate_submission(named).parameter_format is ParameterFormat.NAMED


async def test_the_relay_answers_with_code_100_and_the_problems(tpl: Any) -> None:
    shop = await tpl.business()
    template = copy.deepcopy(BASE)
    body(template)["text"] = "Hi {{1}}, ships {{3}}."

    r = await tpl.http.post("/v1/business/message_templates", json=template, headers=shop.auth)

    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == ErrorCode.INVALID_PARAMETER
    assert error["message"] == "invalid template"
    assert error["details"]["problems"] == [
        {
            "field": "components.1.text",
            "problem": "placeholders must be numbered 1 to 2 without gaps; found 1, 3",
        }
    ]
