"""``tresen gateway campaigns``: a business's campaigns, through the inbox's JSON API of a
running gateway (the campaigns are sent by that process), with an agent's token."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tresen.cli.common import GatewayUrlOption, console, format_time

__all__ = ["app"]

app = typer.Typer(
    help="Campaigns: a template to a list or segment of customers, at the pace the rules "
    "allow. Talks to a running gateway with an agent's token (owners and admins change "
    "campaigns).",
    no_args_is_help=True,
)

API = "/inbox/api/v1"
FINISHED = {"done", "cancelled"}
POLL_S = 0.5

Url = GatewayUrlOption
Token = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="TRESEN_INBOX_TOKEN",
        help="An agent's personal access token (tresen gateway agents token create USER).",
    ),
]
CampaignArg = Annotated[int, typer.Argument(help="The campaign's id (see `list`).")]
Watch = Annotated[bool, typer.Option("--watch", help="Follow it with a progress bar until done.")]


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/") + API,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            console.print(f"[red]The gateway cannot be reached:[/red] {exc}")
            raise typer.Exit(2) from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                said = f"{error['message']} ({error['code']})"
            except (ValueError, KeyError, TypeError):
                said = response.text[:200]
            console.print(f"[red]Refused:[/red] {said}", soft_wrap=True)
            raise typer.Exit(1)
        if response.headers.get("content-type", "").startswith("text/csv"):
            return response.text
        return response.json()


def _api(url: str, token: str) -> Api:
    return Api(url, token)


def _money(micros: int, currency: str | None) -> str:
    return f"{micros / 1_000_000:,.2f} {currency or ''}".strip()


@app.command("list")
def list_campaigns(url: Url, token: Token) -> None:
    """Every campaign, newest first."""
    found = _api(url, token).call("GET", "/campaigns")["campaigns"]
    table = Table("id", "name", "template", "state", "sent", "delivered", "failed", "created")
    for c in found:
        counts = c["counts"]
        sent = sum(counts.get(s, 0) for s in ("sent", "delivered", "read"))
        table.add_row(
            str(c["id"]),
            c["name"],
            f"{c['template']} ({c['language']})",
            c["state"],
            f"{sent}/{c['total']}",
            str(counts.get("delivered", 0) + counts.get("read", 0)),
            str(counts.get("failed", 0) + counts.get("opted_out", 0)),
            format_time(c["created_ms"]),
        )
    console.print(table)


def _recipients_csv(path: Path) -> list[dict[str, Any]]:
    """Recipients from a CSV (UTF-8, a header row): `phone` or `account_id`, `name`, and
    every other column an attribute."""
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    recipients = []
    for row in rows:
        phone = (row.pop("phone", "") or "").strip() or None
        account = (row.pop("account_id", "") or "").strip() or None
        name = (row.pop("name", "") or "").strip() or None
        attributes = {k: v for k, v in row.items() if k and v is not None}
        recipient: dict[str, Any] = {"attributes": attributes}
        for key, value in (("phone", phone), ("account_id", account), ("name", name)):
            if value:
                recipient[key] = value
        recipients.append(recipient)
    return recipients


@app.command()
def create(
    url: Url,
    token: Token,
    name: Annotated[str, typer.Option("--name", help="What the team calls it.")],
    template: Annotated[str, typer.Option("--template", help="An approved template's name.")],
    language: Annotated[str, typer.Option("--language", help="The template's language.")],
    to_list: Annotated[
        list[int] | None, typer.Option("--list", help="A subscriber list's id (repeatable).")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="Conversations with this label.")
    ] = None,
    recipients: Annotated[
        Path | None,
        typer.Option("--csv", help="Recipients: phone, name and attribute columns.", exists=True),
    ] = None,
    components: Annotated[
        str,
        typer.Option(
            "--components",
            help='The template\'s parameters as Cloud API components (JSON); "{{name}}" and '
            '"{{ATTRIBUTE}}" are filled per recipient.',
        ),
    ] = "[]",
    spread_s: Annotated[
        int, typer.Option("--spread", help="Spread the sends over this many seconds.")
    ] = 0,
    quiet: Annotated[
        str | None,
        typer.Option("--quiet-hours", help='e.g. "21:00-08:00"; "none" for none.'),
    ] = None,
) -> None:
    """Make a campaign (a draft: see `cost`, `test`, then `start`)."""
    try:
        parsed = json.loads(components)
    except ValueError as exc:
        raise typer.BadParameter(f"--components is not JSON: {exc}") from None
    schedule: dict[str, Any] = {"spread_s": spread_s}
    if quiet == "none":
        schedule["quiet_hours"] = []
    elif quiet:
        start, _, end = quiet.partition("-")
        schedule["quiet_hours"] = [start.strip(), end.strip()]
    body = {
        "name": name,
        "template": template,
        "language": language,
        "audience": {
            "lists": to_list or [],
            "labels": label or [],
            "recipients": _recipients_csv(recipients) if recipients else [],
        },
        "components": parsed,
        "schedule": schedule,
    }
    made = _api(url, token).call("POST", "/campaigns", body)
    console.print(f"Campaign [bold]{made['id']}[/bold] made ({made['state']}).")


@app.command()
def cost(url: Url, token: Token, campaign: CampaignArg) -> None:
    """What it costs if every message is delivered, at the business's rate card."""
    preview = _api(url, token).call("GET", f"/campaigns/{campaign}/cost")
    table = Table("country", "recipients", "cost")
    for country, row in sorted(preview["by_country"].items()):
        table.add_row(country, str(row["recipients"]), _money(row["micros"], preview["currency"]))
    console.print(table)
    console.print(
        f"{preview['recipients']} recipients: "
        f"[bold]{_money(preview['total_micros'], preview['currency'])}[/bold]"
        + (f" ({preview['unpriced']} without a price)" if preview["unpriced"] else "")
    )


@app.command()
def test(
    url: Url,
    token: Token,
    campaign: CampaignArg,
    phone: Annotated[str, typer.Argument(help="Who gets the test message.")],
) -> None:
    """Send the campaign's template once to one phone number."""
    sent = _api(url, token).call("POST", f"/campaigns/{campaign}/test", {"phone": phone})
    console.print(f"Sent ({sent['message_id']}).")


def _change(url: str, token: str, campaign: int, action: str, watch: bool) -> None:
    api = _api(url, token)
    changed = api.call("POST", f"/campaigns/{campaign}/{action}")
    console.print(f"Campaign {campaign}: {changed['state']}.")
    if watch:
        _watch(api, campaign)


@app.command()
def start(url: Url, token: Token, campaign: CampaignArg, watch: Watch = False) -> None:
    """Start sending (now, or at its scheduled time)."""
    _change(url, token, campaign, "start", watch)


@app.command()
def pause(url: Url, token: Token, campaign: CampaignArg) -> None:
    """Stop sending for now; nothing already sent is affected."""
    _change(url, token, campaign, "pause", False)


@app.command()
def resume(url: Url, token: Token, campaign: CampaignArg, watch: Watch = False) -> None:
    """Go on sending after a pause."""
    _change(url, token, campaign, "resume", watch)


@app.command()
def cancel(url: Url, token: Token, campaign: CampaignArg) -> None:
    """Send nothing more of it."""
    _change(url, token, campaign, "cancel", False)


def _done(c: dict[str, Any]) -> int:
    counts: dict[str, int] = c["counts"]
    return int(c["total"]) - counts.get("queued", 0) - counts.get("sending", 0)


def _watch(api: Api, campaign: int) -> dict[str, Any]:
    shown: dict[str, Any] = api.call("GET", f"/campaigns/{campaign}")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(shown["name"], total=max(1, shown["total"]), state=shown["state"])
        while True:
            progress.update(task, completed=_done(shown), state=shown["state"])
            if shown["state"] in FINISHED or shown["state"] == "paused":
                break
            time.sleep(POLL_S)
            shown = api.call("GET", f"/campaigns/{campaign}")
    return shown


@app.command()
def show(url: Url, token: Token, campaign: CampaignArg, watch: Watch = False) -> None:
    """One campaign: its state and where its recipients are."""
    api = _api(url, token)
    shown = _watch(api, campaign) if watch else api.call("GET", f"/campaigns/{campaign}")
    console.print(
        f"[bold]{shown['name']}[/bold] — {shown['template']} ({shown['language']}, "
        f"{shown['category'].lower()}): {shown['state']}"
        + (f" ({shown['reason']})" if shown["reason"] else "")
    )
    table = Table("state", "recipients")
    for state, count in shown["counts"].items():
        if count:
            table.add_row(state, str(count))
    console.print(table)


@app.command()
def results(
    url: Url,
    token: Token,
    campaign: CampaignArg,
    to_csv: Annotated[
        Path | None, typer.Option("--csv", help="Also write each recipient's outcome here.")
    ] = None,
) -> None:
    """Delivery, read and reply rates, opt-outs and cost."""
    api = _api(url, token)
    found = api.call("GET", f"/campaigns/{campaign}/results")
    table = Table("", "recipients", "rate")
    table.add_row("sent", str(found["sent"]), "")
    for key, rate in (
        ("delivered", "delivery_rate"),
        ("read", "read_rate"),
        ("replied", "reply_rate"),
    ):
        table.add_row(key, str(found[key]), f"{found[rate]:.0%}")
    table.add_row("opted out", str(found["opted_out"]), "")
    table.add_row("failed", str(found["failed"]), "")
    console.print(table)
    console.print(f"Cost: [bold]{_money(found['cost_micros'], found['currency'])}[/bold]")
    if to_csv is not None:
        to_csv.write_text(api.call("GET", f"/campaigns/{campaign}/results.csv"), encoding="utf-8")
        console.print(f"Written: {to_csv}")
