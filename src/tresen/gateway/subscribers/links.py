"""The link and QR code that open the business's chat with ``START <KEYWORD>`` typed in."""

from __future__ import annotations

import io
from urllib.parse import quote

import segno

__all__ = ["deep_link", "qr_png", "qr_svg"]


def deep_link(relay_url: str, business_account_id: str, keyword: str) -> str:
    """The web app's chat with the business, the keyword message prefilled (the customer
    still sends it: the subscription starts with their own message)."""
    text = quote(f"START {keyword}", safe="")
    return f"{relay_url.rstrip('/')}/app/#/chat/{quote(business_account_id, safe='')}?text={text}"


def _code(link: str) -> segno.QRCode:
    # Medium error correction: a printed code stays readable with a smudge or a crease.
    return segno.make_qr(link, error="m", boost_error=False)


def qr_svg(link: str, *, scale: int = 4) -> bytes:
    out = io.BytesIO()
    _code(link).save(out, kind="svg", scale=scale, border=4, xmldecl=False)
    return out.getvalue()


def qr_png(link: str, *, scale: int = 8) -> bytes:
    out = io.BytesIO()
    _code(link).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()
