"""The gateway takes many received messages at once: messages of different customers share
the recorder's commits, and each conversation keeps its order."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from gateway_support import (
    become_business,
    customer,
    gateway_settings,
    relay_codes,
    run_gateway,
    subscribed_inbox,
)
from support import Backend, RunningRelay, drop_schema

from tresen.client import Client


async def never_registers(number: str) -> str:
    raise AssertionError(f"the gateway asked for a registration code for {number} again")


async def test_a_backlog_of_many_customers_is_recorded_in_shared_commits_and_in_order(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    settings, schema = gateway_settings(relay, backend, tmp_path)
    customers: list[Client] = []
    try:
        async with AsyncExitStack() as stack:
            async with run_gateway(settings, codes=relay_codes(relay)) as first:
                await become_business(relay, first)
                phone, token = first.gateway.phone, first.token
                # Subscribed before the backlog exists: events recorded while nobody is
                # subscribed go nowhere, and the second start records it at once.
                inbox = await stack.enter_async_context(subscribed_inbox(first))
            # While the gateway is down its customers write, turn by turn; the relay keeps it.
            customers = [await customer(relay, tmp_path / f"c{i}") for i in range(4)]
            sent: dict[str, list[str]] = {c.phone or "": [] for c in customers}
            for turn in range(8):
                for index, client in enumerate(customers):
                    text = f"customer {index}, message {turn}"
                    await client.send_text(phone, text)
                    sent[client.phone or ""].append(text)
            total = sum(len(texts) for texts in sent.values())

            second = await stack.enter_async_context(
                run_gateway(settings, codes=never_registers, token=token)
            )
            arrived: dict[str, list[str]] = {p: [] for p in sent}
            for _ in range(total):
                [message] = (await inbox.next_message("text"))["messages"]
                arrived["+" + message["from"]].append(message["text"]["body"])
            assert arrived == sent  # every conversation in the order its customer wrote
            # Taken one at a time, each message would have waited for a commit of its own.
            assert second.gateway.recorder.commits < total
    finally:
        for client in customers:
            await client.close()
        if schema is not None:
            await drop_schema(schema)
