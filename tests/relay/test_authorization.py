"""Who may call what, route by route, for the business directory and the operator.

``ROUTES`` names every route the relay serves under ``PREFIXES`` with the credentials it
takes. ``test_the_table_names_every_route`` fails as soon as a route appears there without an
entry, so no new route escapes the checks below: without credentials a route refuses (except
the few in ``PUBLIC``), device tokens open no admin route, operator tokens open no account
route, and one business's writes never reach another business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
from fastapi.routing import iter_route_contexts
from support import Device, RunningRelay, publish_identity

from tresen.core.errors import ErrorCode
from tresen.core.settings import Settings
from tresen.relay.app import build_app

PREFIXES = (
    "/v1/business",
    "/v1/businesses",
    "/v1/admin",
    "/v1/operator",
    "/v1/certificates",
    "/v1/templates",
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64) + b"\xff\xd9"
# Both businesses have a template of this name: a write by one must not reach the other's.
TEMPLATE = {
    "name": "sweep_notice",
    "language": "de",
    "category": "UTILITY",
    "components": [{"type": "BODY", "text": "Ihre Bestellung ist abholbereit."}],
}


class Access(Enum):
    PUBLIC = "no credentials"
    ACCOUNT = "a device token"
    OPERATOR = "an operator token"


@dataclass(frozen=True)
class Call:
    """How a route is called: the credentials it takes and a request it accepts."""

    access: Access
    json: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


# Deliberately open to anyone: a client checks a business's tick offline against the operator's
# keys, the revocation list and the certificate, before it has an account and without telling
# the relay who it is.
PUBLIC = frozenset(
    {
        ("GET", "/v1/operator/keys"),
        ("GET", "/v1/certificates/revoked"),
        ("GET", "/v1/certificates/{account_id}"),
    }
)

ROUTES: dict[tuple[str, str], Call] = {
    # public
    ("GET", "/v1/operator/keys"): Call(Access.PUBLIC),
    ("GET", "/v1/certificates/revoked"): Call(Access.PUBLIC),
    ("GET", "/v1/certificates/{account_id}"): Call(Access.PUBLIC),
    # a business's own account (device token); the writes act on the caller only
    ("PUT", "/v1/business/profile"): Call(Access.ACCOUNT, json={"about": "Frisch gebacken"}),
    ("GET", "/v1/business/profile"): Call(Access.ACCOUNT),
    ("PUT", "/v1/business/profile/picture"): Call(
        Access.ACCOUNT, content=JPEG, headers={"Content-Type": "image/jpeg"}
    ),
    ("DELETE", "/v1/business/profile/picture"): Call(Access.ACCOUNT),
    ("POST", "/v1/business/verification"): Call(Access.ACCOUNT, json={"note": "bitte prüfen"}),
    ("GET", "/v1/business/quality"): Call(Access.ACCOUNT),
    # billing: the prices that apply to the caller, its own statements (device token)
    ("GET", "/v1/business/rate-card"): Call(Access.ACCOUNT),
    ("GET", "/v1/business/statements/{month}"): Call(Access.ACCOUNT),
    # templates: a business's own (device token), and any template's signed form
    ("POST", "/v1/business/message_templates"): Call(Access.ACCOUNT, json=TEMPLATE),
    ("GET", "/v1/business/message_templates"): Call(Access.ACCOUNT),
    ("GET", "/v1/business/message_templates/{template_id}"): Call(Access.ACCOUNT),
    ("DELETE", "/v1/business/message_templates"): Call(
        Access.ACCOUNT, params={"name": "sweep_notice"}
    ),
    ("GET", "/v1/templates/{template_id}"): Call(Access.ACCOUNT),
    # the directory (device token)
    ("GET", "/v1/businesses"): Call(Access.ACCOUNT, params={"q": "Bäckerei"}),
    ("GET", "/v1/businesses/{account_id}"): Call(Access.ACCOUNT),
    ("GET", "/v1/businesses/{account_id}/picture"): Call(Access.ACCOUNT),
    # the operator (operator token)
    ("GET", "/v1/admin/accounts"): Call(Access.OPERATOR, params={"phone": "+4915112345678"}),
    ("GET", "/v1/admin/verification-requests"): Call(Access.OPERATOR),
    ("GET", "/v1/admin/businesses/{account_id}"): Call(Access.OPERATOR),
    ("POST", "/v1/admin/businesses/{account_id}/verify"): Call(Access.OPERATOR),
    ("POST", "/v1/admin/businesses/{account_id}/reject"): Call(
        Access.OPERATOR, json={"reason": "sweep"}
    ),
    ("POST", "/v1/admin/businesses/{account_id}/revoke"): Call(
        Access.OPERATOR, json={"reason": "sweep"}
    ),
    ("POST", "/v1/admin/businesses/{account_id}/suspend"): Call(
        Access.OPERATOR, json={"reason": "sweep"}
    ),
    ("POST", "/v1/admin/businesses/{account_id}/reinstate"): Call(Access.OPERATOR),
    ("POST", "/v1/admin/operator-keys/rotate"): Call(Access.OPERATOR, json={"overlap_days": 1}),
    ("POST", "/v1/admin/certificates/renew"): Call(Access.OPERATOR),
    ("GET", "/v1/admin/audit"): Call(Access.OPERATOR),
    ("GET", "/v1/admin/businesses/{account_id}/quality"): Call(Access.OPERATOR),
    ("PUT", "/v1/admin/businesses/{account_id}/throughput"): Call(
        Access.OPERATOR, json={"messages_per_second": 100}
    ),
    ("GET", "/v1/admin/consents"): Call(
        Access.OPERATOR, params={"business": "0" * 32, "customer": "1" * 32}
    ),
    ("GET", "/v1/admin/rate-card"): Call(Access.OPERATOR),
    ("PUT", "/v1/admin/rate-card"): Call(
        Access.OPERATOR,
        json={"rates": [{"category": "marketing", "country": "DE", "price_micros": 1}]},
    ),
    ("GET", "/v1/admin/businesses/{account_id}/rate-card"): Call(Access.OPERATOR),
    ("PUT", "/v1/admin/businesses/{account_id}/rate-card"): Call(
        Access.OPERATOR,
        json={"rates": [{"category": "utility", "country": "*", "price_micros": 1}]},
    ),
    ("DELETE", "/v1/admin/businesses/{account_id}/rate-card"): Call(Access.OPERATOR),
    ("GET", "/v1/admin/businesses/{account_id}/statements/{month}"): Call(Access.OPERATOR),
    ("GET", "/v1/admin/templates"): Call(Access.OPERATOR),
    ("GET", "/v1/admin/templates/{template_id}"): Call(Access.OPERATOR),
    ("POST", "/v1/admin/templates/{template_id}/approve"): Call(Access.OPERATOR),
    ("POST", "/v1/admin/templates/{template_id}/reject"): Call(
        Access.OPERATOR, json={"reason": "sweep"}
    ),
    ("POST", "/v1/admin/templates/quality"): Call(Access.OPERATOR),
}

WRITES = ("PUT", "POST", "PATCH", "DELETE")


def served_routes(data_dir: Path) -> set[tuple[str, str]]:
    """(method, path) of every route the relay serves under ``PREFIXES``; a WebSocket route
    counts as method ``WEBSOCKET``."""
    app = build_app(Settings(data_dir=data_dir))
    served = set()
    # Included routers are nested in ``app.routes``; this walks all of them.
    for route in iter_route_contexts(app.routes):
        path = route.path
        if path is None or not path.startswith(PREFIXES):
            continue
        for method in route.methods or {"WEBSOCKET"}:
            if method != "HEAD":
                served.add((method, path))
    return served


def test_the_table_names_every_route(tmp_path: Path) -> None:
    served = served_routes(tmp_path)

    # The walk itself must see the routes, or every check below would pass on nothing.
    assert ("PUT", "/v1/business/profile") in served
    assert ("POST", "/v1/admin/businesses/{account_id}/verify") in served
    assert set(ROUTES) == served, (
        f"routes without an entry in ROUTES: {sorted(served - set(ROUTES))}; "
        f"entries for routes that are gone: {sorted(set(ROUTES) - served)}"
    )
    public = {route for route, call in ROUTES.items() if call.access is Access.PUBLIC}
    assert public == PUBLIC
    for (method, path), call in ROUTES.items():
        # The admin prefix is the operator's only door, and only the operator's.
        assert (call.access is Access.OPERATOR) == path.startswith("/v1/admin/"), (method, path)


# --- the world the checks run in -------------------------------------------------------------


@dataclass
class World:
    relay: RunningRelay
    operator: dict[str, str]
    customer: Device
    business: Device
    other: Device
    """A verified business with a picture: the one whose account ids the routes name."""
    template_id: str
    """The other business's approved template: the one whose id the routes name."""


async def a_business(relay: RunningRelay, name: str) -> Device:
    device = await relay.register()
    await publish_identity(relay, device)
    r = await relay.http.put(
        "/v1/business/profile", json={"display_name": name}, headers=device.auth
    )
    assert r.status_code == 201, r.text
    return device


async def a_world(relay: RunningRelay) -> World:
    token = await relay.ctx.operator.create_token("sweep", by="test")
    operator = {"Authorization": f"Bearer {token}"}
    business = await a_business(relay, "Bäckerei Müller")
    other = await a_business(relay, "Blumen Schulz")
    r = await relay.http.put(
        "/v1/business/profile/picture",
        content=PNG,
        headers={**other.auth, "Content-Type": "image/png"},
    )
    assert r.status_code == 204, r.text
    r = await relay.http.post(
        "/v1/business/verification", json={"note": "please"}, headers=other.auth
    )
    assert r.status_code == 202, r.text
    r = await relay.http.post(f"/v1/admin/businesses/{other.account_id}/verify", headers=operator)
    assert r.status_code == 200, r.text
    r = await relay.http.post("/v1/business/message_templates", json=TEMPLATE, headers=other.auth)
    assert r.status_code == 200, r.text
    template_id = r.json()["id"]
    r = await relay.http.post(f"/v1/admin/templates/{template_id}/approve", headers=operator)
    assert r.status_code == 200, r.text
    return World(relay, operator, await relay.register(), business, other, template_id)


async def call(
    world: World,
    route: tuple[str, str],
    headers: dict[str, str],
    *,
    extra_params: dict[str, str] | None = None,
) -> httpx.Response:
    method, path = route
    path = path.replace("{month}", "2026-01")  # statements name a month
    spec = ROUTES[route]
    return await world.relay.http.request(
        method,
        path.replace("{account_id}", world.other.account_id).replace(
            "{template_id}", world.template_id
        ),
        json=spec.json,
        content=spec.content,
        params={**spec.params, **(extra_params or {})},
        headers={**spec.headers, **headers},
    )


def assert_refused(r: httpx.Response, route: tuple[str, str]) -> None:
    assert r.status_code == 401, (route, r.status_code, r.text)
    error = r.json()["error"]
    assert error["code"] == ErrorCode.INVALID_TOKEN, (route, error)
    assert error["message"], route


async def what_others_see(world: World) -> dict[str, Any]:
    """Everything about the verified business that any write of another could touch."""
    relay, other = world.relay, world.other
    own = await relay.http.get("/v1/business/profile", headers=other.auth)
    public = await relay.http.get(f"/v1/businesses/{other.account_id}", headers=world.customer.auth)
    picture = await relay.http.get(
        f"/v1/businesses/{other.account_id}/picture", headers=world.customer.auth
    )
    certificate = await relay.http.get(f"/v1/certificates/{other.account_id}")
    admin = await relay.http.get(f"/v1/admin/businesses/{other.account_id}", headers=world.operator)
    templates = await relay.http.get("/v1/business/message_templates", headers=other.auth)
    signed = await relay.http.get(f"/v1/templates/{world.template_id}", headers=other.auth)
    for r in (own, public, picture, certificate, admin, templates, signed):
        assert r.status_code == 200, r.text
    return {
        "own": own.json(),
        "public": public.json(),
        "picture": picture.content,
        "certificate": certificate.json(),
        "admin": admin.json(),  # verification, suspension, certificates, requests, audit
        "templates": templates.json(),
        "signed": signed.json(),
    }


async def own_state(world: World) -> dict[str, Any]:
    """What the acting business's own writes change: its profile and its templates."""
    http, auth = world.relay.http, world.business.auth
    return {
        "profile": (await http.get("/v1/business/profile", headers=auth)).json(),
        "templates": (await http.get("/v1/business/message_templates", headers=auth)).json(),
    }


# --- the checks ------------------------------------------------------------------------------


async def test_without_credentials_only_the_public_routes_answer(relay: RunningRelay) -> None:
    world = await a_world(relay)
    before = await what_others_see(world)
    token = world.operator["Authorization"].removeprefix("Bearer ")
    no_credentials = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        # Real tokens under another scheme are no bearer tokens.
        {"Authorization": f"Basic {token}"},
        {"Authorization": world.other.auth["Authorization"].replace("Bearer", "Token")},
    ]

    for route, spec in ROUTES.items():
        for headers in no_credentials:
            r = await call(world, route, headers)
            if spec.access is Access.PUBLIC:
                assert r.status_code == 200, (route, headers, r.text)
            else:
                assert_refused(r, route)

    assert await what_others_see(world) == before


async def test_device_tokens_open_no_admin_route(relay: RunningRelay) -> None:
    world = await a_world(relay)
    before = await what_others_see(world)
    keys_before = (await relay.http.get("/v1/operator/keys")).json()

    admin_routes = [route for route, spec in ROUTES.items() if spec.access is Access.OPERATOR]
    assert admin_routes
    # A customer's, another business's, and the named business's own device.
    for device in (world.customer, world.business, world.other):
        for route in admin_routes:
            assert_refused(await call(world, route, device.auth), route)

    # Nothing happened: no suspension, no revocation, no new key, no audit entry.
    assert await what_others_see(world) == before
    assert (await relay.http.get("/v1/operator/keys")).json() == keys_before


async def test_operator_tokens_open_no_account_route(relay: RunningRelay) -> None:
    world = await a_world(relay)
    before = await what_others_see(world)

    account_routes = [route for route, spec in ROUTES.items() if spec.access is Access.ACCOUNT]
    assert account_routes
    for route in account_routes:
        assert_refused(await call(world, route, world.operator), route)

    assert await what_others_see(world) == before


async def test_a_business_writes_only_its_own_account(relay: RunningRelay) -> None:
    world = await a_world(relay)
    writes = [
        route
        for route, spec in ROUTES.items()
        if spec.access is Access.ACCOUNT and route[0] in WRITES
    ]
    assert writes

    for route in writes:
        before = await what_others_see(world)
        own_before = await own_state(world)

        # Naming the other business does not redirect a write: no write route takes an id.
        r = await call(
            world, route, world.business.auth, extra_params={"account_id": world.other.account_id}
        )

        assert 200 <= r.status_code < 300, (route, r.text)
        own_after = await own_state(world)
        assert own_after != own_before, route  # the write landed on the caller's own account
        assert await what_others_see(world) == before, route


async def test_the_right_credentials_open_every_route(relay: RunningRelay) -> None:
    """The refusals above come from the credentials, not from a route that refuses everyone."""
    world = await a_world(relay)
    credentials = {
        Access.PUBLIC: {},
        Access.ACCOUNT: world.business.auth,
        Access.OPERATOR: world.operator,
    }

    for route, spec in ROUTES.items():
        r = await call(world, route, credentials[spec.access])
        assert r.status_code != 401, (route, r.text)
        assert r.status_code < 500, (route, r.text)
        if r.status_code >= 400:
            # A rule of the route itself (e.g. reject without a pending request), not a
            # missing route or a malformed request.
            assert r.json()["error"]["code"] != ErrorCode.INVALID_PARAMETER, (route, r.text)
