"""The gateway's ``/metrics``: messages sent and received, Cloud API errors, the webhook
backlog and deliveries move as a business works; no label names a customer; a token guards
them. ``/health`` and ``/ready``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from gateway_support import RunningGateway, customer, serve_gateway, subscribed_inbox
from prometheus_client.parser import text_string_to_metric_families
from support import Backend, RunningRelay, serve_relay

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(gw: RunningGateway, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url) as http:
        return await http.get("/metrics", headers=headers)


async def samples(gw: RunningGateway) -> tuple[Samples, str]:
    r = await scrape(gw)
    assert r.status_code == 200, r.text
    return parse(r.text), r.text


async def test_scraping_shows_messages_webhooks_and_errors_counted(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    async with serve_gateway(
        relay,
        backend,
        tmp_path,
        metrics={"sample_s": 0.05},
        webhooks={"retry_initial_s": 0.05, "retry_max_s": 0.1},
    ) as gw:
        before, _ = await samples(gw)
        assert value(before, "tresen_gateway_relay_connected") == 1
        async with subscribed_inbox(gw) as inbox:
            inbox.status = 500  # the business's system is down: events wait
            alice = await customer(relay, tmp_path / "alice")
            try:
                await alice.send_text(gw.gateway.phone, "Is my order on its way?")
                await inbox.next_message("text")  # tried, refused

                async def backlog() -> float:
                    found, _ = await samples(gw)
                    return value(found, "tresen_gateway_webhook_events_pending")

                async with asyncio.timeout(15):
                    while await backlog() < 1:
                        await asyncio.sleep(0.05)
                inbox.status = 200
                await inbox.next_message("text")  # the retry, answered
                r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Yes"}})
                assert r.status_code == 200, r.text
                wamid = r.json()["messages"][0]["id"]
                r = await gw.send({"to": alice.phone, "type": "text"})  # no text: code 100
                assert r.status_code == 400
                await inbox.next_status(wamid, "sent")
                # The POST was answered; the dispatcher counts it once it has the answer.
                async with asyncio.timeout(15):
                    while True:
                        after, exposition = await samples(gw)
                        delivered = value(
                            after, "tresen_gateway_webhook_deliveries_total", outcome="delivered"
                        )
                        if delivered >= 2 and await backlog() == 0:
                            break
                        await asyncio.sleep(0.05)
            finally:
                await alice.close()

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("tresen_gateway_messages_received_total") == 1
        assert moved("tresen_gateway_messages_sent_total") == 1
        assert moved("tresen_gateway_webhook_deliveries_total", outcome="retry") >= 1
        assert moved("tresen_gateway_cloudapi_errors_total", code="100") == 1
        messages = "/{version}/{node}/messages"
        assert moved("tresen_gateway_http_requests_total", route=messages, status="2xx") == 1
        assert moved("tresen_gateway_http_requests_total", route=messages, status="4xx") == 1
        assert value(after, "tresen_gateway_inbox_agents_connected") == 0
        for private in (
            alice.phone or "",
            (alice.phone or "").lstrip("+"),
            alice.account_id or "",
            gw.gateway.phone.lstrip("+"),
            gw.token,
        ):
            assert private
            assert private not in exposition


async def test_a_token_guards_the_metrics_and_ready_checks_the_relay_link(
    tmp_path: Path,
) -> None:
    # Who may scrape does not depend on the database: SQLite only.
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    token = "gateway-metrics-token-0123"
    async with (
        serve_relay(backend, tmp_path) as relay,
        serve_gateway(relay, backend, tmp_path, metrics={"token": token}) as gw,
    ):
        assert (await scrape(gw)).status_code == 401
        assert (await scrape(gw, Authorization="Bearer wrong")).status_code == 401
        right = await scrape(gw, Authorization=f"Bearer {token}")
        assert right.status_code == 200
        assert "tresen_gateway_messages_sent_total" in right.text
        async with httpx.AsyncClient(base_url=gw.url) as http:
            assert (await http.get("/health")).json() == {"status": "ok"}
            r = await http.get("/ready")
            assert r.status_code == 200, r.text
            assert r.json()["checks"] == {"database": "ok", "schema": "ok", "relay": "ok"}

            await gw.gateway.client.connection.close()  # the relay link is down
            r = await http.get("/ready")
            assert r.status_code == 503
            assert r.json()["checks"]["relay"].startswith("no connection to the relay")
