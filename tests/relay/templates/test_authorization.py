"""Whose templates are whose: a business sees, changes and deletes only its own; only the
operator decides; anyone signed in can fetch an approved template's signed form."""

from __future__ import annotations

from typing import Any

from support import RunningRelay

from tresen.core.errors import ErrorCode


async def test_a_business_cannot_see_or_delete_another_business_templates(tpl: Any) -> None:
    bakery = await tpl.business("Bäckerei Müller")
    florist = await tpl.business("Blumen Schulz")
    template_id = await tpl.approved(bakery)
    before = await tpl.own(bakery, template_id)

    listed = await tpl.http.get("/v1/business/message_templates", headers=florist.auth)
    fetched = await tpl.http.get(
        f"/v1/business/message_templates/{template_id}", headers=florist.auth
    )
    deleted = await tpl.http.delete(
        "/v1/business/message_templates",
        params={"name": "order_shipped", "hsm_id": template_id},
        headers=florist.auth,
    )

    assert listed.json()["data"] == []
    # "Not found", exactly as for an id nobody has: the template's existence stays hidden.
    assert fetched.status_code == 404
    assert fetched.json()["error"]["code"] == ErrorCode.TEMPLATE_NOT_FOUND
    assert deleted.json()["error"]["code"] == ErrorCode.TEMPLATE_NOT_FOUND
    assert await tpl.own(bakery, template_id) == before  # status, quality and all


async def test_only_operators_decide(tpl: Any, relay: RunningRelay) -> None:
    shop = await tpl.business()
    customer = await relay.register()
    template_id = await tpl.submit(shop)

    for headers in ({}, customer.auth, shop.auth):
        for action, body in (("approve", None), ("reject", {"reason": "no"})):
            r = await tpl.http.post(
                f"/v1/admin/templates/{template_id}/{action}", json=body, headers=headers
            )
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == ErrorCode.INVALID_TOKEN
        r = await tpl.http.get("/v1/admin/templates", headers=headers)
        assert r.status_code == 401

    assert (await tpl.own(shop, template_id))["status"] == "PENDING"
    assert await tpl.audit_actions(shop.account_id) == []


async def test_operator_tokens_open_no_business_route(tpl: Any) -> None:
    shop = await tpl.business()
    template_id = await tpl.submit(shop)
    operator = await tpl.operator()

    calls = [
        ("GET", "/v1/business/message_templates", None),
        ("GET", f"/v1/business/message_templates/{template_id}", None),
        ("POST", "/v1/business/message_templates", {"name": "x"}),
        ("DELETE", "/v1/business/message_templates?name=order_shipped", None),
        ("GET", f"/v1/templates/{template_id}", None),
    ]
    for method, path, body in calls:
        r = await tpl.http.request(method, path, json=body, headers=operator)
        assert r.status_code == 401, (method, path, r.text)

    assert (await tpl.own(shop, template_id))["status"] == "PENDING"


async def test_any_account_fetches_the_signed_form_of_an_approved_template(
    tpl: Any, relay: RunningRelay, make_template: Any
) -> None:
    shop = await tpl.business()
    customer = await relay.register()
    approved = await tpl.approved(shop)
    pending = await tpl.submit(shop, make_template(name="order_delayed"))

    r = await tpl.signed(customer, approved)
    unauthenticated = await tpl.http.get(f"/v1/templates/{approved}")

    assert r.status_code == 200, r.text
    assert set(r.json()) == {"id", "body", "signature"}
    assert unauthenticated.status_code == 401
    assert (await tpl.signed(customer, pending)).json()["error"]["code"] == 132001
    assert (await tpl.signed(customer, "424242")).json()["error"]["code"] == 132001
