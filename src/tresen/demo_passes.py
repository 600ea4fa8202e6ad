"""The demo airline's boarding passes: a one-page PDF per passenger with a QR code.

The QR code holds the pass as an IATA bar-coded boarding pass (BCBP, Resolution 792, the
mandatory items of format ``M1``), the string a gate scanner reads. The page is drawn with
fpdf2's built-in Helvetica (nothing embedded, so a pass is a few kilobytes) and the code's
modules as filled rectangles (vector, sharp at any zoom, no image to encode).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date

import segno
from fpdf import FPDF

__all__ = ["BoardingPass", "bcbp", "boarding_pass_pdf"]

_PAGE_MM = (150.0, 90.0)
_BRAND = (0, 82, 147)
_INK = (20, 24, 31)
_MUTED = (96, 104, 116)


@dataclass(frozen=True, slots=True, kw_only=True)
class BoardingPass:
    """What one passenger's pass shows. Airports are IATA codes with their city names."""

    passenger: str
    booking: str
    flight: str
    origin: str
    origin_city: str
    destination: str
    destination_city: str
    day: date
    departure: str
    boarding: str
    gate: str
    seat: str
    group: int
    sequence: int
    cabin: str = "Y"


_SPELLED = str.maketrans(
    {
        "Ł": "L",
        "ł": "l",
        "Đ": "D",
        "đ": "d",
        "Œ": "OE",
        "œ": "oe",
        "\u0131": "i",
        "Ħ": "H",
        "ħ": "h",
    }
)


def _latin1(text: str) -> str:
    """``text`` in what the built-in font shows (Latin-1): other letters lose their accents."""
    return "".join(c if ord(c) < 256 else _folded(c) for c in text)


def _folded(letter: str) -> str:
    spelled = unicodedata.normalize("NFKD", letter.translate(_SPELLED))
    kept = "".join(c for c in spelled if not unicodedata.combining(c))
    return kept.encode("latin-1", "replace").decode("latin-1")


_ASCII_SPELLED = str.maketrans({"ß": "SS", "Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "Þ": "TH"})


def _ascii(text: str) -> str:
    """``text`` in plain ASCII letters, as a bar code's name field takes it."""
    folded = unicodedata.normalize("NFKD", text.translate(_SPELLED).translate(_ASCII_SPELLED))
    kept = "".join(c for c in folded if not unicodedata.combining(c))
    return kept.encode("ascii", "replace").decode("ascii")


def _bcbp_name(passenger: str) -> str:
    """``SURNAME/GIVEN`` in upper-case ASCII, as the format writes names (20 characters)."""
    parts = _ascii(passenger).upper().replace("?", "").split()
    if not parts:
        return " " * 20
    surname, given = parts[-1], " ".join(parts[:-1])
    name = f"{surname}/{given}" if given else surname
    return name[:20].ljust(20)


def bcbp(bp: BoardingPass) -> str:
    """The mandatory items of an IATA BCBP ``M1`` string for ``bp`` (60 characters)."""
    carrier, number = bp.flight[:2], bp.flight[2:].strip()
    seat_row = "".join(c for c in bp.seat if c.isdigit())
    seat_letter = "".join(c for c in bp.seat if c.isalpha())[:1] or " "
    return (
        "M1"
        + _bcbp_name(bp.passenger)
        + "E"
        + bp.booking.upper()[:7].ljust(7)
        + bp.origin.upper()[:3]
        + bp.destination.upper()[:3]
        + carrier.upper().ljust(3)
        + number.zfill(4)[:4].ljust(5)
        + f"{bp.day.timetuple().tm_yday:03d}"
        + bp.cabin[:1]
        + f"{seat_row.zfill(3)[:3]}{seat_letter}"
        + f"{bp.sequence % 100_000:04d}".ljust(5)
        + "1"
        + "00"
    )


def boarding_pass_pdf(bp: BoardingPass) -> bytes:
    """The pass as a one-page PDF (a few kilobytes)."""
    pdf = FPDF(orientation="landscape", unit="mm", format=(_PAGE_MM[1], _PAGE_MM[0]))
    pdf.set_auto_page_break(auto=False)
    pdf.set_margin(0)
    pdf.set_creator("Tresen Air")
    pdf.set_title(_latin1(f"Boarding pass {bp.flight} {bp.passenger}"))
    pdf.add_page()
    width, height = _PAGE_MM

    pdf.set_fill_color(*_BRAND)
    pdf.rect(0, 0, width, 16, style="F")
    pdf.set_text_color(255, 255, 255)
    pdf.set_font("helvetica", "B", 15)
    pdf.text(8, 10.5, "Tresen Air")
    pdf.set_font("helvetica", "", 9)
    pdf.text(width - 58, 10.5, "BOARDING PASS / BORDKARTE")

    _label(pdf, 8, 24, "Passenger / Passagier")
    _value(pdf, 8, 29.5, _latin1(bp.passenger)[:40], size=12)

    pdf.set_font("helvetica", "B", 26)
    pdf.text(8, 44, bp.origin)
    pdf.text(56, 44, bp.destination)
    pdf.set_draw_color(*_BRAND)
    pdf.set_fill_color(*_BRAND)
    pdf.set_line_width(0.6)
    pdf.line(34, 39.5, 49, 39.5)
    pdf.polygon([(49, 37.5), (53, 39.5), (49, 41.5)], style="F")
    pdf.set_font("helvetica", "", 8)
    pdf.set_text_color(*_MUTED)
    pdf.text(8, 49, _latin1(bp.origin_city)[:24])
    pdf.text(56, 49, _latin1(bp.destination_city)[:24])

    rows = [
        [
            ("Flight / Flug", bp.flight),
            ("Date / Datum", bp.day.strftime("%d %b %Y").upper()),
            ("Departs / Abflug", bp.departure),
        ],
        [
            ("Boarding", bp.boarding),
            ("Gate", bp.gate),
            ("Seat / Sitz", bp.seat),
            ("Group / Gruppe", str(bp.group)),
        ],
    ]
    for row_index, row in enumerate(rows):
        column_mm = 90 / len(row)
        for index, (label, value) in enumerate(row):
            x, y = 8 + index * column_mm, 60 + row_index * 14
            _label(pdf, x, y, label)
            _value(pdf, x, y + 5.5, _latin1(value)[:12], size=11)

    _qr(pdf, bcbp(bp), x=width - 48, y=21, size=42)
    _label(pdf, width - 44, 67, "Booking / Buchung")
    _value(pdf, width - 44, 72.5, bp.booking.upper(), size=11)
    pdf.set_font("helvetica", "", 6.5)
    pdf.text(width - 44, 77.5, f"SEQ {bp.sequence:04d}   CLASS {bp.cabin}")
    pdf.set_text_color(*_MUTED)
    pdf.text(
        8, height - 4, "Gate closes 20 minutes before departure. / Gate schließt 20 Min. vorher."
    )
    return bytes(pdf.output())


def _label(pdf: FPDF, x: float, y: float, text: str) -> None:
    pdf.set_font("helvetica", "", 6.5)
    pdf.set_text_color(*_MUTED)
    pdf.text(x, y, text.upper())


def _value(pdf: FPDF, x: float, y: float, text: str, *, size: float) -> None:
    pdf.set_font("helvetica", "B", size)
    pdf.set_text_color(*_INK)
    pdf.text(x, y, text)


def _qr(pdf: FPDF, data: str, *, x: float, y: float, size: float) -> None:
    """``data`` as a QR code of ``size`` mm with its quiet zone: one rectangle per run of dark
    modules in a row."""
    code = segno.make_qr(data, error="m")
    rows = code.matrix
    modules = len(rows) + 8  # four modules of quiet zone on each side
    step = size / modules
    pdf.set_fill_color(0, 0, 0)
    for row_index, row in enumerate(rows):
        top = y + (row_index + 4) * step
        start: int | None = None
        for column, dark in enumerate([*row, 0]):
            if dark and start is None:
                start = column
            elif not dark and start is not None:
                pdf.rect(x + (start + 4) * step, top, (column - start) * step, step, style="F")
                start = None
