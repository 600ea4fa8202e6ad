"""The relay's OpenAPI document, and the error handlers' safety net for database data errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError

from tresen.core.http import tls_context
from tresen.core.settings import Settings
from tresen.relay.app import build_app
from tresen.relay.http import install_error_handlers


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    app = build_app(
        Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    )
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]


def test_no_route_documents_fastapi_422(document: dict[str, Any]) -> None:
    assert [label for label, op in operations(document) if "422" in op["responses"]] == []
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_error_status_documents_the_envelope(document: dict[str, Any]) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorPublic"}
    for label, op in operations(document):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == envelope, (
                    label,
                    status,
                )


def test_input_answers_400_and_tokens_401(document: dict[str, Any]) -> None:
    for label, op in operations(document):
        if op.get("parameters") or op.get("requestBody"):
            assert "400" in op["responses"], label
        if op.get("security"):
            assert "401" in op["responses"], label


def test_device_and_operator_tokens_are_declared(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["device"] == schemes["device"] | {"type": "http", "scheme": "bearer"}
    assert schemes["operator"] == schemes["operator"] | {"type": "http", "scheme": "bearer"}
    security = {label: op.get("security") for label, op in operations(document)}
    assert security["GET /v1/me"] == [{"device": []}]
    assert security["GET /v1/admin/audit"] == [{"operator": []}]
    assert security["GET /v1/operator/keys"] is None


def test_ids_and_text_are_bounded_in_the_document(document: dict[str, Any]) -> None:
    [device_id] = document["paths"]["/v1/devices/{device_id}"]["delete"]["parameters"]
    assert device_id["schema"] | {"minimum": 1, "maximum": 2**63 - 1} == device_id["schema"]
    parameters = document["paths"]["/v1/keys/{account_id}"]["get"]["parameters"]
    [account_id] = [p for p in parameters if p["in"] == "path"]
    assert "\\x00" in account_id["schema"]["pattern"]


def _failing_app(exc: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return app


def _wrapped(orig: Exception) -> DBAPIError:
    return DBAPIError("INSERT ...", {}, orig)


@pytest.mark.parametrize(
    "exc",
    [
        OverflowError("Python int too large to convert to SQLite INTEGER"),
        _wrapped(asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")),
        _wrapped(asyncpg.exceptions.UntranslatableCharacterError("\\u0000 cannot be converted")),
        _wrapped(asyncpg.exceptions._base.DataError("value out of int64 range")),
    ],
    ids=["overflow", "nul", "untranslatable", "int64"],
)
async def test_a_value_the_database_refuses_answers_400(exc: Exception) -> None:
    transport = httpx.ASGITransport(_failing_app(exc), raise_app_exceptions=False)
    async with httpx.AsyncClient(
        verify=tls_context(), transport=transport, base_url="http://relay"
    ) as http:
        r = await http.get("/boom")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == 100


async def test_other_database_errors_stay_internal() -> None:
    app = _failing_app(IntegrityError("INSERT ...", {}, Exception("duplicate key")))
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        verify=tls_context(), transport=transport, base_url="http://relay"
    ) as http:
        r = await http.get("/boom")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == 131000
