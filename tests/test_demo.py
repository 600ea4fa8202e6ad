"""The demo airline's bot file and its systems: what ``tresen up`` runs (its conversation
with a customer is tested in ``tests/cli/test_up.py``)."""

from __future__ import annotations

import re
import zlib
from datetime import date

import httpx
import pytest

from tresen.core.clock import ManualClock
from tresen.core.http import tls_context
from tresen.demo import DEMO_BOT, SYSTEMS_URL
from tresen.demo_passes import BoardingPass, bcbp, boarding_pass_pdf
from tresen.demo_systems import build_systems_app, pass_of
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
    return httpx.AsyncClient(verify=tls_context(), transport=transport, base_url="http://systems")


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


def inflated(pdf: bytes) -> bytes:
    """The page content of a PDF, its compressed streams inflated."""
    streams = re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.DOTALL)
    return b"\n".join(zlib.decompress(s) for s in streams if s[:1] == b"x")


def qr_rows(content: bytes) -> int:
    """How many distinct rows of filled squares the page draws (the QR code's dark rows)."""
    rects = re.findall(rb"([\d.]+) ([\d.]+) ([\d.]+) ([\d.-]+) re f", content)
    return len({y for _x, y, _w, _h in rects})


async def test_the_airline_systems_print_a_boarding_pass_with_its_qr_code(
    systems: httpx.AsyncClient,
) -> None:
    async with systems:
        found = (await systems.get("/bookings/K7Q2ZP/boarding-pass")).json()
        assert found["pdf"] == "http://systems/bookings/K7Q2ZP/boarding-pass.pdf"
        r = await systems.get("/bookings/K7Q2ZP/boarding-pass.pdf")
        other = await systems.get("/bookings/Z9Y8X7/boarding-pass.pdf")
        missing = await systems.get("/bookings/ABCDEF/boarding-pass.pdf")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == 'attachment; filename="boarding-pass-K7Q2ZP.pdf"'
    assert r.content.startswith(b"%PDF-")
    assert r.content.rstrip().endswith(b"%%EOF")
    assert len(r.content) < 8 * 1024  # small enough to travel inside a message
    page = inflated(r.content)
    shown = pass_of(found)
    for text in (shown.passenger, shown.flight, shown.seat, shown.gate, "K7Q2ZP"):
        assert f"({text})".encode("latin-1") in page, text
    assert qr_rows(page) > 20  # the code is drawn, module by module
    assert other.content != r.content
    assert missing.status_code == 404


def test_the_qr_code_holds_the_pass_as_an_iata_bar_coded_boarding_pass() -> None:
    bp = BoardingPass(
        passenger="Zoë Müller-Łukasz",
        booking="k7q2zp",
        flight="TA100",
        origin="BER",
        origin_city="Berlin",
        destination="LIS",
        destination_city="Lisbon",
        day=date(2026, 12, 5),
        departure="10:15",
        boarding="09:40",
        gate="B12",
        seat="7C",
        group=2,
        sequence=17,
    )
    code = bcbp(bp)
    assert len(code) == 60  # the mandatory items of format M1
    assert code[:2] == "M1"
    assert code[2:22] == "MULLER-LUKASZ/ZOE   "
    assert code[22:30] == "EK7Q2ZP "
    assert code[30:36] == "BERLIS"
    assert code[36:44] == "TA 0100 "
    assert code[44:47] == "339"  # 5 December is day 339
    assert code[47:52] == "Y007C"
    assert code[52:60] == "0017 100"
    page = inflated(boarding_pass_pdf(bp))
    assert "(Zoë Müller-Lukasz)".encode("latin-1") in page  # accents kept where the font has them
