"""An external agent bot: the business's own bot in front of its people, in the shape of
Chatwoot's agent bots.

The gateway POSTs each incoming customer message of a conversation the bot holds to the bot's
URL as JSON (:func:`agent_bot_payload`), signed with the bot's secret (:func:`sign`). The bot
answers and hands over through the inbox's JSON API with an agent token. A delivery that fails
after its retries is reported (:class:`DeliveryOutcome`), so that the conversation goes to
people instead of waiting for a bot that does not answer.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.gateway.webhooks import signature
from tresen.gateway.webhooks.outbox import USER_AGENT

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AgentBot",
    "AgentBotError",
    "AgentBotSettings",
    "DeliveryOutcome",
    "agent_bot_payload",
    "new_secret",
    "sign",
    "verify",
]

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Tresen-Signature"
TIMESTAMP_HEADER = "X-Tresen-Timestamp"
EVENT_HEADER = "X-Tresen-Event"
DELIVERY_HEADER = "X-Tresen-Delivery"

_MAX_URL = 2048
_MIN_SECRET, _MAX_SECRET = 16, 256
_MIN_TIMEOUT_S, _MAX_TIMEOUT_S = 0.1, 30.0
_MAX_RETRIES = 5
_BACKOFF_S = 0.2
_MAX_PAYLOAD = 256 * 1024
# The bot's answer is read (so that the connection can be reused) up to this size, then dropped:
# the bot talks back through the inbox's API, not in its answer.
_MAX_ANSWER = 64 * 1024
_MAX_CONTENT = 4096
EVENTS = ("message_created",)


class AgentBotError(ValueError):
    """Settings of an agent bot that cannot be used: ``code`` is stable, ``str(exc)`` a
    sentence for the business."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AgentBotSettings:
    """Where the bot is, and the secret its deliveries are signed with; checked when made."""

    url: str
    secret: str
    timeout_s: float = 5.0
    retries: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url or len(self.url) > _MAX_URL:
            raise AgentBotError("bad_url", f"the bot's URL is at most {_MAX_URL} characters")
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError:
            raise AgentBotError("bad_url", "the bot's URL cannot be read") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
            raise AgentBotError("bad_url", "the bot's URL must start with http:// or https://")
        if parts.username is not None or parts.password is not None:
            raise AgentBotError("bad_url", "the bot's URL must not hold credentials")
        if any(c.isspace() for c in self.url):
            raise AgentBotError("bad_url", "the bot's URL must not hold blanks")
        # The secret is never repeated in a refusal.
        if not isinstance(self.secret, str) or not _MIN_SECRET <= len(self.secret) <= _MAX_SECRET:
            raise AgentBotError(
                "bad_secret",
                f"the signing secret is {_MIN_SECRET}-{_MAX_SECRET} characters",
            )
        if (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, int | float)
            or not _MIN_TIMEOUT_S <= self.timeout_s <= _MAX_TIMEOUT_S
        ):
            raise AgentBotError(
                "bad_timeout",
                f"the time-out is {_MIN_TIMEOUT_S:g} to {_MAX_TIMEOUT_S:g} seconds",
            )
        if (
            isinstance(self.retries, bool)
            or not isinstance(self.retries, int)
            or not 0 <= self.retries <= _MAX_RETRIES
        ):
            raise AgentBotError("bad_retries", f"retries is 0 to {_MAX_RETRIES}")

    def __repr__(self) -> str:
        return (
            f"AgentBotSettings(url={self.url!r}, secret='***', timeout_s={self.timeout_s!r}, "
            f"retries={self.retries!r})"
        )


def new_secret() -> str:
    """A new signing secret (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


# --- signatures --------------------------------------------------------------------------------


def _signed(timestamp: int, body: bytes) -> bytes:
    # The timestamp is signed with the body, so an old delivery replayed later is refused.
    return f"{timestamp}.".encode() + body


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + body)>``, over the exact bytes
    sent."""
    return signature.sign(secret.encode(), _signed(timestamp, body))


def verify(
    secret: str,
    timestamp: int,
    body: bytes,
    signature_header: str,
    *,
    now_s: int,
    tolerance_s: int = 300,
) -> bool:
    """Whether ``signature_header`` signs ``body`` at ``timestamp`` and that time is within
    ``tolerance_s`` of ``now_s`` (compared in constant time)."""
    if abs(now_s - timestamp) > tolerance_s:
        return False
    return signature.verify(secret.encode(), _signed(timestamp, body), signature_header)


# --- the payload -------------------------------------------------------------------------------


def agent_bot_payload(
    *,
    event: str,
    message: Mapping[str, Any],
    contact: Mapping[str, Any],
    conversation: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON posted to the bot, in Chatwoot's agent-bot shape.

    ``message`` is the customer's message as the Cloud API delivers it (``id``, ``from``,
    ``timestamp``, ``type`` and the type's object); ``contact`` has ``id`` (the id the inbox's
    API uses in its paths), ``name`` and ``phone``; ``conversation`` has ``status`` and may
    have ``assignee`` and ``labels``. The message object itself travels as ``message``.
    """
    if event not in EVENTS:
        raise ValueError(f"an agent bot gets the events {', '.join(EVENTS)}, not {event!r}")
    contact_id = str(contact.get("id", ""))
    content, attributes, attachments = _content(message)
    timestamp = message.get("timestamp")
    created_at = None
    if isinstance(timestamp, str | int) and str(timestamp).isdigit():
        created_at = datetime.fromtimestamp(int(timestamp), UTC).isoformat().replace("+00:00", "Z")
    sender = {
        "id": contact_id,
        "name": contact.get("name") or "",
        "phone_number": contact.get("phone") or "",
        "type": "contact",
    }
    return {
        "event": event,
        "id": message.get("id", ""),
        "wamid": message.get("id", ""),
        "content": content,
        "message_type": "incoming",
        "content_type": "text",
        "content_attributes": attributes,
        "attachments": attachments,
        "created_at": created_at,
        "private": False,
        "source_id": message.get("id", ""),
        "sender": sender,
        "contact": sender,
        "conversation": {
            "id": contact_id,
            "status": str(conversation.get("status", "pending")),
            "channel": "whatsapp",
            "assignee_id": conversation.get("assignee"),
            "labels": list(conversation.get("labels", ())),
        },
        "inbox": {"channel": "whatsapp"},
        "message": dict(message),
    }


def _content(message: Mapping[str, Any]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """The message's text as Chatwoot's ``content``, what a button reply chose, and media."""
    kind = message.get("type")
    inner = message.get(kind) if isinstance(kind, str) else None
    inner = inner if isinstance(inner, Mapping) else {}
    attributes: dict[str, Any] = {}
    attachments: list[dict[str, Any]] = []
    content = ""
    if kind == "text":
        content = str(inner.get("body", ""))
    elif kind == "interactive":
        reply = inner.get("button_reply") or inner.get("list_reply") or {}
        if isinstance(reply, Mapping):
            content = str(reply.get("title", ""))
            attributes["submitted_values"] = [{"title": content, "value": str(reply.get("id", ""))}]
    elif kind == "button":
        content = str(inner.get("text", ""))
        attributes["submitted_values"] = [
            {"title": content, "value": str(inner.get("payload", ""))}
        ]
    elif kind in ("image", "video", "audio", "document", "sticker"):
        content = str(inner.get("caption", ""))
        attachments.append(
            {
                "file_type": kind,
                "media_id": str(inner.get("id", "")),
                "mime_type": str(inner.get("mime_type", "")),
            }
        )
    elif kind == "location":
        attributes["location"] = dict(inner)
    elif kind == "reaction":
        content = str(inner.get("emoji", ""))
        attributes["in_reply_to"] = str(inner.get("message_id", ""))
    context = message.get("context")
    if isinstance(context, Mapping) and "id" in context:
        attributes.setdefault("in_reply_to", str(context["id"]))
    return content[:_MAX_CONTENT], attributes, attachments


# --- delivery ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """Whether the bot took the event (a 2xx answer); ``error`` says why not, for people."""

    ok: bool
    status: int | None = None
    attempts: int = 0
    error: str = ""
    elapsed_ms: int = 0


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


class AgentBot:
    """Delivers events to one agent bot: signed POSTs, retried with backoff (0.2 s, 0.4 s, ...)
    on network errors, time-outs, 5xx and 429; at most ``timeout_s`` per attempt."""

    def __init__(
        self,
        settings: AgentBotSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._owns_transport = transport is None
        self._transport = transport or httpx.AsyncHTTPTransport(trust_env=False, retries=0)
        self._sleep = sleep
        self._clock = clock
        t = settings.timeout_s
        self._timeouts = {"connect": t, "read": t, "write": t, "pool": t}

    @property
    def settings(self) -> AgentBotSettings:
        return self._settings

    async def aclose(self) -> None:
        if self._owns_transport:
            await self._transport.aclose()

    async def deliver(self, payload: Mapping[str, Any]) -> DeliveryOutcome:
        """POST ``payload`` until the bot takes it or the retries are spent; never raises for
        a failure of the bot."""
        started = time.perf_counter()
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        if len(body) > _MAX_PAYLOAD:
            return DeliveryOutcome(ok=False, error=f"the event is larger than {_MAX_PAYLOAD} bytes")
        # One id for every attempt, so the bot can drop a delivery it has seen already.
        delivery = uuid.uuid4().hex
        event = str(payload.get("event", ""))
        attempts = self._settings.retries + 1
        status: int | None = None
        error = ""
        retry = False
        made = 0
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await self._sleep(_BACKOFF_S * 2 ** (attempt - 2))
            made = attempt
            status, error, retry = await self._post(body, event, delivery, attempt)
            if not error:
                return DeliveryOutcome(
                    ok=True, status=status, attempts=made, elapsed_ms=_ms_since(started)
                )
            if not retry:
                break
        if retry:
            error = f"{error} after {_attempts(made)}"
        log.warning("agent bot delivery failed", bot_event=event, error=error, status=status)
        return DeliveryOutcome(
            ok=False, status=status, attempts=made, error=error, elapsed_ms=_ms_since(started)
        )

    async def _post(
        self, body: bytes, event: str, delivery: str, attempt: int
    ) -> tuple[int | None, str, bool]:
        """(status, error or "", whether a retry can help)."""
        # Signed at each attempt with the time it is sent, so a retry after a wait still
        # passes the receiver's freshness check.
        timestamp = self._clock.now_ms() // 1000
        request = httpx.Request(
            "POST",
            self._settings.url,
            content=body,
            headers=[
                ("User-Agent", USER_AGENT),
                ("Content-Type", "application/json"),
                (SIGNATURE_HEADER, sign(self._settings.secret, timestamp, body)),
                (TIMESTAMP_HEADER, str(timestamp)),
                (EVENT_HEADER, event),
                (DELIVERY_HEADER, delivery),
                ("X-Tresen-Attempt", str(attempt)),
            ],
            extensions={"timeout": self._timeouts},
        )
        timeout_s = self._settings.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._transport.handle_async_request(request)
                try:
                    size = 0
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                        if size > _MAX_ANSWER:
                            break
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return None, f"no answer within {timeout_s:g} s", True
        except (httpx.TransportError, OSError) as exc:
            return None, f"network error ({type(exc).__name__})", True
        code = response.status_code
        if 200 <= code < 300:
            return code, "", False
        return code, f"HTTP {code}", code == 429 or code >= 500


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
