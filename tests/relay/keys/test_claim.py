"""The device directory and one-time-key claims (``GET /v1/keys/{account}``, ``.../claim``)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import vodozemac
from support import Device, RunningRelay, upload_keys

from tresen.core.errors import ErrorCode
from tresen.core.ids import DevicePk
from tresen.wire.keys import one_time_key_message
from tresen.wire.relay import KeysLow, ServerFrame


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def claim(
    relay: RunningRelay, by: Device, account_id: str, device_ids: list[int] | None = None
) -> httpx.Response:
    body = None if device_ids is None else {"device_ids": device_ids}
    return await relay.http.post(f"/v1/keys/{account_id}/claim", json=body, headers=by.auth)


async def claimed_key(relay: RunningRelay, by: Device, owner: Device) -> dict[str, Any]:
    r = await claim(relay, by, owner.account_id)
    assert r.status_code == 200, r.text
    [device] = r.json()["devices"]
    key: dict[str, Any] = device["one_time_key"]
    return key


async def one_time_key_count(relay: RunningRelay, device: Device) -> int:
    r = await relay.http.get("/v1/keys/count", headers=device.auth)
    return int(r.json()["one_time_keys"])


async def test_directory_lists_devices_with_identity_keys(relay: RunningRelay) -> None:
    phone = relay.next_phone()
    first = await relay.register(phone)
    second = await relay.register(phone)
    await relay.register(phone)  # third device: no identity keys yet
    accounts = [vodozemac.Account(), vodozemac.Account()]
    regs = [
        (await upload_keys(relay, d, a))["registration_id"]
        for d, a in zip([first, second], accounts, strict=True)
    ]
    stranger = await relay.register()

    r = await relay.http.get(f"/v1/keys/{first.account_id}", headers=stranger.auth)

    assert r.status_code == 200, r.text
    assert r.json() == {
        "account_id": first.account_id,
        "devices": [
            {
                "device_id": d.device_id,
                "registration_id": reg,
                "identity_keys": {
                    "curve25519": a.curve25519_key.to_base64(),
                    "ed25519": a.ed25519_key.to_base64(),
                },
            }
            for d, a, reg in zip([first, second], accounts, regs, strict=True)
        ],
    }
    directory = await relay.ctx.keys.device_directory(first.account_id)  # type: ignore[arg-type]
    assert [(d.device_id, d.registration_id) for d in directory] == [
        (first.device_id, regs[0]),
        (second.device_id, regs[1]),
    ]


async def test_unknown_accounts_are_undeliverable(relay: RunningRelay) -> None:
    device = await relay.register()
    for r in (
        await relay.http.get(f"/v1/keys/{'0' * 32}", headers=device.auth),
        await claim(relay, device, "0" * 32),
    ):
        assert r.status_code == 404
        assert error_of(r)["code"] == ErrorCode.UNDELIVERABLE == 131026


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/keys", {}),
        ("GET", "/v1/keys/count", None),
        ("GET", f"/v1/keys/{'0' * 32}", None),
        ("POST", f"/v1/keys/{'0' * 32}/claim", {}),
        ("POST", "/v1/keys/claim", {"accounts": ["0" * 32]}),
    ],
)
async def test_key_routes_need_a_device_token(
    relay: RunningRelay, method: str, path: str, body: Any
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        r = await relay.http.request(method, path, json=body, headers=headers)
        assert r.status_code == 401
        assert error_of(r)["code"] == ErrorCode.INVALID_TOKEN == 190


async def test_a_claimed_key_opens_a_session_the_owner_can_decrypt(relay: RunningRelay) -> None:
    bob, bob_account = await relay.register(), vodozemac.Account()
    alice, alice_account = await relay.register(), vodozemac.Account()
    await upload_keys(relay, bob, bob_account, 1)
    await upload_keys(relay, alice, alice_account)

    for expect_fallback in (False, True):  # the one one-time key, then the fallback key
        r = await claim(relay, alice, bob.account_id)
        [device] = r.json()["devices"]
        key = device["one_time_key"]
        assert key["fallback"] is expect_fallback
        # Alice checks the relay handed her a key Bob really signed.
        vodozemac.Ed25519PublicKey.from_base64(device["identity_keys"]["ed25519"]).verify_signature(
            (b"tresen-fallback-v1\x00" if expect_fallback else b"tresen-otk-v1\x00")
            + f"{key['key_id']}\x00{key['public_key']}".encode(),
            vodozemac.Ed25519Signature.from_base64(key["signature"]),
        )
        session = alice_account.create_outbound_session(
            vodozemac.Curve25519PublicKey.from_base64(device["identity_keys"]["curve25519"]),
            vodozemac.Curve25519PublicKey.from_base64(key["public_key"]),
        )
        kind, body = session.encrypt(b"Guten Tag").to_parts()
        assert kind == 0  # a pre-key message

        pre_key = vodozemac.AnyOlmMessage.from_parts(kind, body).to_pre_key()
        assert pre_key is not None
        _, plaintext = bob_account.create_inbound_session(alice_account.curve25519_key, pre_key)
        assert plaintext == b"Guten Tag"


async def test_sixty_concurrent_claims_share_fifty_keys_and_the_fallback(
    relay: RunningRelay,
) -> None:
    owner, owner_account = await relay.register(), vodozemac.Account()
    bundle = await upload_keys(relay, owner, owner_account, 50)
    assert bundle["one_time_keys"] == 50
    claimants = [await relay.register() for _ in range(6)]

    responses = await asyncio.gather(
        *(claim(relay, claimants[i % 6], owner.account_id) for i in range(60))
    )

    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    keys = [r.json()["devices"][0]["one_time_key"] for r in responses]
    one_time = [k for k in keys if not k["fallback"]]
    fallback = [k for k in keys if k["fallback"]]
    assert len(one_time) == 50
    assert len({k["key_id"] for k in one_time}) == 50
    assert len({k["public_key"] for k in one_time}) == 50
    assert len(fallback) == 10
    assert len({k["key_id"] for k in fallback}) == 1
    assert {k["public_key"] for k in fallback}.isdisjoint(k["public_key"] for k in one_time)
    assert await one_time_key_count(relay, owner) == 0


async def test_claims_take_one_key_per_device_and_skip_the_caller(relay: RunningRelay) -> None:
    phone = relay.next_phone()
    devices = [await relay.register(phone) for _ in range(3)]
    for device, n in zip(devices, (3, 3, 0), strict=True):
        await upload_keys(relay, device, vodozemac.Account(), n, fallback=n > 0)
    stranger = await relay.register()

    r = await claim(relay, stranger, devices[0].account_id)
    listed = {d["device_id"]: d["one_time_key"] for d in r.json()["devices"]}
    assert sorted(listed) == [1, 2, 3]
    assert not listed[1]["fallback"]
    assert not listed[2]["fallback"]
    assert listed[3] is None  # neither one-time nor fallback key
    assert [await one_time_key_count(relay, d) for d in devices] == [2, 2, 0]

    r = await claim(relay, stranger, devices[0].account_id, [2])
    assert [d["device_id"] for d in r.json()["devices"]] == [2]
    assert [await one_time_key_count(relay, d) for d in devices] == [2, 1, 0]

    # A device of the same account claims its siblings' keys, never its own.
    r = await claim(relay, devices[0], devices[0].account_id)
    assert [d["device_id"] for d in r.json()["devices"]] == [2, 3]
    assert [await one_time_key_count(relay, d) for d in devices] == [2, 0, 0]
    r = await claim(relay, devices[0], devices[0].account_id, [1])
    assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER

    r = await claim(relay, stranger, devices[0].account_id, [2, 9])
    assert r.status_code == 404
    assert error_of(r)["code"] == ErrorCode.UNKNOWN_DEVICE
    assert error_of(r)["details"]["device_ids"] == [9]
    assert [await one_time_key_count(relay, d) for d in devices] == [2, 0, 0]


async def test_one_request_claims_the_keys_of_many_accounts(relay: RunningRelay) -> None:
    phone = relay.next_phone()
    anna = [await relay.register(phone) for _ in range(2)]
    for device in anna:
        await upload_keys(relay, device, vodozemac.Account(), 2)
    ben = await relay.register()
    await upload_keys(relay, ben, vodozemac.Account(), 1)
    shop = await relay.register()
    unknown = "0" * 32

    r = await relay.http.post(
        "/v1/keys/claim",
        json={"accounts": [anna[0].account_id, unknown, ben.account_id, ben.account_id]},
        headers=shop.auth,
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unknown"] == [unknown]
    claimed = {a["account_id"]: a["devices"] for a in body["accounts"]}
    assert sorted(claimed) == sorted([anna[0].account_id, ben.account_id])
    assert [d["device_id"] for d in claimed[anna[0].account_id]] == [1, 2]
    assert all(d["one_time_key"] is not None for d in claimed[anna[0].account_id])
    # Named twice, claimed once.
    assert [await one_time_key_count(relay, d) for d in (*anna, ben)] == [1, 1, 0]

    for bad in ({"accounts": []}, {"accounts": ["a"] * 65}, {"accounts": ["x"], "more": 1}):
        refused = await relay.http.post("/v1/keys/claim", json=bad, headers=shop.auth)
        assert refused.status_code == 400, bad
        assert error_of(refused)["code"] == ErrorCode.INVALID_PARAMETER


async def test_a_claimed_key_is_really_gone(relay: RunningRelay) -> None:
    owner, account = await relay.register(), vodozemac.Account()
    peer = await relay.register()
    await upload_keys(relay, owner, account, 2)

    first = await claimed_key(relay, peer, owner)
    second = await claimed_key(relay, peer, owner)

    assert first["key_id"] != second["key_id"]
    # Uploading it again is possible (it is a new key to the relay) but it was handed out once.
    r = await relay.http.put(
        "/v1/keys",
        headers=owner.auth,
        json={
            "one_time_keys": [
                {
                    "key_id": "fresh",
                    "public_key": first["public_key"],
                    "signature": account.sign(
                        one_time_key_message("fresh", first["public_key"])
                    ).to_base64(),
                }
            ]
        },
    )
    assert r.json()["one_time_keys"] == 1


class RecordingConnection:
    """Stands in for a device's WebSocket in the hub."""

    def __init__(self) -> None:
        self.frames: list[ServerFrame] = []

    def wake(self) -> None:
        pass

    def push(self, frame: ServerFrame) -> None:
        self.frames.append(frame)

    async def close(self, code: int, reason: str) -> None:
        pass


async def test_the_owner_learns_when_its_keys_run_low(relay: RunningRelay) -> None:
    owner, account = await relay.register(), vodozemac.Account()
    peer = await relay.register()
    await upload_keys(relay, owner, account, 12)
    owner_pk = (await relay.ctx.accounts.authenticate(owner.token)).device_pk
    connection = RecordingConnection()
    relay.ctx.hub.register(owner_pk, connection)

    await claimed_key(relay, peer, owner)
    await claimed_key(relay, peer, owner)
    assert connection.frames == []  # 10 left: not yet low
    r = await relay.http.get("/v1/keys/count", headers=owner.auth)
    assert r.json() == {"one_time_keys": 10, "max_one_time_keys": 50, "low": False}

    await claimed_key(relay, peer, owner)

    assert connection.frames == [KeysLow(one_time_keys=9, max_one_time_keys=50)]
    r = await relay.http.get("/v1/keys/count", headers=owner.auth)
    assert r.json() == {"one_time_keys": 9, "max_one_time_keys": 50, "low": True}


async def test_a_failing_low_keys_callback_does_not_lose_the_claim(
    relay: RunningRelay,
) -> None:
    owner, peer = await relay.register(), await relay.register()
    await upload_keys(relay, owner, vodozemac.Account(), 1)
    calls: list[tuple[DevicePk, int]] = []

    def broken(device_pk: DevicePk, remaining: int) -> None:
        calls.append((device_pk, remaining))
        raise RuntimeError("push failed")

    relay.ctx.keys.on_keys_low = broken

    key = await claimed_key(relay, peer, owner)

    assert key["fallback"] is False
    owner_pk = (await relay.ctx.accounts.authenticate(owner.token)).device_pk
    assert calls == [(owner_pk, 0)]
