"""``build_app(settings)``: the relay's HTTP and WebSocket application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.metrics import HttpMetrics, Sampler, metrics_response, serve_metrics_port
from tresen.core.readiness import (
    NotReady,
    Probe,
    ReadyPublic,
    database_probe,
    readiness,
    schema_probe,
)
from tresen.core.settings import Settings
from tresen.relay import migrate
from tresen.relay.accounts.api import router as accounts_router
from tresen.relay.accounts.sms import SmsSender
from tresen.relay.attachments.api import router as attachments_router
from tresen.relay.attachments.api import streams_body
from tresen.relay.billing.api import router as billing_router
from tresen.relay.businesses.api import router as businesses_router
from tresen.relay.consent.api import router as consent_router
from tresen.relay.context import RelayContext, build_context
from tresen.relay.http import BodyLimit, ErrorPublic, error_doc, errors, install_error_handlers
from tresen.relay.keys.api import router as keys_router
from tresen.relay.mailbox.api import router as mailbox_router
from tresen.relay.mailbox.ws import router as ws_router
from tresen.relay.operator.api import router as operator_router
from tresen.relay.policy.api import router as policy_router
from tresen.relay.templates.api import router as templates_router
from tresen.relay.transparency.api import router as transparency_router
from tresen.relay.webapp.api import router as webapp_router
from tresen.relay.webapp.headers import WebAppHeaders

__all__ = ["build_app"]


def build_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sms: SmsSender | None = None,
    db: Database | None = None,
    run_migrations: bool = True,
) -> FastAPI:
    ctx = build_context(settings, clock=clock, sms=sms, db=db)
    metrics = ctx.metrics

    async def sample_mailbox() -> None:
        metrics.mailbox_entries.set(await ctx.mailbox.depth())

    sampler = Sampler("mailbox", settings.metrics.sample_s, sample_mailbox)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_migrations:
            await migrate.upgrade(ctx.db)
        try:
            # The signing key is opened (or created) before serving: a relay whose operator
            # key cannot be opened must not start.
            await ctx.operator.start()
        except BaseException:
            await ctx.db.dispose()
            raise
        await ctx.hub.cluster.start()
        await ctx.mailbox.start()
        await ctx.templates.start()
        # The first epoch (and, after an upgrade, the log of every existing account) is
        # published before serving, so look-ups always find one.
        await ctx.transparency.start()
        await ctx.retention.start()
        try:
            # Raises when the blob storage cannot be used (an S3 bucket that is missing or
            # unreachable): the relay does not start.
            await ctx.attachments.start()
            if settings.metrics.enabled:
                sampler.start()
            with serve_metrics_port(metrics.registry, settings.metrics):
                yield
        finally:
            await sampler.close()
            await ctx.hub.close_all()
            await ctx.close()

    app = FastAPI(
        title="Tresen relay",
        version="1",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.relay = ctx
    install_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.limits.max_frame_bytes,
        read_timeout_s=settings.limits.body_read_timeout_s,
        streamed=streams_body,
    )
    app.add_middleware(WebAppHeaders)
    for router in (
        accounts_router,
        keys_router,
        mailbox_router,
        ws_router,
        operator_router,
        businesses_router,
        templates_router,
        policy_router,
        consent_router,
        billing_router,
        attachments_router,
        transparency_router,
        webapp_router,
    ):
        app.include_router(router)

    # Outermost: it sees every answer, those of the middlewares above included.
    app.add_middleware(HttpMetrics, requests=metrics.http_requests)

    @app.get("/v1/health", tags=["meta"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers (no I/O)."""
        return {"status": "ok"}

    probes: dict[str, Probe] = {
        "database": database_probe(ctx.db),
        "schema": schema_probe(ctx.db, migrate.current_revision, migrate.head_revision()),
    }
    if ctx.hub.cluster.shared:
        probes["cluster"] = _cluster_probe(ctx)

    @app.get(
        "/v1/ready",
        tags=["meta"],
        response_model=ReadyPublic,
        responses=errors(503),
    )
    async def ready() -> ReadyPublic:
        """Readiness: the database answers within 2 s, its schema is this version's, and the
        link to the other relay nodes is up (with `cluster.nats_url`). When not, 503 with
        code 150080 and `details.checks`."""
        found = await readiness(probes, needs={"schema": "database"})
        if found.status != "ready":
            raise TresenError(ErrorCode.NOT_READY, "the relay is not ready", checks=found.checks)
        return found

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        return metrics_response(request, metrics.registry, settings.metrics, settings.host)

    install_openapi(app)
    return app


_DESCRIPTION = """The relay's HTTP API (docs/protocol.md). Every error answers
`{"error": {"code", "message", "details"}}`; invalid input answers 400 with code 100 and
`details.problems` naming each field."""


def install_openapi(app: FastAPI) -> None:
    """``/openapi.json`` as the relay really answers: the error envelope on every error
    status, 400 / 401 / 413 where input, a token or a body can be refused, and no 422 (the
    relay answers invalid input with 400)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=_DESCRIPTION, routes=app.routes
        )
        describe_errors(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe_errors(schema: dict[str, Any]) -> None:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    envelope = ErrorPublic.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(envelope.pop("$defs", {}))
    schemas["ErrorPublic"] = envelope
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            implied = []
            if operation.get("parameters") or operation.get("requestBody"):
                implied.append(400)
            if operation.get("security"):
                implied.append(401)
            if operation.get("requestBody"):
                implied.append(413)
            for status in implied:
                if str(status) not in responses:
                    responses[str(status)] = _response(error_doc(status))


def _response(doc: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": doc["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorPublic"}}},
    }
    if "headers" in doc:
        response["headers"] = doc["headers"]
    return response


def _cluster_probe(ctx: RelayContext) -> Probe:
    async def probe() -> None:
        if not ctx.hub.cluster.connected:
            raise NotReady("no connection to the NATS server of the relay nodes")

    return probe


def context_of(app: FastAPI) -> RelayContext:
    ctx: RelayContext = app.state.relay
    return ctx
