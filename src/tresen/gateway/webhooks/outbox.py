"""The webhook outbox: subscriptions, and events queued in the transaction of the change that
made them (so an event exists exactly when its change was committed).

``Outbox.enqueue`` is on the gateway's hot path: it reads the subscriptions from a cache
(reloaded every ``poll_s`` and at once after this process changes one) and writes one row per
subscriber. It may run on another thread and event loop than the rest (the gateway's
recorder), with that loop's connection; the cache is replaced, never changed in place. The
:class:`~tresen.gateway.webhooks.dispatcher.WebhookDispatcher` sends them.
"""

from __future__ import annotations

import asyncio
import builtins
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.http import tls_context
from tresen.core.logging import get_logger
from tresen.crypto.secrets import SecretsError, seal, unseal
from tresen.gateway.settings import WebhookSettings
from tresen.gateway.webhooks import repo
from tresen.gateway.webhooks.envelope import FIELDS, encode_event
from tresen.gateway.webhooks.errors import (
    InvalidSubscription,
    SubscriptionLimitReached,
    SubscriptionNotFound,
    SubscriptionRefused,
)

__all__ = [
    "DeadEvent",
    "NewEvent",
    "Outbox",
    "Subscription",
    "SubscriptionRefused",
    "Target",
    "WebhookStats",
    "confirm_callback",
]

log = get_logger(__name__)

USER_AGENT = "Tresen-Gateway"
REMOVED_ERROR = "subscription removed"
_MAX_URL = 2048
_MAX_TOKEN = 256
_MAX_CONVERSATION = 64


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event for :meth:`Outbox.enqueue_many`."""

    conversation: str
    field: str
    value: dict[str, Any]
    time_s: int | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    """Where events go (the app secret and verify token are never handed out)."""

    id: int
    url: str
    fields: tuple[str, ...]
    created_ms: int


@dataclass(frozen=True, slots=True)
class Target:
    """A subscription as the dispatcher uses it: ``app_secret`` is ``None`` when the sealed
    secret does not open with this gateway's key (its events then fail until re-added)."""

    id: int
    url: str
    fields: frozenset[str]
    app_secret: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class DeadEvent:
    id: int
    event_id: str
    subscription_id: int
    url: str | None
    field: str
    conversation: str
    attempts: int
    created_ms: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class WebhookStats:
    pending: int
    delivered: int
    dead: int
    oldest_pending_ms: int | None
    """When the oldest pending event was made (or replayed)."""
    oldest_pending_age_s: float | None


def _secret_context(url: str) -> bytes:
    return b"webhook-app-secret:" + url.encode()


def validate_fields(fields: Collection[str]) -> tuple[str, ...]:
    """The fields in the order given, without repeats; unknown names are refused."""
    wanted = tuple(dict.fromkeys(f.strip() for f in fields))
    if not wanted:
        raise InvalidSubscription("a subscription needs at least one field, e.g. messages")
    unknown = [f for f in wanted if f not in FIELDS]
    if unknown:
        raise InvalidSubscription(
            f"unknown webhook field {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}"
        )
    return wanted


def _validate_url(url: str) -> str:
    if len(url) > _MAX_URL:
        raise InvalidSubscription(f"the callback URL is longer than {_MAX_URL} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidSubscription(f"not a URL: {url} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidSubscription(f"the callback URL must be an http(s) URL with a host: {url}")
    return url


async def confirm_callback(
    http: httpx.AsyncClient, url: str, verify_token: str, *, timeout_s: float = 10.0
) -> None:
    """The verification handshake: ``GET url?hub.mode=subscribe&hub.verify_token=…&
    hub.challenge=…`` must answer 200 with exactly the challenge as its body."""
    # Meta's challenges are numbers, and some receivers parse them as such.
    challenge = str(10**9 + secrets.randbelow(9 * 10**9))
    target = httpx.URL(url).copy_merge_params(
        {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}
    )
    try:
        response = await http.get(
            target, headers={"User-Agent": USER_AGENT}, timeout=timeout_s, follow_redirects=False
        )
    except httpx.TimeoutException:
        raise SubscriptionRefused(url, f"no answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise SubscriptionRefused(
            url, f"could not be reached ({type(exc).__name__}: {exc})"
        ) from None
    body = response.text
    excerpt = body if len(body) <= 200 else body[:200] + "…"
    if response.status_code != 200:
        raise SubscriptionRefused(
            url,
            f"the verification request was answered with HTTP {response.status_code} "
            f"{excerpt!r} (is the verify token right?)",
        )
    if body != challenge:
        raise SubscriptionRefused(
            url,
            f"the verification request was answered with {excerpt!r} instead of the "
            f"challenge {challenge!r}",
        )


class Outbox:
    """Webhook subscriptions and the transactional outbox of their events."""

    def __init__(self, db: Database, key: bytes, clock: Clock, settings: WebhookSettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self._key = key
        self._targets: dict[int, Target] = {}
        self._by_field: dict[str, tuple[int, ...]] = {}
        self._loaded_ms: int | None = None
        self._poll_ms = int(settings.poll_s * 1000)

    # --- the hot path ------------------------------------------------------------------------

    async def enqueue(
        self,
        conn: AsyncConnection,
        *,
        waba_id: str,
        conversation: str,
        field: str,
        value: dict[str, Any],
        time_s: int | None = None,
    ) -> int:
        """Queue one event for every subscription of ``field``, inside the caller's write
        transaction (``conn`` from ``db.write()``): it is sent only if that commits. Events
        of one ``conversation`` reach each subscriber in the order they were queued.
        Returns the number of rows written (0 when nobody subscribed)."""
        return await self.enqueue_many(
            conn, waba_id=waba_id, events=[NewEvent(conversation, field, value, time_s)]
        )

    async def enqueue_many(
        self, conn: AsyncConnection, *, waba_id: str, events: Iterable[NewEvent]
    ) -> int:
        """:meth:`enqueue` for several events in one statement, in the order given."""
        now = self.clock.now_ms()
        if self._stale(now):
            await self._load(conn, now)
        rows: builtins.list[dict[str, Any]] = []
        for event in events:
            if event.field not in FIELDS:
                raise ValueError(f"unknown webhook field: {event.field}")
            if not event.conversation or len(event.conversation) > _MAX_CONVERSATION:
                raise ValueError(f"conversation must be 1 to {_MAX_CONVERSATION} characters")
            subscribers = self._by_field.get(event.field)
            if not subscribers:
                continue
            body = encode_event(
                waba_id=waba_id, field=event.field, value=event.value, time_s=event.time_s
            )
            for subscription_id in subscribers:
                rows.append(
                    {
                        "event_id": secrets.token_hex(16),
                        "subscription_id": subscription_id,
                        "conversation": event.conversation,
                        "field": event.field,
                        "body": body,
                        "state": repo.PENDING,
                        "attempts": 0,
                        "next_attempt_ms": now,
                        "created_ms": now,
                    }
                )
        if rows:
            await repo.insert_events(conn, rows)
        return len(rows)

    # --- the subscription cache --------------------------------------------------------------

    def _stale(self, now_ms: int) -> bool:
        return self._loaded_ms is None or now_ms - self._loaded_ms >= self._poll_ms

    def _forget(self) -> None:
        self._loaded_ms = None

    async def _load(self, conn: AsyncConnection, now_ms: int) -> None:
        rows = await repo.active_subscriptions(conn)
        targets = {row.id: self._target(row) for row in rows}
        self._targets = targets
        by_field: dict[str, list[int]] = {}
        for target in targets.values():
            for name in target.fields:
                by_field.setdefault(name, []).append(target.id)
        self._by_field = {name: tuple(ids) for name, ids in by_field.items()}
        self._loaded_ms = now_ms

    def _target(self, row: Any) -> Target:
        secret: bytes | None
        try:
            secret = unseal(self._key, row.app_secret, context=_secret_context(row.url))
        except SecretsError:
            log.error(
                "webhook app secret does not open with this gateway's key; re-add the subscription",
                subscription_id=row.id,
                url=row.url,
            )
            secret = None
        return Target(row.id, row.url, frozenset(row.fields.split(",")), secret)

    async def targets(self, *, reload: bool = False) -> Mapping[int, Target]:
        """The active subscriptions with their app secrets, by id (for the dispatcher)."""
        now = self.clock.now_ms()
        if reload or self._stale(now):
            async with self.db.read() as conn:
                await self._load(conn, now)
        return self._targets

    # --- subscriptions -----------------------------------------------------------------------

    async def subscribe(
        self,
        url: str,
        verify_token: str,
        app_secret: str,
        fields: Collection[str],
        *,
        http: httpx.AsyncClient | None = None,
        replacing: str | None = None,
    ) -> Subscription:
        """Verify ``url`` with the Cloud API handshake, then store the subscription (or
        update the one with the same URL); ``replacing`` (a URL) is removed in the same
        transaction, as :meth:`remove` would. Raises :class:`SubscriptionRefused` when the
        handshake fails, :class:`SubscriptionLimitReached` beyond ``max_subscriptions``,
        :class:`InvalidSubscription` for a bad URL, token, secret or field."""
        if replacing == url:
            replacing = None
        _validate_url(url)
        if not verify_token or len(verify_token) > _MAX_TOKEN:
            raise InvalidSubscription(f"the verify token must be 1 to {_MAX_TOKEN} characters")
        if not app_secret:
            raise InvalidSubscription("the app secret must not be empty")
        wanted = validate_fields(fields)
        async with self.db.read() as conn:
            existing = await repo.subscription_by_url(conn, url)
            if existing is None or existing.removed_ms is not None:
                await self._check_room(conn, replacing)
        if http is None:
            # Like the POSTs, straight to the URL: no proxies from the environment.
            async with httpx.AsyncClient(trust_env=False, verify=tls_context()) as client:
                await confirm_callback(client, url, verify_token, timeout_s=self.settings.timeout_s)
        else:
            await confirm_callback(http, url, verify_token, timeout_s=self.settings.timeout_s)
        now = self.clock.now_ms()
        values: dict[str, Any] = {
            "verify_token": verify_token,
            "app_secret": seal(self._key, app_secret.encode(), context=_secret_context(url)),
            "fields": ",".join(wanted),
            "removed_ms": None,
        }
        async with self.db.write() as conn:
            existing = await repo.subscription_by_url(conn, url)
            if existing is None or existing.removed_ms is not None:
                await self._check_room(conn, replacing)
            if existing is None:
                result = await conn.execute(
                    repo.s.insert().values(url=url, created_ms=now, **values)
                )
                assert result.inserted_primary_key is not None
                subscription_id = int(result.inserted_primary_key[0])
                created = now
            else:
                # A removed URL added again starts afresh; an active one keeps its age.
                created = now if existing.removed_ms is not None else int(existing.created_ms)
                await conn.execute(
                    repo.s.update()
                    .where(repo.s.c.id == existing.id)
                    .values(created_ms=created, **values)
                )
                subscription_id = int(existing.id)
            replaced = None if replacing is None else await self._retire(conn, replacing, now)
        self._forget()
        if replaced is not None:
            log.info("webhook subscription replaced", subscription_id=replaced, url=replacing)
        log.info(
            "webhook subscription saved",
            subscription_id=subscription_id,
            url=url,
            fields=",".join(wanted),
        )
        return Subscription(subscription_id, url, wanted, created)

    async def _check_room(self, conn: AsyncConnection, replacing: str | None = None) -> None:
        limit = self.settings.max_subscriptions
        if replacing is not None:
            row = await repo.subscription_by_url(conn, replacing)
            if row is not None and row.removed_ms is None:
                return  # one goes for one that comes
        if await repo.count_active(conn) >= limit:
            raise SubscriptionLimitReached(
                f"the gateway allows {limit} webhook subscriptions; remove one first "
                "(webhooks.max_subscriptions)"
            )

    async def _retire(self, conn: AsyncConnection, url: str, now_ms: int) -> int | None:
        """Mark the active subscription of ``url`` removed; its id, or ``None``."""
        row = await repo.subscription_by_url(conn, url)
        if row is None or row.removed_ms is not None:
            return None
        await conn.execute(repo.s.update().where(repo.s.c.id == row.id).values(removed_ms=now_ms))
        await repo.kill_pending(conn, row.id, REMOVED_ERROR)
        return int(row.id)

    async def remove(self, subscription: str | int) -> Subscription:
        """Stop sending to a subscription (by URL or id). Its pending events become dead
        ("subscription removed"); adding the URL again makes them replayable."""
        now = self.clock.now_ms()
        async with self.db.write() as conn:
            row = await self._find(conn, subscription)
            if row is None or row.removed_ms is not None:
                raise SubscriptionNotFound(f"no webhook subscription {subscription}")
            await conn.execute(repo.s.update().where(repo.s.c.id == row.id).values(removed_ms=now))
            killed = await repo.kill_pending(conn, row.id, REMOVED_ERROR)
        self._forget()
        log.info(
            "webhook subscription removed",
            subscription_id=row.id,
            url=row.url,
            pending_dropped=killed,
        )
        return Subscription(row.id, row.url, tuple(row.fields.split(",")), row.created_ms)

    @staticmethod
    async def _find(conn: AsyncConnection, subscription: str | int) -> Any:
        if isinstance(subscription, int) or subscription.isdigit():
            return await repo.subscription_by_id(conn, int(subscription))
        return await repo.subscription_by_url(conn, subscription)

    # --- dead letters and figures ------------------------------------------------------------

    async def dead(self, limit: int = 100, after: int | None = None) -> builtins.list[DeadEvent]:
        """Dead events, oldest first; ``after`` (an ``id``) pages on."""
        async with self.db.read() as conn:
            rows = await repo.dead_events(conn, limit=limit, after=after)
        return [
            DeadEvent(
                id=r.id,
                event_id=r.event_id,
                subscription_id=r.subscription_id,
                url=r.url,
                field=r.field,
                conversation=r.conversation,
                attempts=r.attempts,
                created_ms=r.created_ms,
                last_error=r.last_error,
            )
            for r in rows
        ]

    async def replay(
        self, event_ids: Collection[str] | None = None, *, all_dead: bool = False
    ) -> int:
        """Send dead events again (the named ``event_ids``, or every one with
        ``all_dead=True``), keeping their event ids and bodies; attempts start over. Events
        of removed subscriptions stay dead. Returns how many were replayed; the dispatcher
        of the running gateway picks them up within ``poll_s`` (at once if woken)."""
        if event_ids is None and not all_dead:
            raise ValueError("name the events to replay, or pass all_dead=True")
        async with self.db.write() as conn:
            count = await repo.replay(
                conn, None if all_dead else list(event_ids or ()), self.clock.now_ms()
            )
        if count:
            log.info("webhook events replayed", count=count)
        return count

    async def prune(self, older_than_s: float, *, dead: bool = False, chunk: int = 5000) -> int:
        """Delete delivered events (and dead ones with ``dead=True``) made more than
        ``older_than_s`` ago, ``chunk`` rows per transaction. Returns how many went."""
        before = self.clock.now_ms() - int(older_than_s * 1000)
        states = (repo.DELIVERED, repo.DEAD) if dead else (repo.DELIVERED,)
        total = 0
        while True:
            async with self.db.write() as conn:
                count = await repo.prune(conn, states=states, before_ms=before, limit=chunk)
            total += count
            if count < chunk:
                return total
            await asyncio.sleep(0)  # let the gateway's own writes in between

    async def stats(self) -> WebhookStats:
        async with self.db.read() as conn:
            counts = await repo.count_by_state(conn)
            oldest = await repo.oldest_pending_created(conn)
        age = None if oldest is None else max(0, self.clock.now_ms() - oldest) / 1000
        return WebhookStats(
            pending=counts.get(repo.PENDING, 0),
            delivered=counts.get(repo.DELIVERED, 0),
            dead=counts.get(repo.DEAD, 0),
            oldest_pending_ms=oldest,
            oldest_pending_age_s=age,
        )

    async def backlog(self) -> tuple[int, float]:
        """Events not delivered yet, and the oldest one's age in seconds (0 for none); reads
        only the pending events (for the metrics' sampler)."""
        async with self.db.read() as conn:
            pending = await repo.count_pending(conn)
            oldest = await repo.oldest_pending_created(conn) if pending else None
        age = 0.0 if oldest is None else max(0, self.clock.now_ms() - oldest) / 1000
        return pending, age

    async def list(self) -> builtins.list[Subscription]:
        """The active subscriptions, oldest first."""
        async with self.db.read() as conn:
            rows = await repo.active_subscriptions(conn)
        return [Subscription(r.id, r.url, tuple(r.fields.split(",")), r.created_ms) for r in rows]
