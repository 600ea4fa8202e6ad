"""The gateway answers as its OpenAPI document says: schemathesis generates requests for
every operation and checks each answer (no server error, a documented status, the
documented content type, a body that fits the documented schema)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import schemathesis
from gateway_support import API_VERSION, RunningGateway
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tresen.core.http import tls_context

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 15


def focused(spec: dict[str, Any], gw: RunningGateway) -> dict[str, Any]:
    """The document with ``version`` and ``node`` drawn from this gateway's (and a foreign
    id now and then), so that requests reach the routes' own rules."""
    nodes = [gw.phone_number_id, gw.waba_id, "1234567"]
    for path in spec["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "version":
                    parameter["schema"] = {"type": "string", "enum": [API_VERSION, "v16.0"]}
                elif parameter["in"] == "path" and parameter["name"] == "node":
                    parameter["schema"] = {"type": "string", "enum": nodes}
    return spec


def conform(spec: dict[str, Any], base_url: str, token: str) -> list[str]:
    """Run every operation; the operations that failed, with why."""
    schema = schemathesis.openapi.from_dict(spec)
    failed: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            case.call_and_validate(
                base_url=base_url,
                headers={"Authorization": f"Bearer {token}"},
                checks=CHECKS,
                timeout=30,
            )

        try:
            run()
        except Exception as exc:
            failed.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failed


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_operation_answers_as_documented(gw: RunningGateway) -> None:
    async with httpx.AsyncClient(verify=tls_context(), base_url=gw.url) as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
    started = time.monotonic()
    # schemathesis calls synchronously; the gateway serves on this loop meanwhile.
    failed = await asyncio.to_thread(conform, focused(spec, gw), gw.url, gw.token)
    assert failed == [], "\n\n".join(failed)
    assert time.monotonic() - started < 150
