"""Registration by phone number: one-time codes, devices and bearer tokens, over HTTP."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs
from support import Device, MakeRelay, RunningRelay

from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.relay.accounts.sms import ConsoleSmsSender, FileSmsSender, read_last_code
from tresen.relay.schema import devices


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def request_code(relay: RunningRelay, phone: str) -> httpx.Response:
    return await relay.http.post("/v1/registration/code", json={"phone": phone})


async def verify(
    relay: RunningRelay, phone: str, code: str, device_name: str = ""
) -> httpx.Response:
    return await relay.http.post(
        "/v1/registration/verify",
        json={"phone": phone, "code": code, "device_name": device_name},
    )


async def new_code(relay: RunningRelay, phone: str) -> str:
    """Request a code for ``phone`` and return what the SMS sender delivered."""
    r = await request_code(relay, phone)
    assert r.status_code == 202, r.text
    code = read_last_code(relay.sms_file, phone)
    assert code is not None
    return code


def other_than(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def sms_count(relay: RunningRelay, phone: str) -> int:
    if not relay.sms_file.exists():
        return 0
    lines = relay.sms_file.read_text().splitlines()
    return sum(1 for line in lines if json.loads(line)["phone"] == phone)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "12345",
        "+49 abc",
        "+1 555",
        "",
        "+999999999999",
        "+49" + "1" * 37,
        "+1 800 FLOWERS",
        "+4915112345678 ext. 12",
        "015112345678",
    ],
    ids=[
        "short",
        "letters",
        "too-short",
        "empty",
        "no-country",
        "40-chars",
        "vanity",
        "extension",
        "national",
    ],
)
async def test_invalid_numbers_are_rejected(relay: RunningRelay, phone: str) -> None:
    r = await request_code(relay, phone)

    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["code"] == ErrorCode.INVALID_PHONE_NUMBER
    assert error["message"]
    assert not relay.sms_file.exists()  # nothing was sent

    r = await verify(relay, phone, "123456")
    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.INVALID_PHONE_NUMBER


async def test_formatted_number_is_normalized_to_e164(relay: RunningRelay) -> None:
    r = await request_code(relay, "+49 151 1234 5678")
    assert r.status_code == 202, r.text
    code = read_last_code(relay.sms_file, "+4915112345678")  # sent to the E.164 form
    assert code is not None

    # Any spelling of the same number verifies the same code.
    r = await verify(relay, "+49 (0)151-1234 5678", code)

    assert r.status_code == 200, r.text
    me = await relay.http.get("/v1/me", headers=auth(r.json()["token"]))
    assert me.json()["phone"] == "+4915112345678"


# --- verification ----------------------------------------------------------------------------


async def test_first_verification_creates_account_device_and_token(relay: RunningRelay) -> None:
    phone = relay.next_phone()
    r = await request_code(relay, phone)
    assert r.status_code == 202, r.text
    assert r.json() == {"expires_in_s": 600}
    code = read_last_code(relay.sms_file, phone)
    assert code is not None
    assert len(code) == 6
    assert code.isdigit()

    r = await verify(relay, phone, code, device_name="phone")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device_id"] == 1
    assert body["new_account"] is True
    me = await relay.http.get("/v1/me", headers=auth(body["token"]))
    assert me.status_code == 200
    assert me.json() == {"account_id": body["account_id"], "device_id": 1, "phone": phone}


async def test_wrong_codes_count_down_then_lock_the_source_out(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        phone = relay.next_phone()
        code = await new_code(relay, phone)

        left = []
        for _ in range(5):
            r = await verify(relay, phone, other_than(code))
            assert r.status_code == 403, r.text
            error = error_of(r)
            assert error["code"] == ErrorCode.CODE_INCORRECT
            left.append(error["details"]["attempts_left"])
        assert left == [4, 3, 2, 1, 0]

        r = await verify(relay, phone, code)  # even the right code is now refused
        assert r.status_code == 429
        assert error_of(r)["code"] == ErrorCode.CODE_ATTEMPTS_EXCEEDED
        assert error_of(r)["details"]["scope"] == "phone"
        assert r.headers["Retry-After"] == "600"  # the code's lifetime after the first guess

        clock.advance(minutes=10)
        fresh = await new_code(relay, phone)
        r = await verify(relay, phone, fresh)
        assert r.status_code == 200, r.text


async def test_code_expires_after_ten_minutes(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        in_time, too_late = relay.next_phone(), relay.next_phone()
        in_time_code = await new_code(relay, in_time)
        too_late_code = await new_code(relay, too_late)

        clock.advance(minutes=9, seconds=59)
        assert (await verify(relay, in_time, in_time_code)).status_code == 200

        clock.advance(seconds=1)
        r = await verify(relay, too_late, too_late_code)
        assert r.status_code == 410, r.text
        assert error_of(r)["code"] == ErrorCode.CODE_EXPIRED

        # A fresh code works again.
        r = await verify(relay, too_late, await new_code(relay, too_late))
        assert r.status_code == 200, r.text


async def test_code_is_single_use(relay: RunningRelay) -> None:
    phone = relay.next_phone()
    code = await new_code(relay, phone)
    first = await verify(relay, phone, code)
    assert first.status_code == 200, first.text

    again = await verify(relay, phone, code)

    assert again.status_code == 410
    assert error_of(again)["code"] == ErrorCode.CODE_EXPIRED
    devices_now = await relay.http.get("/v1/devices", headers=auth(first.json()["token"]))
    assert [d["device_id"] for d in devices_now.json()] == [1]


async def test_a_repeated_request_resends_the_pending_code(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        phone = relay.next_phone()
        first = await new_code(relay, phone)

        clock.advance(minutes=4)
        r = await request_code(relay, phone)

        assert r.status_code == 202, r.text
        assert r.json() == {"expires_in_s": 6 * 60}  # the same code, with its remaining life
        assert read_last_code(relay.sms_file, phone) == first
        assert sms_count(relay, phone) == 2
        assert (await verify(relay, phone, first)).status_code == 200


async def test_a_new_code_leaves_the_previous_one_valid(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    async with make_relay(clock=clock) as relay:
        phone, other = relay.next_phone(), relay.next_phone()
        old = await new_code(relay, phone)
        old_other = await new_code(relay, other)

        # With less than half its life left, a request sends a new code...
        clock.advance(minutes=5, seconds=1)
        new = await new_code(relay, phone)
        new_other = await new_code(relay, other)
        assert (new, new_other) != (old, old_other)

        # ...and the old one still verifies until it expires, so nobody's request spoils the
        # code its owner is typing.
        assert (await verify(relay, phone, old)).status_code == 200
        clock.advance(minutes=5)
        if new_other != old_other:
            r = await verify(relay, other, old_other)
            assert error_of(r)["code"] == ErrorCode.CODE_INCORRECT
        assert (await verify(relay, other, new_other)).status_code == 200


async def test_racing_verifications_use_a_code_once(relay: RunningRelay) -> None:
    phone = relay.next_phone()
    code = await new_code(relay, phone)

    answers = await asyncio.gather(*(verify(relay, phone, code) for _ in range(5)))

    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 410, 410, 410, 410], [r.text for r in answers]
    [winner] = [r.json() for r in answers if r.status_code == 200]
    listed = await relay.http.get("/v1/devices", headers=auth(winner["token"]))
    assert [d["device_id"] for d in listed.json()] == [1]


async def test_racing_guesses_get_no_more_than_the_allowed_attempts(relay: RunningRelay) -> None:
    phone = relay.next_phone()
    code = await new_code(relay, phone)

    answers = await asyncio.gather(*(verify(relay, phone, other_than(code)) for _ in range(30)))

    assert all(r.status_code < 500 for r in answers), [r.text for r in answers]
    codes = [error_of(r)["code"] for r in answers]
    assert codes.count(ErrorCode.CODE_INCORRECT) == 5
    assert (await verify(relay, phone, code)).status_code != 200


# --- throttling ------------------------------------------------------------------------------


async def test_code_requests_are_limited_per_number(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    limits = {"code_requests_per_number": 3, "code_request_window_s": 3600}
    async with make_relay(clock=clock, limits=limits) as relay:
        phone = relay.next_phone()
        for _ in range(3):
            await new_code(relay, phone)
            clock.advance(minutes=10)

        r = await request_code(relay, phone)

        assert r.status_code == 429, r.text
        error = error_of(r)
        assert error["code"] == ErrorCode.REGISTRATION_RATE_LIMITED
        assert error["details"]["scope"] == "phone"
        # The oldest request (30 minutes ago) leaves the hour-long window in 30 minutes.
        assert error["details"]["retry_after_s"] == 30 * 60
        assert r.headers["Retry-After"] == "1800"
        assert sms_count(relay, phone) == 3  # the refused request sent nothing
        # Other numbers are not affected.
        await new_code(relay, relay.next_phone())

        clock.advance(minutes=29, seconds=59)
        r = await request_code(relay, phone)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"

        clock.advance(seconds=1)
        code = await new_code(relay, phone)
        # The window slides: the second request is still in it, so the next one waits.
        r = await request_code(relay, phone)
        assert r.status_code == 429
        assert error_of(r)["details"]["retry_after_s"] == 10 * 60

        # Registering proves the number is this source's: it starts afresh.
        assert (await verify(relay, phone, code)).status_code == 200
        await new_code(relay, phone)


async def test_code_requests_are_limited_per_client_address(make_relay: MakeRelay) -> None:
    clock = ManualClock()
    limits = {"code_requests_per_address": 2, "code_request_window_s": 600}
    async with make_relay(clock=clock, limits=limits) as relay:
        await new_code(relay, relay.next_phone())
        await new_code(relay, relay.next_phone())

        third = relay.next_phone()
        r = await request_code(relay, third)

        assert r.status_code == 429, r.text
        error = error_of(r)
        assert error["code"] == ErrorCode.REGISTRATION_RATE_LIMITED
        assert error["details"]["scope"] == "addr"
        assert r.headers["Retry-After"] == "600"
        assert sms_count(relay, third) == 0

        clock.advance(seconds=600)
        await new_code(relay, third)


async def test_racing_code_requests_respect_the_limit(make_relay: MakeRelay) -> None:
    limits = {"code_requests_per_number": 3, "code_request_backoff_s": 0}
    async with make_relay(limits=limits) as relay:
        phone = relay.next_phone()

        answers = await asyncio.gather(*(request_code(relay, phone) for _ in range(30)))

        statuses = sorted(r.status_code for r in answers)
        assert statuses == [202] * 3 + [429] * 27, [r.text for r in answers]
        assert sms_count(relay, phone) == 3


# --- devices ---------------------------------------------------------------------------------


async def test_same_number_on_a_new_device_keeps_the_account(relay: RunningRelay) -> None:
    phone = relay.next_phone()
    first = (await verify(relay, phone, await new_code(relay, phone), "phone")).json()
    second = (await verify(relay, phone, await new_code(relay, phone), "laptop")).json()

    assert second["account_id"] == first["account_id"]
    assert (first["device_id"], second["device_id"]) == (1, 2)
    assert (first["new_account"], second["new_account"]) == (True, False)
    assert first["token"] != second["token"]
    for reg in (first, second):
        me = await relay.http.get("/v1/me", headers=auth(reg["token"]))
        assert me.json() == {
            "account_id": first["account_id"],
            "device_id": reg["device_id"],
            "phone": phone,
        }

    listed = (await relay.http.get("/v1/devices", headers=auth(second["token"]))).json()
    assert [(d["device_id"], d["name"]) for d in listed] == [(1, "phone"), (2, "laptop")]
    assert listed[0]["registration_id"] != listed[1]["registration_id"]


async def test_removed_device_loses_access(relay: RunningRelay) -> None:
    phone = relay.next_phone()
    first = await relay.register(phone)
    second = await relay.register(phone)
    assert second.device_id == 2

    r = await relay.http.delete("/v1/devices/2", headers=first.auth)

    assert r.status_code == 204, r.text
    r = await relay.http.get("/v1/me", headers=second.auth)
    assert r.status_code == 401
    assert error_of(r)["code"] == ErrorCode.INVALID_TOKEN
    listed = (await relay.http.get("/v1/devices", headers=first.auth)).json()
    assert [d["device_id"] for d in listed] == [1]

    r = await relay.http.delete("/v1/devices/2", headers=first.auth)
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.UNKNOWN_DEVICE


async def test_device_ids_are_scoped_to_the_callers_account(relay: RunningRelay) -> None:
    alice = await relay.register()
    alice_laptop = await relay.register(alice.phone)
    mallory = await relay.register()

    r = await relay.http.delete("/v1/devices/2", headers=mallory.auth)

    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.UNKNOWN_DEVICE
    assert (await relay.http.get("/v1/me", headers=alice_laptop.auth)).status_code == 200
    listed = (await relay.http.get("/v1/devices", headers=mallory.auth)).json()
    assert [d["device_id"] for d in listed] == [1]


async def test_an_account_has_at_most_max_devices(make_relay: MakeRelay) -> None:
    limits = {"max_devices_per_account": 2, "code_request_backoff_s": 0}
    async with make_relay(limits=limits) as relay:
        phone = relay.next_phone()
        first = await relay.register(phone)
        await relay.register(phone)

        r = await verify(relay, phone, await new_code(relay, phone))

        assert r.status_code == 409, r.text
        error = error_of(r)
        assert error["code"] == ErrorCode.TOO_MANY_DEVICES
        assert error["details"]["max_devices"] == 2
        listed = (await relay.http.get("/v1/devices", headers=first.auth)).json()
        assert len(listed) == 2

        # Removing a device makes room for a new one.
        assert (await relay.http.delete("/v1/devices/2", headers=first.auth)).status_code == 204
        r = await verify(relay, phone, await new_code(relay, phone))
        assert r.status_code == 200, r.text
        assert r.json()["account_id"] == first.account_id


# --- tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic xyz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
    ],
    ids=["missing", "basic", "empty-bearer", "unknown"],
)
async def test_requests_without_a_valid_token_are_refused(
    relay: RunningRelay, headers: dict[str, str]
) -> None:
    await relay.register()  # there are valid tokens; these are not among them

    for path in ("/v1/me", "/v1/devices"):
        r = await relay.http.get(path, headers=headers)
        assert r.status_code == 401, r.text
        assert error_of(r)["code"] == ErrorCode.INVALID_TOKEN


async def test_tokens_are_stored_only_as_hashes(relay: RunningRelay) -> None:
    registered: list[Device] = [await relay.register() for _ in range(2)]
    registered.append(await relay.register(registered[0].phone))

    async with relay.ctx.db.read() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(devices))]

    assert len(rows) == 3
    for row in rows:
        assert len(bytes(row["token_hash"])) == 32
        for device in registered:
            for value in row.values():
                if isinstance(value, bytes | bytearray | memoryview):
                    assert device.token.encode() not in bytes(value)
                else:
                    assert device.token not in str(value)


# --- SMS senders -----------------------------------------------------------------------------


async def test_console_sender_logs_the_code() -> None:
    with capture_logs() as logs:
        await ConsoleSmsSender().send_code("+4915112345678", "042917")

    assert [(e["event"], e["phone"], e["code"]) for e in logs] == [
        ("registration code", "+4915112345678", "042917")
    ]


async def test_file_sender_appends_codes_to_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "sms.jsonl"
    assert read_last_code(path, "+4915112345678") is None
    sender = FileSmsSender(path)

    await sender.send_code("+4915112345678", "111111")
    await sender.send_code("+4915187654321", "222222")
    await sender.send_code("+4915112345678", "333333")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().splitlines()) == 3
    assert read_last_code(path, "+4915112345678") == "333333"
    assert read_last_code(path, "+4915187654321") == "222222"
    assert read_last_code(path, "+4930123456") is None


async def test_relay_writes_codes_to_a_private_file(relay: RunningRelay) -> None:
    await new_code(relay, relay.next_phone())

    assert stat.S_IMODE(relay.sms_file.stat().st_mode) == 0o600
