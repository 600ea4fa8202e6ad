"""``tresen admin billing`` as an operator uses it: the real command in a child process,
against a relay in this process."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from relay.billing.factories import Billing

pytestmark = pytest.mark.slow

# The child gets no admin settings from whoever runs the tests; wide output, so tables are
# not cut.
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("TRESEN_RELAY_URL", "TRESEN_ADMIN_TOKEN", "TRESEN_CONFIG")
} | {"COLUMNS": "250"}


async def tresen_admin(b: Billing, *args: str) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of ``tresen admin ARGS``."""
    token = b.operator["Authorization"].removeprefix("Bearer ")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tresen",
        "admin",
        *args,
        env=ENV | {"TRESEN_RELAY_URL": b.relay.url, "TRESEN_ADMIN_TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def ok(b: Billing, *args: str) -> str:
    code, out, err = await tresen_admin(b, *args)
    assert code == 0, out + err
    assert "Traceback" not in err
    return out


async def test_an_operator_edits_rates_and_reads_statements_from_the_command_line(
    billing: Billing,
) -> None:
    b = billing
    shop, ana = await b.business(), await b.customer("FR")

    shown = await ok(b, "billing", "rates", "show")
    assert "0.131 EUR" in shown  # marketing to Germany, from the settings
    assert "settings" in shown

    set_ = await ok(b, "billing", "rates", "set", "marketing", "FR", "120000")
    assert "default price of marketing to FR: 0.12 EUR (120000 micro-units)" in set_
    overridden = await ok(
        b, "billing", "rates", "override", "--business", shop.phone, "utility", "*", "2500"
    )
    assert "0.0025 EUR" in overridden
    assert "override" in overridden
    card = json.loads(await ok(b, "billing", "rates", "show", "--business", shop.phone, "--json"))
    assert [(o["category"], o["country"], o["price_micros"]) for o in card["overrides"]] == [
        ("utility", "*", 2500)
    ]

    code, _, err = await tresen_admin(b, "billing", "rates", "set", "promo", "DE", "1")
    assert code == 1
    assert "error 100: invalid rate card" in err
    assert "rates.0.category" in err

    marketing = await b.template(shop, "MARKETING")
    await b.consent(shop, ana, "marketing")
    sent = [(await b.send(shop, ana, "template", marketing))["message_id"] for _ in range(3)]
    await b.deliver(ana)

    human = await ok(b, "billing", "statement", "--business", shop.phone, "--month", "2026-01")
    assert "Statement 2026-01" in human
    assert "in progress" in human
    assert "0.36" in human  # three at 0.12 EUR
    assert "3 line items" in human

    # Every line item, fetched page by page.
    as_json = json.loads(
        await ok(
            b,
            "billing",
            "statement",
            "--business",
            shop.account_id,
            "--month",
            "2026-01",
            "--json",
            "--page-size",
            "2",
        )
    )
    assert sorted(i["message_id"] for i in as_json["items"]) == sorted(sent)
    assert as_json["truncated"] is False
    as_csv = await ok(
        b,
        "billing",
        "statement",
        "--business",
        shop.phone,
        "--month",
        "2026-01",
        "--csv",
        "--page-size",
        "2",
    )
    whole = await b.admin(
        "GET", f"/v1/admin/businesses/{shop.account_id}/statements/2026-01?format=csv"
    )
    assert as_csv == whole.text

    removed = await ok(b, "billing", "rates", "override", "--business", shop.phone, "--remove")
    assert "removed 1 override(s)" in removed
    code, _, err = await tresen_admin(
        b, "billing", "statement", "--business", ana.phone, "--month", "2026-01"
    )
    assert code == 1
    assert "error 150050" in err
