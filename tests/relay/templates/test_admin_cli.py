"""``tresen admin templates`` as an operator uses it against a running relay: the review
queue, approving (signing) and rejecting, one template, and a quality run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from typer.testing import CliRunner

from tresen.cli.admin import app
from tresen.cli.common import console


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    # The console was made when the CLI was imported, with whatever width the test process
    # had then; the tables below are read whole.
    monkeypatch.setattr(console, "width", 250)


async def admin(tpl: Any, *args: str) -> tuple[int, str]:
    """Run ``tresen admin …`` in a thread (the relay keeps serving on this loop)."""
    token = (await tpl.operator())["Authorization"].removeprefix("Bearer ")
    env = {"TRESEN_RELAY_URL": tpl.relay.url, "TRESEN_ADMIN_TOKEN": token, "COLUMNS": "250"}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, result.output


async def test_review_queue_approve_and_reject(tpl: Any, make_template: Any) -> None:
    shop = await tpl.business("Bäckerei Müller")
    shipped = await tpl.submit(shop)
    promo = await tpl.submit(shop, make_template(name="summer_sale", category="MARKETING"))

    code, queue = await admin(tpl, "templates", "list")
    assert code == 0, queue
    assert "order_shipped" in queue
    assert "summer_sale" in queue
    assert "body: Hi {{1}}, your order ships on {{2}}." in queue

    code, out = await admin(tpl, "templates", "approve", shipped)
    assert code == 0, out
    key_id = (await tpl.http.get("/v1/operator/keys")).json()["current_key_id"]
    assert f"template {shipped} 'order_shipped' (en_US) of {shop.account_id} approved" in out
    assert f"signed by {key_id}" in out

    code, out = await admin(tpl, "templates", "reject", promo, "--reason", "promotional")
    assert code == 0, out
    assert f"template {promo} 'summer_sale' (en_US) of {shop.account_id} rejected" in out
    assert (await tpl.own(shop, promo))["rejected_reason"] == "promotional"

    code, out = await admin(tpl, "templates", "list")
    assert "no PENDING templates" in out
    code, out = await admin(tpl, "templates", "list", "--status", "all", "--account", shop.phone)
    assert "APPROVED" in out
    assert "REJECTED" in out
    code, out = await admin(tpl, "templates", "show", promo)
    assert "rejected: promotional" in out
    assert "status: REJECTED" in out

    # A decision on a decided template: the relay's code and message, exit code 1.
    code, out = await admin(tpl, "templates", "approve", promo)
    assert code == 1
    assert "error 150051" in out
    assert "not waiting for review" in out

    code, out = await admin(tpl, "templates", "quality")
    assert code == 0, out
    assert "no template changed" in out
