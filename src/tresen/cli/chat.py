"""``tresen chat``: the customer's end-to-end encrypted chat, interactive or scriptable.

Without a subcommand (or with ``open``) it starts the terminal app; ``register``, ``send``,
``listen``, ``choose``, ``safety``, ``trust``, ``business``, ``businesses``, ``consents``,
``revoke``, ``optin``, ``optout``, ``block``, ``unblock`` and ``report`` do one thing each and
suit scripts: results go to standard output (``--json`` for machines), explanations and errors to
standard error.

Exit codes: 0 done, 1 an error (the relay's code and message, or what is missing), 2 a usage
error, 3 a peer's identity keys changed (compare safety numbers, then ``trust``), 4 ``listen``
timed out before ``--count`` messages arrived.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import msgspec
import typer
from rich.console import Console
from rich.markup import escape

from tresen.client.api import RelayError
from tresen.client.business import Business, BusinessSummary
from tresen.client.choices import (
    Choice,
    interactive_choices,
    interactive_text,
    pick,
    quick_reply_choices,
    template_text,
)
from tresen.client.consent import BusinessConsents, ConsentRecord
from tresen.client.events import (
    Connected,
    ConsentChanged,
    DecryptionFailed,
    DeviceAdded,
    Disconnected,
    Drained,
    Event,
    IdentityChanged,
    KeysReplenished,
    MessageEvent,
    StatusChanged,
    TypingStarted,
)
from tresen.client.lock import FolderInUse
from tresen.client.sdk import Client, IdentityNotTrusted, NotRegistered, OperatorKeyMismatch
from tresen.client.store import Trust
from tresen.client.templates import TemplateRejected, check_template_message
from tresen.core.errors import ErrorCode
from tresen.core.logging import configure_logging
from tresen.crypto import CryptoError
from tresen.crypto.certificates import CertificateError
from tresen.crypto.consent import ALL_SCOPES, ConsentScope
from tresen.wire.business import BusinessCategory
from tresen.wire.e2e import (
    ButtonReply,
    Interactive,
    InteractiveReply,
    Media,
    Reaction,
    Template,
    Text,
    Unsupported,
)
from tresen.wire.templates import RenderedTemplate

__all__ = [
    "EXIT_IDENTITY_CHANGED",
    "EXIT_TIMED_OUT",
    "app",
    "default_data_dir",
    "identity_explanation",
]

EXIT_IDENTITY_CHANGED = 3
EXIT_TIMED_OUT = 4

app = typer.Typer(
    help="Your end-to-end encrypted chats: the terminal app (no subcommand) and scriptable "
    "commands.",
    invoke_without_command=True,
)

err = Console(stderr=True, highlight=False, soft_wrap=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="TRESEN_CHAT_DIR",
        help="Folder of this device's keys, sessions and messages.",
        show_default="~/.local/share/tresen/chat",
        file_okay=False,
    ),
]
RelayOption = Annotated[
    str | None,
    typer.Option(
        "--relay",
        envvar="TRESEN_RELAY_URL",
        help="Relay URL, e.g. https://relay.example.com (default: the one this data folder "
        "was registered with).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
PeerOption = Annotated[
    str, typer.Option("--with", help="The other person's phone number (+49...) or account id.")
]
PeerArgument = Annotated[
    str,
    typer.Argument(help="The other person's or business's phone number (+49...) or account id."),
]
BusinessArgument = Annotated[
    str,
    typer.Argument(
        help="The business: its phone number (+49...), account id, or name as `tresen chat "
        "consents` lists it."
    ),
]
ScopeOption = Annotated[
    list[ConsentScope] | None,
    typer.Option(
        "--scope",
        case_sensitive=False,
        help="utility (order updates, codes) or marketing (offers); repeat for both (the default).",
    ),
]


class ReportReason(StrEnum):
    SPAM = "spam"
    OFFENSIVE = "offensive"
    SCAM = "scam"
    UNWANTED = "unwanted"
    OTHER = "other"


T = TypeVar("T")


class ChatFailure(Exception):
    """Ends a command with a message on standard error and an exit code; never a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tresen" / "chat"


def _run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` and turn every expected failure into a clear message and exit code."""
    try:
        return asyncio.run(_explained(main))
    except ChatFailure as failure:
        err.print(f"[red]error:[/red] {escape(failure.message)}")
        raise typer.Exit(failure.exit_code) from None


async def _explained(main: Callable[[], Awaitable[T]]) -> T:
    try:
        return await main()
    except IdentityNotTrusted as exc:
        raise ChatFailure(identity_explanation(exc.account_id), EXIT_IDENTITY_CHANGED) from None
    except RelayError as exc:
        from tresen.client.tui import relay_error_text

        who = "the other side"
        hint = "run `tresen chat unblock` with their number"
        raise ChatFailure(f"the relay refused: {relay_error_text(exc, who, hint)}") from None
    except httpx.HTTPError as exc:
        raise ChatFailure(f"cannot reach the relay: {exc or type(exc).__name__}") from None
    except NotRegistered as exc:
        raise ChatFailure(str(exc)) from None
    except CryptoError as exc:
        raise ChatFailure(f"end-to-end encryption refused: {exc}") from None


def identity_explanation(who: str) -> str:
    return (
        f"the security keys of {who} changed. They may have reinstalled "
        "Tresen, or someone may be intercepting the chat. Compare the safety number "
        f"(`tresen chat safety --with {who}`) with them in person or on a call; if it "
        f"matches, accept the new keys with `tresen chat trust --with {who}`."
    )


def _options(
    ctx: typer.Context, data_dir: Path | None, relay: str | None
) -> tuple[Path, str | None]:
    """The data folder and relay URL, given after the subcommand or before it."""
    parent = ctx.parent.params if ctx.parent is not None else {}
    folder = data_dir or parent.get("data_dir") or default_data_dir()
    return Path(folder).expanduser(), relay or parent.get("relay")


@asynccontextmanager
async def _client(
    folder: Path, relay: str | None, *, registered: bool = True, operator_key: str | None = None
) -> AsyncIterator[Client]:
    if registered and not (folder / "client.db").exists():
        raise ChatFailure(
            f"no device is registered in {folder}; run `tresen chat register --phone +49... "
            "--relay URL` first (or pass --data-dir)"
        )
    try:
        client = Client.open(folder, relay, operator_key=operator_key)
    except NotRegistered:
        raise ChatFailure(
            f"no relay is known for {folder}; pass --relay URL (or set TRESEN_RELAY_URL)"
        ) from None
    except OperatorKeyMismatch as exc:
        raise ChatFailure(f"{exc}; a client of another operator needs its own --data-dir") from None
    except FolderInUse as exc:
        # Two processes on one session state would break its conversations for good.
        raise ChatFailure(
            f"{exc}; close it first (a device's data folder is used by one process at a time)"
        ) from None
    except CertificateError as exc:
        raise ChatFailure(f"--operator-key: {exc}") from None
    except CryptoError as exc:
        # A wrong TRESEN_CLIENT_KEY, or a key file that is not this folder's.
        raise ChatFailure(f"cannot open the data in {folder}: {exc}") from None
    try:
        if registered and not client.registered:
            raise ChatFailure(
                f"the device in {folder} is not registered yet; run `tresen chat register "
                "--phone +49...` first"
            )
        yield client
    finally:
        await client.close()


def _configure_logging() -> None:
    # Warnings (a rejected message, a relay error) go to standard error, apart from results.
    configure_logging("warning")


@app.callback()
def chat(ctx: typer.Context, data_dir: DataDirOption = None, relay: RelayOption = None) -> None:
    """Without a subcommand: open the interactive app."""
    if ctx.invoked_subcommand is None:
        _open_app((data_dir or default_data_dir()).expanduser(), relay)


@app.command(name="open")
def open_app(ctx: typer.Context, data_dir: DataDirOption = None, relay: RelayOption = None) -> None:
    """Open the interactive app: chats on the left, the open chat on the right."""
    _open_app(*_options(ctx, data_dir, relay))


def _open_app(folder: Path, relay: str | None) -> None:
    from tresen.client.tui import ChatApp

    async def main() -> None:
        async with _client(folder, relay, registered=False) as client:
            with (folder / "chat.log").open("a") as log:
                # The terminal belongs to the app: warnings go to a file beside the data.
                configure_logging("warning", stream=log)
                await ChatApp(client).run_async()

    _run(main)


@app.command()
def register(
    ctx: typer.Context,
    phone: Annotated[str, typer.Option("--phone", help="Your phone number, e.g. +4915112345678.")],
    code: Annotated[
        str | None,
        typer.Option("--code", help="The code from the SMS (skips requesting a new one)."),
    ] = None,
    request_only: Annotated[
        bool,
        typer.Option("--request-only", help="Only request the code; register later with --code."),
    ] = False,
    device_name: Annotated[
        str | None, typer.Option("--device-name", help="How your other devices list this one.")
    ] = None,
    operator_key: Annotated[
        str | None,
        typer.Option(
            "--operator-key",
            # Not TRESEN_OPERATOR_KEY: on a relay host that names the secret key-encryption
            # key, which must never end up pinned (and stored) as a public key here.
            envvar="TRESEN_OPERATOR_PUBLIC_KEY",
            help="Your operator's public key (base64), to pin instead of trusting the one the "
            "relay names. Only certificates it signs earn a business the ✓.",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register this device for your phone number: request a code, then enter it.

    A number that already has an account gets a new device of that account. Prints the
    fingerprint of the operator key this device pinned: compare it with your operator's.
    """
    _configure_logging()

    async def main() -> None:
        folder, relay_url = _options(ctx, data_dir, relay)
        async with _client(
            folder, relay_url, registered=False, operator_key=operator_key
        ) as client:
            if client.registered:
                raise ChatFailure(
                    f"this data folder already holds device {client.device_id} of "
                    f"{client.phone or client.account_id}; use another --data-dir"
                )
            the_code = code
            if the_code is None:
                lifetime = await client.request_code(phone)
                if request_only:
                    err.print(
                        f"A code was sent to {escape(phone)} (valid for {lifetime // 60} "
                        "minutes). Then run: tresen chat register --phone "
                        f"{escape(phone)} --code CODE"
                    )
                    return
                the_code = typer.prompt(f"Code sent to {phone}", err=True).strip()
            name = device_name if device_name is not None else f"tresen chat on {platform.node()}"
            await client.register(phone, the_code, name)
            fingerprint = client.operator_fingerprint
            if as_json:
                _print_json(
                    {
                        "account_id": client.account_id,
                        "device_id": client.device_id,
                        "phone": client.phone,
                        "operator_fingerprint": fingerprint,
                        "operator_key_configured": operator_key is not None,
                    }
                )
            else:
                _print_line(
                    f"Registered {client.phone}: account {client.account_id}, "
                    f"device {client.device_id}"
                )
                _print_line(f"Operator key fingerprint: {fingerprint}")
            if operator_key is None:
                err.print(
                    "The operator key was learned from the relay: compare its fingerprint with "
                    "the one your operator publishes. If they differ, the ✓ of businesses on "
                    "this device does not come from your operator."
                )

    _run(main)


@app.command()
def send(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Phone number (+49...) or account id.")],
    text: Annotated[str, typer.Option("--text", help="The message.")],
    reply_to: Annotated[
        str | None, typer.Option("--reply-to", help="Message id this one answers.")
    ] = None,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send one text message; prints its message id."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            account_id = await client.resolve(to)
            try:
                sent = await client.send_text(account_id, text, reply_to=reply_to)
            except IdentityNotTrusted:
                who = await client.phone_of(account_id) or to
                raise ChatFailure(
                    "nothing was sent: " + identity_explanation(who), EXIT_IDENTITY_CHANGED
                ) from None
            except RelayError as exc:
                if exc.code != ErrorCode.BLOCKED_BY_YOU:
                    raise
                raise ChatFailure(
                    f"nothing was sent: you blocked {to}; run `tresen chat unblock {to}` to "
                    "write again"
                ) from None
            if sent.consent is not None:
                # STOP or START typed to a business: what it changed, or that it did not.
                err.print(escape(sent.consent.confirmation))
            if as_json:
                record: dict[str, Any] = {
                    "message_id": sent.message_id,
                    "chat": sent.chat,
                    "server_ms": sent.server_ms,
                }
                if sent.consent is not None:
                    record["consent"] = _consent_changed(sent.consent)
                _print_json(record)
            else:
                print(sent.message_id, flush=True)

    _run(main)


@app.command()
def listen(
    ctx: typer.Context,
    as_json: JsonOption = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Exit after this many messages.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="Exit after this many seconds.")
    ] = None,
    mark_read: Annotated[
        bool,
        typer.Option("--mark-read", help="Tell senders their messages were read once printed."),
    ] = False,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
) -> None:
    """Connect and print what arrives: messages, delivered, read and failed ticks, warnings.

    Runs until Ctrl+C, ``--count`` messages or ``--timeout`` seconds. With ``--json`` every
    event is one JSON object on its own line. Exits 4 when ``--timeout`` ends it before
    ``--count`` messages arrived.
    """
    _configure_logging()

    async def main() -> int:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            client.start()
            try:
                async with asyncio.timeout(timeout):
                    await _print_events(client, as_json, count, mark_read=mark_read)
            except TimeoutError:
                return EXIT_TIMED_OUT if count is not None else 0
            return 0

    try:
        code = _run(main)
    except KeyboardInterrupt:
        code = 0  # Ctrl+C is how a listener is meant to stop
    raise typer.Exit(code)


async def _print_events(
    client: Client, as_json: bool, count: int | None, *, mark_read: bool
) -> None:
    messages = 0
    checked: set[str] = set()
    async for event in client.events():
        rendered = None
        if isinstance(event, MessageEvent):
            await _check_once(client, event.chat, checked)
            rendered = await _rendering(client, event)
        if as_json:
            _print_json(await _event_record(client, event, rendered))
        else:
            await _print_event(client, event, rendered)
        if isinstance(event, MessageEvent):
            if mark_read and not event.outgoing:
                await client.mark_read(event.chat, [event.message_id])
            messages += 1
            if count is not None and messages >= count:
                return


async def _rendering(client: Client, event: MessageEvent) -> RenderedTemplate | None:
    """A template message as its operator-signed template renders it: as the client checked
    it on arrival, or (one this account sent from another device) from the template book."""
    if event.template is not None or not isinstance(event.payload, Template):
        return event.template
    try:
        template = await client.templates.template(int(event.payload.template_id))
        return check_template_message(
            template, event.payload, sender=event.sender, template_ref=None
        )
    except (TemplateRejected, RelayError, httpx.HTTPError, CryptoError) as exc:
        err.print(f"warning: template message {event.message_id} not rendered: {escape(str(exc))}")
        return None


async def _who(client: Client, account_id: str) -> str:
    if account_id == client.account_id and client.phone:
        return client.phone
    return await client.phone_of(account_id) or account_id


async def _check_once(client: Client, chat: str, checked: set[str]) -> None:
    """Check a business chat never checked before (its first message), so that its name and
    tick are known; a failure leaves the plain business label."""
    if chat in checked or not client.is_business(chat):
        return
    checked.add(chat)
    known = client.known_business(chat)
    if known is not None and known.checked_ms == 0:
        try:
            await client.business(chat)
        except (RelayError, httpx.HTTPError, CryptoError) as exc:
            err.print(f"warning: could not check the business {escape(chat)}: {escape(str(exc))}")


def _chat_fields(client: Client, chat: str) -> dict[str, Any]:
    """Whether a chat is with a business, and whether this device's last check of the
    operator's certificate earned it the tick (``None``: never checked)."""
    known = client.known_business(chat)
    if known is None:
        return {"business": False, "verified": False, "business_name": None}
    return {
        "business": True,
        "verified": known.verified if known.checked_ms else None,
        "business_name": known.display_name,
    }


async def _chat_name(client: Client, chat: str) -> str:
    """The phone number, with the business's name and label for a business chat."""
    phone = await _who(client, chat)
    known = client.known_business(chat)
    if known is None:
        return phone
    label = "Business ✓" if known.verified else "Business"
    return (
        f"{known.display_name} [{label}] ({phone})" if known.display_name else f"{phone} [{label}]"
    )


def _payload_fields(payload: object) -> dict[str, Any]:
    if isinstance(payload, Text):
        fields: dict[str, Any] = {"type": "text", "text": payload.text}
        if payload.context is not None:
            fields["reply_to"] = payload.context.message_id
        return fields
    if isinstance(payload, Reaction):
        return {"type": "reaction", "reaction_to": payload.message_id, "emoji": payload.emoji}
    if isinstance(payload, Unsupported):
        return {"type": "unsupported", "tag": payload.tag, "version": payload.v}
    if isinstance(payload, Media):
        return {"type": "media", "kind": str(payload.kind), "caption": payload.caption}
    if isinstance(payload, Template):
        return {"type": "template"}
    if isinstance(payload, Interactive):
        fields = {
            "type": "interactive",
            "text": interactive_text(payload),
            "interactive": {
                "type": str(payload.type),
                "header": payload.header,
                "body": payload.body,
                "footer": payload.footer,
                "button": payload.button,
            },
            "options": [_option(c) for c in interactive_choices(payload)],
        }
        if payload.context is not None:
            fields["reply_to"] = payload.context.message_id
        return fields
    if isinstance(payload, InteractiveReply):
        return {
            "type": "interactive_reply",
            "text": payload.title,
            "reply_to": payload.message_id,
            "reply": {
                "kind": str(payload.kind),
                "id": payload.id,
                "title": payload.title,
                "description": payload.description,
            },
        }
    if isinstance(payload, ButtonReply):
        return {
            "type": "button_reply",
            "text": payload.text,
            "reply_to": payload.message_id,
            "payload": payload.payload,
        }
    tag = getattr(getattr(payload, "__struct_config__", None), "tag", None)
    return {"type": str(tag or type(payload).__name__.lower())}


def _option(choice: Choice) -> dict[str, Any]:
    """One option of a message, as ``tresen chat choose`` takes it (its ``number`` or
    ``id``)."""
    return {
        "number": choice.number,
        "id": choice.id,
        "title": choice.title,
        "description": choice.description,
        "section": choice.section,
        "button_index": choice.button_index,
    }


def _template_fields(payload: Template, rendered: RenderedTemplate | None) -> dict[str, Any]:
    """A template message's rendered text (``None`` if it could not be rendered: the content
    is never shown otherwise), which template it is and its quick replies."""
    return {
        "text": None if rendered is None else rendered.text(),
        "template": {
            "id": payload.template_id,
            "name": payload.name,
            "category": None if rendered is None else str(rendered.category),
        },
        "options": [] if rendered is None else [_option(c) for c in quick_reply_choices(rendered)],
    }


async def _event_record(
    client: Client, event: Event, rendered: RenderedTemplate | None = None
) -> dict[str, Any]:
    if isinstance(event, MessageEvent):
        payload = event.payload
        return {
            "event": "message",
            "message_id": event.message_id,
            "chat": event.chat,
            "chat_phone": await _who(client, event.chat),
            **_chat_fields(client, event.chat),
            "from": await _who(client, event.sender),
            "from_device": event.sender_device,
            "outgoing": event.outgoing,
            "text": payload.text if isinstance(payload, Text) else None,
            **_payload_fields(payload),
            **(_template_fields(payload, rendered) if isinstance(payload, Template) else {}),
            "server_ms": event.server_ms,
        }
    if isinstance(event, StatusChanged):
        pricing = event.pricing
        return {
            "event": "status",
            "message_id": event.message_id,
            "chat": event.chat,
            **_chat_fields(client, event.chat),
            "status": str(event.status),
            "server_ms": event.server_ms,
            "pricing": None if pricing is None else msgspec.to_builtins(pricing),
            "error_code": event.error_code,
            "error": event.error,
        }
    if isinstance(event, IdentityChanged):
        return {
            "event": "identity_changed",
            "account_id": event.account_id,
            "phone": await _who(client, event.account_id),
            "device_id": event.device_id,
        }
    if isinstance(event, DeviceAdded):
        return {
            "event": "device_added",
            "account_id": event.account_id,
            "phone": await _who(client, event.account_id),
            "device_id": event.device_id,
        }
    if isinstance(event, DecryptionFailed):
        return {
            "event": "decryption_failed",
            "message_id": event.message_id,
            "from": await _who(client, event.sender),
            "from_device": event.sender_device,
            "reason": event.reason,
        }
    if isinstance(event, KeysReplenished):
        return {"event": "keys_replenished", "one_time_keys": event.one_time_keys}
    if isinstance(event, ConsentChanged):
        return _consent_changed(event)
    if isinstance(event, TypingStarted):
        return {
            "event": "typing",
            "chat": event.chat,
            "chat_phone": await _who(client, event.chat),
            **_chat_fields(client, event.chat),
            "message_id": event.message_id,
            "until_ms": event.until_ms,
        }
    if isinstance(event, Disconnected):
        return {"event": "disconnected", "reason": event.reason}
    if isinstance(event, Connected):
        return {"event": "connected"}
    assert isinstance(event, Drained)
    return {"event": "drained"}


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S")


def _consent_changed(event: ConsentChanged) -> dict[str, Any]:
    return {
        "event": "consent_changed",
        "business": event.business,
        "business_name": event.business_name,
        "scopes": list(event.scopes),
        "state": event.state,
        "keyword": event.keyword,
        "confirmation": event.confirmation,
        "failed": event.failed,
    }


def _summary(payload: object, rendered: RenderedTemplate | None = None) -> str:
    if isinstance(payload, Template):
        if rendered is None:
            return f"[template {payload.name}, not shown: it could not be checked]"
        return f"[template · {str(rendered.category).lower()}] " + template_text(rendered).replace(
            "\n", " / "
        )
    if isinstance(payload, Interactive):
        kind = "buttons" if payload.type == "button" else "list"
        return f"[{kind}] " + " / ".join(
            line.strip() for line in interactive_text(payload).splitlines()
        )
    if isinstance(payload, InteractiveReply | ButtonReply):
        return f"↩ {_payload_fields(payload)['text']} [to {payload.message_id}]"
    fields = _payload_fields(payload)
    if fields["type"] == "text":
        return str(fields["text"])
    if fields["type"] == "reaction":
        return f"[reacted {fields['emoji'] or '(removed)'} to {fields['reaction_to']}]"
    if fields["type"] == "unsupported":
        return "[a message this version cannot show; update Tresen]"
    return f"[{fields['type']}]"


async def _print_event(
    client: Client, event: Event, rendered: RenderedTemplate | None = None
) -> None:
    if isinstance(event, MessageEvent):
        peer = await _chat_name(client, event.chat)
        arrow = f"you → {peer}" if event.outgoing else f"{peer} →"
        _print_line(f"{_clock(event.server_ms)} {arrow} {_summary(event.payload, rendered)}")
        choosable = isinstance(event.payload, Interactive) or (
            rendered is not None and quick_reply_choices(rendered)
        )
        if choosable and not event.outgoing:
            who = await _who(client, event.chat)
            _print_line(f"  answer: tresen chat choose {who} {event.message_id} NUMBER")
    elif isinstance(event, TypingStarted):
        _print_line(f"{await _chat_name(client, event.chat)} is typing…")
    elif isinstance(event, StatusChanged):
        why = "" if event.error is None else f": {event.error} ({event.error_code})"
        _print_line(f"{event.status} {event.message_id} ({await _who(client, event.chat)}){why}")
    elif isinstance(event, IdentityChanged):
        who = await _who(client, event.account_id)
        _print_line(f"warning: {identity_explanation(who)}")
    elif isinstance(event, DeviceAdded):
        _print_line(f"{await _who(client, event.account_id)} added device {event.device_id}")
    elif isinstance(event, DecryptionFailed):
        who = await _who(client, event.sender)
        kind, _, detail = event.reason.partition(": ")
        if kind.startswith("template_"):
            reported = " and reported to the operator" if kind == "template_mismatch" else ""
            _print_line(f"warning: a template message from {who} was refused{reported} ({detail})")
        else:
            _print_line(f"warning: a message from {who} could not be decrypted ({event.reason})")
    elif isinstance(event, ConsentChanged):
        _print_line(event.confirmation)
    elif isinstance(event, Connected):
        err.print(f"connected to {escape(client.relay_url)}")
    elif isinstance(event, Disconnected):
        err.print(f"disconnected ({escape(event.reason)}); reconnecting")


@app.command()
def choose(
    ctx: typer.Context,
    peer: PeerArgument,
    message_id: Annotated[
        str, typer.Argument(help="The message that asks: its id, as `listen` prints it.")
    ],
    option: Annotated[
        str,
        typer.Argument(
            help="Your choice: its number (from 1, as `listen` shows it), its id or its title."
        ),
    ],
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a message's reply buttons, list or quick replies; prints the answer's id."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            account_id = await client.resolve(peer)
            try:
                sent = await client.choose(account_id, message_id, option)
                chosen = pick(await client.choices(message_id), option)
            except TemplateRejected as exc:
                raise ChatFailure(f"the template message cannot be checked: {exc.reason}") from None
            except ValueError as exc:
                raise ChatFailure(f"nothing was sent: {exc}") from None
            if as_json:
                _print_json(
                    {
                        "message_id": sent.message_id,
                        "chat": sent.chat,
                        "server_ms": sent.server_ms,
                        "reply_to": message_id,
                        "option": _option(chosen),
                    }
                )
            else:
                print(sent.message_id, flush=True)

    _run(main)


@app.command()
def safety(
    ctx: typer.Context,
    peer: PeerOption,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
) -> None:
    """Print the 60-digit safety number of your chat with someone.

    Compare it with theirs in person or on a call: if both show the same digits, nobody is
    in between.
    """
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            number = await client.safety_number(peer)
            print(number, flush=True)
            if client.trust_of(await client.resolve(peer)) is Trust.CHANGED:
                err.print(
                    f"Their security keys changed. If these digits match theirs, run: "
                    f"tresen chat trust --with {escape(peer)}"
                )

    _run(main)


@app.command()
def trust(
    ctx: typer.Context,
    peer: PeerOption,
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect", help="The safety number you compared; refuse if it is not the current one."
        ),
    ] = None,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
) -> None:
    """Accept someone's changed security keys, after you compared safety numbers."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            account_id = await client.resolve(peer)
            # Checking first also notices a change nobody has seen yet.
            number = await client.safety_number(account_id)
            if expect is not None and "".join(expect.split()) != "".join(number.split()):
                raise ChatFailure(
                    f"the safety number is now {number}, not the one you compared; nothing "
                    "was trusted"
                )
            if client.trust_of(account_id) is not Trust.CHANGED:
                print(f"The security keys of {peer} have not changed; nothing to accept.")
                return
            await client.trust_identity(account_id)
            print(f"Accepted the new security keys of {peer} (safety number {number}).")

    _run(main)


@app.command(name="business")
def business_profile(
    ctx: typer.Context,
    peer: Annotated[
        str, typer.Argument(help="The business's phone number (+49...) or account id.")
    ],
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a business's profile, whether it earns the ✓ and why, and its opening hours.

    The ✓ is decided on this device: only a certificate signed by the pinned operator key,
    not expired or revoked, naming the business's current name, number and devices earns it.
    """
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            try:
                business = await client.business(peer)
            except RelayError as exc:
                if exc.code != ErrorCode.UNDELIVERABLE:
                    raise
                raise ChatFailure(
                    f"{peer} is not a listed business: {exc.message} (code {exc.code})"
                ) from None
            now = client.clock.now_ms()
            if as_json:
                _print_json(_business_record(business, now))
            else:
                for line in _business_lines(business, now):
                    _print_line(line)

    _run(main)


def _business_record(business: Business, now_ms: int) -> dict[str, Any]:
    profile = business.profile
    record = {k: v for k, v in profile.to_json().items() if k != "certificate"}
    return {
        **record,
        "phone": business.phone,
        "verified": business.verified,
        "tick": str(business.tick.state),
        "tick_reason": business.tick.reason,
        "certificate_serial": business.tick.serial if business.verified else None,
        "certificate_expires_ms": business.tick.expires_ms,
        "open_now": profile.open_now(now_ms),
        "opening_status": profile.opening_status(now_ms),
        "hours_lines": profile.hours_lines() if profile.has_hours else [],
        "checked_ms": business.checked_ms,
    }


def _business_lines(business: Business, now_ms: int) -> list[str]:
    profile = business.profile
    if business.verified:
        lines = [f"{profile.display_name}  ✓ {business.tick.reason}"]
    else:
        lines = [f"{profile.display_name}  (no tick: {business.tick.reason})"]
    lines += [text for text in (profile.about, profile.description) if text]
    details = (
        ("category", profile.category),
        ("address", profile.address),
        ("e-mail", profile.email),
        ("websites", ", ".join(profile.websites)),
        ("phone", business.phone),
        ("account", profile.account_id),
    )
    lines += [f"{name + ':':<10}{value}" for name, value in details if value]
    lines.append(profile.opening_status(now_ms))
    if profile.has_hours:
        lines.append(f"hours ({profile.timezone}):")
        lines += [f"  {line}" for line in profile.hours_lines()]
    if profile.closed_dates:
        closed = ", ".join(day.isoformat() for day in profile.closed_dates)
        lines.append(f"closed on: {closed}")
    return lines


@app.command(name="businesses")
def find_businesses(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="Part of the name; empty lists all.")] = "",
    category: Annotated[
        BusinessCategory | None,
        typer.Option("--category", case_sensitive=False, help="Only this category."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=50, help="At most this many.")] = 20,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search the business directory: one business a line, ✓ where this device checked the
    operator's certificate. Open a chat with `tresen chat send --to ACCOUNT_ID`."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            found = await client.find_businesses(
                query, None if category is None else str(category), limit
            )
            if as_json:
                sys.stdout.write(
                    json.dumps([_summary_record(b) for b in found], ensure_ascii=False) + "\n"
                )
                sys.stdout.flush()
                return
            if not found:
                err.print(
                    f"No business matches {escape(repr(query))}."
                    if query
                    else "The directory lists no business."
                )
            for hit in found:
                name = f"{hit.display_name} ✓" if hit.verified else hit.display_name
                parts = [name, hit.category, hit.about, hit.account_id]
                _print_line("  ".join(part for part in parts if part))

    _run(main)


def _summary_record(hit: BusinessSummary) -> dict[str, Any]:
    return {
        "account_id": hit.account_id,
        "display_name": hit.display_name,
        "about": hit.about,
        "category": hit.category,
        "verified": hit.verified,
        "tick": str(hit.tick.state),
        "tick_reason": hit.tick.reason,
    }


# --- consent, blocks and reports ---------------------------------------------------------------


@app.command()
def consents(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
    as_json: JsonOption = False,
) -> None:
    """List every business with your consent on record: which messages it may send you
    (utility: order updates and codes; marketing: offers), and who recorded it."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            lines = await client.consents()
            if as_json:
                sys.stdout.write(
                    json.dumps([_dashboard_record(line) for line in lines], ensure_ascii=False)
                    + "\n"
                )
                sys.stdout.flush()
                return
            if not lines:
                err.print("No business has your consent on record.")
            for line in lines:
                name = line.display_name or line.account_id
                states = [
                    _consent_text(str(scope), line.consents[scope])
                    for scope in ALL_SCOPES
                    if scope in line.consents
                ]
                _print_line("  ".join([name, *states, line.account_id]))

    _run(main)


def _consent_text(scope: str, record: ConsentRecord) -> str:
    state = "on" if record.opted_in else "off"
    if record.source == "customer":
        return f"{scope} {state} (you)"
    evidence = f": {record.evidence}" if record.evidence else ""
    return f"{scope} {state} (the business{evidence})"


def _dashboard_record(line: BusinessConsents) -> dict[str, Any]:
    return {
        "account_id": line.account_id,
        "display_name": line.display_name,
        "opted_in": list(line.opted_in_scopes),
        "consents": {scope: _record_fields(r) for scope, r in line.consents.items()},
    }


def _record_fields(record: ConsentRecord) -> dict[str, Any]:
    return {
        "state": record.state,
        "source": record.source,
        "decided_ms": record.decided_ms,
        "updated_ms": record.updated_ms,
        "evidence": record.evidence,
        "evidence_ms": record.evidence_ms,
    }


async def _business_id(client: Client, business: str) -> str:
    """The account id of a phone number, an account id, or a name on the dashboard."""
    if business.startswith("+"):
        return await client.resolve(business)
    wanted = business.casefold()
    named = [
        line.account_id
        for line in await client.consents()
        if (line.display_name or "").casefold() == wanted
    ]
    if len(named) > 1:
        raise ChatFailure(
            f"several businesses on `tresen chat consents` are named {business!r}; name one by "
            "its phone number or account id"
        )
    return named[0] if named else business


def _print_consent_change(records: list[ConsentRecord], business: str, as_json: bool) -> None:
    if as_json:
        _print_json(
            {
                "business": business,
                "business_name": next((r.business_name for r in records if r.business_name), None),
                "consents": {r.scope: _record_fields(r) for r in records},
            }
        )
        return
    name = next((r.business_name for r in records if r.business_name), business)
    states = ", ".join(f"{r.scope} {'on' if r.opted_in else 'off'}" for r in records)
    _print_line(f"{name}: {states}")


def _scopes(scope: list[ConsentScope] | None) -> tuple[str, ...]:
    return tuple(str(s) for s in (scope or ALL_SCOPES))


@app.command()
def revoke(
    ctx: typer.Context,
    business: BusinessArgument,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
    as_json: JsonOption = False,
) -> None:
    """Withdraw all your consent from a business in one action: no more order updates, codes
    or offers from it (it may still answer for 24 hours after you write to it)."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            account_id = await _business_id(client, business)
            _print_consent_change(await client.revoke_all(account_id), account_id, as_json)

    _run(main)


@app.command()
def optin(
    ctx: typer.Context,
    business: BusinessArgument,
    scope: ScopeOption = None,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
    as_json: JsonOption = False,
) -> None:
    """Agree to a business's messages (signed on this device)."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            account_id = await _business_id(client, business)
            records = await client.opt_in(account_id, _scopes(scope))
            _print_consent_change(records, account_id, as_json)

    _run(main)


@app.command()
def optout(
    ctx: typer.Context,
    business: BusinessArgument,
    scope: ScopeOption = None,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
    as_json: JsonOption = False,
) -> None:
    """Withdraw your consent to a business's messages (a signed revocation)."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            account_id = await _business_id(client, business)
            records = await client.opt_out(account_id, _scopes(scope))
            _print_consent_change(records, account_id, as_json)

    _run(main)


@app.command()
def block(
    ctx: typer.Context,
    peer: PeerArgument,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
) -> None:
    """Block someone: their messages stop reaching you, and yours them, until `unblock`.
    They are not told."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            new = await client.block(peer)
            _print_line(f"Blocked {peer}." if new else f"{peer} was blocked already.")

    _run(main)


@app.command()
def unblock(
    ctx: typer.Context,
    peer: PeerArgument,
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
) -> None:
    """Unblock someone: you can write to each other again."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            await client.unblock(peer)
            _print_line(f"Unblocked {peer}.")

    _run(main)


@app.command()
def report(
    ctx: typer.Context,
    peer: PeerArgument,
    reason: Annotated[ReportReason, typer.Option("--reason", case_sensitive=False, help="Why.")],
    and_block: Annotated[bool, typer.Option("--block", help="Block them as well.")] = False,
    message_id: Annotated[
        str | None,
        typer.Option("--message-id", help="A message of theirs the report is about."),
    ] = None,
    detail: Annotated[str, typer.Option("--detail", help="A few words for the operator.")] = "",
    data_dir: DataDirOption = None,
    relay: RelayOption = None,
) -> None:
    """Report someone to your operator; a business's reports count against its quality."""
    _configure_logging()

    async def main() -> None:
        async with _client(*_options(ctx, data_dir, relay)) as client:
            await client.report(
                peer, str(reason), message_id=message_id, detail=detail, block=and_block
            )
            also = " and blocked them" if and_block else ""
            _print_line(f"Reported {peer} ({reason}){also}.")

    _run(main)


def _print_json(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
