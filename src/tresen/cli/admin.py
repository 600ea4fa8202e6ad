"""``tresen admin``: the operator's console — tokens, the signing key, business verification.

``token`` and ``keys show`` work directly on the relay's database (like ``tresen relay
migrate``: ``--data-dir``, ``--database-url``, ``--config``); everything else goes through the
relay's admin API with ``--relay`` (``TRESEN_RELAY_URL``) and an operator token ``--token``
(``TRESEN_ADMIN_TOKEN``), so it works against a relay on another machine.

Exit codes: 0 done, 1 an error (the relay's code and message, or a database problem),
2 a usage error (e.g. no token).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tresen.cli.common import (
    ConfigOption,
    DatabaseUrlOption,
    DataDirOption,
    console,
    make_settings,
)
from tresen.cli.common import format_time as _time

if TYPE_CHECKING:
    from tresen.core.settings import Settings
    from tresen.relay.operator.service import OperatorService

# Server modules are imported inside the commands that work on the database, so the API
# commands and `--help` stay fast.

__all__ = ["AdminApi", "AdminError", "app"]

T = TypeVar("T")

app = typer.Typer(
    help="Operate the platform: operator tokens, the signing key, business verification.",
    no_args_is_help=True,
)
token_app = typer.Typer(
    help="Operator tokens for the admin API (works directly on the database).",
    no_args_is_help=True,
)
keys_app = typer.Typer(help="The operator's certificate signing key.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")
templates_app = typer.Typer(
    help="Message templates: the review queue, approval (signing) and rejection, quality.",
    no_args_is_help=True,
)
app.add_typer(templates_app, name="templates")
billing_app = typer.Typer(
    help="Billing: the rate cards and the businesses' monthly statements.",
    no_args_is_help=True,
)
rates_app = typer.Typer(
    help="The default rate card and per-business overrides (micro-units per delivered template).",
    no_args_is_help=True,
)
billing_app.add_typer(rates_app, name="rates")
app.add_typer(billing_app, name="billing")

err = Console(stderr=True, highlight=False, soft_wrap=True)

RelayOption = Annotated[
    str,
    typer.Option("--relay", envvar="TRESEN_RELAY_URL", help="Base URL of the relay."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="TRESEN_ADMIN_TOKEN",
        help="Operator token (from `tresen admin token create`).",
        show_default=False,
    ),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why; recorded in the audit log and told the business.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the relay's answer as JSON.")]
AccountArgument = Annotated[
    str, typer.Argument(help="Account id (32 hex digits) or phone number (+49…).")
]

DEFAULT_RELAY = "http://127.0.0.1:8470"
_ACCOUNT_ID = re.compile(r"[0-9a-f]{32}")
_PHONE_LIKE = re.compile(r"\+?[0-9 ()./-]{4,}")


# --- errors and formatting -------------------------------------------------------------------


class AdminError(Exception):
    """A rejection by the relay (its stable code and message) or a failure to reach it."""

    def __init__(self, code: int | None, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@contextmanager
def _reported() -> Iterator[None]:
    """Errors become one line on standard error and exit code 1, never a traceback."""
    try:
        yield
    except AdminError as exc:
        prefix = f"error {exc.code}: " if exc.code is not None else "error: "
        err.print(f"[red]{escape(prefix + exc.message)}[/red]")
        details = {k: v for k, v in exc.details.items() if k != "problems"}
        for problem in exc.details.get("problems", []):
            err.print(
                f"  {escape(str(problem.get('field')))}: {escape(str(problem.get('problem')))}"
            )
        if details:
            err.print("  " + escape(json.dumps(details, ensure_ascii=False)))
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, ensure_ascii=False))


def _operator_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"[:64]


# --- the admin API ---------------------------------------------------------------------------


class AdminApi:
    """The relay's admin API over HTTP (an injectable ``httpx`` transport for tests)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.response(method, path, **kwargs).json()

    def response(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The relay's answer as it came (JSON, CSV …); a rejection raises ``AdminError``."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise AdminError(None, f"cannot reach the relay at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise AdminError(int(error["code"]), str(error["message"]), error.get("details"))
            except (ValueError, KeyError, TypeError):
                raise AdminError(
                    None, f"HTTP {response.status_code}: {response.text[:200]}"
                ) from None
        return response

    def resolve(self, account: str) -> str:
        """An account id for an account id or a phone number."""
        account = account.strip()
        if _ACCOUNT_ID.fullmatch(account) or not _PHONE_LIKE.fullmatch(account):
            return account
        found = self.call("GET", "/v1/admin/accounts", params={"phone": account})
        return str(found["account_id"])

    def business_action(self, account: str, action: str, body: Any = None) -> Any:
        account_id = self.resolve(account)
        return self.call("POST", f"/v1/admin/businesses/{account_id}/{action}", json=body)


@contextmanager
def _api(relay: str, token: str | None) -> Iterator[AdminApi]:
    if not token:
        err.print(
            "[red]an operator token is needed:[/red] pass --token or set TRESEN_ADMIN_TOKEN "
            "(create one with `tresen admin token create NAME`)"
        )
        raise typer.Exit(2)
    api = AdminApi(relay, token)
    try:
        with _reported():
            yield api
    finally:
        api.close()


# --- commands on the database ----------------------------------------------------------------


def _on_database(settings: Settings, action: Callable[[OperatorService], Awaitable[T]]) -> T:
    """Run ``action`` with an operator service over the migrated relay database."""
    from sqlalchemy.exc import SQLAlchemyError

    from tresen.cli.relay import database_for
    from tresen.core.clock import SystemClock
    from tresen.core.errors import TresenError
    from tresen.relay import migrate as migrations
    from tresen.relay.operator.service import OperatorService

    async def run() -> T:
        db = database_for(settings)
        try:
            await migrations.upgrade(db)
            return await action(OperatorService(db, SystemClock(), settings))
        finally:
            await db.dispose()

    with _reported():
        try:
            return asyncio.run(run())
        except TresenError as exc:
            raise AdminError(int(exc.code), exc.message, exc.details) from None
        except (SQLAlchemyError, OSError) as exc:
            raise AdminError(None, f"database: {exc}") from None


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who or what uses the token, e.g. alice.")],
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Create an operator token. It is printed once (standard output); only its hash is kept."""
    settings = make_settings(config, database_url=database_url, data_dir=data_dir)
    by = _operator_name()
    token = _on_database(settings, lambda ops: ops.create_token(name, by=by))
    err.print(f"Operator token {escape(name)!r} created. It is shown only now; keep it secret:")
    print(token)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="Name of the token.")],
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke an operator token at once."""
    settings = make_settings(config, database_url=database_url, data_dir=data_dir)
    by = _operator_name()
    _on_database(settings, lambda ops: ops.revoke_token(name, by=by))
    console.print(f"operator token {escape(name)!r} revoked")


@token_app.command("list")
def token_list(
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """List operator tokens (names and times; tokens themselves are never stored)."""
    settings = make_settings(config, database_url=database_url, data_dir=data_dir)
    rows = _on_database(settings, lambda ops: ops.list_tokens())
    if not rows:
        console.print("no operator tokens; create one with `tresen admin token create NAME`")
        return
    table = Table("name", "created", "revoked")
    for row in rows:
        table.add_row(escape(row.name), _time(row.created_ms), _time(row.revoked_ms))
    console.print(table)


@keys_app.command("show")
def keys_show(
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """The operator's public keys and the current key's fingerprint (clients pin it)."""
    from tresen.core.clock import SystemClock
    from tresen.crypto.certificates import key_fingerprint

    settings = make_settings(config, database_url=database_url, data_dir=data_dir)
    rows = _on_database(settings, lambda ops: ops.stored_keys())
    if not rows:
        err.print("no operator key yet: the relay creates it when it first starts")
        raise typer.Exit(1)
    now = SystemClock().now_ms()
    active = [r for r in rows if r.retires_ms is None] or rows
    current = max(active, key=lambda r: r.signs_from_ms)
    console.print(f"Current signing key: {current.key_id}")
    console.print(f"Fingerprint:         {key_fingerprint(current.public_key)}")
    console.print(f"Public key:          {current.public_key}")
    table = Table("key id", "state", "signs from", "retires", "endorsed by previous")
    for row in rows:
        if row.key_id == current.key_id:
            state = "current"
        elif row.retires_ms is not None and row.retires_ms > now:
            state = "overlap"
        else:
            state = "retired"
        table.add_row(
            row.key_id,
            state,
            _time(row.signs_from_ms),
            _time(row.retires_ms),
            "yes" if row.endorsement else "— (first key)",
        )
    console.print(table)


# --- commands over the admin API -------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate(
    overlap_days: Annotated[
        int,
        typer.Option(
            "--overlap-days", min=0, max=3650, help="Days the old key's certificates stay valid."
        ),
    ] = 30,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
) -> None:
    """Hand signing over to a new key endorsed by the current one; re-issues certificates."""
    with _api(relay, token) as api:
        body = api.call(
            "POST", "/v1/admin/operator-keys/rotate", json={"overlap_days": overlap_days}
        )
    console.print(f"New signing key:  {body['key_id']}")
    console.print(f"Fingerprint:      {body['fingerprint']}")
    console.print(
        f"Previous key {body['previous_key_id']} retires {_time(body['previous_retires_ms'])}"
    )
    console.print(f"Certificates re-issued with the new key: {len(body['reissued'])}")


@app.command()
def requests(
    state: Annotated[
        str,
        typer.Option(
            "--state", help="pending, approved, rejected, withdrawn or all.", show_default=True
        ),
    ] = "pending",
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verification requests, oldest first."""
    with _api(relay, token) as api:
        body = api.call(
            "GET", "/v1/admin/verification-requests", params={"state": state, "limit": limit}
        )
    if as_json:
        _print_json(body)
        return
    if not body["requests"]:
        console.print(f"no {state} verification requests")
        return
    table = Table("id", "account", "phone", "display name", "state", "requested", "note / reason")
    for r in body["requests"]:
        table.add_row(
            str(r["id"]),
            r["account_id"],
            r["phone"] or "",
            escape(r["display_name"] or ""),
            r["state"],
            _time(r["requested_ms"]),
            escape(r["reason"] or r["note"] or ""),
        )
    console.print(table)


@app.command()
def verify(
    account: AccountArgument,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a business: issue its certificate (name, phone, device keys as they are now)."""
    with _api(relay, token) as api:
        body = api.business_action(account, "verify")
    if as_json:
        _print_json(body)
        return
    cert = body["certificate"]
    console.print(
        f"verified {escape(cert['display_name'])!r} ({cert['account_id']}, {cert['phone']}): "
        f"certificate {cert['serial']} signed by {cert['key_id']}, binds "
        f"{len(cert['device_keys'])} device key(s), valid until {_time(cert['expires_ms'])}"
    )


@app.command()
def reject(
    account: AccountArgument,
    reason: ReasonOption,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
) -> None:
    """Reject a business's pending verification request."""
    with _api(relay, token) as api:
        body = api.business_action(account, "reject", {"reason": reason})
    console.print(f"verification request {body['request_id']} of {body['account_id']} rejected")


@app.command()
def revoke(
    account: AccountArgument,
    reason: ReasonOption,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
) -> None:
    """Revoke a business's certificates (they go on the revocation list)."""
    with _api(relay, token) as api:
        body = api.business_action(account, "revoke", {"reason": reason})
    serials = ", ".join(str(s) for s in body["revoked"])
    console.print(f"revoked certificate(s) {serials} of {body['account_id']}")


@app.command()
def suspend(
    account: AccountArgument,
    reason: ReasonOption,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
) -> None:
    """Suspend a business: it cannot send until reinstated."""
    with _api(relay, token) as api:
        body = api.business_action(account, "suspend", {"reason": reason})
    console.print(f"{body['account_id']} suspended since {_time(body['suspended_ms'])}")


@app.command()
def reinstate(
    account: AccountArgument,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
) -> None:
    """Lift a business's suspension."""
    with _api(relay, token) as api:
        body = api.business_action(account, "reinstate")
    console.print(f"{body['account_id']} reinstated")


@app.command()
def show(
    account: AccountArgument,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """A business: profile, verification state, devices, certificates, requests, audit."""
    with _api(relay, token) as api:
        account_id = api.resolve(account)
        body = api.call("GET", f"/v1/admin/businesses/{account_id}")
    if as_json:
        _print_json(body)
        return
    console.print(f"[bold]{escape(body['display_name'])}[/bold]  {body['account_id']}")
    console.print(f"phone:         {body['phone']}")
    verification = body["verification"]
    if verification == "verified" and body["current_serial"] is None:
        verification += " (no current certificate: expired or its key retired; verify again)"
    console.print(f"verification:  {escape(verification)}")
    if body["suspended_ms"] is not None:
        console.print(
            f"[red]suspended[/red] since {_time(body['suspended_ms'])}: "
            f"{escape(body['suspend_reason'] or '')}"
        )
    devices = Table("device", "Ed25519 identity key", title="devices with keys")
    for d in body["devices"]:
        devices.add_row(str(d["device_id"]), d["ed25519"])
    console.print(devices)
    if body["certificates"]:
        certs = Table("serial", "key", "status", "name", "issued", "expires", "revoked: reason")
        for c in body["certificates"]:
            status = c["status"] + (" (current)" if c["current"] else "")
            revoked = "" if c["revoked_ms"] is None else f"{_time(c['revoked_ms'])}: "
            certs.add_row(
                str(c["serial"]),
                c["key_id"],
                status,
                escape(c["display_name"]),
                _time(c["issued_ms"]),
                _time(c["expires_ms"]),
                escape(revoked + (c["revoke_reason"] or "")),
            )
        console.print(certs)
    if body["requests"]:
        reqs = Table("id", "state", "requested", "decided", "by", "note / reason")
        for r in body["requests"]:
            reqs.add_row(
                str(r["id"]),
                r["state"],
                _time(r["requested_ms"]),
                _time(r["decided_ms"]),
                escape(r["decided_by"] or ""),
                escape(r["reason"] or r["note"] or ""),
            )
        console.print(reqs)
    _print_audit(body["audit"])


def _print_audit(entries: list[dict[str, Any]]) -> None:
    if not entries:
        console.print("no audit entries")
        return
    table = Table("at", "operator", "action", "account", "details")
    for e in entries:
        table.add_row(
            _time(e["at_ms"]),
            escape(e["operator"]),
            e["action"],
            e["account_id"] or "",
            escape(json.dumps(e["details"], ensure_ascii=False)),
        )
    console.print(table)


@app.command()
def audit(
    account: Annotated[
        str | None, typer.Option("--account", help="Only this account (id or phone).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The operators' actions, newest first."""
    with _api(relay, token) as api:
        params: dict[str, Any] = {"limit": limit}
        if account:
            params["account_id"] = api.resolve(account)
        body = api.call("GET", "/v1/admin/audit", params=params)
    if as_json:
        _print_json(body)
        return
    _print_audit(body["entries"])


# --- templates -------------------------------------------------------------------------------

TemplateArgument = Annotated[str, typer.Argument(help="Template id (decimal).")]


def _template_text(template: dict[str, Any]) -> list[str]:
    """The components of a template as an operator reviews them, one line each."""
    lines = []
    for c in template["components"]:
        if c["type"] == "BUTTONS":
            for b in c["buttons"]:
                target = b.get("url") or b.get("phone_number") or b.get("example") or ""
                lines.append(f"button {b['type']}: {b.get('text', '')} {target}".rstrip())
        elif c["type"] == "HEADER" and c["format"] != "TEXT":
            lines.append(f"header: [{c['format'].lower()}]")
        elif c["type"] == "BODY" and c.get("text") is None:
            lines.append("body: (the platform's code text)")
        elif c["type"] == "FOOTER" and c.get("text") is None:
            lines.append(f"footer: code expires in {c.get('code_expiration_minutes')} minutes")
        else:
            lines.append(f"{c['type'].lower()}: {c.get('text', '')}")
    return lines


@templates_app.command("list")
def templates_list(
    status: Annotated[
        str,
        typer.Option(
            "--status",
            help="PENDING (the review queue), APPROVED, REJECTED, PAUSED, DISABLED, DELETED "
            "or all.",
        ),
    ] = "PENDING",
    account: Annotated[
        str | None, typer.Option("--account", help="Only this business (id or phone).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Templates in one status, oldest first: by default those waiting for review."""
    with _api(relay, token) as api:
        params: dict[str, Any] = {"status": status if status == "all" else status.upper()}
        params["limit"] = limit
        if account:
            params["account_id"] = api.resolve(account)
        body = api.call("GET", "/v1/admin/templates", params=params)
    if as_json:
        _print_json(body)
        return
    if not body["templates"]:
        console.print(f"no {status} templates")
        return
    table = Table("id", "account", "name", "language", "category", "status", "quality", "text")
    for t in body["templates"]:
        table.add_row(
            t["id"],
            t["account_id"],
            escape(t["name"]),
            t["language"],
            t["category"],
            t["status"],
            t["quality_score"]["score"],
            escape("\n".join(_template_text(t))),
        )
    console.print(table)


@templates_app.command("show")
def templates_show(
    template_id: TemplateArgument,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One template with its components, status and quality."""
    with _api(relay, token) as api:
        body = api.call("GET", f"/v1/admin/templates/{template_id}")
    if as_json:
        _print_json(body)
        return
    console.print(
        f"[bold]{escape(body['name'])}[/bold] ({body['language']}, {body['category']}, "
        f"{body['parameter_format']})  id {body['id']} of {body['account_id']}"
    )
    console.print(f"status: {body['status']}  quality: {body['quality_score']['score']}")
    if body["rejected_reason"] != "NONE":
        console.print(f"rejected: {escape(body['rejected_reason'])}")
    if body["paused_until_ms"] is not None:
        console.print(f"paused until {_time(body['paused_until_ms'])}")
    for line in _template_text(body):
        console.print("  " + escape(line))


@templates_app.command("approve")
def templates_approve(
    template_id: TemplateArgument,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
) -> None:
    """Approve a pending template: the relay signs it with the operator key."""
    with _api(relay, token) as api:
        body = api.call("POST", f"/v1/admin/templates/{template_id}/approve")
    t = body["template"]
    console.print(
        f"template {t['id']} {escape(t['name'])!r} ({t['language']}) of {t['account_id']} "
        f"approved, signed by {body['key_id']}"
    )


@templates_app.command("reject")
def templates_reject(
    template_id: TemplateArgument,
    reason: ReasonOption,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
) -> None:
    """Reject a pending template; the business reads the reason."""
    with _api(relay, token) as api:
        body = api.call(
            "POST", f"/v1/admin/templates/{template_id}/reject", json={"reason": reason}
        )
    console.print(
        f"template {body['id']} {escape(body['name'])!r} ({body['language']}) of "
        f"{body['account_id']} rejected"
    )


@templates_app.command("quality")
def templates_quality(
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rate approved and paused templates now; pause or disable those reported too often."""
    with _api(relay, token) as api:
        body = api.call("POST", "/v1/admin/templates/quality")
    if as_json:
        _print_json(body)
        return
    if not body["changes"]:
        console.print("no template changed")
        return
    table = Table("id", "account", "name", "status", "quality", "paused until")
    for c in body["changes"]:
        table.add_row(
            c["id"],
            c["account_id"],
            escape(c["name"]),
            f"{c['previous_status']} → {c['status']}",
            f"{c['previous_quality']} → {c['quality']}",
            _time(c["paused_until_ms"]),
        )
    console.print(table)


# --- billing ---------------------------------------------------------------------------------

BusinessOption = Annotated[
    str, typer.Option("--business", help="The business: account id or phone number.")
]
CategoryArgument = Annotated[
    str,
    typer.Argument(help="marketing, utility, authentication or authentication_international."),
]
CountryArgument = Annotated[
    str, typer.Argument(help="Recipient country, ISO 3166-1 alpha-2 (DE), or '*' for any other.")
]
PriceArgument = Annotated[
    int, typer.Argument(help="Price per delivered template in micro-units (131000 = 0.131).")
]
CurrencyOption = Annotated[
    str | None,
    typer.Option("--currency", help="ISO 4217 code; the operator's currency if omitted."),
]


def _amount(micros: int) -> str:
    whole, fraction = divmod(micros, 1_000_000)
    digits = f"{fraction:06d}".rstrip("0")
    return f"{whole}.{digits.ljust(2, '0')}"


def _rates_table(rates: list[dict[str, Any]], title: str) -> Table:
    sourced = bool(rates) and "source" in rates[0]
    table = Table("category", "country", "price", "micro-units", title=title)
    if sourced:
        table.add_column("from")
    for r in rates:
        row = [
            r["category"],
            r["country"],
            f"{_amount(r['price_micros'])} {r['currency']}",
            str(r["price_micros"]),
        ]
        table.add_row(*row, *([r["source"]] if sourced else []))
    return table


def _print_card(body: dict[str, Any]) -> None:
    if "overrides" in body:
        if body["overrides"]:
            console.print(_rates_table(body["overrides"], f"overrides of {body['account_id']}"))
        else:
            console.print(f"{body['account_id']} has no overrides: the default card applies")
        console.print(_rates_table(body["effective"], "prices that apply to it"))
        return
    console.print(
        _rates_table(body["effective"], f"default rate card (currency {body['currency']})")
    )
    console.print(
        "'*' stands for every country not listed; 'from' says whether a price was set with "
        "`rates set` (operator) or comes from the settings"
    )


@rates_app.command("show")
def rates_show(
    business: Annotated[
        str | None,
        typer.Option("--business", help="A business's overrides and prices (id or phone)."),
    ] = None,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The default rate card, or a business's overrides and the prices that apply to it."""
    with _api(relay, token) as api:
        if business is None:
            body = api.call("GET", "/v1/admin/rate-card")
        else:
            body = api.call("GET", f"/v1/admin/businesses/{api.resolve(business)}/rate-card")
    if as_json:
        _print_json(body)
        return
    _print_card(body)


def _rate(category: str, country: str, price: int, currency: str | None) -> dict[str, Any]:
    rate: dict[str, Any] = {"category": category, "country": country, "price_micros": price}
    if currency is not None:
        rate["currency"] = currency
    return rate


@rates_app.command("set")
def rates_set(
    category: CategoryArgument,
    country: CountryArgument,
    price_micros: PriceArgument,
    currency: CurrencyOption = None,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
) -> None:
    """Set a price of the default card; sends accepted from now on pay it."""
    with _api(relay, token) as api:
        body = api.call(
            "PUT",
            "/v1/admin/rate-card",
            json={"rates": [_rate(category, country, price_micros, currency)]},
        )
    [row] = [
        r
        for r in body["rows"]
        if (r["category"], r["country"]) == (category.lower(), country.upper())
    ]
    console.print(
        f"default price of {row['category']} to {row['country']}: "
        f"{_amount(row['price_micros'])} {row['currency']} ({row['price_micros']} micro-units)"
    )


@rates_app.command("override")
def rates_override(
    business: BusinessOption,
    category: Annotated[
        str | None,
        typer.Argument(
            help="marketing, utility, authentication or authentication_international.",
            show_default=False,
        ),
    ] = None,
    country: Annotated[
        str | None,
        typer.Argument(help="ISO 3166-1 alpha-2 (DE), or '*'.", show_default=False),
    ] = None,
    price_micros: Annotated[
        int | None,
        typer.Argument(help="Price per delivered template in micro-units.", show_default=False),
    ] = None,
    currency: CurrencyOption = None,
    remove: Annotated[
        bool,
        typer.Option(
            "--remove", help="Remove this override, or all of them without CATEGORY COUNTRY."
        ),
    ] = False,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
) -> None:
    """Set a price for one business only (it comes before the default card), or remove
    overrides with --remove."""
    if remove and price_micros is not None:
        err.print("[red]--remove takes CATEGORY COUNTRY or nothing, no price[/red]")
        raise typer.Exit(2)
    if not remove and (category is None or country is None or price_micros is None):
        err.print("[red]give CATEGORY COUNTRY PRICE_MICROS, or --remove[/red]")
        raise typer.Exit(2)
    if remove and (category is None) != (country is None):
        err.print("[red]--remove takes both CATEGORY and COUNTRY, or neither[/red]")
        raise typer.Exit(2)
    with _api(relay, token) as api:
        account_id = api.resolve(business)
        path = f"/v1/admin/businesses/{account_id}/rate-card"
        if remove:
            params = {} if category is None else {"category": category, "country": country}
            removed = api.call("DELETE", path, params=params)["removed"]
            console.print(f"removed {removed} override(s) of {account_id}")
            return
        rate = _rate(category or "", country or "", price_micros or 0, currency)
        body = api.call("PUT", path, json={"rates": [rate]})
    _print_card(body)


def _statement_pages(
    api: AdminApi, path: str, fmt: str, page_size: int
) -> Iterator[httpx.Response]:
    after: str | None = None
    while True:
        params: dict[str, Any] = {"format": fmt, "limit": page_size}
        if after is not None:
            params["after"] = after
        page = api.response("GET", path, params=params)
        yield page
        after = (
            page.headers.get("x-tresen-next-after") if fmt == "csv" else page.json()["next_after"]
        )
        if after is None:
            return


@billing_app.command("statement")
def billing_statement(
    business: BusinessOption,
    month: Annotated[str, typer.Option("--month", help="Calendar month (UTC), YYYY-MM.")],
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print the statement as CSV, every line item.")
    ] = False,
    page_size: Annotated[
        int, typer.Option("--page-size", min=1, max=10_000, help="Line items per request.")
    ] = 10_000,
    relay: RelayOption = DEFAULT_RELAY,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """A business's statement of a month: totals per category and country, grand totals per
    currency; every line item with --csv or --json."""
    with _api(relay, token) as api:
        path = f"/v1/admin/businesses/{api.resolve(business)}/statements/{month}"
        if as_csv:
            for n, page in enumerate(_statement_pages(api, path, "csv", page_size)):
                lines = page.text.splitlines(keepends=True)
                # One header; the pages' "truncated" rows are followed by the next page.
                kept = [line for line in lines[1:] if not line.startswith("truncated,")]
                print("".join(lines[:1] + kept if n == 0 else kept), end="")
            return
        pages = [p.json() for p in _statement_pages(api, path, "json", page_size)]
    body = pages[0] | {
        "items": [i for p in pages for i in p["items"]],
        "items_left": 0,
        "truncated": False,
        "next_after": None,
    }
    if as_json:
        _print_json(body)
        return
    state = "final" if body["final"] else "in progress: the month is not over"
    console.print(f"[bold]Statement {body['month']}[/bold] of {body['account_id']} ({state})")
    if not body["totals"]:
        console.print("nothing was charged")
        return
    table = Table("category", "country", "messages", "amount", "currency")
    for t in body["totals"]:
        table.add_row(
            t["category"], t["country"], str(t["count"]), _amount(t["amount_micros"]), t["currency"]
        )
    for g in body["grand_totals"]:
        table.add_row(
            "[bold]total[/bold]", "", str(g["count"]), _amount(g["amount_micros"]), g["currency"]
        )
    console.print(table)
    console.print(f"{body['items_total']} line items; --csv or --json lists them")
    if body.get("items_reduced"):
        console.print(
            f"{body['items_reduced']} charges reduced to these totals after the dispute period"
        )
