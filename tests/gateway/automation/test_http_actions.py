"""HTTP actions against a real HTTP server on a free port of 127.0.0.1: what the business's
system receives, and what the customer is answered, when it answers, fails or hangs."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from support import free_port, serve_until_stopped

from tresen.gateway.automation.http_actions import (
    DEFAULT_FAILURE,
    ActionCaller,
    ActionError,
    HttpAction,
    Param,
    TemplateAnswer,
    action_to_json,
    find_params,
    parse_action,
)

TOKEN = "Bearer shop-secret-4711"
CUSTOMER = {"phone": "+4915112345678", "name": "Jana"}

# --- a business's system -------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: tuple[tuple[bytes, bytes], ...] = ((b"content-type", b"application/json"),)
    chunks: int = 1  # sent in this many pieces, without a Content-Length when more than one
    hang: bool = False  # never answers (until the server stops)


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class System:
    """An ASGI app that answers with ``replies`` in turn (the last one again when they run
    out) and records every request."""

    replies: deque[Reply] = field(default_factory=lambda: deque([Reply()]))
    seen: list[Seen] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self, *replies: Reply) -> None:
        self.replies = deque(replies)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        raw = scope["raw_path"].decode()
        if scope["query_string"]:
            raw += "?" + scope["query_string"].decode()
        self.seen.append(
            Seen(
                scope["method"],
                raw,
                {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                body,
            )
        )
        reply = self.replies.popleft() if len(self.replies) > 1 else self.replies[0]
        if reply.hang:
            await self.stop.wait()
            return
        headers = list(reply.headers)
        if reply.chunks == 1:
            headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        size = -(-len(reply.body) // reply.chunks) if reply.body else 0
        for i in range(reply.chunks):
            piece = reply.body[i * size : (i + 1) * size] if size else b""
            await send(
                {"type": "http.response.body", "body": piece, "more_body": i < reply.chunks - 1}
            )


@pytest.fixture
async def system() -> AsyncIterator[tuple[System, str]]:
    app = System()
    async with serve_until_stopped(app) as base:
        yield app, base


@dataclass
class Waits:
    seconds: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
async def caller_factory() -> AsyncIterator[Any]:
    made: list[ActionCaller] = []

    def make(**kwargs: Any) -> tuple[ActionCaller, Waits]:
        waits = Waits()
        caller = ActionCaller(sleep=waits, **kwargs)
        made.append(caller)
        return caller, waits

    yield make
    for caller in made:
        await caller.aclose()


def cancel_order(base: str, **overrides: Any) -> HttpAction:
    data: dict[str, Any] = {
        "name": "cancel_order",
        "url": base + "/orders/cancel",
        "method": "POST",
        "headers": {"Authorization": TOKEN},
        "body": {"order": "{{params.order}}", "phone": "{{ customer.phone }}"},
        "timeout_s": 0.5,
        "retries": 1,
        "params": [
            {
                "name": "order",
                "pattern": r"(?i)\b(?:order|bestellung|nr\.?)\s*#?\s*([A-Z0-9-]{4,12})\b",
                "ask": {"en": "Which order number?", "de": "Welche Bestellnummer?"},
            }
        ],
        "answer": {
            "en": "Order {{response.order.id}} is cancelled; {{response.refund.amount}} EUR "
            "will be refunded.",
            "de": "Bestellung {{response.order.id}} ist storniert; {{response.refund.amount}} "
            "EUR werden erstattet.",
        },
        "failure": {
            "en": "I could not cancel it; a colleague will take over.",
            "de": "Ich konnte sie nicht stornieren; eine Kollegin übernimmt.",
        },
    }
    data.update(overrides)
    return parse_action(data)


def text_of(message: dict[str, Any] | None) -> str:
    assert message is not None
    assert message["type"] == "text"
    return str(message["text"]["body"])


CANCELLED = json.dumps(
    {"order": {"id": "A-1234", "status": "cancelled"}, "refund": {"amount": 49.9}}
).encode()

# --- calls ---------------------------------------------------------------------------------------


async def test_an_order_is_cancelled_and_the_customer_answered_in_their_language(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(Reply(body=CANCELLED))
    action = cancel_order(base)
    caller, _ = caller_factory()

    found, missing = find_params(action, "Bitte Bestellung A-1234 stornieren")
    assert (found, missing) == ({"order": "A-1234"}, None)
    german = await caller.call(action, found, customer=CUSTOMER, language="de")
    english = await caller.call(action, found, customer=CUSTOMER, language="en")

    assert german.ok
    assert german.status == 200
    assert german.attempts == 1
    assert text_of(german.message) == (
        "Bestellung A-1234 ist storniert; 49,9 EUR werden erstattet."
    )
    assert text_of(english.message) == "Order A-1234 is cancelled; 49.9 EUR will be refunded."
    got = app.seen[0]
    assert (got.method, got.raw_path) == ("POST", "/orders/cancel")
    assert got.headers["authorization"] == TOKEN
    assert got.headers["user-agent"] == "Tresen-Gateway"
    assert got.headers["content-type"] == "application/json"
    assert json.loads(got.body) == {"order": "A-1234", "phone": "+4915112345678"}


async def test_a_language_without_a_text_falls_back_to_english(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(Reply(body=CANCELLED))
    caller, _ = caller_factory()
    answers = [
        text_of(
            (
                await caller.call(
                    cancel_order(base), {"order": "A-1234"}, customer=CUSTOMER, language=language
                )
            ).message
        )
        for language in ("tr", "de-AT")
    ]
    assert answers == [
        "Order A-1234 is cancelled; 49.9 EUR will be refunded.",
        "Bestellung A-1234 ist storniert; 49,9 EUR werden erstattet.",
    ]


async def test_the_customers_text_cannot_change_the_shape_of_the_body(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(Reply(body=CANCELLED))
    action = cancel_order(
        base,
        params=[{"name": "order", "pattern": r"order (.+)", "ask": {"en": "Which order?"}}],
    )
    caller, _ = caller_factory()
    found, _ = find_params(action, 'order 12", "refund_all": true, "x": "')
    await caller.call(action, found, customer=CUSTOMER, language="en")
    sent = json.loads(app.seen[0].body)
    assert set(sent) == {"order", "phone"}
    assert sent["order"] == '12", "refund_all": true, "x": "'


async def test_a_flight_number_goes_into_the_url_percent_encoded(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(
        Reply(
            body=json.dumps(
                {"flights": [{"number": "TA 100", "state": "on time", "gate": "B12"}]}
            ).encode()
        )
    )
    action = HttpAction(
        name="flight_status",
        url=base + "/flights/{{params.flight}}/status?lang={{customer.language}}",
        params=(
            Param(
                "flight",
                r"(?i)\b(TA\s?\d{1,4}|[a-z]{2}/\d+)\b",
                {"en": "Which flight?", "de": "Welcher Flug?"},
            ),
        ),
        answer={
            "en": "{{response.flights.0.number}} is {{response.flights.0.state}}, "
            "gate {{ response.flights.0.gate }}."
        },
        timeout_s=0.5,
    )
    caller, _ = caller_factory()
    for text, path in [
        ("Status of TA 100 please", "/flights/TA%20100/status?lang=en"),
        ("where is ab/7?", "/flights/ab%2F7/status?lang=en"),
    ]:
        found, missing = find_params(action, text)
        assert missing is None
        outcome = await caller.call(action, found, customer={"language": "en"}, language="en")
        assert text_of(outcome.message) == "TA 100 is on time, gate B12."
        assert app.seen[-1].method == "GET"
        assert app.seen[-1].raw_path == path
        assert app.seen[-1].body == b""


async def test_a_boarding_pass_is_answered_with_a_template(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(Reply(body=b'{"passenger": "Jana Meyer", "seat": "14C"}'))
    action = HttpAction(
        name="boarding_pass",
        url=base + "/boarding-pass?phone={{customer.phone}}",
        template=TemplateAnswer(
            "boarding_pass", "de", ("{{response.passenger}}", "{{response.seat}}")
        ),
    )
    caller, _ = caller_factory()
    outcome = await caller.call(action, {}, customer=CUSTOMER, language="de")
    assert outcome.ok
    assert outcome.message == {
        "type": "template",
        "template": {
            "name": "boarding_pass",
            "language": {"policy": "deterministic", "code": "de"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Jana Meyer"},
                        {"type": "text", "text": "14C"},
                    ],
                }
            ],
        },
    }
    assert app.seen[0].raw_path == "/boarding-pass?phone=%2B4915112345678"


async def test_a_boarding_pass_is_answered_with_its_pdf_and_a_caption(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(
        Reply(body=b'{"seat": "14C", "flight": "TA 100", "pdf": "https://air.example/K7.pdf"}')
    )
    action = parse_action(
        {
            "name": "boarding_pass",
            "url": base + "/bookings/{{params.booking}}",
            "params": [{"name": "booking", "pattern": r"\b([A-Z0-9]{6})\b", "ask": {"en": "?"}}],
            "document": {
                "link": "{{response.pdf}}",
                "filename": "Boarding pass {{response.flight}}.pdf",
            },
            "answer": {"en": "Seat {{response.seat}}, show the QR code at the gate."},
        }
    )
    caller, _ = caller_factory()
    outcome = await caller.call(action, {"booking": "K7Q2ZP"}, customer=CUSTOMER, language="en")
    assert outcome.message == {
        "type": "document",
        "document": {
            "link": "https://air.example/K7.pdf",
            "filename": "Boarding pass TA 100.pdf",
            "caption": "Seat 14C, show the QR code at the gate.",
        },
    }
    assert parse_action(action_to_json(action)) == action
    # A response whose link is no web address fails politely instead of sending it.
    app.answer(Reply(body=b'{"seat": "14C", "flight": "TA 100", "pdf": "file:///etc/passwd"}'))
    refused = await caller.call(action, {"booking": "K7Q2ZP"}, customer=CUSTOMER, language="en")
    assert not refused.ok
    assert "not an http(s) URL" in refused.error


async def test_a_system_that_does_not_answer_in_time_fails_after_the_retries(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(Reply(hang=True))
    action = cancel_order(base, timeout_s=0.2, retries=2)
    caller, waits = caller_factory()

    outcome = await caller.call(action, {"order": "A-1234"}, customer=CUSTOMER, language="de")

    assert not outcome.ok
    assert outcome.attempts == 3
    assert len(app.seen) == 3
    assert outcome.error == "timed out after 3 attempts"
    assert waits.seconds == [0.2, 0.4]
    assert text_of(outcome.message) == "Ich konnte sie nicht stornieren; eine Kollegin übernimmt."
    # Three attempts of 0.2 s; the waits between them were not slept here.
    assert outcome.elapsed_ms < 3000
    assert action.max_total_s == pytest.approx(0.2 * 3 + 0.2 + 0.4)
    assert "shop-secret" not in repr(outcome)


async def test_a_server_error_is_retried_and_the_second_answer_used(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(Reply(status=500, body=b"oops"), Reply(body=CANCELLED))
    caller, waits = caller_factory()
    outcome = await caller.call(
        cancel_order(base), {"order": "A-1234"}, customer=CUSTOMER, language="en"
    )
    assert outcome.ok
    assert outcome.attempts == 2
    assert outcome.status == 200
    assert waits.seconds == [0.2]
    assert text_of(outcome.message).startswith("Order A-1234 is cancelled")


async def test_too_many_requests_is_retried_until_the_retries_are_spent(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(Reply(status=429))
    caller, _ = caller_factory()
    outcome = await caller.call(
        cancel_order(base, retries=3), {"order": "A-1234"}, customer=CUSTOMER, language="en"
    )
    assert not outcome.ok
    assert outcome.attempts == 4
    assert len(app.seen) == 4
    assert outcome.error == "HTTP 429 after 4 attempts"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=404, body=b'{"error": "no such order"}'), "HTTP 404"),
        (Reply(status=409), "HTTP 409"),
        (
            Reply(status=302, headers=((b"location", b"/elsewhere"),), body=b""),
            "HTTP 302 (redirects are not followed)",
        ),
        (Reply(body=b"<html>Cancelled</html>"), "the answer is not JSON"),
        (Reply(status=200, body=b""), "the answer is empty, not JSON"),
        (
            Reply(body=b'{"order": {"status": "cancelled"}}'),
            "there is no value at response.order.id",
        ),
        (
            Reply(body=b'{"order": {"id": null}, "refund": {"amount": 1}}'),
            "the value at response.order.id is null",
        ),
        (
            Reply(body=b'{"order": {"id": ["A", "B"]}, "refund": {"amount": 1}}'),
            "the value at response.order.id is not a single value",
        ),
    ],
)
async def test_answers_that_cannot_be_used_fail_at_once_and_politely(
    system: tuple[System, str], caller_factory: Any, reply: Reply, error: str
) -> None:
    app, base = system
    app.answer(reply)
    caller, waits = caller_factory()
    outcome = await caller.call(
        cancel_order(base, failure={}), {"order": "A-1234"}, customer=CUSTOMER, language="en"
    )
    assert not outcome.ok
    assert outcome.error == error
    assert outcome.attempts == 1
    assert len(app.seen) == 1
    assert waits.seconds == []
    # Never half an answer: the customer gets the default polite text.
    assert text_of(outcome.message) == DEFAULT_FAILURE["en"]


@pytest.mark.parametrize("chunks", [1, 16])
async def test_an_oversized_answer_is_cut_off(
    system: tuple[System, str], caller_factory: Any, chunks: int
) -> None:
    app, base = system
    big = json.dumps({"order": {"id": "x" * 20_000}, "refund": {"amount": 1}}).encode()
    app.answer(Reply(body=big, chunks=chunks))
    caller, _ = caller_factory(max_response_bytes=4096)
    outcome = await caller.call(
        cancel_order(base), {"order": "A-1234"}, customer=CUSTOMER, language="en"
    )
    assert not outcome.ok
    assert outcome.attempts == 1
    assert outcome.error == "the answer is larger than 4096 bytes"


async def test_an_empty_answer_is_fine_for_204(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    app.answer(Reply(status=204, body=b"", headers=()))
    action = cancel_order(
        base,
        method="DELETE",
        body=None,
        url=base + "/orders/{{params.order}}",
        answer={"en": "Order {{params.order}} is cancelled."},
    )
    caller, _ = caller_factory()
    outcome = await caller.call(action, {"order": "A-1234"}, customer=CUSTOMER, language="en")
    assert outcome.ok
    assert outcome.status == 204
    assert text_of(outcome.message) == "Order A-1234 is cancelled."
    assert app.seen[0].raw_path == "/orders/A-1234"


async def test_a_system_that_is_down_fails_with_a_network_error() -> None:
    caller = ActionCaller(sleep=Waits())
    try:
        action = cancel_order(f"http://127.0.0.1:{free_port()}", retries=1)
        outcome = await caller.call(action, {"order": "A-1234"}, customer=CUSTOMER, language="en")
    finally:
        await caller.aclose()
    assert not outcome.ok
    assert outcome.attempts == 2
    assert outcome.error == "network error (ConnectError) after 2 attempts"


async def test_a_call_without_its_parameter_is_not_made(
    system: tuple[System, str], caller_factory: Any
) -> None:
    app, base = system
    caller, _ = caller_factory()
    outcome = await caller.call(cancel_order(base), {}, customer=CUSTOMER, language="en")
    assert not outcome.ok
    assert outcome.attempts == 0
    assert app.seen == []
    assert outcome.error == "the request cannot be made: the parameter order is missing"


# --- parameters ------------------------------------------------------------------------------


def test_missing_parameters_are_reported_for_asking() -> None:
    action = cancel_order(
        "https://shop.example",
        url="https://shop.example/orders/{{params.order}}?email={{params.email}}",
        method="GET",
        body=None,
        params=[
            {
                "name": "order",
                "pattern": r"(?i)\border\s*#?\s*(\d{4,8})\b",
                "ask": {"en": "Which order number?", "de": "Welche Bestellnummer?"},
            },
            {
                "name": "email",
                "pattern": r"[\w.+-]+@[\w-]+\.[\w.]+",
                "ask": {"en": "Your e-mail address?"},
            },
        ],
        answer={"en": "{{response.status}}"},
    )
    found, missing = find_params(action, "Where is my parcel?")
    assert found == {}
    assert missing is not None
    assert missing.name == "order"
    assert missing.ask["de"] == "Welche Bestellnummer?"

    found, missing = find_params(action, "order #12345 please")
    assert found == {"order": "12345"}
    assert missing is not None
    assert missing.name == "email"

    found, missing = find_params(action, "order 12345, jana@example.org")
    assert found == {"order": "12345", "email": "jana@example.org"}
    assert missing is None


# --- configuration -------------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "name": "order_status",
    "url": "https://shop.example/orders/{{params.order}}",
    "headers": {"Authorization": TOKEN},
    "params": [{"name": "order", "pattern": r"(\d{4,8})", "ask": {"en": "Which order?"}}],
    "answer": {"en": "Your order is {{response.status}}."},
}


def test_an_action_reads_back_what_it_writes() -> None:
    action = parse_action({**GOOD, "method": "post", "body": '{"o": "{{params.order}}"}'})
    assert action.method == "POST"
    assert parse_action(action_to_json(action)) == action
    assert action_to_json(action)["headers"] == {"Authorization": TOKEN}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"name": "Order Status"}, "bad_name"),
        ({"url": "ftp://shop.example/x"}, "bad_url"),
        ({"url": "https://{{params.order}}.example/"}, "bad_url"),
        ({"url": "https://user:pw@shop.example/"}, "bad_url"),
        ({"method": "TRACE"}, "bad_method"),
        ({"headers": {"Host": "evil.example"}}, "bad_headers"),
        ({"headers": {"X-Key": "a\r\nInjected: 1"}}, "bad_headers"),
        ({"body": '{"o": "{{params.order}}"}'}, "bad_body"),  # a GET has no body
        ({"method": "POST", "body": '{"o": {{params.order}}}'}, "bad_body"),
        ({"method": "POST", "body": "not json"}, "bad_body"),
        ({"timeout_s": 60}, "bad_timeout"),
        ({"timeout_s": 0.01}, "bad_timeout"),
        ({"retries": 9}, "bad_retries"),
        ({"retries": True}, "bad_retries"),
        ({"params": [{"name": "order", "pattern": "([", "ask": {"en": "?"}}]}, "bad_pattern"),
        ({"params": [{"name": "order", "pattern": "(a)(b)", "ask": {"en": "?"}}]}, "bad_pattern"),
        ({"params": [{"name": "order", "pattern": "x", "ask": {}}]}, "bad_param"),
        (
            {"params": [{"name": f"p{i}", "pattern": "x", "ask": {"en": "?"}} for i in range(6)]},
            "too_many_params",
        ),
        ({"answer": {"en": "Your order is {{response.status}"}}, "bad_template"),
        ({"answer": {"en": "{{ response.status | upper }}"}}, "bad_template"),
        ({"answer": {"en": "{{ os.environ }}"}}, "bad_template"),
        ({"answer": {"en": "{{ params.email }}"}}, "bad_template"),
        ({"url": "https://shop.example/{{response.id}}"}, "bad_template"),
        ({"answer": {}}, "bad_answer"),
        ({"template": {"name": "order", "language": "de"}}, "bad_answer"),
        ({"answer": {"english": "Hi"}}, "bad_language"),
        ({"failure": {"en": "Sorry {{customer.name}}"}}, "bad_template"),
        ({"colour": "blue"}, "unknown_field"),
        ({"document": {"link": "{{response.pdf}}"}, "answer": {}}, "bad_answer"),
        ({"document": {"link": "{{params.order}}"}}, "bad_template"),  # never the customer's
        ({"document": {"link": "file:///etc/passwd"}}, "bad_document"),
        ({"document": {"url": "{{response.pdf}}"}}, "bad_document"),
        ({"document": {"link": "{{response.pdf}}", "filename": "x" * 241}}, "bad_document"),
    ],
)
def test_bad_configurations_are_refused_with_their_code(change: dict[str, Any], code: str) -> None:
    with pytest.raises(ActionError) as refused:
        parse_action({**GOOD, **change})
    assert refused.value.code == code
    assert "a\r\nInjected" not in str(refused.value)
    assert TOKEN not in str(refused.value)
