"""The Cloud API's management endpoints on the gateway: message templates and their review
webhooks, the business profile, the phone number, blocking customers, and where webhooks go."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import (
    RunningGateway,
    customer,
    serve_gateway,
    subscribe,
    subscribed_inbox,
    webhook_inbox,
)
from support import ORDER_SHIPPED, Backend, RunningRelay

from tresen.client.api import RelayError
from tresen.relay.operator.service import OperatorPrincipal

OPERATOR = OperatorPrincipal("tests")


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert "error" in body, body
    error: dict[str, Any] = body["error"]
    return error


def template(name: str, category: str = "UTILITY", language: str = "en_US") -> dict[str, Any]:
    return {
        "name": name,
        "language": language,
        "category": category,
        "components": [
            {
                "type": "BODY",
                "text": "Hi {{1}}, your table is booked.",
                "example": {"body_text": [["Anna"]]},
            }
        ],
    }


@pytest.fixture
async def reviewed(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    """A gateway that looks for template reviews every 0.2 s."""
    async with serve_gateway(relay, backend, tmp_path, template_poll_s=0.2) as running:
        yield running


# --- templates -------------------------------------------------------------------------------


async def test_templates_are_created_listed_and_deleted(gw: RunningGateway) -> None:
    path = f"/{gw.waba_id}/message_templates"
    r = await gw.http.post(path, json=ORDER_SHIPPED)
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["status"] == "PENDING"
    assert created["category"] == "UTILITY"
    assert created["id"].isdigit()
    r = await gw.http.post(path, json=template("table_booked"))
    assert r.status_code == 200, r.text
    booked_id = r.json()["id"]

    r = await gw.http.get(path)
    assert r.status_code == 200, r.text
    listed = {t["name"]: t for t in r.json()["data"]}
    assert set(listed) == {"order_shipped", "table_booked"}
    shipped = listed["order_shipped"]
    assert shipped["id"] == created["id"]
    assert shipped["language"] == "en_US"
    assert shipped["status"] == "PENDING"
    assert shipped["category"] == "UTILITY"
    assert [c["type"] for c in shipped["components"]] == ["HEADER", "BODY", "FOOTER", "BUTTONS"]

    r = await gw.http.get(path, params={"name": "table_booked"})
    assert [t["id"] for t in r.json()["data"]] == [booked_id]
    r = await gw.http.get(path, params={"category": "MARKETING"})
    assert r.json()["data"] == []
    r = await gw.http.get(path, params={"language": "en_US", "status": "PENDING"})
    assert len(r.json()["data"]) == 2

    r = await gw.http.delete(path, params={"name": "table_booked"})
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True
    assert r.json()["deleted"] == [booked_id]
    r = await gw.http.get(path)
    assert [t["name"] for t in r.json()["data"]] == ["order_shipped"]
    r = await gw.http.delete(path, params={"name": "table_booked"})
    assert r.status_code == 400
    assert error_of(r)["code"] == 132001
    r = await gw.http.get(path, params={"status": "SOMEDAY"})
    assert error_of(r)["code"] == 100


async def test_one_language_of_a_template_is_deleted_by_its_id(gw: RunningGateway) -> None:
    path = f"/{gw.waba_id}/message_templates"
    ids = {}
    for language in ("en_US", "de_DE"):
        r = await gw.http.post(path, json=template("table_booked", language=language))
        assert r.status_code == 200, r.text
        ids[language] = r.json()["id"]
    r = await gw.http.delete(path, params={"name": "table_booked", "hsm_id": ids["de_DE"]})
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == [ids["de_DE"]]
    r = await gw.http.get(path)
    assert [(t["id"], t["language"]) for t in r.json()["data"]] == [(ids["en_US"], "en_US")]


async def test_template_submissions_that_cannot_be_stored(gw: RunningGateway) -> None:
    path = f"/{gw.waba_id}/message_templates"
    broken = {**template("no_body"), "components": [{"type": "FOOTER", "text": "Bye"}]}
    r = await gw.http.post(path, json=broken)
    assert r.status_code == 400
    error = error_of(r)
    assert error["code"] == 100
    assert error["error_data"]["problems"]

    r = await gw.http.post(path, json=template("table_booked"))
    assert r.status_code == 200, r.text
    r = await gw.http.post(path, json=template("table_booked"))
    assert r.status_code == 400
    assert error_of(r)["code"] == 150063  # the relay's code, passed through

    r = await gw.http.post(path, content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert error_of(r)["code"] == 100


async def test_template_pages_follow_the_after_cursor(gw: RunningGateway) -> None:
    path = f"/{gw.waba_id}/message_templates"
    names = ["table_booked", "table_cancelled", "table_moved"]
    for name in names:
        r = await gw.http.post(path, json=template(name))
        assert r.status_code == 200, r.text
    seen: list[str] = []
    r = await gw.http.get(path, params={"limit": 1})
    while True:
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= 1
        seen += [t["name"] for t in page["data"]]
        following = page["paging"].get("next")
        if not following:
            break
        # A Cloud API client follows ``next`` as it is: a URL of this gateway.
        assert following.startswith(f"{gw.api_base}/{gw.waba_id}/message_templates?"), following
        r = await gw.http.get(following)
    assert seen == names

    r = await gw.http.get(path, params={"limit": 2})
    after = r.json()["paging"]["cursors"]["after"]
    r = await gw.http.get(path, params={"limit": 2, "after": after})
    assert [t["name"] for t in r.json()["data"]] == ["table_moved"]


async def test_reviews_become_template_status_webhooks(
    relay: RunningRelay, reviewed: RunningGateway
) -> None:
    gw = reviewed
    path = f"/{gw.waba_id}/message_templates"
    async with subscribed_inbox(gw) as inbox:

        async def next_review() -> tuple[dict[str, Any], dict[str, Any]]:
            post = await inbox.next(lambda p: p.field == "message_template_status_update")
            entry = post.body["entry"][0]
            assert entry["id"] == gw.waba_id
            assert isinstance(entry["time"], int)
            return entry, post.value

        r = await gw.http.post(path, json=ORDER_SHIPPED)
        approved_id = int(r.json()["id"])
        await relay.ctx.templates.approve(OPERATOR, approved_id)
        _, value = await next_review()
        assert value == {
            "event": "APPROVED",
            "message_template_id": approved_id,
            "message_template_name": "order_shipped",
            "message_template_language": "en_US",
            "reason": "NONE",
            "message_template_category": "UTILITY",
        }

        r = await gw.http.post(path, json=template("big_sale", category="MARKETING"))
        rejected_id = int(r.json()["id"])
        await relay.ctx.templates.reject(OPERATOR, rejected_id, "PROMOTIONAL")
        _, value = await next_review()
        assert value == {
            "event": "REJECTED",
            "message_template_id": rejected_id,
            "message_template_name": "big_sale",
            "message_template_language": "en_US",
            "reason": "PROMOTIONAL",
            "message_template_category": "MARKETING",
        }
        r = await gw.http.get(path, params={"status": "REJECTED"})
        [listed] = r.json()["data"]
        assert listed["rejected_reason"] == "PROMOTIONAL"


# --- business profile and phone number -------------------------------------------------------


async def test_business_profile_read_and_partly_updated(gw: RunningGateway) -> None:
    path = f"/{gw.phone_number_id}/whatsapp_business_profile"
    r = await gw.http.get(path)
    assert r.status_code == 200, r.text
    [profile] = r.json()["data"]
    assert profile == {
        "messaging_product": "whatsapp",
        "about": "",
        "address": "",
        "description": "",
        "email": "",
        "websites": [],
        "vertical": "RETAIL",
    }

    r = await gw.http.post(
        path,
        json={
            "messaging_product": "whatsapp",
            "about": "Fresh bread every morning",
            "email": "hello@bakery.example",
            "websites": ["https://bakery.example"],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    r = await gw.http.post(path, json={"messaging_product": "whatsapp", "vertical": "RESTAURANT"})
    assert r.status_code == 200, r.text

    [profile] = (await gw.http.get(path)).json()["data"]
    assert profile["about"] == "Fresh bread every morning"
    assert profile["email"] == "hello@bakery.example"
    assert profile["websites"] == ["https://bakery.example"]
    assert profile["vertical"] == "RESTAURANT"
    assert profile["address"] == ""

    r = await gw.http.get(path, params={"fields": "about,websites"})
    assert r.json()["data"] == [
        {
            "messaging_product": "whatsapp",
            "about": "Fresh bread every morning",
            "websites": ["https://bakery.example"],
        }
    ]


async def test_business_profile_updates_that_are_refused(gw: RunningGateway) -> None:
    path = f"/{gw.phone_number_id}/whatsapp_business_profile"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"messaging_product": "whatsapp", "opening_hours": "9-5"}, "opening_hours"),
        ({"about": "No product given"}, "messaging_product"),
        ({"messaging_product": "whatsapp", "profile_picture_handle": "4::aGVsbG8="}, "picture"),
        ({"messaging_product": "whatsapp", "about": "x" * 140}, ""),
        ({"messaging_product": "whatsapp", "vertical": "SPACESHIPS"}, ""),
    ]
    for body, named in cases:
        r = await gw.http.post(path, json=body)
        assert r.status_code == 400, (body, r.text)
        error = error_of(r)
        assert error["code"] == 100, (body, error)
        assert named in error["error_data"]["details"], (body, error)
    [profile] = (await gw.http.get(path)).json()["data"]
    assert profile["about"] == ""
    assert profile["vertical"] == "RETAIL"


async def test_the_phone_number_and_the_account(gw: RunningGateway) -> None:
    r = await gw.http.get(f"/{gw.phone_number_id}")
    assert r.status_code == 200, r.text
    number = r.json()
    assert number["id"] == gw.phone_number_id
    assert number["display_phone_number"] == gw.gateway.phone
    assert number["verified_name"] == "Gateway Test Shop"
    assert number["name_status"] == "APPROVED"  # the operator verified the business
    assert number["code_verification_status"] == "VERIFIED"
    assert number["quality_rating"] in ("GREEN", "YELLOW", "RED", "UNKNOWN")
    assert number["platform_type"] == "CLOUD_API"

    r = await gw.http.get(f"/{gw.waba_id}")
    assert r.json() == {"id": gw.waba_id, "name": "Gateway Test Shop"}

    r = await gw.http.get("/123456789")
    assert r.status_code == 400
    assert error_of(r)["code"] == 100
    assert error_of(r)["error_subcode"] == 33


async def test_an_unverified_business_has_a_name_pending_review(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    async with serve_gateway(relay, backend, tmp_path, verify=False) as gw:
        number = (await gw.http.get(f"/{gw.phone_number_id}")).json()
        assert number["verified_name"] == "Gateway Test Shop"
        assert number["name_status"] == "PENDING_REVIEW"


# --- blocking --------------------------------------------------------------------------------


async def test_blocked_customers_cannot_write_and_are_not_written_to(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    path = f"/{gw.phone_number_id}/block_users"
    alice = await customer(relay, tmp_path / "alice")
    try:
        assert alice.phone is not None
        await alice.send_text(gw.gateway.phone, "Buy my crypto")
        nobody = f"+4930{secrets.randbelow(10**8):08d}"
        r = await gw.http.post(
            path,
            json={
                "messaging_product": "whatsapp",
                "block_users": [{"user": alice.phone.lstrip("+")}, {"user": nobody}],
            },
        )
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["messaging_product"] == "whatsapp"
        [added] = result["block_users"]["added_users"]
        assert added["input"] == alice.phone.lstrip("+")
        assert added["wa_id"] == alice.phone.lstrip("+")
        user_id = added["user_id"]
        [failed] = result["block_users"]["failed_users"]
        assert failed["input"] == nobody
        assert failed["errors"][0]["code"] == 131026

        r = await gw.http.get(path)
        assert r.json()["data"] == [
            {
                "messaging_product": "whatsapp",
                "input": alice.phone.lstrip("+"),
                "wa_id": alice.phone.lstrip("+"),
                "user_id": user_id,
            }
        ]

        with pytest.raises(RelayError) as refused:
            await alice.send_text(gw.gateway.phone, "Hello??")
        assert refused.value.code == 131026
        r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Stop."}})
        assert r.status_code == 400
        assert error_of(r)["code"] == 150060  # the relay's code, passed through

        r = await gw.http.request(
            "DELETE",
            path,
            json={"messaging_product": "whatsapp", "block_users": [{"user": user_id}]},
        )
        assert r.status_code == 200, r.text
        [removed] = r.json()["block_users"]["removed_users"]
        assert removed["input"] == user_id
        assert removed["user_id"] == user_id
        assert (await gw.http.get(path)).json()["data"] == []
        r = await gw.send({"to": alice.phone, "type": "text", "text": {"body": "Sorry!"}})
        assert r.status_code == 200, r.text
        await alice.send_text(gw.gateway.phone, "Apology accepted")
    finally:
        await alice.close()


async def test_block_requests_that_are_malformed(gw: RunningGateway) -> None:
    path = f"/{gw.phone_number_id}/block_users"
    for body in (
        {"block_users": [{"user": "+4915100000000"}]},
        {"messaging_product": "whatsapp", "block_users": []},
        {"messaging_product": "whatsapp", "block_users": [{"phone": "+4915100000000"}]},
        {"messaging_product": "whatsapp", "block_users": [{"user": "x"}] * 101},
    ):
        r = await gw.http.post(path, json=body)
        assert r.status_code == 400, (body, r.text)
        assert error_of(r)["code"] == 100
    # A user id nobody with it has written from cannot be blocked.
    r = await gw.http.post(
        path,
        json={"messaging_product": "whatsapp", "block_users": [{"user": "DE.1234567890"}]},
    )
    [failed] = r.json()["block_users"]["failed_users"]
    assert failed["input"] == "DE.1234567890"


# --- webhook subscriptions -------------------------------------------------------------------


async def test_subscribed_apps_listed_and_removed(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    path = f"/{gw.waba_id}/subscribed_apps"
    assert (await gw.http.get(path)).json() == {"data": []}
    alice = await customer(relay, tmp_path / "alice")
    try:
        async with webhook_inbox(gw.gateway.app_secret) as first:
            await subscribe(gw, first)
            [app] = (await gw.http.get(path)).json()["data"]
            assert app["override_callback_uri"] == first.url
            assert app["whatsapp_business_api_data"]["id"]

            r = await gw.http.delete(path)
            assert r.status_code == 200, r.text
            assert r.json() == {"success": True}
            assert (await gw.http.get(path)).json() == {"data": []}

            async with subscribed_inbox(gw) as second:
                await alice.send_text(gw.gateway.phone, "Only for the second endpoint")
                value = await second.next_message("text")
                assert value["messages"][0]["text"]["body"] == "Only for the second endpoint"
            assert first.posts.empty()
    finally:
        await alice.close()


async def test_the_phone_number_webhook_override(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    alice = await customer(relay, tmp_path / "alice")
    try:
        async with webhook_inbox(gw.gateway.app_secret) as inbox:
            r = await gw.http.post(
                f"/{gw.phone_number_id}",
                json={
                    "webhook_configuration": {
                        "override_callback_uri": inbox.url,
                        "verify_token": inbox.verify_token,
                    }
                },
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"success": True}
            [app] = (await gw.http.get(f"/{gw.waba_id}/subscribed_apps")).json()["data"]
            assert app["override_callback_uri"] == inbox.url
            await alice.send_text(gw.gateway.phone, "Hello via the number's override")
            value = await inbox.next_message("text")
            assert value["messages"][0]["text"]["body"] == "Hello via the number's override"
            r = await gw.http.post(f"/{gw.phone_number_id}", json={"about": "x"})
            assert error_of(r)["code"] == 100
    finally:
        await alice.close()


async def test_a_wrong_verify_token_is_2200_and_nothing_is_stored(gw: RunningGateway) -> None:
    path = f"/{gw.waba_id}/subscribed_apps"
    async with webhook_inbox(gw.gateway.app_secret) as inbox:
        r = await gw.http.post(
            path, json={"override_callback_uri": inbox.url, "verify_token": "not-the-token"}
        )
        assert r.status_code == 400
        error = error_of(r)
        assert error["code"] == 2200
        assert error["message"] == "(#2200) Callback verification failed"
        assert inbox.url in error["error_data"]["details"]
        assert inbox.handshakes == ["not-the-token"]
        assert (await gw.http.get(path)).json() == {"data": []}

        for body in (
            {"override_callback_uri": "ftp://shop.example/hook", "verify_token": "x"},
            {"override_callback_uri": inbox.url},
        ):
            r = await gw.http.post(path, json=body)
            assert error_of(r)["code"] == 100, body
        assert (await gw.http.get(path)).json() == {"data": []}

        # The same handshake guards the phone number's webhook override.
        r = await gw.http.post(
            f"/{gw.phone_number_id}",
            json={
                "webhook_configuration": {
                    "override_callback_uri": inbox.url,
                    "verify_token": "still-not-the-token",
                }
            },
        )
        assert error_of(r)["code"] == 2200
        assert (await gw.http.get(path)).json() == {"data": []}

        # Subscribing without an override stores nothing either, and is fine.
        r = await gw.http.post(path)
        assert r.json() == {"success": True}
        assert (await gw.http.get(path)).json() == {"data": []}


async def test_a_new_callback_replaces_the_one_the_api_set(
    relay: RunningRelay, gw: RunningGateway, tmp_path: Path
) -> None:
    path = f"/{gw.waba_id}/subscribed_apps"
    alice = await customer(relay, tmp_path / "alice")
    try:
        async with webhook_inbox(gw.gateway.app_secret) as first:
            await subscribe(gw, first)
            async with subscribed_inbox(gw) as second:
                [app] = (await gw.http.get(path)).json()["data"]
                assert app["override_callback_uri"] == second.url
                await alice.send_text(gw.gateway.phone, "Only for the second endpoint")
                value = await second.next_message("text")
                assert value["messages"][0]["text"]["body"] == "Only for the second endpoint"
            assert first.posts.empty()
    finally:
        await alice.close()


async def test_subscriptions_are_limited(
    relay: RunningRelay, backend: Backend, tmp_path: Path
) -> None:
    async with serve_gateway(relay, backend, tmp_path, webhooks={"max_subscriptions": 2}) as gw:
        path = f"/{gw.waba_id}/subscribed_apps"

        async def listed() -> list[str]:
            return [a["override_callback_uri"] for a in (await gw.http.get(path)).json()["data"]]

        async with webhook_inbox(gw.gateway.app_secret) as inbox:
            urls = [f"{inbox.url}?endpoint={i}" for i in range(4)]

            async def post(url: str) -> httpx.Response:
                return await gw.http.post(
                    path, json={"override_callback_uri": url, "verify_token": inbox.verify_token}
                )

            # One added by the operator (``tresen gateway webhooks add``) stays; the API's
            # callback is one, replaced by the next (the same URL again is an update).
            await gw.gateway.outbox.subscribe(
                urls[0], inbox.verify_token, gw.gateway.app_secret, ["messages"]
            )
            for url in (urls[1], urls[2], urls[2]):
                r = await post(url)
                assert r.status_code == 200, r.text
                assert await listed() == [urls[0], url]

            # No room once the operator's subscriptions fill it.
            r = await gw.http.delete(path)
            assert r.status_code == 200, r.text
            for url in (urls[0], urls[3]):
                await gw.gateway.outbox.subscribe(
                    url, inbox.verify_token, gw.gateway.app_secret, ["messages"]
                )
            r = await post(urls[1])
            assert r.status_code == 400
            assert error_of(r)["code"] == 100
            assert await listed() == [urls[0], urls[3]]
