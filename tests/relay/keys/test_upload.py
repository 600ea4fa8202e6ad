"""Uploading identity, one-time and fallback keys (``PUT /v1/keys``, ``GET /v1/keys/count``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import vodozemac
from support import Device, RunningRelay, make_key_bundle, upload_keys

from tresen.core.errors import ErrorCode
from tresen.wire.keys import fallback_key_message, one_time_key_message


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def put_keys(relay: RunningRelay, device: Device, body: dict[str, Any]) -> httpx.Response:
    return await relay.http.put("/v1/keys", json=body, headers=device.auth)


async def count_of(relay: RunningRelay, device: Device) -> dict[str, Any]:
    r = await relay.http.get("/v1/keys/count", headers=device.auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def registration_id_of(relay: RunningRelay, device: Device) -> int:
    r = await relay.http.get("/v1/devices", headers=device.auth)
    [own] = [d for d in r.json() if d["device_id"] == device.device_id]
    return int(own["registration_id"])


async def test_upload_stores_keys_and_reports_the_count(relay: RunningRelay) -> None:
    device = await relay.register()
    account = vodozemac.Account()
    registration_id = await registration_id_of(relay, device)

    assert await upload_keys(relay, device, account, 50) == {
        "one_time_keys": 50,
        "max_one_time_keys": 50,
        "registration_id": registration_id,
    }
    assert await count_of(relay, device) == {
        "one_time_keys": 50,
        "max_one_time_keys": 50,
        "low": False,
    }
    r = await relay.http.get("/v1/devices", headers=device.auth)
    [own] = r.json()
    assert own["identity_curve25519"] == account.curve25519_key.to_base64()
    assert own["identity_ed25519"] == account.ed25519_key.to_base64()


async def test_a_new_device_has_no_keys_and_is_low(relay: RunningRelay) -> None:
    device = await relay.register()
    assert await count_of(relay, device) == {
        "one_time_keys": 0,
        "max_one_time_keys": 50,
        "low": True,
    }


async def test_one_time_keys_before_identity_keys_are_refused(relay: RunningRelay) -> None:
    device = await relay.register()
    body = make_key_bundle(vodozemac.Account(), 5, identity=False)

    r = await put_keys(relay, device, body)

    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.IDENTITY_KEYS_MISSING
    assert (await count_of(relay, device))["one_time_keys"] == 0


async def test_a_bad_signature_rejects_the_whole_upload(relay: RunningRelay) -> None:
    device = await relay.register()
    account = vodozemac.Account()
    body = make_key_bundle(account, 10)
    forger = vodozemac.Account()
    victim = body["one_time_keys"][4]
    victim["signature"] = forger.sign(
        one_time_key_message(victim["key_id"], victim["public_key"])
    ).to_base64()

    r = await put_keys(relay, device, body)

    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.BAD_KEY_SIGNATURE
    assert error_of(r)["details"]["key_id"] == victim["key_id"]
    assert (await count_of(relay, device))["one_time_keys"] == 0
    # Nothing of the rejected upload was stored, not even the identity keys.
    r = await relay.http.get(f"/v1/keys/{device.account_id}", headers=device.auth)
    assert r.json()["devices"] == []


async def test_a_one_time_key_signature_is_no_fallback_key_signature(
    relay: RunningRelay,
) -> None:
    device = await relay.register()
    account = vodozemac.Account()
    body = make_key_bundle(account)
    fallback = body["fallback_key"]
    # Signed with the right key but over the one-time-key message: must not verify.
    fallback["signature"] = account.sign(
        one_time_key_message(fallback["key_id"], fallback["public_key"])
    ).to_base64()

    r = await put_keys(relay, device, body)

    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.BAD_KEY_SIGNATURE
    assert error_of(r)["details"] == {"field": "fallback_key", "key_id": fallback["key_id"]}


async def test_signatures_check_against_the_stored_identity(relay: RunningRelay) -> None:
    device = await relay.register()
    account = vodozemac.Account()
    await upload_keys(relay, device, account)
    # Keys signed by some other account's identity, uploaded without identity keys.
    body = make_key_bundle(vodozemac.Account(), 3, identity=False, fallback=False)

    r = await put_keys(relay, device, body)

    assert error_of(r)["code"] == ErrorCode.BAD_KEY_SIGNATURE
    # The same device's own keys are accepted without repeating the identity keys.
    r = await put_keys(relay, device, make_key_bundle(account, 3, identity=False))
    assert r.status_code == 200, r.text
    assert r.json()["one_time_keys"] == 3


async def test_more_than_fifty_keys_in_one_upload_are_refused(relay: RunningRelay) -> None:
    device = await relay.register()
    account = vodozemac.Account()

    r = await put_keys(relay, device, make_key_bundle(account, 51))

    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.TOO_MANY_ONE_TIME_KEYS
    assert error_of(r)["details"] == {"stored": 0, "uploaded": 51, "max": 50}
    assert (await count_of(relay, device))["one_time_keys"] == 0


async def test_uploads_never_push_the_store_beyond_fifty(relay: RunningRelay) -> None:
    device = await relay.register()
    account = vodozemac.Account()
    assert (await upload_keys(relay, device, account, 30))["one_time_keys"] == 30

    r = await put_keys(relay, device, make_key_bundle(account, 21, identity=False))

    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.TOO_MANY_ONE_TIME_KEYS
    assert error_of(r)["details"] == {"stored": 30, "uploaded": 21, "max": 50}
    assert (await count_of(relay, device))["one_time_keys"] == 30
    # Exactly filling up to the cap is fine.
    r = await put_keys(relay, device, make_key_bundle(account, 20, identity=False))
    assert r.json()["one_time_keys"] == 50


async def test_re_uploading_stored_keys_is_idempotent(relay: RunningRelay) -> None:
    device = await relay.register()
    account = vodozemac.Account()
    first = make_key_bundle(account, 30)
    r = await put_keys(relay, device, first)
    assert r.json()["one_time_keys"] == 30

    # A retry of the same upload (say, after a lost response) counts nothing twice ...
    r = await put_keys(relay, device, first)
    assert r.status_code == 200, r.text
    assert r.json()["one_time_keys"] == 30
    # ... and so does the same batch together with 20 new keys: 30 + 20 = 50, not 80.
    second = make_key_bundle(account, 20, identity=False, fallback=False)
    r = await put_keys(
        relay, device, {"one_time_keys": first["one_time_keys"] + second["one_time_keys"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["one_time_keys"] == 50


async def test_a_reused_key_id_with_another_key_is_refused(relay: RunningRelay) -> None:
    device = await relay.register()
    account = vodozemac.Account()
    stored = make_key_bundle(account, 1)["one_time_keys"][0]
    await put_keys(relay, device, {**make_key_bundle(account), "one_time_keys": [stored]})
    other = vodozemac.Curve25519SecretKey().public_key().to_base64()
    clash = {
        "key_id": stored["key_id"],
        "public_key": other,
        "signature": account.sign(one_time_key_message(stored["key_id"], other)).to_base64(),
    }

    r = await put_keys(relay, device, {"one_time_keys": [clash]})

    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER
    assert error_of(r)["details"]["key_id"] == stored["key_id"]
    # Same within one upload.
    r = await put_keys(
        relay, device, {"one_time_keys": [{**stored, "key_id": "k"}, {**clash, "key_id": "k"}]}
    )
    assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER
    assert (await count_of(relay, device))["one_time_keys"] == 1


async def test_new_identity_keys_reset_keys_and_registration_id(relay: RunningRelay) -> None:
    device = await relay.register()
    peer = await relay.register()
    old = vodozemac.Account()
    first = await upload_keys(relay, device, old, 10)
    # Re-sending the same identity changes nothing.
    same = await upload_keys(relay, device, old)
    assert same["registration_id"] == first["registration_id"]
    assert same["one_time_keys"] == 10

    new = vodozemac.Account()
    r = await put_keys(relay, device, make_key_bundle(new, fallback=False))

    assert r.status_code == 200, r.text
    assert r.json()["one_time_keys"] == 0
    assert r.json()["registration_id"] != first["registration_id"]
    assert await registration_id_of(relay, device) == r.json()["registration_id"]
    r = await relay.http.post(f"/v1/keys/{device.account_id}/claim", headers=peer.auth)
    [claimed] = r.json()["devices"]
    assert claimed["registration_id"] != first["registration_id"]
    assert claimed["identity_keys"] == {
        "curve25519": new.curve25519_key.to_base64(),
        "ed25519": new.ed25519_key.to_base64(),
    }
    # The old identity's one-time and fallback keys are gone.
    assert claimed["one_time_key"] is None


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        (lambda b: b["identity_keys"].update(curve25519="AAAA"), "identity_keys.curve25519"),
        (lambda b: b["identity_keys"].update(ed25519="not base64!"), "identity_keys.ed25519"),
        # Padded base64 decodes, but the relay keeps one spelling per key.
        (
            lambda b: b["identity_keys"].update(ed25519=b["identity_keys"]["ed25519"] + "="),
            "identity_keys.ed25519",
        ),
        (
            lambda b: b["one_time_keys"][0].update(public_key="A" * 42),
            "one_time_keys.public_key",
        ),
        (lambda b: b["one_time_keys"][0].update(signature="AAAA"), "one_time_keys.signature"),
        (lambda b: b["fallback_key"].update(public_key="%%%%"), "fallback_key.public_key"),
    ],
)
async def test_malformed_keys_are_invalid_parameters(
    relay: RunningRelay, spoil: Any, field: str
) -> None:
    device = await relay.register()
    body = make_key_bundle(vodozemac.Account(), 2)
    spoil(body)

    r = await put_keys(relay, device, body)

    assert r.status_code == 400
    assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER
    assert error_of(r)["details"]["field"] == field
    assert (await count_of(relay, device))["one_time_keys"] == 0


async def test_malformed_bodies_are_invalid_parameters(relay: RunningRelay) -> None:
    device = await relay.register()
    account = vodozemac.Account()
    key = make_key_bundle(account, 1)["one_time_keys"][0]
    for body in (
        {"one_time_keys": [key] * 101},
        {"one_time_keys": [{**key, "key_id": "a\x00b"}]},
        {"one_time_keys": [{**key, "extra": 1}]},
        {"fallback_key": {"key_id": "x"}},
        {"identity_keys": {"curve25519": "A" * 65, "ed25519": "A"}},
    ):
        r = await put_keys(relay, device, body)
        assert r.status_code == 400, body
        assert error_of(r)["code"] == ErrorCode.INVALID_PARAMETER


async def test_the_fallback_key_is_replaced_by_a_new_one(relay: RunningRelay) -> None:
    owner = await relay.register()
    peer = await relay.register()
    account = vodozemac.Account()
    await upload_keys(relay, owner, account)
    newer = make_key_bundle(account, identity=False)

    await put_keys(relay, owner, newer)

    r = await relay.http.post(f"/v1/keys/{owner.account_id}/claim", headers=peer.auth)
    [claimed] = r.json()["devices"]
    assert claimed["one_time_key"] == {**newer["fallback_key"], "fallback": True}
    message = fallback_key_message(
        newer["fallback_key"]["key_id"], claimed["one_time_key"]["public_key"]
    )
    account.ed25519_key.verify_signature(
        message, vodozemac.Ed25519Signature.from_base64(claimed["one_time_key"]["signature"])
    )
