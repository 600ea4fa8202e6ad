from support import RunningRelay


async def test_register_and_me(relay: RunningRelay) -> None:
    device = await relay.register()
    r = await relay.http.get("/v1/me", headers=device.auth)
    assert r.status_code == 200
    assert r.json()["account_id"] == device.account_id
    assert r.json()["phone"] == device.phone
