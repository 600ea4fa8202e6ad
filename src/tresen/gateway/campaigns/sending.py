"""How the runner hands one campaign message to the gateway, and what can come back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.cloudapi.requests import SendRequest, parse_message_request
from tresen.gateway.metrics import GatewayMetrics

__all__ = ["Accepted", "CampaignSender", "GatewayLike", "GatewaySender", "template_request"]


@dataclass(frozen=True, slots=True)
class Accepted:
    wamid: str
    pricing: dict[str, Any] | None
    duplicate: bool


class CampaignSender(Protocol):
    """Sends a template to one customer; raises ``GraphError`` with the Cloud API code of
    a refusal."""

    async def prepare(self, account_ids: list[str]) -> None:
        """Get ready to send to these customers soon (keys, sessions, contacts)."""

    async def resolve(self, phone: str) -> str:
        """The account of a number; ``GraphError`` 131026 (not on the network) or 130429
        (too many look-ups for now)."""

    async def send_template(
        self,
        to: str,
        template_name: str,
        language: str,
        components: list[dict[str, Any]],
        *,
        client_msg_id: str | None,
    ) -> Accepted: ...


class _Result(Protocol):
    wamid: str
    pricing: str | None
    duplicate: bool


class GatewayLike(Protocol):
    async def send(self, request: SendRequest, *, client_msg_id: str | None = None) -> Any: ...

    async def prepare_recipients(self, account_ids: Sequence[str]) -> None: ...

    async def resolve_phone(self, phone: str, given: str) -> str: ...


def template_request(
    to: str, template_name: str, language: str, components: list[dict[str, Any]]
) -> SendRequest:
    """A Cloud API template send, checked as the API checks one."""
    template: dict[str, Any] = {"name": template_name, "language": {"code": language}}
    if components:
        template["components"] = components
    request = parse_message_request(
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": template,
        }
    )
    if not isinstance(request, SendRequest):
        raise GraphError(100, "not a message")
    return request


class GatewaySender:
    """Through :meth:`tresen.gateway.service.Gateway.send`: stored and announced (webhook,
    inbox) like any message the API sends."""

    def __init__(self, gateway: GatewayLike, metrics: GatewayMetrics | None = None) -> None:
        self.gateway = gateway
        self.metrics = metrics or GatewayMetrics()

    async def prepare(self, account_ids: list[str]) -> None:
        await self.gateway.prepare_recipients(account_ids)

    async def resolve(self, phone: str) -> str:
        return await self.gateway.resolve_phone(phone, phone)

    async def send_template(
        self,
        to: str,
        template_name: str,
        language: str,
        components: list[dict[str, Any]],
        *,
        client_msg_id: str | None,
    ) -> Accepted:
        request = template_request(to, template_name, language, components)
        try:
            result: _Result = await self.gateway.send(request, client_msg_id=client_msg_id)
        except GraphError:
            self.metrics.campaign_refused.inc()
            raise
        self.metrics.campaign_sent.inc()
        pricing = json.loads(result.pricing) if result.pricing else None
        return Accepted(result.wamid, pricing, result.duplicate)
