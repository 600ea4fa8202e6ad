"""The demo airline's own systems: flight status and boarding passes over HTTP.

A business's bot answers some questions from its own systems (the bot file's ``actions:``).
``tresen up`` runs these few routes next to the relay so that the demo airline's bot has real
systems to call: a flight's status by its number, and a passenger's boarding pass by the
booking code. The data is made up, but the same for every run; times follow the clock.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tresen.core.clock import Clock, SystemClock

__all__ = ["FLIGHTS", "build_systems_app"]

ZONE = ZoneInfo("Europe/Berlin")
FLIGHTS: dict[str, tuple[str, str, str, int]] = {
    # number: (from, to, departure, minutes late)
    "TA100": ("Berlin (BER)", "Lisbon (LIS)", "10:15", 0),
    "TA101": ("Lisbon (LIS)", "Berlin (BER)", "15:05", 0),
    "TA104": ("Berlin (BER)", "Vienna (VIE)", "12:40", 45),
    "TA105": ("Vienna (VIE)", "Berlin (BER)", "16:20", 45),
    "TA210": ("Munich (MUC)", "Copenhagen (CPH)", "08:30", 0),
    "TA211": ("Copenhagen (CPH)", "Munich (MUC)", "11:50", 0),
    "TA330": ("Hamburg (HAM)", "Barcelona (BCN)", "18:55", 20),
}
NUMBER = re.compile(r"[A-Za-z]{2}\s*\d{1,4}")
BOOKING = re.compile(r"[A-Za-z0-9]{6}")


def _time(at: datetime) -> str:
    return at.strftime("%H:%M")


def flight(number: str, now_ms: int) -> dict[str, Any] | None:
    """A flight's status today (``None``: no such flight)."""
    key = re.sub(r"\s+", "", number).upper()
    if key not in FLIGHTS:
        return None
    origin, destination, departure, late = FLIGHTS[key]
    today = datetime.fromtimestamp(now_ms / 1000, ZONE).date()
    hour, minute = (int(x) for x in departure.split(":"))
    planned = datetime(today.year, today.month, today.day, hour, minute, tzinfo=ZONE)
    expected = planned + timedelta(minutes=late)
    boarding = expected - timedelta(minutes=35)
    gate = f"{'ABC'[sum(map(ord, key)) % 3]}{sum(map(ord, key)) % 20 + 1}"
    shown = f"{key[:2]} {key[2:]}"
    if late:
        en = f"is delayed by {late} minutes: departure {_time(expected)} instead of {departure}"
        de = f"hat {late} Minuten Verspätung: Abflug {_time(expected)} statt {departure} Uhr"
    else:
        en = f"is on time: departure {departure}"
        de = f"ist pünktlich: Abflug {departure} Uhr"
    return {
        "number": shown,
        "from": origin,
        "to": destination,
        "scheduled": departure,
        "expected": _time(expected),
        "delay_minutes": late,
        "gate": gate,
        "boarding": _time(boarding),
        "en": f"{shown} {origin} → {destination} {en}, boarding {_time(boarding)} at gate {gate}.",
        "de": (
            f"{shown} {origin} → {destination} {de}, Boarding {_time(boarding)} Uhr an Gate {gate}."
        ),
    }


def boarding_pass(booking: str, now_ms: int) -> dict[str, Any] | None:
    """The boarding pass of a booking code (made up from the code; ``None``: not valid)."""
    code = booking.upper()
    if not BOOKING.fullmatch(code) or not any(c.isdigit() for c in code):
        return None
    digest = hashlib.sha256(code.encode()).digest()
    numbers = sorted(FLIGHTS)
    chosen = numbers[digest[0] % len(numbers)]
    status = flight(chosen, now_ms)
    assert status is not None
    seat = f"{digest[1] % 30 + 1}{'ABCDEF'[digest[2] % 6]}"
    group = digest[3] % 4 + 1
    return {
        "booking": code,
        "flight": status,
        "seat": seat,
        "group": group,
        "link": f"https://air.example/bp/{code}",
    }


def build_systems_app(clock: Clock | None = None) -> Starlette:
    clock = clock or SystemClock()

    async def get_flight(request: Request) -> JSONResponse:
        number = str(request.path_params["number"])
        if not NUMBER.fullmatch(number):
            return JSONResponse({"error": "not a flight number"}, status_code=400)
        found = flight(number, clock.now_ms())
        if found is None:
            return JSONResponse({"error": "no such flight today"}, status_code=404)
        return JSONResponse(found)

    async def get_pass(request: Request) -> JSONResponse:
        found = boarding_pass(str(request.path_params["booking"]), clock.now_ms())
        if found is None:
            return JSONResponse({"error": "no such booking"}, status_code=404)
        return JSONResponse(found)

    return Starlette(
        routes=[
            Route("/flights/{number}", get_flight),
            Route("/bookings/{booking}/boarding-pass", get_pass),
        ]
    )
