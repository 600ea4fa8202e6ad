"""The demo business that ``tresen up`` runs: Tresen Air, a verified airline.

It is an ordinary business account with one device (a ``tresen.client.Client`` in the data
folder), registered with a one-time code like any other, and verified by the operator in
process. Its device answers customers' messages with a few canned replies, so that a newcomer
has someone to talk to: the verified tick, the business label and the opening hours are all
real.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.core.errors import ErrorCode
from tresen.core.ids import AccountId
from tresen.core.logging import get_logger
from tresen.demo_systems import build_systems_app
from tresen.relay.accounts.sms import SmsSender
from tresen.relay.context import RelayContext
from tresen.relay.operator.service import OperatorPrincipal
from tresen.wire.business import Verification

__all__ = [
    "DEMO_PHONE",
    "CodeCatcher",
    "DemoBusiness",
    "DemoGateway",
    "start_demo_business",
    "start_demo_gateway",
]

log = get_logger("tresen.demo")

DEMO_PHONE = "+4930555010000"
CODE_WAIT_S = 30.0
DEMO_API_USER = "tresen up"

PROFILE: dict[str, Any] = {
    "display_name": "Tresen Air",
    "about": "Flights across Europe ✈ Demo business of this Tresen relay",
    "description": (
        "The demo airline of a Tresen relay. Ask about your flight, baggage, check-in or your "
        "boarding pass; write 'agent' to talk to a person."
    ),
    "address": "Flughafen BER, Terminal 1, 12529 Schönefeld",
    "email": "service@air.example",
    "websites": ["https://air.example"],
    "category": "TRAVEL",
    "timezone": "Europe/Berlin",
    "hours": {
        day: [["06:00", "22:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    },
    "closed_dates": [],
}


class CodeCatcher:
    """An SMS sender that hands the codes of numbers the relay itself registers (the demo
    business) to the waiting code, and passes every other code on."""

    def __init__(self, inner: SmsSender) -> None:
        self.inner = inner
        self._waiting: dict[str, asyncio.Future[str]] = {}

    def expect(self, phone: str) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[phone] = future
        return future

    async def send_code(self, phone: str, code: str) -> None:
        future = self._waiting.pop(phone, None)
        if future is None:
            await self.inner.send_code(phone, code)
        elif not future.done():
            future.set_result(code)


@dataclass
class DemoBusiness:
    client: Client
    phone: str
    display_name: str
    task: asyncio.Task[None] | None = None

    @property
    def account_id(self) -> str:
        assert self.client.account_id is not None
        return self.client.account_id

    async def receive_forever(self) -> None:
        """Take the device's messages (the relay then lets them go); the gateway's bot and
        the inbox answer customers."""
        self.client.start()
        async for _event in self.client.events():
            pass

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.client.close()


async def _registered_client(
    ctx: RelayContext, url: str, folder: Path, codes: CodeCatcher, phone: str
) -> Client:
    if (folder / "client.db").exists():
        client = Client.open(folder, url)
        try:
            if client.registered:
                await client.api.me()
                return client
        except RelayError as exc:
            if exc.code != ErrorCode.INVALID_TOKEN:
                await client.close()
                raise
        # A new relay database: the old device is unknown there, so start over.
        await client.close()
        shutil.rmtree(folder)
    client = Client.open(folder, url)
    try:
        code = codes.expect(phone)
        await client.request_code(phone)
        async with asyncio.timeout(CODE_WAIT_S):
            caught_code = await code
        await client.register(phone, caught_code, "demo")
    except BaseException:
        await client.close()
        raise
    return client


def logo_png(size: int = 256) -> bytes:
    """The demo airline's profile picture: its initials, white on the airline's blue."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (size, size), (22, 78, 140))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size * 0.42)
    draw.text((size / 2, size / 2), "TA", fill=(255, 255, 255), font=font, anchor="mm")
    draw.line((size * 0.2, size * 0.74, size * 0.8, size * 0.74), fill=(255, 196, 0), width=8)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


async def _ensure_verified(ctx: RelayContext, account_id: AccountId) -> None:
    own = await ctx.businesses.own_profile(account_id)
    if own.profile.verification != Verification.VERIFIED:
        await ctx.operator.verify(OperatorPrincipal("tresen up"), account_id)


async def start_demo_business(
    ctx: RelayContext, url: str, folder: Path, codes: CodeCatcher, phone: str = DEMO_PHONE
) -> DemoBusiness:
    """Register (first run) and verify the demo airline, and start its answering device."""
    client = await _registered_client(ctx, url, folder, codes, phone)
    try:
        await client.save_business_profile(**PROFILE)
        await client.api.set_business_picture(logo_png(), "image/png")
        await _ensure_verified(ctx, AccountId(client.account_id or ""))
    except BaseException:
        await client.close()
        raise
    demo = DemoBusiness(client, phone, str(PROFILE["display_name"]))
    demo.task = asyncio.create_task(demo.receive_forever())
    return demo


@dataclass
class DemoGateway:
    """The demo airline's gateway: its Cloud API, with a token made for this run."""

    url: str
    api_base: str
    phone_number_id: str
    waba_id: str
    token: str
    server: Any
    task: asyncio.Task[None]
    inbox_user: str = ""
    inbox_password: str = ""
    systems: Any = None
    systems_task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        self.server.should_exit = True
        await self.task
        if self.systems is not None and self.systems_task is not None:
            self.systems.should_exit = True
            await self.systems_task


async def start_demo_gateway(
    ctx: RelayContext,
    relay_url: str,
    folder: Path,
    codes: CodeCatcher,
    business: DemoBusiness,
    port: int,
) -> DemoGateway:
    """Run the demo airline's gateway (a second device of its account) next to the relay.

    Its first start registers the device, which withdraws the airline's certificate (new
    device keys); the operator in this process verifies it again. Its API token stays the
    same across runs (kept sealed with the gateway's key), until someone revokes it.
    """
    from tresen.cli.common import start_server
    from tresen.gateway.app import build_gateway_app
    from tresen.gateway.database import gateway_key
    from tresen.gateway.settings import GatewaySettings, MediaSettings

    # The airline's systems answer on this machine's loopback: its bot sends boarding passes
    # by links there, which a gateway refuses unless told otherwise.
    settings = GatewaySettings(
        data_dir=folder,
        relay_url=relay_url,
        phone=business.phone,
        port=port,
        media=MediaSettings(link_allowed_networks=["127.0.0.1/32"]),
    )
    caught = codes.expect(business.phone)

    async def code(_phone: str) -> str:
        async with asyncio.timeout(CODE_WAIT_S):
            return await caught

    systems, systems_task, systems_url = await start_server(build_systems_app(), "127.0.0.1", 0)
    app = build_gateway_app(settings, codes=code)
    try:
        server, task, url = await start_server(app, settings.host, settings.port)
    except BaseException:
        systems.should_exit = True
        await systems_task
        raise
    try:
        gateway = app.state.gateway
        await demo_bot(app.state.automation_store, systems_url)
        await _ensure_verified(ctx, AccountId(gateway.account_id))
        await _ensure_templates(ctx, gateway)
        token = await _demo_token(gateway, gateway_key(settings))
        inbox_password = await _demo_inbox_login(
            gateway, app.state.inbox_agents, gateway_key(settings)
        )
    except BaseException:
        server.should_exit = True
        await task
        systems.should_exit = True
        await systems_task
        raise
    return DemoGateway(
        url=url,
        api_base=f"{url}/v23.0",
        phone_number_id=gateway.phone_number_id,
        waba_id=gateway.waba_id,
        token=token,
        server=server,
        task=task,
        inbox_user=DEMO_INBOX_USER,
        inbox_password=inbox_password,
        systems=systems,
        systems_task=systems_task,
    )


BOARDING_PASS_TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "boarding_pass",
        "language": language,
        "category": "UTILITY",
        "components": [
            {
                "type": "HEADER",
                "format": "DOCUMENT",
                "example": {"header_handle": ["https://air.example/bp/K7Q2ZP.pdf"]},
            },
            {
                "type": "BODY",
                "text": body,
                "example": {"body_text": [["Anna", "TA 100", "BER", "LIS", "09:40", "B12", "12A"]]},
            },
            {"type": "FOOTER", "text": footer},
        ],
    }
    for language, body, footer in (
        (
            "en",
            "Hello {{1}}, check-in is complete. Your boarding pass for flight {{2}} from {{3}} "
            "to {{4}} is attached: boarding {{5}} at gate {{6}}, seat {{7}}.",
            "Show the QR code at security and at the gate.",
        ),
        (
            "de",
            "Hallo {{1}}, Ihr Check-in ist abgeschlossen. Anbei Ihre Bordkarte für Flug {{2}} "
            "von {{3}} nach {{4}}: Boarding {{5}} Uhr an Gate {{6}}, Sitz {{7}}.",
            "QR-Code an der Sicherheitskontrolle und am Gate zeigen.",
        ),
    )
]
"""The airline's boarding-pass message (a utility template whose header is the pass's PDF),
in English and German: submitted and approved by the operator on the demo's first start."""

OFFER_TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "flight_offer",
        "language": language,
        "category": "MARKETING",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": header},
            {
                "type": "BODY",
                "text": body,
                "example": {"body_text": [["Anna", "Lisbon", "79"]]},
            },
            {"type": "FOOTER", "text": footer},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": stop}]},
        ],
    }
    for language, header, body, footer, stop in (
        (
            "en",
            "This week's fares",
            "Hello {{1}}, fly to {{2}} from {{3}} EUR, one way, booked by Sunday.",
            "Reply STOP to stop offers.",
            "Stop offers",
        ),
        (
            "de",
            "Die Preise dieser Woche",
            "Hallo {{1}}, fliegen Sie nach {{2}} ab {{3}} EUR pro Strecke, gebucht bis Sonntag.",
            "Antworten Sie STOPP, um keine Angebote mehr zu erhalten.",
            "Keine Angebote",
        ),
    )
]
"""The airline's offers (a marketing template: only to customers who opted in), in English
and German, approved like the boarding pass."""


async def _ensure_templates(ctx: RelayContext, gateway: Any) -> None:
    have = {(t["name"], t["language"]): t for t in await gateway.all_templates()}
    for template in [*BOARDING_PASS_TEMPLATES, *OFFER_TEMPLATES]:
        known = have.get((template["name"], template["language"]))
        if known is None:
            known = await gateway.submit_template(template)
        if known["status"] != "APPROVED":
            await ctx.templates.approve(OperatorPrincipal("tresen up"), int(known["id"]))
            await gateway.note_template_submitted()


DEMO_TOKEN_META = "demo_api_token"  # noqa: S105 (a key of the meta table)
DEMO_TOKEN_CONTEXT = b"gateway-demo-token"


async def _demo_token(gateway: Any, key: bytes) -> str:
    """The demo's API token: the one of the last run while it is valid, else a new one.
    Tokens are stored hashed, so the demo keeps its own copy, sealed with the gateway's key,
    to print it again."""
    from tresen.crypto.secrets import SecretsError, seal, unseal
    from tresen.gateway.store import get_meta, set_meta

    db = gateway.store.db
    async with db.read() as conn:
        sealed = await get_meta(conn, DEMO_TOKEN_META)
    if sealed is not None:
        with contextlib.suppress(SecretsError):
            kept = unseal(key, sealed, context=DEMO_TOKEN_CONTEXT).decode()
            if await gateway.store.token_valid(kept):
                return kept
    await gateway.store.revoke_token(DEMO_API_USER)
    _, token = await gateway.store.create_token(DEMO_API_USER)
    sealed = seal(key, token.encode(), context=DEMO_TOKEN_CONTEXT)
    async with db.write() as conn:
        await set_meta(conn, DEMO_TOKEN_META, sealed)
    return str(token)


DEMO_INBOX_USER = "owner"
DEMO_INBOX_META = "demo_inbox_password"
DEMO_INBOX_CONTEXT = b"gateway-demo-inbox-password"


async def _demo_inbox_login(gateway: Any, agents: Any, key: bytes) -> str:
    """The demo inbox's first login: an owner whose password the demo keeps sealed (only its
    hash is in the agents table) to print it on every run, while it still signs in."""
    from tresen.crypto.secrets import SecretsError, seal, unseal
    from tresen.gateway.inbox.agents import Role
    from tresen.gateway.store import get_meta, set_meta

    db = gateway.store.db
    async with db.read() as conn:
        sealed = await get_meta(conn, DEMO_INBOX_META)
    if sealed is not None:
        with contextlib.suppress(SecretsError):
            kept = unseal(key, sealed, context=DEMO_INBOX_CONTEXT).decode()
            if await agents.check_password(DEMO_INBOX_USER, kept):
                return kept
    password = secrets.token_urlsafe(12)
    owner = await agents.by_username(DEMO_INBOX_USER)
    if owner is None:
        await agents.create(DEMO_INBOX_USER, "Tresen Air owner", Role.OWNER, password)
    else:
        await agents.set_password(owner.id, password)
    async with db.write() as conn:
        await set_meta(
            conn, DEMO_INBOX_META, seal(key, password.encode(), context=DEMO_INBOX_CONTEXT)
        )
    return password


DEMO_BOT = Path(__file__).with_name("demo_bot.yaml")
SYSTEMS_URL = "http://airline-systems.invalid"
"""Where the bot file's actions call the airline's systems; each run serves them elsewhere."""


async def demo_bot(store: Any, systems_url: str) -> None:
    """The demo airline's bot: the bot file on the first run (later runs keep what the
    business changed in the inbox), and its actions pointed at this run's systems."""
    from tresen.gateway.automation.config import AutomationSettings, parse_bot_file

    bot = parse_bot_file(DEMO_BOT.read_text().replace(SYSTEMS_URL, systems_url))
    if not await store.intents():
        await store.import_config(bot)
        await store.save_settings(
            AutomationSettings.from_json(
                {
                    "greeting": {"enabled": True},
                    "away": {"enabled": True},
                    "bot": {"mode": "faq"},
                }
            )
        )
        return
    for action in bot.actions:
        await store.put_action(action)
