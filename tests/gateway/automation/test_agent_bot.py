"""The external agent bot: a real HTTP server on a free port of 127.0.0.1 receives each
customer message signed, and a bot that fails or never answers ends in a failed outcome."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from support import free_port, serve_until_stopped

from tresen.core.clock import ManualClock
from tresen.gateway.automation.agent_bot import (
    AgentBot,
    AgentBotError,
    AgentBotSettings,
    agent_bot_payload,
    new_secret,
    sign,
    verify,
)

SECRET = "bot-signing-secret-0123456789"

MESSAGE = {
    "from": "4915112345678",
    "id": "wamid.HBgNNDkxNTExMjM0NTY3OBUCABIYFjNFQjBDMEE",
    "timestamp": "1767225600",
    "type": "text",
    "text": {"body": "Wo ist meine Bestellung 4711?"},
}
CONTACT = {"id": "3f2a9c", "name": "Jana Meyer", "phone": "+4915112345678"}
CONVERSATION = {"status": "pending", "assignee": None, "labels": ["shop"]}


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes


@dataclass
class Bot:
    """An agent bot's endpoint: answers with ``statuses`` in turn (the last one again when
    they run out), or never when ``hang``; records every POST."""

    statuses: deque[int] = field(default_factory=lambda: deque([200]))
    hang: bool = False
    posts: list[Post] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        self.posts.append(Post({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        if self.hang:
            await self.stop.wait()
            return
        status = self.statuses.popleft() if len(self.statuses) > 1 else self.statuses[0]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def bot() -> AsyncIterator[tuple[Bot, str]]:
    app = Bot()
    async with serve_until_stopped(app) as base:
        yield app, f"{base}/bot"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@dataclass
class Waits:
    seconds: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
async def make_agent_bot(clock: ManualClock) -> AsyncIterator[Any]:
    made: list[AgentBot] = []

    def make(url: str, **settings: Any) -> tuple[AgentBot, Waits]:
        waits = Waits()
        agent_bot = AgentBot(
            AgentBotSettings(url=url, secret=SECRET, **settings), sleep=waits, clock=clock
        )
        made.append(agent_bot)
        return agent_bot, waits

    yield make
    for agent_bot in made:
        await agent_bot.aclose()


def payload() -> dict[str, Any]:
    return agent_bot_payload(
        event="message_created", message=MESSAGE, contact=CONTACT, conversation=CONVERSATION
    )


async def test_the_bot_receives_the_message_signed(
    bot: tuple[Bot, str], make_agent_bot: Any, clock: ManualClock
) -> None:
    app, url = bot
    agent_bot, _ = make_agent_bot(url)

    outcome = await agent_bot.deliver(payload())

    assert outcome.ok
    assert outcome.status == 200
    assert outcome.attempts == 1
    (post,) = app.posts
    assert post.headers["content-type"] == "application/json"
    assert post.headers["user-agent"] == "Tresen-Gateway"
    assert post.headers["x-tresen-event"] == "message_created"
    timestamp = int(post.headers["x-tresen-timestamp"])
    assert timestamp == clock.now_ms() // 1000
    assert verify(
        SECRET, timestamp, post.body, post.headers["x-tresen-signature"], now_s=timestamp + 10
    )
    got = json.loads(post.body)
    assert got["event"] == "message_created"
    assert got["message_type"] == "incoming"
    assert got["content"] == "Wo ist meine Bestellung 4711?"
    assert got["wamid"] == MESSAGE["id"]
    assert got["created_at"] == "2026-01-01T00:00:00Z"
    assert got["sender"] == {
        "id": "3f2a9c",
        "name": "Jana Meyer",
        "phone_number": "+4915112345678",
        "type": "contact",
    }
    assert got["conversation"]["id"] == "3f2a9c"
    assert got["conversation"]["status"] == "pending"
    assert got["message"] == MESSAGE


async def test_a_changed_body_an_old_timestamp_or_another_secret_do_not_verify(
    bot: tuple[Bot, str], make_agent_bot: Any
) -> None:
    app, url = bot
    agent_bot, _ = make_agent_bot(url)
    await agent_bot.deliver(payload())
    (post,) = app.posts
    timestamp = int(post.headers["x-tresen-timestamp"])
    signature = post.headers["x-tresen-signature"]

    changed = post.body.replace(b"4711", b"4712")
    assert not verify(SECRET, timestamp, changed, signature, now_s=timestamp)
    assert not verify(SECRET, timestamp - 1, post.body, signature, now_s=timestamp)
    assert not verify(SECRET, timestamp, post.body, signature, now_s=timestamp + 301)
    assert not verify(SECRET, timestamp, post.body, signature, now_s=timestamp - 301)
    assert not verify(new_secret(), timestamp, post.body, signature, now_s=timestamp)
    assert not verify(SECRET, timestamp, post.body, "", now_s=timestamp)
    assert verify(SECRET, timestamp, post.body, signature, now_s=timestamp + 300)


def test_the_signature_covers_the_timestamp_and_the_exact_bytes() -> None:
    body = b'{"event":"message_created"}'
    assert sign(SECRET, 1767225600, body).startswith("sha256=")
    assert sign(SECRET, 1767225600, body) != sign(SECRET, 1767225601, body)
    assert sign(SECRET, 1767225600, body) != sign(SECRET, 1767225600, body + b" ")


async def test_a_bot_that_is_unavailable_once_gets_the_message_on_retry(
    bot: tuple[Bot, str], make_agent_bot: Any, clock: ManualClock
) -> None:
    app, url = bot
    app.statuses = deque([503, 200])
    agent_bot, waits = make_agent_bot(url)

    outcome = await agent_bot.deliver(payload())

    assert outcome.ok
    assert outcome.attempts == 2
    assert waits.seconds == [0.2]
    first, second = app.posts
    assert first.body == second.body
    assert first.headers["x-tresen-delivery"] == second.headers["x-tresen-delivery"]
    assert second.headers["x-tresen-attempt"] == "2"


async def test_a_bot_that_never_answers_fails_after_the_retries(
    bot: tuple[Bot, str], make_agent_bot: Any
) -> None:
    app, url = bot
    app.hang = True
    agent_bot, waits = make_agent_bot(url, timeout_s=0.2, retries=2)

    outcome = await agent_bot.deliver(payload())

    assert not outcome.ok
    assert outcome.attempts == 3
    assert len(app.posts) == 3
    assert outcome.error == "no answer within 0.2 s after 3 attempts"
    assert waits.seconds == [0.2, 0.4]
    assert SECRET not in repr(outcome)


async def test_a_bot_that_refuses_is_not_asked_again(
    bot: tuple[Bot, str], make_agent_bot: Any
) -> None:
    app, url = bot
    app.statuses = deque([401])
    agent_bot, waits = make_agent_bot(url)

    outcome = await agent_bot.deliver(payload())

    assert not outcome.ok
    assert outcome.error == "HTTP 401"
    assert outcome.attempts == 1
    assert waits.seconds == []


async def test_a_bot_that_is_down_fails_with_a_network_error(make_agent_bot: Any) -> None:
    agent_bot, _ = make_agent_bot(f"http://127.0.0.1:{free_port()}/bot", retries=1)
    outcome = await agent_bot.deliver(payload())
    assert not outcome.ok
    assert outcome.error == "network error (ConnectError) after 2 attempts"


def test_a_button_reply_arrives_as_its_title_with_the_chosen_value() -> None:
    message = {
        "from": "4915112345678",
        "id": "wamid.2",
        "timestamp": "1767225660",
        "type": "interactive",
        "interactive": {
            "type": "button_reply",
            "button_reply": {"id": "cancel_yes", "title": "Ja, stornieren"},
        },
        "context": {"id": "wamid.1"},
    }
    got = agent_bot_payload(
        event="message_created", message=message, contact=CONTACT, conversation=CONVERSATION
    )
    assert got["content"] == "Ja, stornieren"
    assert got["content_attributes"] == {
        "submitted_values": [{"title": "Ja, stornieren", "value": "cancel_yes"}],
        "in_reply_to": "wamid.1",
    }


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        ({"url": "ftp://bot.example/hook"}, "bad_url"),
        ({"url": "https://user:pw@bot.example/hook"}, "bad_url"),
        ({"secret": "short"}, "bad_secret"),
        ({"timeout_s": 120}, "bad_timeout"),
        ({"retries": -1}, "bad_retries"),
    ],
)
def test_bad_settings_are_refused_with_their_code(settings: dict[str, Any], code: str) -> None:
    with pytest.raises(AgentBotError) as refused:
        AgentBotSettings(**{"url": "https://bot.example/hook", "secret": SECRET, **settings})
    assert refused.value.code == code
    assert "short" not in str(refused.value)


def test_the_secret_is_not_shown() -> None:
    settings = AgentBotSettings(url="https://bot.example/hook", secret=SECRET)
    assert SECRET not in repr(settings)
    assert len(new_secret()) >= 40
