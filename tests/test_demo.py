"""The demo airline's bot file and its systems: what ``tresen up`` runs (its conversation
with a customer is tested in ``tests/cli/test_up.py``)."""

from __future__ import annotations

import httpx
import pytest

from tresen.core.clock import ManualClock
from tresen.demo import DEMO_BOT, SYSTEMS_URL
from tresen.demo_systems import build_systems_app
from tresen.gateway.automation.config import AnswerKind, parse_bot_file
from tresen.gateway.automation.store import checked_action


def test_the_demo_bot_file_is_complete() -> None:
    bot = parse_bot_file(DEMO_BOT.read_text().replace(SYSTEMS_URL, "http://127.0.0.1:1"))
    assert len(bot.intents) >= 10
    assert all(len(i.examples) == 3 for i in bot.intents)
    assert all(i.title.get("de") and i.title.get("en") for i in bot.intents)
    actions = {i.answer.action for i in bot.intents if i.answer.kind is AnswerKind.ACTION}
    assert actions == {"flight_status", "boarding_pass"}
    assert {checked_action(a)["name"] for a in bot.actions} == actions


@pytest.fixture
def systems() -> httpx.AsyncClient:
    clock = ManualClock(1_767_261_600_000)  # 2026-01-01 10:00 Berlin
    transport = httpx.ASGITransport(app=build_systems_app(clock))
    return httpx.AsyncClient(transport=transport, base_url="http://systems")


async def test_the_airline_systems_know_flights_and_boarding_passes(
    systems: httpx.AsyncClient,
) -> None:
    async with systems:
        late = (await systems.get("/flights/ta%20104")).json()
        assert late["delay_minutes"] == 45
        assert late["en"].startswith("TA 104 Berlin (BER) → Vienna (VIE) is delayed by 45")
        assert "Verspätung" in late["de"]
        assert (await systems.get("/flights/TA999")).status_code == 404
        assert (await systems.get("/flights/nonsense")).status_code == 400
        boarding = (await systems.get("/bookings/k7q2zp/boarding-pass")).json()
        assert boarding["booking"] == "K7Q2ZP"
        assert boarding["link"] == "https://air.example/bp/K7Q2ZP"
        # The same code gets the same pass; a code without a digit is no booking.
        again = (await systems.get("/bookings/K7Q2ZP/boarding-pass")).json()
        assert again == boarding
        assert (await systems.get("/bookings/ABCDEF/boarding-pass")).status_code == 404
