"""Composition root of a gateway: ``build_gateway_app(settings)``.

The app's lifespan opens the database (running migrations), opens or registers the
business's device, and starts the receive loop, the group-commit writer, the webhook
dispatcher and the template watcher; it stops them in reverse order.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from tresen.client import Client
from tresen.core.clock import Clock, SystemClock
from tresen.core.db import Database
from tresen.core.metrics import HttpMetrics, Sampler, metrics_response, serve_metrics_port
from tresen.core.ratelimit import TokenBuckets
from tresen.core.readiness import (
    NotReady,
    Probe,
    ReadyPublic,
    database_probe,
    readiness,
    schema_probe,
)
from tresen.gateway import migrate
from tresen.gateway.automation.engine import Automation
from tresen.gateway.automation.http_actions import ActionCaller
from tresen.gateway.automation.store import AutomationStore
from tresen.gateway.billing.service import Bills
from tresen.gateway.campaigns import (
    CampaignProblem,
    CampaignRepo,
    CampaignRunner,
    Campaigns,
    GatewaySender,
    Recipient,
    Tracking,
)
from tresen.gateway.cloudapi.errors import install_error_handlers
from tresen.gateway.cloudapi.fastpath import MessagesFastPath
from tresen.gateway.cloudapi.routes import router
from tresen.gateway.customers.answering import ExportAnswers
from tresen.gateway.customers.device_store import forget_device_peer
from tresen.gateway.customers.service import CustomerData
from tresen.gateway.database import app_secret, gateway_database, gateway_key, open_database
from tresen.gateway.inbox import api as inbox_api
from tresen.gateway.inbox import api_bills as inbox_bills_api
from tresen.gateway.inbox import api_campaigns as inbox_campaigns_api
from tresen.gateway.inbox import api_lists as inbox_lists_api
from tresen.gateway.inbox import pages as inbox_pages
from tresen.gateway.inbox.actions import Actions
from tresen.gateway.inbox.agents import Agents
from tresen.gateway.inbox.assignment import Assignment
from tresen.gateway.inbox.conversations import Conversations
from tresen.gateway.inbox.events import Hub
from tresen.gateway.inbox.files import Previews
from tresen.gateway.inbox.message_templates import MessageTemplates
from tresen.gateway.inbox.presence import Typing, customer_typing
from tresen.gateway.inbox.quick import QuickReplies
from tresen.gateway.inbox.reports import Reports
from tresen.gateway.inbox.search import Search
from tresen.gateway.inbox.streams import StreamLimits, Streams
from tresen.gateway.inbox.tokens import AgentTokens
from tresen.gateway.media.library import MediaLibrary
from tresen.gateway.media.links import LinkFetcher
from tresen.gateway.media.store import MediaStore
from tresen.gateway.metrics import GatewayMetrics
from tresen.gateway.recorder import Op, Recorder
from tresen.gateway.relay_link import CodeSource, open_device
from tresen.gateway.retention.service import Retention
from tresen.gateway.service import Gateway
from tresen.gateway.settings import GatewaySettings
from tresen.gateway.store import GatewayStore, Writer
from tresen.gateway.subscribers import Subscribers, build_subscribers
from tresen.gateway.subscribers.model import ListNotFound
from tresen.gateway.webhooks.dispatcher import WebhookDispatcher
from tresen.gateway.webhooks.outbox import Outbox

__all__ = ["build_gateway_app"]

LOGIN_ADDRESS_CONTEXT = b"gateway-login-address"


def login_address_key(key: bytes) -> bytes:
    """The key under which failed sign-ins name their address (derived from the gateway's
    storage key: the same across restarts, and never stored)."""
    return hmac.new(key, LOGIN_ADDRESS_CONTEXT, hashlib.sha256).digest()


def graph_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document without FastAPI's 422 answers: invalid parameters are
    answered 400 in the Graph error envelope (documented on every route), never 422."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        schemas = schema.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = schema
    return app.openapi_schema


def client_phone_number_id(client: Client) -> str:
    assert client.phone is not None
    return client.phone.lstrip("+")


class ListAudience:
    """A campaign's subscriber lists: the subscribed members, after the list was checked
    against the relay's consent records (someone who withdrew consent is no recipient)."""

    def __init__(self, subscribers: Callable[[], Subscribers | None]) -> None:
        self._subscribers = subscribers

    async def recipients(self, list_id: int) -> list[Recipient]:
        subscribers = self._subscribers()
        if subscribers is None:
            return []
        try:
            await subscribers.lists.reconcile(list_id)
            members = await subscribers.segments.recipients({"list": list_id})
        except ListNotFound:
            raise CampaignProblem(
                "no_list", "there is no subscriber list {list}", list=list_id
            ) from None
        return [
            Recipient(phone=m.phone, account_id=m.account_id, attributes=dict(m.attributes))
            for m in members
        ]


def campaigns_of(
    gateway: Gateway,
    db: Database,
    repo: CampaignRepo,
    clock: Clock,
    settings: GatewaySettings,
    lists: ListAudience | None = None,
) -> Campaigns:
    """The campaign actions and their runner, sending through ``gateway``."""
    sender = GatewaySender(gateway, gateway.metrics)

    async def last_inbound(account_id: str) -> int | None:
        contact = await gateway.store.contact(account_id)
        return None if contact is None else contact.last_inbound_ms

    async def account_of(phone: str) -> str:
        return await gateway.resolve_phone(phone, phone)

    runner = CampaignRunner(
        repo,
        sender,
        gateway.client.api.quality,
        last_inbound,
        clock,
        settings.campaigns,
        time_zone=lambda: gateway.time_zone,
    )
    return Campaigns(
        db,
        repo,
        runner,
        sender,
        clock,
        templates=gateway.all_templates,
        rate_card=gateway.client.api.rate_card,
        account_of=account_of,
        phone_of=gateway.client.phone_of,
        lists=lists,
    )


def build_gateway_app(
    settings: GatewaySettings,
    *,
    codes: CodeSource | None = None,
    clock: Clock | None = None,
    relay_transport: httpx.AsyncBaseTransport | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    action_transport: httpx.AsyncBaseTransport | None = None,
    link_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The gateway as an ASGI app; ``codes`` answers the registration code on first run."""
    clock = clock or SystemClock()
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            key = gateway_key(settings)
            db = await open_database(settings)
            stack.push_async_callback(db.dispose)
            client = await open_device(settings, key, codes, clock=clock, transport=relay_transport)
            stack.push_async_callback(client.close)
            metrics.watch_relay_link(lambda: client.connection.ws is not None)
            app.state.probes = {
                "database": database_probe(db),
                "schema": schema_probe(db, migrate.current_revision, migrate.head_revision()),
                "relay": _relay_probe(client),
            }
            store = GatewayStore(db, clock)
            writer = Writer(db)
            writer.start()
            stack.push_async_callback(writer.close)
            outbox = Outbox(db, key, clock, settings.webhooks)
            dispatcher = WebhookDispatcher(
                outbox,
                clock=clock,
                settings=settings.webhooks,
                transport=webhook_transport,
                keep_delivered_s=settings.webhooks.keep_delivered_s,
                metrics=metrics,
            )
            dispatcher.start()
            stack.push_async_callback(dispatcher.close)
            hub = Hub()
            campaign_repo = CampaignRepo(db)
            tracking = Tracking(campaign_repo)
            tracking.start()
            stack.push_async_callback(tracking.close)

            def recorded(ops: Sequence[Op]) -> None:
                hub.recorded(ops)
                tracking.recorded(ops)

            recorder = Recorder(
                lambda: gateway_database(settings),
                store,
                outbox,
                waba_id=settings.resolved_waba_id,
                phone_number_id=client_phone_number_id(client),
                on_events=dispatcher.wake,
                on_recorded=recorded,
            )
            media = MediaLibrary(
                MediaStore(db),
                clock,
                settings.media,
                settings.media_dir,
                attachments=client.attachments,
                relay=client.api,
                fetcher=LinkFetcher(
                    timeout_s=settings.media.link_timeout_s,
                    redirects=settings.media.link_redirects,
                    allowed_networks=settings.media.link_allowed_networks,
                    transport=link_transport,
                ),
            )
            media.start()
            stack.push_async_callback(media.close)
            customers = CustomerData(
                db,
                clock,
                business=lambda: {"account_id": client.account_id, "phone": client.phone},
                delete_media=media.delete,
                forget_peer=lambda account_id: forget_device_peer(client, account_id),
                on_erased=store.forget_contact,
            )
            bills = Bills(
                db,
                clock,
                business=lambda: client.device.require_account(),
                statement=client.statement,
            )
            gateway = Gateway(
                settings,
                client,
                store,
                writer,
                outbox,
                recorder,
                clock,
                media,
                wake=dispatcher.wake,
                app_secret=await app_secret(db, key, settings.app_secret),
                on_data_request=ExportAnswers(client, customers).answer,
                on_delivery_receipt=bills.keep,
                metrics=metrics,
            )
            await recorder.start()
            stack.push_async_callback(recorder.close)
            gateway.start()
            stack.push_async_callback(gateway.close)
            lists = ListAudience(lambda: getattr(app.state, "subscribers", None))
            app.state.campaigns = campaigns_of(gateway, db, campaign_repo, clock, settings, lists)
            app.state.campaign_tracking = tracking
            app.state.campaigns.runner.start()
            stack.push_async_callback(app.state.campaigns.runner.close)
            app.state.gateway = gateway
            app.state.customers = customers
            app.state.bills = bills
            app.state.dispatcher = dispatcher
            inbox = settings.inbox
            app.state.inbox_agents = Agents(
                db,
                clock,
                session_max_s=inbox.session_max_s,
                session_idle_s=inbox.session_idle_s,
                max_failures=inbox.max_failures,
                throttle_window_s=inbox.throttle_window_s,
                max_agents=inbox.max_agents,
                address_key=login_address_key(key),
            )
            app.state.inbox_tokens = AgentTokens(db, clock, app.state.inbox_agents)
            app.state.inbox_hub = hub
            app.state.inbox_previews = Previews()
            app.state.inbox_templates = MessageTemplates(gateway, clock)
            app.state.inbox_conversations = Conversations(
                db, clock, hub, templates=app.state.inbox_templates
            )
            app.state.inbox_quick_replies = QuickReplies(db, clock)
            app.state.inbox_actions = Actions(
                gateway,
                app.state.inbox_conversations,
                app.state.inbox_agents,
                app.state.inbox_quick_replies,
            )
            app.state.inbox_reports = Reports(db, clock)
            assignment = Assignment(db, clock, app.state.inbox_conversations, follow_messages=False)
            assignment.start()
            stack.push_async_callback(assignment.close)
            app.state.inbox_assignment = assignment
            app.state.automation_store = AutomationStore(db, clock, key)
            app.state.subscribers = build_subscribers(db, clock, gateway)
            engine = Automation(
                gateway,
                app.state.automation_store,
                app.state.inbox_conversations,
                clock=clock,
                forward=assignment.customer_wrote,
                caller=ActionCaller(transport=action_transport),
                agent_bot_transport=action_transport,
                subscriptions=app.state.subscribers,
            )
            gateway.on_received = engine.received
            stack.push_async_callback(engine.close)
            app.state.automation = engine
            app.state.inbox_search = Search(db, clock)
            app.state.inbox_streams = Streams(
                hub,
                app.state.inbox_agents,
                StreamLimits(
                    per_agent=inbox.live_streams_per_agent,
                    total=inbox.live_streams,
                    heartbeat_s=inbox.live_heartbeat_s,
                    session_check_s=inbox.live_session_check_s,
                    max_s=inbox.live_stream_max_s,
                ),
            )
            app.state.inbox_typing = Typing(hub, clock, tell_customer=customer_typing(gateway))
            retention = Retention(
                db,
                clock,
                settings,
                clear_payloads=client.store.clear_payloads,
                erase_inactive=customers.erase_inactive,
            )
            await retention.start()
            stack.push_async_callback(retention.close)
            app.state.retention = retention
            metrics.watch_inbox(lambda: app.state.inbox_streams.agents_connected)

            async def sample_webhooks() -> None:
                pending, oldest_s = await outbox.backlog()
                metrics.webhook_backlog.set(pending)
                metrics.webhook_oldest_pending.set(oldest_s)

            if settings.metrics.enabled:
                sampler = Sampler("webhooks", settings.metrics.sample_s, sample_webhooks)
                sampler.start()
                stack.push_async_callback(sampler.close)
            stack.enter_context(serve_metrics_port(metrics.registry, settings.metrics))
            yield

    app = FastAPI(
        title="Tresen gateway",
        summary="The WhatsApp Cloud API's REST shapes for one business, end-to-end encrypted",
        version="1",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.api_buckets = TokenBuckets(
        clock, settings.api.requests_per_second, settings.api.request_burst
    )
    app.state.max_request_bytes = settings.api.max_request_bytes
    install_error_handlers(app)
    # The inbox first: the Cloud API's routes start with a path parameter (the version).
    app.state.inbox_secure_cookies = settings.inbox.secure_cookies
    app.state.inbox_api_buckets = TokenBuckets(
        clock, settings.inbox.api_requests_per_second, settings.inbox.api_request_burst
    )
    # Before the inbox API's router, whose last route answers every other path under it.
    app.include_router(inbox_campaigns_api.creating)
    app.include_router(inbox_campaigns_api.router)
    app.include_router(inbox_lists_api.router)
    app.include_router(inbox_lists_api.imports)
    app.include_router(inbox_bills_api.router)
    app.include_router(inbox_api.router)
    app.include_router(inbox_pages.router)
    app.add_exception_handler(inbox_pages.FormTooLarge, inbox_pages.form_too_large)
    app.mount("/inbox/static", StaticFiles(directory=inbox_pages.STATIC_DIR), name="inbox-static")
    app.include_router(router)
    install_operations(app, settings, metrics)
    app.openapi = lambda: graph_openapi(app)  # type: ignore[method-assign]
    app.add_middleware(MessagesFastPath, state=app.state)
    # Outermost: it counts the fast path's answers too.
    app.add_middleware(HttpMetrics, requests=metrics.http_requests)
    return app


def install_operations(app: FastAPI, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
    """``/health`` (liveness), ``/ready`` (readiness) and ``/metrics``: for the operator's
    tools, so outside the Cloud API's OpenAPI document (docs/operations.md describes them)."""

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        """Liveness: the process answers (no I/O)."""
        return {"status": "ok"}

    @app.get("/ready", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        """Readiness: the database answers within 2 s, its schema is this version's, and the
        WebSocket to the relay is open."""
        probes: dict[str, Probe] | None = getattr(request.app.state, "probes", None)
        if probes is None:
            found = ReadyPublic(status="not ready", checks={"gateway": "starting"})
        else:
            found = await readiness(probes, needs={"schema": "database"})
        status = 200 if found.status == "ready" else 503
        return JSONResponse(found.model_dump(), status_code=status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        return metrics_response(request, metrics.registry, settings.metrics, settings.host)


def _relay_probe(client: Client) -> Probe:
    async def probe() -> None:
        if client.connection.ws is None:
            raise NotReady("no connection to the relay (reconnecting)")

    return probe
