"""A template's life as the business and the operator see it: submit → review → approved
(signed) or rejected with a reason → listed, fetched, deleted."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support import RunningRelay

from tresen.core.errors import ErrorCode


def error_of(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def test_submit_review_approve(tpl: Any, make_template: Any) -> None:
    shop = await tpl.business("Bäckerei Müller")

    r = await tpl.http.post(
        "/v1/business/message_templates", json=make_template(), headers=shop.auth
    )

    assert r.status_code == 200, r.text
    created = r.json()
    assert created == {"id": created["id"], "status": "PENDING", "category": "UTILITY"}
    assert created["id"].isdigit()
    # Waiting for review: nothing to verify yet.
    assert (await tpl.signed(shop, created["id"])).json()["error"]["code"] == 132001

    queue = await tpl.http.get("/v1/admin/templates", headers=await tpl.operator())
    assert [t["id"] for t in queue.json()["templates"]] == [created["id"]]
    assert queue.json()["templates"][0]["account_id"] == shop.account_id

    approved = await tpl.approve(created["id"])

    assert approved["template"]["status"] == "APPROVED"
    assert approved["signed"]["id"] == created["id"]
    own = await tpl.own(shop, created["id"])
    assert own["status"] == "APPROVED"
    assert own["name"] == "order_shipped"
    assert own["language"] == "en_US"
    assert own["parameter_format"] == "POSITIONAL"
    assert own["quality_score"] == {"score": "UNKNOWN"}
    assert own["rejected_reason"] == "NONE"
    assert [c["type"] for c in own["components"]] == ["HEADER", "BODY", "FOOTER", "BUTTONS"]
    assert (await tpl.signed(shop, created["id"])).status_code == 200
    queue = await tpl.http.get("/v1/admin/templates", headers=await tpl.operator())
    assert queue.json()["templates"] == []
    assert ("ops", "approve_template") in [
        (op.split("-")[0], action) for op, action in await tpl.audit_actions(shop.account_id)
    ]


async def test_rejection_carries_the_reason_and_the_name_can_be_submitted_again(
    tpl: Any, make_template: Any
) -> None:
    shop = await tpl.business()
    template_id = await tpl.submit(shop)

    r = await tpl.http.post(
        f"/v1/admin/templates/{template_id}/reject",
        json={"reason": "promotional content in a utility template"},
        headers=await tpl.operator(),
    )

    assert r.status_code == 200, r.text
    own = await tpl.own(shop, template_id)
    assert own["status"] == "REJECTED"
    assert own["rejected_reason"] == "promotional content in a utility template"
    assert (await tpl.signed(shop, template_id)).status_code == 404
    actions = [a for _, a in await tpl.audit_actions(shop.account_id)]
    assert "reject_template" in actions
    # Deciding twice is refused: it is no longer waiting for review.
    again = await tpl.http.post(
        f"/v1/admin/templates/{template_id}/approve", headers=await tpl.operator()
    )
    assert error_of(again)["code"] == ErrorCode.NO_PENDING_REQUEST

    resubmitted = await tpl.submit(shop, make_template())
    assert resubmitted != template_id
    assert (await tpl.own(shop, resubmitted))["status"] == "PENDING"


async def test_one_name_and_language_once(tpl: Any, make_template: Any) -> None:
    shop = await tpl.business()
    first = await tpl.submit(shop)

    r = await tpl.http.post(
        "/v1/business/message_templates", json=make_template(), headers=shop.auth
    )

    assert r.status_code == 409
    assert error_of(r)["code"] == ErrorCode.TEMPLATE_EXISTS
    assert error_of(r)["details"] == {"template_id": first, "status": "PENDING"}
    # Another language of the same name is another template; so is another business's.
    assert await tpl.submit(shop, make_template(language="de")) != first
    assert await tpl.submit(await tpl.business(), make_template()) != first


async def test_list_filters_by_status_and_name(tpl: Any, make_template: Any) -> None:
    shop = await tpl.business()
    shipped = await tpl.approved(shop)
    delayed = await tpl.submit(shop, make_template(name="order_delayed"))
    welcome = await tpl.submit(shop, make_template(name="welcome_offer", category="MARKETING"))

    async def listed(**params: Any) -> list[str]:
        r = await tpl.http.get("/v1/business/message_templates", params=params, headers=shop.auth)
        assert r.status_code == 200, r.text
        return [t["id"] for t in r.json()["data"]]

    assert await listed() == [shipped, delayed, welcome]
    assert await listed(status="APPROVED") == [shipped]
    assert await listed(status="PENDING") == [delayed, welcome]
    assert await listed(name="order") == [shipped, delayed]
    page = await tpl.http.get(
        "/v1/business/message_templates", params={"limit": 2}, headers=shop.auth
    )
    paging = page.json()["paging"]
    assert paging["cursors"] == {"before": shipped, "after": delayed}
    assert await listed(after=paging["cursors"]["after"]) == [welcome]


async def test_delete_by_name_removes_every_language(tpl: Any, make_template: Any) -> None:
    shop = await tpl.business()
    english = await tpl.approved(shop)
    german = await tpl.submit(shop, make_template(language="de"))
    kept = await tpl.submit(shop, make_template(name="order_delayed"))

    r = await tpl.http.delete(
        "/v1/business/message_templates", params={"name": "order_shipped"}, headers=shop.auth
    )

    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "deleted": [english, german]}
    listed = await tpl.http.get("/v1/business/message_templates", headers=shop.auth)
    assert [t["id"] for t in listed.json()["data"]] == [kept]
    # A message sent before the deletion can still be checked and rendered.
    assert (await tpl.signed(shop, english)).status_code == 200
    # The name stays taken while such messages may still be on their way.
    again = await tpl.http.post(
        "/v1/business/message_templates", json=make_template(), headers=shop.auth
    )
    assert error_of(again)["code"] == ErrorCode.TEMPLATE_EXISTS
    gone = await tpl.http.delete(
        "/v1/business/message_templates", params={"name": "order_shipped"}, headers=shop.auth
    )
    assert error_of(gone)["code"] == ErrorCode.TEMPLATE_NOT_FOUND


async def test_delete_one_language_by_id(tpl: Any, make_template: Any) -> None:
    shop = await tpl.business()
    english = await tpl.submit(shop)
    german = await tpl.submit(shop, make_template(language="de"))

    r = await tpl.http.delete(
        "/v1/business/message_templates",
        params={"name": "order_shipped", "hsm_id": german},
        headers=shop.auth,
    )

    assert r.json()["deleted"] == [german]
    assert (await tpl.own(shop, english))["status"] == "PENDING"


async def test_auto_approval_signs_at_once(
    make_relay: Any, templates_of: Any, make_template: Any
) -> None:
    async with make_relay(policy={"template_auto_approve": True}) as relay:
        tpl = templates_of(relay)
        shop = await tpl.business()

        r = await tpl.http.post(
            "/v1/business/message_templates", json=make_template(), headers=shop.auth
        )

        assert r.json()["status"] == "APPROVED"
        assert (await tpl.signed(shop, r.json()["id"])).status_code == 200
        assert ("auto-approve", "approve_template") in await tpl.audit_actions(shop.account_id)


async def test_only_businesses_submit(tpl: Any, relay: RunningRelay) -> None:
    customer = await relay.register()

    r = await tpl.http.post("/v1/business/message_templates", json=None, headers=customer.auth)
    assert r.status_code == 400
    r = await tpl.http.post(
        "/v1/business/message_templates",
        json={
            "name": "hello",
            "language": "en",
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Hello"}],
        },
        headers=customer.auth,
    )

    assert error_of(r)["code"] == ErrorCode.NOT_A_BUSINESS


@pytest.mark.parametrize(
    "path", ["/v1/admin/templates/999/approve", "/v1/admin/templates/999/reject"]
)
async def test_deciding_an_unknown_template(tpl: Any, path: str) -> None:
    r = await tpl.http.post(path, json={"reason": "no"}, headers=await tpl.operator())

    assert error_of(r)["code"] == ErrorCode.TEMPLATE_NOT_FOUND
