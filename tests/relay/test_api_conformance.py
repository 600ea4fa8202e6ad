"""The relay answers every HTTP route as its OpenAPI document (``/openapi.json``) says:
no server error, only documented statuses, content types, bodies and headers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from conformance import run_conformance
from support import Backend, publish_identity, serve_relay


async def test_every_relay_route_answers_as_documented(tmp_path: Path) -> None:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    async with serve_relay(backend, tmp_path) as relay:
        device = await relay.register()
        await publish_identity(relay, device)
        operator = await relay.ctx.operator.create_token("conformance", by="test")
        r = await relay.http.get("/openapi.json")
        assert r.status_code == 200
        document: dict[str, Any] = r.json()

        def headers_for(operation: Any) -> dict[str, str]:
            schemes = {
                name for need in operation.definition.raw.get("security", []) for name in need
            }
            token = operator if "operator" in schemes else device.token
            return {"Authorization": f"Bearer {token}"}

        report = await asyncio.to_thread(
            run_conformance,
            document,
            relay.url,
            headers_for=headers_for,
            max_examples=15,
            last=("DELETE /v1/devices/{device_id}",),
        )

    assert report.failures == [], "\n\n".join(report.failures)
    assert report.operations == sum(len(item) for item in document["paths"].values())
    # The run reached the routes' own answers, not only their validation.
    assert report.statuses.get(200, 0) > report.operations
