"""Hostile input on every relay route, on PostgreSQL: text with NUL and control characters,
huge Unicode, integers beyond 64 bits, zero and negative ids in path, query and JSON body.
The relay answers each with a 4xx in its error envelope, never a 5xx, and an honest device's
sends through the HTTP mailbox keep succeeding meanwhile (no shared write batch fails)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support import Device, MakeRelay, RunningRelay, receiving_device

from tresen.core.http import tls_context

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    body_fields: tuple[str, ...] | None  # None: no JSON body
    operator: bool


def routes_of(document: dict[str, Any]) -> list[Route]:
    schemas = document["components"]["schemas"]
    found = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            fields: tuple[str, ...] | None = None
            if body is not None:
                schema = body["schema"]
                schema = next(
                    (s for s in schema.get("anyOf", []) if "$ref" in s), schema
                )  # optional bodies
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
                fields = tuple(schema.get("properties", {})) or ("name", "language")
            found.append(
                Route(
                    method=method.upper(),
                    path=path,
                    path_params=tuple(p["name"] for p in params if p["in"] == "path"),
                    query_params=tuple(p["name"] for p in params if p["in"] == "query"),
                    body_fields=fields,
                    operator=any("operator" in s for s in op.get("security", [])),
                )
            )
    return found


BIG_INTS = [0, -1, 1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**40]
NASTY_TEXT = [
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "\r\n",
    "\u202e",
    "\ufeff",
    "\U0001d518" * 3000,
    "x" * 70_000,
]
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40) | st.sampled_from(NASTY_TEXT)
integers = st.integers() | st.sampled_from(BIG_INTS)
# The known troublemakers first and often; arbitrary text and integers around them.
scalar = st.sampled_from([*NASTY_TEXT, *BIG_INTS, *map(str, BIG_INTS)]) | text | integers
json_value = st.recursive(
    scalar | st.sampled_from(["\ud800", None, True, 1.5e308]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def hostile_request(draw: st.DrawFn, routes: list[Route]) -> tuple[Route, str, dict[str, Any]]:
    route = draw(st.sampled_from(routes))
    path = route.path
    for name in route.path_params:
        path = path.replace("{" + name + "}", quote(str(draw(scalar)), safe=""))
    kwargs: dict[str, Any] = {}
    query = {n: str(draw(scalar)) for n in route.query_params if draw(st.booleans())}
    if query:
        kwargs["params"] = query
    if route.body_fields is not None:
        body = {f: draw(json_value) for f in route.body_fields if draw(st.booleans())}
        # json.dumps escapes a lone surrogate as \ud800, as a hostile client may send it.
        kwargs["content"] = json.dumps(body).encode()
        kwargs["headers"] = {"Content-Type": "application/json"}
    return route, path, kwargs


async def honest_sends(
    relay: RunningRelay, sender: Device, to: Device, stop: asyncio.Event
) -> tuple[int, list[str]]:
    failures = []
    for n in itertools.count():
        if stop.is_set():
            return n, failures
        r = await relay.http.post(
            "/v1/messages",
            headers=sender.auth,
            json={
                "client_msg_id": f"honest-{n}",
                "to": to.account_id,
                "per_device": [
                    {"device_id": to.device_id, "type": 1, "body": base64.b64encode(b"hi").decode()}
                ],
            },
        )
        if r.status_code != 200:
            failures.append(f"{r.status_code} {r.text}")
    raise AssertionError("unreachable")


def fuzz(routes: list[Route], base_url: str, device: str, operator: str) -> list[str]:
    server_errors: list[str] = []
    with httpx.Client(verify=tls_context(), base_url=base_url, timeout=30) as http:

        @given(request=hostile_request(routes))
        @settings(
            max_examples=1500,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def call(request: tuple[Route, str, dict[str, Any]]) -> None:
            route, path, kwargs = request
            token = operator if route.operator else device
            try:
                headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
                r = http.request(route.method, path, headers=headers, **kwargs)
            except httpx.InvalidURL:
                return  # too long for the client to send
            except httpx.HTTPError as exc:  # the relay dropped the connection
                server_errors.append(f"{route.method} {path:.200} {kwargs!r:.300} -> {exc!r}")
                return
            # uvicorn's own parser refuses request lines beyond its limit before the relay
            # sees them; everything else answers in the relay's envelope.
            enveloped = r.status_code < 400 or r.text.startswith(('{"error":', "Invalid HTTP"))
            if r.status_code >= 500 or not enveloped:
                server_errors.append(f"{route.method} {path} {kwargs!r:.300} -> {r.text:.300}")

        call()
    return server_errors


async def test_hostile_input_never_gives_a_server_error(make_relay: MakeRelay) -> None:
    limits = {
        "send_rate_per_device": 100_000,
        "send_burst_per_device": 100_000,
        "lookups_per_hour": 1_000_000,
        "lookup_burst": 1_000_000,
    }
    async with make_relay(limits=limits) as relay:
        sender = await relay.register()
        recipient = await receiving_device(relay)
        fuzzer = await relay.register()
        operator = await relay.ctx.operator.create_token("fuzz", by="test")
        document = (await relay.http.get("/openapi.json")).json()
        routes = routes_of(document)

        stop = asyncio.Event()
        honest = asyncio.create_task(honest_sends(relay, sender, recipient, stop))
        try:
            server_errors = await asyncio.to_thread(fuzz, routes, relay.url, fuzzer.token, operator)
        finally:
            stop.set()
            sent, send_failures = await honest
        # Input is refused where it is decoded: no group commit had to be split over it.
        isolated = relay.ctx.mailbox.write_failures_isolated

    assert server_errors == [], "\n".join(server_errors)
    assert isolated == 0
    assert send_failures == []
    assert sent > 0
