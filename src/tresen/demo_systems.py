"""The demo airline's own systems: flight status and boarding passes over HTTP.

A business's bot answers some questions from its own systems (the bot file's ``actions:``).
``tresen up`` runs these few routes next to the relay so that the demo airline's bot has real
systems to call: a flight's status by its number, and a passenger's boarding pass by the
booking code, as data and as a PDF with the pass's QR code. The data is made up, but the same
for every run; times follow the clock.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tresen.core.clock import Clock, SystemClock
from tresen.demo_passes import BoardingPass, boarding_pass_pdf

__all__ = ["FLIGHTS", "boarding_pass", "build_systems_app", "pass_of"]

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
AIRPORTS = {
    "BER": "Berlin",
    "LIS": "Lisbon",
    "VIE": "Vienna",
    "MUC": "Munich",
    "CPH": "Copenhagen",
    "HAM": "Hamburg",
    "BCN": "Barcelona",
}
PASSENGERS = (
    "Anna Schmidt",
    "Jonas Weber",
    "Zoë Müller",
    "Mehmet Y\u0131lmaz",
    "Lucía Fernández",
    "Sofia Rossi",
    "Piotr Wiśniewski",
    "Emma Jansen",
)
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
        "passenger": PASSENGERS[digest[4] % len(PASSENGERS)],
        "flight": status,
        "seat": seat,
        "group": group,
        "sequence": int.from_bytes(digest[5:7]) % 300 + 1,
        "day": datetime.fromtimestamp(now_ms / 1000, ZONE).date().isoformat(),
        "link": f"https://air.example/bp/{code}",
    }


def pass_of(found: dict[str, Any]) -> BoardingPass:
    """The printable pass of :func:`boarding_pass`'s answer."""
    status = found["flight"]
    origin = status["from"].rsplit("(", 1)[-1].rstrip(")")
    destination = status["to"].rsplit("(", 1)[-1].rstrip(")")
    return BoardingPass(
        passenger=found["passenger"],
        booking=found["booking"],
        flight=status["number"].replace(" ", ""),
        origin=origin,
        origin_city=AIRPORTS.get(origin, origin),
        destination=destination,
        destination_city=AIRPORTS.get(destination, destination),
        day=date.fromisoformat(found["day"]),
        departure=status["expected"],
        boarding=status["boarding"],
        gate=status["gate"],
        seat=found["seat"],
        group=found["group"],
        sequence=found["sequence"],
    )


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
        pdf = request.url_for("boarding_pass_pdf", booking=found["booking"])
        return JSONResponse({**found, "pdf": str(pdf)})

    async def get_pass_pdf(request: Request) -> Response:
        found = boarding_pass(str(request.path_params["booking"]), clock.now_ms())
        if found is None:
            return JSONResponse({"error": "no such booking"}, status_code=404)
        name = f"boarding-pass-{found['booking']}.pdf"
        return Response(
            boarding_pass_pdf(pass_of(found)),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return Starlette(
        routes=[
            Route("/flights/{number}", get_flight),
            Route("/bookings/{booking}/boarding-pass", get_pass),
            Route("/bookings/{booking}/boarding-pass.pdf", get_pass_pdf, name="boarding_pass_pdf"),
        ]
    )
