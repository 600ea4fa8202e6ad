"""The gateway's Prometheus metrics (``/metrics``; docs/operations.md, "Metrics").

One :class:`GatewayMetrics` per gateway app, with a registry of its own. Labels name routes,
codes and outcomes; never a customer, a phone number or a message. What the gateway keeps
anyway (the relay link, the inbox's live pages) is read when scraped; the webhook backlog is
sampled by a task every ``metrics.sample_s``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["WEBHOOK_OUTCOMES", "GatewayMetrics"]

WEBHOOK_OUTCOMES = ("delivered", "retry", "dead")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.messages_sent = Counter(
            "tresen_gateway_messages_sent",
            "Messages the relay accepted from this gateway (API, inbox, automation, campaigns)",
            registry=r,
        )
        self.messages_received = Counter(
            "tresen_gateway_messages_received", "Customer messages received", registry=r
        )
        self.http_requests = Counter(
            "tresen_gateway_http_requests",
            "HTTP requests by route template and status class (the Cloud API's routes start "
            "with /{version})",
            ["route", "status"],
            registry=r,
        )
        self._cloudapi_errors = Counter(
            "tresen_gateway_cloudapi_errors",
            "Cloud API requests answered with an error, by its code (the relay's refusals "
            "keep their codes: 131047, 131026, 130429, ...)",
            ["code"],
            registry=r,
        )
        self._errors: dict[int, Any] = {}
        self.webhook_backlog = Gauge(
            "tresen_gateway_webhook_events_pending",
            "Webhook events not delivered yet (sampled every metrics.sample_s)",
            registry=r,
        )
        self.webhook_oldest_pending = Gauge(
            "tresen_gateway_webhook_oldest_pending_seconds",
            "Age of the oldest webhook event not delivered yet (0: none)",
            registry=r,
        )
        deliveries = Counter(
            "tresen_gateway_webhook_deliveries",
            "Webhook POSTs by outcome (delivered; retry: failed, tried again later; dead: "
            "given up)",
            ["outcome"],
            registry=r,
        )
        self.webhook_deliveries = {o: deliveries.labels(o) for o in WEBHOOK_OUTCOMES}
        self.relay_connected = Gauge(
            "tresen_gateway_relay_connected",
            "1 while the gateway's WebSocket to the relay is open",
            registry=r,
        )
        campaigns = Counter(
            "tresen_gateway_campaign_messages",
            "Campaign messages by outcome (sent: accepted by the relay; refused)",
            ["outcome"],
            registry=r,
        )
        self.campaign_sent = campaigns.labels("sent")
        self.campaign_refused = campaigns.labels("refused")
        self.inbox_agents = Gauge(
            "tresen_gateway_inbox_agents_connected",
            "Agents with a live inbox page open",
            registry=r,
        )

    def watch_relay_link(self, connected: Callable[[], bool]) -> None:
        self.relay_connected.set_function(lambda: 1.0 if connected() else 0.0)

    def watch_inbox(self, agents: Callable[[], int]) -> None:
        self.inbox_agents.set_function(agents)

    def cloudapi_error(self, code: int) -> None:
        child = self._errors.get(code)
        if child is None:
            child = self._errors[code] = self._cloudapi_errors.labels(str(code))
        child.inc()
