"""The operator cannot give the tick to a name that looks like a verified business's name.

Two businesses may share a lookalike name while neither is verified (``unverified names bind
nobody``); verifying one of them closes the name to the other.
"""

from __future__ import annotations

import asyncio
from typing import Any

from support import RunningRelay

from tresen.core.errors import ErrorCode

CYRILLIC_A = "\u0430"


async def test_a_lookalike_of_a_verified_name_is_not_verified(
    op: Any, ops: dict[str, str], relay: RunningRelay, error_of: Any
) -> None:
    airline = await op.business("Lufthansa")
    lookalike = await op.business(f"Lufth{CYRILLIC_A}nsa")
    r = await op.admin("POST", f"/businesses/{airline.account_id}/verify", ops)
    assert r.status_code == 200, r.text

    r = await op.admin("POST", f"/businesses/{lookalike.account_id}/verify", ops)

    assert r.status_code == 409, r.text
    error = error_of(r)
    assert error["code"] == ErrorCode.NAME_CONFUSABLE
    assert '"Lufthansa"' in error["message"]
    assert error["details"]["conflicts_with"] == {
        "account_id": airline.account_id,
        "display_name": "Lufthansa",
    }
    # Nothing happened to the lookalike: still waiting, no certificate, nothing audited.
    shown = (await op.admin("GET", f"/businesses/{lookalike.account_id}", ops)).json()
    assert shown["verification"] == "pending"
    assert [q["state"] for q in shown["requests"]] == ["pending"]
    assert shown["certificates"] == []
    assert (await relay.http.get(f"/v1/certificates/{lookalike.account_id}")).status_code == 404
    assert await op.audit_actions(lookalike.account_id) == []

    # Once the verified business loses the tick, the name is free again.
    r = await op.admin(
        "POST", f"/businesses/{airline.account_id}/revoke", ops, json={"reason": "sold"}
    )
    assert r.status_code == 200, r.text
    r = await op.admin("POST", f"/businesses/{lookalike.account_id}/verify", ops)
    assert r.status_code == 200, r.text


async def test_the_verified_business_itself_and_other_names_are_verified(
    op: Any, ops: dict[str, str]
) -> None:
    airline = await op.business("Lufthansa")
    cargo = await op.business("Lufthansa Cargo")  # a longer name is visibly another name

    for business in (airline, airline, cargo):
        r = await op.admin("POST", f"/businesses/{business.account_id}/verify", ops)
        assert r.status_code == 200, r.text


async def test_lookalikes_verified_at_the_same_time_get_one_tick(
    op: Any, ops: dict[str, str], error_of: Any
) -> None:
    names = ["Condor", "CONDOR", "C0nd0r", "Cond\u043er"]  # the last with a Cyrillic o
    businesses = [await op.business(name) for name in names]

    answers = await asyncio.gather(
        *(op.admin("POST", f"/businesses/{b.account_id}/verify", ops) for b in businesses)
    )

    assert sorted(r.status_code for r in answers) == [200, 409, 409, 409], [r.text for r in answers]
    assert {error_of(r)["code"] for r in answers if r.status_code == 409} == {
        ErrorCode.NAME_CONFUSABLE
    }
    verified = [
        b
        for b in businesses
        if (await op.admin("GET", f"/businesses/{b.account_id}", ops)).json()["verification"]
        == "verified"
    ]
    assert len(verified) == 1
