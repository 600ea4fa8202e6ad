"""The profile picture: upload as a raw JPEG or PNG body, served to any device."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from support import Device, RunningRelay

from tresen.core.errors import ErrorCode

MakeBusiness = Callable[..., Awaitable[Device]]
SetProfile = Callable[..., Awaitable[None]]

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64) + b"\xff\xd9"
LIMIT = 512 * 1024


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def upload(
    relay: RunningRelay, device: Device, data: bytes, content_type: str
) -> httpx.Response:
    return await relay.http.put(
        "/v1/business/profile/picture",
        content=data,
        headers={**device.auth, "Content-Type": content_type},
    )


async def test_a_picture_is_stored_and_served(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    business = await make_business(relay)
    customer = await relay.register()
    r = await relay.http.get(f"/v1/businesses/{business.account_id}/picture", headers=customer.auth)
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.UNDELIVERABLE

    r = await upload(relay, business, PNG, "image/png")
    assert r.status_code == 204, r.text
    r = await relay.http.get(f"/v1/businesses/{business.account_id}/picture", headers=customer.auth)
    assert r.status_code == 200
    assert r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    r = await relay.http.get(f"/v1/businesses/{business.account_id}", headers=customer.auth)
    assert r.json()["has_picture"] is True

    # A JPEG replaces it; the type parameter of the header is ignored.
    r = await upload(relay, business, JPEG, "image/jpeg; charset=binary")
    assert r.status_code == 204, r.text
    r = await relay.http.get(f"/v1/businesses/{business.account_id}/picture", headers=customer.auth)
    assert (r.content, r.headers["content-type"]) == (JPEG, "image/jpeg")

    r = await relay.http.delete("/v1/business/profile/picture", headers=business.auth)
    assert r.status_code == 204
    r = await relay.http.get("/v1/business/profile", headers=business.auth)
    assert r.json()["has_picture"] is False
    r = await relay.http.get(f"/v1/businesses/{business.account_id}/picture", headers=customer.auth)
    assert r.status_code == 404


async def test_the_bytes_must_match_the_declared_type(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    business = await make_business(relay)
    for data, content_type in (
        (PNG, "image/jpeg"),
        (JPEG, "image/png"),
        (b"<html><script>alert(1)</script></html>", "image/png"),
        (b"", "image/png"),
    ):
        r = await upload(relay, business, data, content_type)
        assert r.status_code == 400, (content_type, r.text)
        assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER
        assert error_of(r)["details"]["field"] == "picture"
    for content_type in ("image/gif", "text/html", "application/octet-stream"):
        r = await upload(relay, business, PNG, content_type)
        assert r.status_code == 400
        assert error_of(r)["details"]["field"] == "Content-Type"
    r = await relay.http.put(
        "/v1/business/profile/picture", content=PNG, headers=business.auth
    )  # no Content-Type at all
    assert r.status_code == 400
    r = await relay.http.get("/v1/business/profile", headers=business.auth)
    assert r.json()["has_picture"] is False


async def test_a_picture_is_at_most_512_kib(
    relay: RunningRelay, make_business: MakeBusiness
) -> None:
    business = await make_business(relay)
    r = await upload(relay, business, PNG + bytes(LIMIT - len(PNG)), "image/png")
    assert r.status_code == 204, r.text
    r = await upload(relay, business, PNG + bytes(LIMIT - len(PNG) + 1), "image/png")
    assert r.status_code == 413
    assert error_of(r)["code"] == ErrorCode.FRAME_TOO_LARGE
    assert error_of(r)["details"]["max_bytes"] == LIMIT


async def test_only_a_business_has_a_picture(relay: RunningRelay) -> None:
    customer = await relay.register()
    r = await upload(relay, customer, PNG, "image/png")
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.NOT_A_BUSINESS
    r = await relay.http.delete("/v1/business/profile/picture", headers=customer.auth)
    assert error_of(r)["code"] == ErrorCode.NOT_A_BUSINESS


async def test_a_suspended_business_picture_is_not_served(
    relay: RunningRelay, make_business: MakeBusiness, set_profile: SetProfile
) -> None:
    business = await make_business(relay)
    customer = await relay.register()
    assert (await upload(relay, business, PNG, "image/png")).status_code == 204
    await set_profile(relay, business, suspended_ms=1)
    r = await relay.http.get(f"/v1/businesses/{business.account_id}/picture", headers=customer.auth)
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.UNDELIVERABLE
