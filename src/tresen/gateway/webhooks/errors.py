"""Why a webhook subscription could not be made, found or changed."""

from __future__ import annotations

__all__ = [
    "InvalidSubscription",
    "SubscriptionLimitReached",
    "SubscriptionNotFound",
    "SubscriptionRefused",
    "WebhookError",
]


class WebhookError(Exception):
    """Base class of the webhook errors; ``str(exc)`` is a sentence for the operator."""


class InvalidSubscription(WebhookError, ValueError):
    """A URL, verify token, app secret or field that cannot be used."""


class SubscriptionRefused(WebhookError):
    """The callback URL did not pass the verification handshake (nothing was stored)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url} refused the subscription: {reason}")
        self.url = url
        self.reason = reason


class SubscriptionLimitReached(WebhookError):
    """As many subscriptions as ``webhooks.max_subscriptions`` allows exist already."""


class SubscriptionNotFound(WebhookError, LookupError):
    """No active subscription has that URL or id."""
