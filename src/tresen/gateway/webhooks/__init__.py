"""Webhooks in the WhatsApp Cloud API's shape: subscriptions verified by the ``hub.challenge``
handshake, a transactional outbox, and a dispatcher that POSTs each event signed with
``X-Hub-Signature-256``, at least once and in order per conversation.

The gateway calls :meth:`Outbox.enqueue` inside the write transaction of each change and
:meth:`WebhookDispatcher.wake` after it commits; operators manage subscriptions and dead
letters with ``tresen gateway webhooks``.
"""

from __future__ import annotations

from tresen.gateway.webhooks.dispatcher import WebhookDispatcher
from tresen.gateway.webhooks.envelope import FIELDS, encode_event
from tresen.gateway.webhooks.errors import (
    InvalidSubscription,
    SubscriptionLimitReached,
    SubscriptionNotFound,
    SubscriptionRefused,
    WebhookError,
)
from tresen.gateway.webhooks.outbox import (
    DeadEvent,
    NewEvent,
    Outbox,
    Subscription,
    WebhookStats,
)
from tresen.gateway.webhooks.signature import sign, verify

__all__ = [
    "FIELDS",
    "DeadEvent",
    "InvalidSubscription",
    "NewEvent",
    "Outbox",
    "Subscription",
    "SubscriptionLimitReached",
    "SubscriptionNotFound",
    "SubscriptionRefused",
    "WebhookDispatcher",
    "WebhookError",
    "WebhookStats",
    "encode_event",
    "sign",
    "verify",
]
