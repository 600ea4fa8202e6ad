"""The relay's ``/metrics``: counters move with what devices do, no label names a person, and
who may scrape is the operator's choice (a token, or a port of their own); ``/v1/ready``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from support import Backend, RunningRelay, free_port, receiving_device, send_frame, serve_relay

from tresen.wire import relay as wire

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(relay: RunningRelay) -> tuple[Samples, str]:
    r = await relay.http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text), r.text


async def test_scraping_shows_devices_messages_and_refusals_counted(
    backend: Backend, tmp_path: Path
) -> None:
    async with serve_relay(backend, tmp_path, metrics={"sample_s": 0.05}) as relay:
        alice = await receiving_device(relay)
        bob = await receiving_device(relay)
        before, _ = await scrape(relay)

        a = await relay.connect(alice)
        b = await relay.connect(bob)
        await b.expect(wire.QueueEmpty)
        await a.send(send_frame(bob, "m1", {1: b"\x01ciphertext"}))
        await a.expect(wire.Accepted)
        message = await b.expect(wire.MessageFrame)

        # The sampled queue depth sees the message waiting for bob's ack.
        async def depth() -> float:
            return value((await scrape(relay))[0], "tresen_relay_mailbox_entries")

        async with asyncio.timeout(10):
            while await depth() < 1:
                await asyncio.sleep(0.05)

        await b.send(wire.Ack(ids=[message.id]))
        delivered = await a.expect(wire.Delivered)
        await a.send(wire.Ack(ids=[delivered.id]))
        await a.send(wire.Ack(ids=list(range(1, 2001))))  # over max_acks_per_frame: code 100
        await a.expect(wire.ErrorFrame)
        r = await relay.http.post(
            "/v1/registration/verify", json={"phone": "+4915100000000", "code": "000000"}
        )
        assert r.status_code >= 400

        # Nothing answers an ack: wait until the relay has stored both before reading.
        async def acked() -> float:
            name = "tresen_relay_envelopes_acked_total"
            return value((await scrape(relay))[0], name) - value(before, name)

        async with asyncio.timeout(10):
            while await acked() < 2:
                await asyncio.sleep(0.05)
        after, exposition = await scrape(relay)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert value(after, "tresen_relay_connected_devices") == 2
        assert moved("tresen_relay_frames_received_total", kind="send") == 1
        assert moved("tresen_relay_frames_received_total", kind="ack") == 3
        assert moved("tresen_relay_frames_sent_total", kind="message") == 1
        assert moved("tresen_relay_frames_sent_total", kind="delivered") == 1
        assert moved("tresen_relay_frames_sent_total", kind="hello") == 2
        assert moved("tresen_relay_messages_accepted_total") == 1
        assert moved("tresen_relay_messages_delivered_total") == 1
        assert moved("tresen_relay_envelopes_acked_total") == 2
        assert moved("tresen_relay_refusals_total", code="100", via="ws") == 1
        assert moved("tresen_relay_refusals_total", via="http", code=_code_of(r)) == 1
        # send, two acks, the refused ack: each in some group commit
        assert moved("tresen_relay_group_commit_operations_count") >= 3
        assert moved("tresen_relay_group_commit_seconds_count") >= 3
        assert moved("tresen_relay_http_requests_total", route="/metrics", status="2xx") >= 1
        assert value(after, "tresen_relay_http_requests_total", route="/v1/keys", status="2xx") == 2
        # Paths are never labels: a request for an account's keys counts under its template.
        await relay.http.get(f"/v1/keys/{bob.account_id}/devices", headers=alice.auth)
        _, exposition = await scrape(relay)
        for person in (alice, bob):
            for private in (
                person.account_id,
                person.phone,
                person.phone.lstrip("+"),
                person.token,
            ):
                assert private not in exposition

        async with asyncio.timeout(10):
            while await depth() > 0:
                await asyncio.sleep(0.05)
        await a.close()
        await b.close()


def sqlite(tmp_path: Path) -> Backend:
    # Who may scrape does not depend on the database.
    return Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")


def _code_of(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def test_a_token_guards_the_metrics(tmp_path: Path) -> None:
    backend = sqlite(tmp_path)
    token = "metrics-token-0123456789"
    async with serve_relay(backend, tmp_path, metrics={"token": token}) as relay:
        assert (await relay.http.get("/metrics")).status_code == 401
        wrong = await relay.http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        right = await relay.http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200
        assert "tresen_relay_connected_devices" in right.text


async def test_without_a_token_only_direct_local_requests_may_scrape(tmp_path: Path) -> None:
    backend = sqlite(tmp_path)
    async with serve_relay(backend, tmp_path) as relay:
        assert (await relay.http.get("/metrics")).status_code == 200
        # Through a reverse proxy the request may come from anywhere.
        proxied = await relay.http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 403
        assert "metrics.token" in proxied.text


async def test_metrics_on_a_port_of_their_own(tmp_path: Path) -> None:
    backend = sqlite(tmp_path)
    port = free_port()
    async with serve_relay(backend, tmp_path, metrics={"port": port}) as relay:
        assert (await relay.http.get("/metrics")).status_code == 404
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200
        assert "tresen_relay_connected_devices" in r.text


async def test_ready_names_what_is_not_ready(backend: Backend, tmp_path: Path) -> None:
    async with serve_relay(backend, tmp_path) as relay:
        r = await relay.http.get("/v1/ready")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}

        # A newer release migrated the shared database: this node must take no traffic.
        async with relay.ctx.db.write() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'fffffffffff'"))
        r = await relay.http.get("/v1/ready")
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == 150080
        assert error["details"]["checks"]["database"] == "ok"
        assert "fffffffffff" in error["details"]["checks"]["schema"]
        # Liveness does no I/O and stays up.
        assert (await relay.http.get("/v1/health")).status_code == 200
