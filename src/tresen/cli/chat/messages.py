"""``tresen chat`` for chatting: the app (``open``), ``register``, ``send``, ``listen``,
``choose``, ``chats`` and ``read``, and the address book (``name``, ``contacts``)."""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from tresen.cli.chat.records import (
    consent_changed_record,
    event_record,
    line_record,
    option_record,
)
from tresen.cli.chat.runner import (
    EXIT_IDENTITY_CHANGED,
    EXIT_TIMED_OUT,
    ChatFailure,
    DataDirOption,
    FolderBusy,
    JsonOption,
    RelayOption,
    Where,
    app,
    chat_command,
    default_data_dir,
    err,
    name_of,
    open_client,
    print_json,
    print_line,
    run,
)
from tresen.client.api import RelayError
from tresen.client.choices import pick, quick_reply_choices
from tresen.client.contacts import AddressBook, InvalidName
from tresen.client.events import (
    Connected,
    ConsentChanged,
    DecryptionFailed,
    DeviceAdded,
    Disconnected,
    Event,
    IdentityChanged,
    KeyTransparencyFailed,
    MessageEvent,
    MessageWaiting,
    PendingSent,
    StatusChanged,
    TypingStarted,
)
from tresen.client.handoff import HandOff, HandOffError, hand_off_send
from tresen.client.presentation import (
    PENDING_TEXT,
    WAITING_TEXT,
    business_check_failed_text,
    business_label,
    chat_lines,
    cli_hints,
    code_retry_text,
    code_sent_text,
    device_added_text,
    failure_text,
    identity_text,
    key_log_text,
    message_line,
    operator_key_text,
    relay_error_text,
    status_mark,
    transcript_line,
    unread_text,
)
from tresen.client.registration import CodeAttempts, NewFolder
from tresen.client.sdk import Client, IdentityNotTrusted
from tresen.client.store import Trust
from tresen.client.templates import TemplateRejected, check_template_message
from tresen.core.errors import ErrorCode
from tresen.core.logging import configure_logging
from tresen.crypto import CryptoError
from tresen.crypto.attachments import AttachmentError
from tresen.wire.e2e import Interactive, InvalidPayload, Template, decode_payload
from tresen.wire.templates import RenderedTemplate

__all__ = ["run_app"]

PeerArgument = Annotated[
    str,
    typer.Argument(help="The other person's or business's phone number (+49...) or account id."),
]


# --- the app and registering -------------------------------------------------------------------


async def run_app(place: Where, show: Callable[[Client], Awaitable[object]]) -> None:
    """Open the data folder's client and ``show`` it (the app). A folder that was new or
    empty is taken away again when the app ends before the device was registered."""
    folder = NewFolder(place.folder)
    registered = False
    try:
        async with open_client(place, registered=False) as client:
            try:
                await show(client)
            finally:
                registered = client.registered
    finally:
        if not registered:
            folder.discard()


def _terminal_app(place: Where) -> Callable[[Client], Awaitable[object]]:
    async def show(client: Client) -> None:
        from tresen.client.tui import ChatApp

        with (place.folder / "chat.log").open("a") as log:
            # The terminal belongs to the app: warnings go to a file beside the data.
            configure_logging("warning", stream=log)
            # A script's ``tresen chat send`` meanwhile goes out through the app.
            handoff = HandOff(client, place.folder)
            await handoff.start()
            try:
                await ChatApp(client).run_async()
            finally:
                await handoff.close()

    return show


@app.callback()
def chat(ctx: typer.Context, data_dir: DataDirOption = None, relay: RelayOption = None) -> None:
    """Without a subcommand: open the interactive app."""
    if ctx.invoked_subcommand is None:
        place = Where((data_dir or default_data_dir()).expanduser(), relay)
        run(lambda: run_app(place, _terminal_app(place)))


@chat_command(name="open", opens_client=False)
async def open_app(place: Where) -> None:
    """Open the interactive app: chats on the left, the open chat on the right."""
    await run_app(place, _terminal_app(place))


@chat_command(opens_client=False)
async def register(
    place: Where,
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
    as_json: JsonOption = False,
) -> None:
    """Register this device for your phone number: request a code, then enter it.

    A wrong code may be typed again, a few times. A data folder made for registering is
    removed again if it fails or is interrupted. A number that already has an account gets a
    new device of that account. Prints the fingerprint of the operator key this device
    pinned: compare it with your operator's.
    """
    folder = NewFolder(place.folder)
    kept = False  # a code requested for later, or a device registered: the folder stays
    try:
        async with open_client(place, registered=False, operator_key=operator_key) as client:
            if client.registered:
                raise ChatFailure(
                    f"this data folder already holds device {client.device_id} of "
                    f"{client.phone or client.account_id}; use another --data-dir"
                )
            if code is None:
                lifetime = await client.request_code(phone)
                if request_only:
                    kept = True
                    err.print(
                        f"{escape(code_sent_text(phone, lifetime))} Then run: tresen chat "
                        f"register --phone {escape(phone)} --code CODE"
                    )
                    return
            name = device_name if device_name is not None else f"tresen chat on {platform.node()}"
            try:
                await _verify(client, phone, code, name)
            finally:
                kept = client.registered
            _print_registered(client, as_json=as_json, configured=operator_key is not None)
    finally:
        if not kept:
            folder.discard()


async def _verify(client: Client, phone: str, code: str | None, device_name: str) -> None:
    """Register with ``code``, or with codes asked for on the terminal: a wrong one is
    asked for again, a few times, without a new code being sent."""
    attempts = CodeAttempts()
    typed = code or typer.prompt(f"Code sent to {phone}", err=True).strip()
    while True:
        try:
            await client.register(phone, typed, device_name)
            return
        except RelayError as exc:
            left = attempts.retry(exc)
            if code is not None or not left:
                raise
            err.print(code_retry_text(left))
        typed = typer.prompt(f"Code sent to {phone}", err=True).strip()


def _print_registered(client: Client, *, as_json: bool, configured: bool) -> None:
    fingerprint = client.operator_fingerprint
    if as_json:
        print_json(
            {
                "account_id": client.account_id,
                "device_id": client.device_id,
                "phone": client.phone,
                "operator_fingerprint": fingerprint,
                "operator_key_configured": configured,
            }
        )
    else:
        print_line(
            f"Registered {client.phone}: account {client.account_id}, device {client.device_id}"
        )
        print_line(f"Operator key fingerprint: {fingerprint}")
    if not configured:
        # Learned from the relay on first use: only the person can compare it.
        err.print(f"The operator key was learned from the relay. {operator_key_text(fingerprint)}")


# --- sending and receiving ---------------------------------------------------------------------


@chat_command(opens_client=False)
async def send(
    place: Where,
    to: Annotated[str, typer.Option("--to", help="Phone number (+49...) or account id.")],
    text: Annotated[
        str | None, typer.Option("--text", help="The message (with --file: its caption).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="A file to send encrypted: a photo, document, voice note or video.",
            exists=True,
            dir_okay=False,
            readable=True,
            resolve_path=True,
        ),
    ] = None,
    reply_to: Annotated[
        str | None, typer.Option("--reply-to", help="Message id this one answers.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send one text message or file; prints its message id.

    While the app (or ``listen``) has the data folder open, the message is handed to it and
    goes out over its sessions. While the relay cannot be reached, a text waits in the outbox
    (⏱) and goes out, in order, the next time the client connects or sends; a file is not
    sent then (try again).
    """
    if text is None and file is None:
        raise ChatFailure("give --text, --file or both (the text is then the file's caption)")
    try:
        async with open_client(place) as client:
            await _send_here(client, to, text, reply_to, as_json, file)
            return
    except FolderBusy as busy:
        try:
            handed = await hand_off_send(place.folder, to, text, reply_to, file)
        except HandOffError as exc:
            if exc.listening:
                raise ChatFailure(f"nothing was sent: {exc}") from None
            raise busy from None
    err.print("Sent through the app that has this data folder open.")
    _print_sent(
        handed["message_id"], handed["chat"], handed["server_ms"], handed["pending"], None, as_json
    )


async def _send_here(
    client: Client,
    to: str,
    text: str | None,
    reply_to: str | None,
    as_json: bool,
    file: Path | None = None,
) -> None:
    account_id = await client.resolve(to)
    try:
        if file is not None:
            sent = await client.send_file(account_id, file, caption=text, reply_to=reply_to)
        else:
            assert text is not None
            sent = await client.send_text(account_id, text, reply_to=reply_to)
    except (AttachmentError, InvalidPayload) as exc:
        code = f" ({exc.code})" if isinstance(exc, AttachmentError) else ""
        raise ChatFailure(f"nothing was sent: {exc}{code}") from None
    except IdentityNotTrusted as exc:
        who = await client.phone_of(account_id) or to
        why = key_log_text if exc.reason is Trust.KEY_TRANSPARENCY else identity_text
        raise ChatFailure(
            "nothing was sent. " + why(who, cli_hints(who)), EXIT_IDENTITY_CHANGED
        ) from None
    except RelayError as exc:
        if exc.code != ErrorCode.BLOCKED_BY_YOU:
            raise
        reason = relay_error_text(exc, to, cli_hints(to))
        raise ChatFailure(f"nothing was sent: {reason}") from None
    if sent.consent is not None:
        # STOP or START typed to a business: what it changed, or that it did not.
        err.print(escape(sent.consent.confirmation))
    _print_sent(sent.message_id, sent.chat, sent.server_ms, sent.pending, sent.consent, as_json)


def _print_sent(
    message_id: str,
    chat: str,
    server_ms: int,
    pending: bool,
    consent: ConsentChanged | None,
    as_json: bool,
) -> None:
    if pending:
        err.print(escape(PENDING_TEXT))
    if as_json:
        record: dict[str, Any] = {"message_id": message_id, "chat": chat, "server_ms": server_ms}
        if pending:
            record["pending"] = True
        if consent is not None:
            record["consent"] = consent_changed_record(consent)
        print_json(record)
    else:
        print_line(message_id)


@chat_command(stopped_by_ctrl_c=True)
async def listen(
    client: Client,
    as_json: JsonOption = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Exit after this many messages.")
    ] = None,
    within: Annotated[
        float | None, typer.Option("--timeout", min=0, help="Exit after this many seconds.")
    ] = None,
    mark_read: Annotated[
        bool,
        typer.Option("--mark-read", help="Tell senders their messages were read once printed."),
    ] = False,
) -> int:
    """Connect and print what arrives: messages, delivered, read and failed ticks, warnings.

    Runs until Ctrl+C, ``--count`` messages or ``--timeout`` seconds. With ``--json`` every
    event is one JSON object on its own line. Exits 4 when ``--timeout`` ends it before
    ``--count`` messages arrived.
    """
    client.start()
    # A script's ``tresen chat send`` meanwhile goes out through this process.
    handoff = HandOff(client, client.store.folder)
    await handoff.start()
    try:
        async with asyncio.timeout(within):
            await _print_events(client, as_json, count, mark_read=mark_read)
    except TimeoutError:
        return EXIT_TIMED_OUT if count is not None else 0
    finally:
        await handoff.close()
    return 0


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
            print_json(await event_record(client, event, rendered))
        else:
            for line in await _event_lines(client, event, rendered):
                print_line(line)
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
    return await _render(client, event.message_id, event.payload, event.sender)


async def _render(
    client: Client, message_id: str, payload: Template, sender: str
) -> RenderedTemplate | None:
    try:
        template = await client.templates.template(int(payload.template_id))
        return check_template_message(template, payload, sender=sender, template_ref=None)
    except (TemplateRejected, RelayError, httpx.HTTPError, CryptoError) as exc:
        err.print(f"warning: template message {message_id} not rendered: {escape(str(exc))}")
        return None


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
            who = await name_of(client, chat)
            err.print(f"warning: {escape(business_check_failed_text(who, exc))}")


async def _chat_name(client: Client, chat: str) -> str:
    """The chat's name, with the business label and number for a business chat."""
    name = await name_of(client, chat)
    label = business_label(client.known_business(chat))
    if label is None:
        return name
    phone = client.store.peer_phone(chat)
    return f"{name} [{label}]" + (f" ({phone})" if phone and phone != name else "")


async def _event_lines(
    client: Client, event: Event, rendered: RenderedTemplate | None
) -> list[str]:
    now_ms = client.clock.now_ms()
    if isinstance(event, MessageEvent):
        stored = client.store.message(event.message_id)
        if stored is None:
            return []
        who = await _chat_name(client, event.chat)
        line = message_line(stored, who, rendered=rendered)
        lines = [transcript_line(line, who, now_ms)]
        choosable = isinstance(event.payload, Interactive) or (
            rendered is not None and quick_reply_choices(rendered)
        )
        if choosable and not event.outgoing:
            phone = await client.phone_of(event.chat) or event.chat
            lines.append(f"  answer: tresen chat choose {phone} {event.message_id} NUMBER")
        return lines
    if isinstance(event, TypingStarted):
        return [f"{await _chat_name(client, event.chat)} is typing…"]
    if isinstance(event, StatusChanged):
        mark = status_mark(event.status, event.error)
        code = "" if event.error_code is None else f" ({event.error_code})"
        who = await name_of(client, event.chat)
        return [f"{event.status} {event.message_id} to {who}: {mark}{code}"]
    if isinstance(event, IdentityChanged):
        who = await name_of(client, event.account_id)
        phone = await client.phone_of(event.account_id) or event.account_id
        return [f"warning: {identity_text(who, cli_hints(phone))}"]
    if isinstance(event, KeyTransparencyFailed):
        who = await name_of(client, event.account_id)
        phone = await client.phone_of(event.account_id) or event.account_id
        return [f"warning: {key_log_text(who, cli_hints(phone))}"]
    if isinstance(event, DeviceAdded):
        return [device_added_text(await name_of(client, event.account_id))]
    if isinstance(event, DecryptionFailed):
        return [f"warning: {failure_text(await name_of(client, event.sender), event.reason)}"]
    if isinstance(event, ConsentChanged):
        return [event.confirmation]
    if isinstance(event, MessageWaiting):
        return [f"{await _chat_name(client, event.sender)}: {WAITING_TEXT} ({event.message_id})"]
    if isinstance(event, PendingSent):
        who = await name_of(client, event.chat)
        return [f"sent {event.message_id} to {who} (it waited for the network as {event.local_id})"]
    if isinstance(event, Connected):
        err.print(f"connected to {escape(client.relay_url)}")
    elif isinstance(event, Disconnected):
        err.print(f"disconnected ({escape(event.reason)}); reconnecting")
    return []


@chat_command()
async def choose(
    client: Client,
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
    as_json: JsonOption = False,
) -> None:
    """Answer a message's reply buttons, list or quick replies; prints the answer's id."""
    account_id = await client.resolve(peer)
    try:
        sent = await client.choose(account_id, message_id, option)
        chosen = pick(await client.choices(message_id), option)
    except TemplateRejected as exc:
        raise ChatFailure(f"the template message cannot be checked: {exc.reason}") from None
    except ValueError as exc:
        raise ChatFailure(f"nothing was sent: {exc}") from None
    if as_json:
        print_json(
            {
                "message_id": sent.message_id,
                "chat": sent.chat,
                "server_ms": sent.server_ms,
                "reply_to": message_id,
                "option": option_record(chosen),
            }
        )
    else:
        print_line(sent.message_id)


# --- chats and what they hold ------------------------------------------------------------------


@chat_command()
async def chats(client: Client, as_json: JsonOption = False) -> None:
    """List the chats, newest first, with their unread messages (`read` reads them)."""
    for chat in client.store.chats():
        if not chat.account_id or chat.account_id == client.account_id:
            continue  # handled system messages, and our own account's
        name = await name_of(client, chat.account_id)
        if as_json:
            print_json(
                {
                    "account_id": chat.account_id,
                    "name": name,
                    "phone": client.store.peer_phone(chat.account_id),
                    "business": chat.business,
                    "verified": chat.verified,
                    "unread": chat.unread,
                    "last_ms": chat.last_ms,
                }
            )
            continue
        label = business_label(client.known_business(chat.account_id))
        parts = [name, f"[{label}]" if label else "", unread_text(chat.unread)]
        print_line("  ".join(part for part in (*parts, chat.account_id) if part))


@chat_command()
async def read(
    client: Client,
    peer: PeerArgument,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=200, help="At most this many, the newest.")
    ] = 20,
    as_json: JsonOption = False,
) -> None:
    """Print a chat's latest messages as stored on this device, with their ticks.

    The sender is told they were read, and the chat's unread count drops to 0.
    """
    account_id = await client.resolve(peer)
    stored = client.store.messages(account_id, limit=limit)
    rendered: dict[str, RenderedTemplate] = {}
    for message in stored:
        if message.payload is None:
            continue
        try:
            payload = decode_payload(message.payload)
        except ValueError:
            continue
        if isinstance(payload, Template):
            found = await _render(client, message.message_id, payload, message.sender_account)
            if found is not None:
                rendered[message.message_id] = found
    who = await _chat_name(client, account_id)
    now_ms = client.clock.now_ms()
    for line in chat_lines(stored, who, rendered):
        if as_json:
            print_json(line_record(line))
        else:
            print_line(transcript_line(line, who, now_ms))
    await client.mark_read(account_id)


@chat_command()
async def name(
    client: Client,
    peer: Annotated[
        str, typer.Argument(metavar="NUMBER", help="The phone number (+49...) to name.")
    ],
    new_name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="The name to show instead.")
    ] = None,
    forget: Annotated[
        bool, typer.Option("--forget", help="Remove the name; the number shows again.")
    ] = False,
) -> None:
    """Show a name instead of a phone number, here and in the app (on this device only).

    Without NAME: print the name saved for the number. Businesses are named by their profile.
    """
    account_id = await client.resolve(peer)
    phone = await client.phone_of(account_id)
    if phone is None or account_id == client.account_id:
        raise ChatFailure(f"{peer} is not someone else's phone number")
    book = AddressBook(client.store, client.clock)
    if forget:
        removed = book.forget(phone)
        print_line(f"{phone} shows as its number again." if removed else f"{phone} has no name.")
    elif new_name is None:
        print_line(book.name(phone) or await name_of(client, account_id))
    else:
        try:
            contact = book.set_name(phone, new_name)
        except InvalidName as exc:
            raise ChatFailure(f"nothing was saved: {exc}") from None
        print_line(f"{phone} shows as {contact.name}.")


@chat_command()
async def contacts(client: Client, as_json: JsonOption = False) -> None:
    """List the names saved on this device (`name` saves one)."""
    saved = AddressBook(client.store, client.clock).contacts()
    if not saved and not as_json:
        err.print("No names are saved; `tresen chat name +49... NAME` saves one.")
    for contact in saved:
        if as_json:
            print_json({"phone": contact.phone, "name": contact.name})
        else:
            print_line(f"{contact.name}  {contact.phone}")
