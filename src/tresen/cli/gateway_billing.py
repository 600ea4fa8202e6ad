"""``tresen gateway billing``: the operator's statement of a month held against the delivery
receipts the customers' devices signed, through the inbox's JSON API of a running gateway
(it holds the receipts and the device that may read the statement), with an owner's or
admin's token."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from tresen.cli.common import GatewayUrlOption, console, format_time

__all__ = ["app"]

app = typer.Typer(
    help="The business's bills: every charge of the operator's statement proven by a "
    "customer's signed delivery receipt. Talks to a running gateway with an owner's or "
    "admin's token.",
    no_args_is_help=True,
)

API = "/inbox/api/v1"
CLEAN, UNPROVEN, ERROR = 0, 1, 2
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

REASONS = {
    "no_receipt": "no receipt",
    "other_customer": "signed by another customer",
    "other_template": "another template",
    "outside_month": "delivered outside the month",
    "bad_signature": "signature does not verify",
    "charged_twice": "charged twice",
}

Url = GatewayUrlOption
Token = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="TRESEN_INBOX_TOKEN",
        help="An owner's or admin's personal access token (tresen gateway agents token "
        "create USER).",
    ),
]


def _money(micros: int, currency: str) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d} {currency}"


def _fetch(url: str, token: str, month: str) -> dict[str, Any]:
    try:
        with httpx.Client(
            base_url=url.rstrip("/") + API,
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
        ) as http:
            response = http.get(f"/billing/{month}")
    except httpx.HTTPError as exc:
        console.print(f"[red]The gateway cannot be reached:[/red] {exc}")
        raise typer.Exit(ERROR) from None
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            said = f"{error['message']} ({error['code']})"
        except (ValueError, KeyError, TypeError):
            said = response.text[:200]
        console.print(f"[red]Refused:[/red] {said}", soft_wrap=True)
        raise typer.Exit(ERROR)
    body: dict[str, Any] = response.json()
    return body


@app.command()
def verify(
    month: Annotated[
        str, typer.Option("--month", help="The statement's calendar month (UTC), YYYY-MM.")
    ],
    url: Url,
    token: Token,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fetch every line item of the month's statement and match each to a delivery receipt
    (same message, the line's recipient signed it, same template, delivered in the month).
    Prints the totals and every charge without a valid receipt. Exit status 0 when every
    charge is proven, 1 when some is not, 2 on an error."""
    if not _MONTH.fullmatch(month):
        console.print("[red]--month is written like 2026-01.[/red]")
        raise typer.Exit(ERROR)
    result = _fetch(url, token, month)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print(result)
    raise typer.Exit(CLEAN if result["clean"] else UNPROVEN)


def _print(result: dict[str, Any]) -> None:
    month = result["month"]
    totals = Table("currency", "charged", "amount", "proven", "amount proven", "unproven")
    proven = {t["currency"]: t for t in result["verified"]}
    unproven = {t["currency"]: t for t in result["unproven"]}
    for t in result["charged"]:
        p = proven.get(t["currency"], {"count": 0, "amount_micros": 0})
        u = unproven.get(t["currency"], {"count": 0, "amount_micros": 0})
        totals.add_row(
            t["currency"],
            str(t["count"]),
            _money(t["amount_micros"], t["currency"]),
            str(p["count"]),
            _money(p["amount_micros"], t["currency"]),
            f"{u['count']} ({_money(u['amount_micros'], t['currency'])})",
        )
    console.print(totals)
    if not result["final"]:
        console.print(f"{month} is not over: the statement may still grow.")
    if result["items_reduced"]:
        console.print(
            f"{result['items_reduced']} charges are past the dispute period: only their "
            "totals are left, nothing to check them against."
        )
    for currency in result["totals_exceeding_items"]:
        console.print(f"[red]The statement's total in {currency} exceeds its line items.[/red]")
    if result["clean"]:
        console.print(f"[green]{month}: every charge is proven by a delivery receipt.[/green]")
        return
    console.print(
        f"[red]{month}: {result['unproven_count']} charges are not proven by a delivery "
        "receipt.[/red]"
    )
    # One line per charge, never folded: the ids are what the operator is asked about.
    for item in result["unproven_items"]:
        template = "—" if item["template_id"] is None else str(item["template_id"])
        console.print(
            f"  {item['message_id']}  recipient {item['recipient_account']}  "
            f"template {template}  charged {format_time(item['charged_ms'])}  "
            f"{_money(item['price_micros'], item['currency'])}  "
            f"({REASONS.get(item['reason'], item['reason'])})",
            soft_wrap=True,
            highlight=False,
        )
    if result["unproven_items_truncated"]:
        console.print(f"Only the first {len(result['unproven_items'])} are listed.")
