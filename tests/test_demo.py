"""The demo airline of ``tresen up``: what its bot answers, against an in-process relay."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Backend, registered_client, serve_asgi

from tresen.client import Client
from tresen.client.events import MessageEvent, StatusChanged
from tresen.client.store import MessageStatus
from tresen.core.settings import Settings
from tresen.demo import DEMO_PHONE, CodeCatcher, reply_to, start_demo_business
from tresen.relay.accounts.sms import FileSmsSender
from tresen.relay.app import build_app
from tresen.wire.e2e import Text

CUSTOMER = "+4915140000077"


@pytest.mark.parametrize("keyword", ["STOP", " stop ", "Stopp", "ABMELDEN", "START", "anmelden"])
def test_a_consent_keyword_gets_no_answer(keyword: str) -> None:
    assert reply_to(keyword, "Open now") is None


def test_other_texts_are_answered() -> None:
    assert "TA 100" in (reply_to("my flight?", "Open now") or "")
    assert "Open now" in (reply_to("When are you open?", "Open now") or "")
    assert (reply_to("Hallo", "Open now") or "").startswith("Hello from Tresen Air")
    assert (reply_to("stop sending me this", "Open now") or "").startswith("Hello")


async def next_incoming(client: Client) -> MessageEvent:
    while True:
        event = await client.next_event(30)
        if isinstance(event, MessageEvent) and not event.outgoing:
            return event


async def test_stop_as_the_first_message_is_not_answered_with_a_greeting(tmp_path: Path) -> None:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    sms_file = tmp_path / "sms.jsonl"
    settings = Settings(
        data_dir=tmp_path,
        sms_sender="file",
        sms_file=sms_file,
        limits={"code_requests_per_address": 10_000},
        **backend.settings_overrides(),
    )
    codes = CodeCatcher(FileSmsSender(sms_file))
    app = build_app(settings, sms=codes, db=backend.database())
    async with serve_asgi(app) as url:
        demo = await start_demo_business(app.state.relay, url, tmp_path / "demo", codes)
        customer = await registered_client(url, sms_file, tmp_path / "customer", CUSTOMER)
        try:
            customer.start()
            stop = await customer.send_text(DEMO_PHONE, "STOP")
            assert stop.consent is not None
            assert stop.consent.failed is None  # the customer's client confirms it
            # The bot reads the STOP and says nothing ...
            while True:
                event = await customer.next_event(30)
                assert not isinstance(event, MessageEvent) or event.outgoing, event
                if isinstance(event, StatusChanged) and event.status is MessageStatus.READ:
                    assert event.message_id == stop.message_id
                    break
            # ... and answers the next question: the first message the customer gets.
            await customer.send_text(DEMO_PHONE, "Is my flight on time?")
            answer = await next_incoming(customer)
            assert isinstance(answer.payload, Text)
            assert answer.payload.text.startswith("TA 100")
        finally:
            await customer.close()
            await demo.close()
