"""The gateway's device: a ``tresen.client.Client`` of the business account.

On first run it registers as a new device of the business's number with a one-time code (the
code goes to the number like any registration's; ``codes`` asks for it). Afterwards it opens
the same device from the data folder. Its WebSocket to the relay reconnects with backoff and
drains the mailbox on every connection (the SDK does this).
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable

import httpx

from tresen.client import Client
from tresen.client.api import RelayError
from tresen.core.clock import Clock
from tresen.core.errors import ErrorCode
from tresen.core.logging import get_logger
from tresen.gateway.settings import GatewaySettings

__all__ = ["CodeSource", "GatewayNotRegistered", "open_device"]

log = get_logger("tresen.gateway.link")

CodeSource = Callable[[str], Awaitable[str]]
"""Given the number a code was just sent to, the code (typed by someone, or caught)."""

DEVICE_NAME = "gateway"


class GatewayNotRegistered(RuntimeError):
    """The gateway has no device yet and no way to get a registration code."""


async def open_device(
    settings: GatewaySettings,
    key: bytes,
    codes: CodeSource | None,
    *,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Client:
    """The gateway's registered device, registering it first when needed.

    A device the relay no longer knows (a new relay database, or the device was removed) is
    registered afresh when ``codes`` is given.
    """
    folder = settings.device_dir
    if (folder / "client.db").exists():
        client = Client.open(
            folder,
            settings.relay_url,
            key=key,
            clock=clock,
            transport=transport,
            offline_outbox=False,
            # What the relay hands over is acknowledged once the gateway has recorded it.
            confirm_events=True,
        )
        try:
            if client.registered:
                me = await client.api.me()
                if settings.phone is not None and me["phone"] != settings.phone:
                    raise GatewayNotRegistered(
                        f"this data folder holds a device of {me['phone']}, not of {settings.phone}"
                    )
                return client
        except RelayError as exc:
            if exc.code != ErrorCode.INVALID_TOKEN:
                await client.close()
                raise
            log.warning("the relay no longer knows this gateway's device; registering again")
        except BaseException:
            await client.close()
            raise
        await client.close()
        if codes is None:
            raise GatewayNotRegistered(
                "the relay no longer knows this gateway's device; run it again with a way to "
                "enter the registration code"
            )
        shutil.rmtree(folder)
    if settings.phone is None:
        raise GatewayNotRegistered("set the business's number (--phone or TRESEN_GATEWAY_PHONE)")
    if codes is None:
        raise GatewayNotRegistered("the gateway is not registered yet and cannot ask for a code")
    client = Client.open(
        folder,
        settings.relay_url,
        key=key,
        clock=clock,
        transport=transport,
        offline_outbox=False,
        confirm_events=True,
    )
    try:
        await client.request_code(settings.phone)
        code = await codes(settings.phone)
        await client.register(settings.phone, code, DEVICE_NAME)
    except BaseException:
        await client.close()
        raise
    log.info("gateway registered", account_id=client.account_id, device_id=client.device_id)
    return client
