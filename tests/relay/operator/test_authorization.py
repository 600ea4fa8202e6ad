"""Who may call what: operator tokens only on the admin API, device tokens only elsewhere,
and the public certificate routes for anyone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import websockets
from support import RunningRelay

from tresen.core.errors import ErrorCode
from tresen.wire import relay as wire


def admin_routes(account_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    business = f"/v1/admin/businesses/{account_id}"
    return [
        ("GET", "/v1/admin/verification-requests", None),
        ("GET", "/v1/admin/accounts?phone=%2B4915112345678", None),
        ("GET", business, None),
        ("POST", business + "/verify", None),
        ("POST", business + "/reject", {"reason": "no"}),
        ("POST", business + "/revoke", {"reason": "no"}),
        ("POST", business + "/suspend", {"reason": "no"}),
        ("POST", business + "/reinstate", None),
        ("POST", "/v1/admin/operator-keys/rotate", {"overlap_days": 1}),
        ("POST", "/v1/admin/certificates/renew", None),
        ("GET", "/v1/admin/audit", None),
    ]


def test_every_admin_route_is_covered(tmp_path: Path) -> None:
    """The checks below walk ``admin_routes``; a new admin route must be added there."""
    from tresen.core.settings import Settings
    from tresen.relay.app import build_app

    paths = build_app(Settings(data_dir=tmp_path)).openapi()["paths"]
    served = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1/admin")
        for method in operations
    }
    listed = {
        (method, path.split("?")[0].replace("ACCOUNT", "{account_id}"))
        for method, path, _ in admin_routes("ACCOUNT")
    }
    assert served == listed


async def assert_refused(
    relay: RunningRelay, account_id: str, headers: dict[str, str], error_of: Any
) -> None:
    for method, path, body in admin_routes(account_id):
        r = await relay.http.request(method, path, headers=headers, json=body)
        assert r.status_code == 401, (method, path, r.text)
        assert error_of(r)["code"] == ErrorCode.INVALID_TOKEN, (method, path)


async def test_admin_routes_need_a_token(op: Any, relay: RunningRelay, error_of: Any) -> None:
    bakery = await op.business()
    await assert_refused(relay, bakery.account_id, {}, error_of)
    await assert_refused(relay, bakery.account_id, {"Authorization": "Bearer"}, error_of)
    await assert_refused(relay, bakery.account_id, {"Authorization": "Bearer nope"}, error_of)
    # The right token under another scheme is no bearer token.
    ops = await op.headers()
    basic = {"Authorization": ops["Authorization"].replace("Bearer", "Basic")}
    await assert_refused(relay, bakery.account_id, basic, error_of)


async def test_device_tokens_do_not_work_on_admin_routes(
    op: Any, relay: RunningRelay, error_of: Any
) -> None:
    bakery = await op.business()
    # Not the business's own device, nor any other account's.
    await assert_refused(relay, bakery.account_id, bakery.devices[0].auth, error_of)
    customer = await relay.register()
    await assert_refused(relay, bakery.account_id, customer.auth, error_of)
    # Nothing happened: still pending, still one key, no audit entry.
    ops = await op.headers()
    shown = (await op.admin("GET", f"/businesses/{bakery.account_id}", ops)).json()
    assert shown["verification"] == "pending"
    assert shown["suspended_ms"] is None
    assert shown["audit"] == []
    _, keys = await op.published()
    assert len(keys) == 1


async def test_a_revoked_operator_token_stops_working(
    op: Any, relay: RunningRelay, error_of: Any
) -> None:
    bakery = await op.business()
    ops = await op.headers("carol")
    assert (await op.admin("GET", "/audit", ops)).status_code == 200

    await relay.ctx.operator.revoke_token("carol", by="test")

    await assert_refused(relay, bakery.account_id, ops, error_of)
    r = await op.admin("GET", "/audit", ops)
    assert error_of(r)["message"] == "this operator token was revoked"


async def test_operator_tokens_do_not_work_on_account_routes(
    op: Any, ops: dict[str, str], relay: RunningRelay, error_of: Any
) -> None:
    customer = await relay.register()
    for method, path in [
        ("GET", "/v1/me"),
        ("GET", "/v1/devices"),
        ("GET", "/v1/keys/count"),
        ("GET", f"/v1/keys/{customer.account_id}"),
        ("GET", f"/v1/accounts?phone={customer.phone}"),
        ("GET", "/v1/messages"),
    ]:
        r = await relay.http.request(method, path, headers=ops)
        assert r.status_code == 401, (method, path)
        assert error_of(r)["code"] == ErrorCode.INVALID_TOKEN

    async with websockets.connect(relay.ws_url, additional_headers=ops) as ws:
        frame = wire.decode_server_frame(await ws.recv())
        assert isinstance(frame, wire.ErrorFrame)
        assert frame.code == ErrorCode.INVALID_TOKEN
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_public_routes_need_no_token(
    op: Any, ops: dict[str, str], relay: RunningRelay
) -> None:
    bakery = await op.business()
    await op.admin("POST", f"/businesses/{bakery.account_id}/verify", ops)

    for path in [
        "/v1/operator/keys",
        "/v1/certificates/revoked",
        f"/v1/certificates/{bakery.account_id}",
    ]:
        r = await relay.http.get(path)
        assert r.status_code == 200, (path, r.text)


async def test_token_names_are_unique_and_plain(relay: RunningRelay, error_of: Any) -> None:
    from tresen.core.errors import TresenError

    token = await relay.ctx.operator.create_token("dave", by="test")
    assert token.startswith("tresen_op_")
    with pytest.raises(TresenError) as duplicate:
        await relay.ctx.operator.create_token("dave", by="test")
    assert duplicate.value.code == ErrorCode.INVALID_PARAMETER
    with pytest.raises(TresenError):
        await relay.ctx.operator.create_token("has space", by="test")
    # Only the hash is stored.
    from sqlalchemy import select

    from tresen.relay.schema import operator_tokens

    async with relay.ctx.db.read() as conn:
        [stored] = (await conn.execute(select(operator_tokens))).all()
    assert token.encode() not in bytes(stored.token_hash)
    assert len(stored.token_hash) == 32
