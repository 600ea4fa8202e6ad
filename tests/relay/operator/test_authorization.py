"""Operator tokens: revocation, names, and no use outside the admin API.

Route by route checks of who may call the business and operator routes are in
``tests/relay/test_authorization.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import websockets
from support import RunningRelay

from tresen.core.errors import ErrorCode
from tresen.wire import relay as wire


async def assert_refused(
    relay: RunningRelay, account_id: str, headers: dict[str, str], error_of: Any
) -> None:
    business = f"/v1/admin/businesses/{account_id}"
    for method, path, body in [
        ("GET", "/v1/admin/audit", None),
        ("GET", business, None),
        ("POST", business + "/suspend", {"reason": "no"}),
    ]:
        r = await relay.http.request(method, path, headers=headers, json=body)
        assert r.status_code == 401, (method, path, r.text)
        assert error_of(r)["code"] == ErrorCode.INVALID_TOKEN, (method, path)


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
