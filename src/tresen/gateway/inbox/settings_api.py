"""The settings for what connects to the gateway (owners and admins): API tokens, webhook
subscriptions and message templates with their review status.

Each reuses what the gateway keeps already: tokens in its token store (only their hashes; a
new token is shown once, on the answer to the form that made it), subscriptions in its webhook
outbox (with the Cloud API's verification handshake), templates at the relay through the
gateway's one submit path.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tresen.gateway.inbox import web
from tresen.gateway.inbox.agents import SignedIn
from tresen.gateway.inbox.i18n import N_
from tresen.gateway.inbox.settings import field, gateway_of, relay_sentence
from tresen.gateway.webhooks import FIELDS
from tresen.gateway.webhooks.errors import (
    InvalidSubscription,
    SubscriptionLimitReached,
    SubscriptionNotFound,
    SubscriptionRefused,
)

__all__ = ["router"]

router = APIRouter()

TOKEN_NAME = re.compile(r"^[\w .-]{1,64}$")
DEFAULT_FIELDS = ("messages", "message_template_status_update")
VERIFY_TOKEN_MAX = 256
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
TEMPLATE_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:_[A-Z]{2})?$")
TEMPLATE_BODY_MAX = 1024
TEMPLATE_CATEGORIES = (N_("MARKETING"), N_("UTILITY"), N_("AUTHENTICATION"))
# Review states and reasons as the relay reports them, translated where shown.
TEMPLATE_WORDS = (
    N_("APPROVED"),
    N_("PENDING"),
    N_("REJECTED"),
    N_("PAUSED"),
    N_("DISABLED"),
    N_("active"),
    N_("revoked"),
)


# --- API tokens and webhooks -------------------------------------------------------------------


async def _api_page(
    request: Request,
    who: SignedIn,
    *,
    error: str | None = None,
    status_code: int = 200,
    new_token: str | None = None,
    typed: dict[str, Any] | None = None,
) -> HTMLResponse:
    gateway = gateway_of(request)
    return web.page(
        request,
        "settings_api.html",
        who=who,
        status_code=status_code,
        section="api",
        tokens=await gateway.store.tokens(),
        subscriptions=await gateway.outbox.list(),
        fields=sorted(FIELDS),
        new_token=new_token,
        typed=typed or {"url": "", "verify_token": "", "fields": list(DEFAULT_FIELDS)},
        phone_number_id=gateway.phone_number_id,
        waba_id=gateway.waba_id,
        error=error,
    )


@router.get("/settings/api")
async def api_page(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _api_page(request, who)


@router.post("/settings/tokens")
async def create_token(request: Request) -> Response:
    """Answered with the page itself, not a redirect: the new token is shown this once and
    must not travel in a URL."""
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    name = " ".join(field(form, "name").split())
    if not TOKEN_NAME.fullmatch(name):
        return await _api_page(
            request,
            who,
            error=_("A token's name is 1 to 64 letters, digits, spaces, dots or dashes."),
            status_code=400,
        )
    gateway = gateway_of(request)
    limit = gateway.settings.api.max_tokens
    try:
        _info, token = await gateway.store.create_token(name, max_tokens=limit)
    except ValueError:
        return await _api_page(
            request,
            who,
            error=_("The gateway keeps at most {n} active tokens; revoke one first.").format(
                n=limit
            ),
            status_code=400,
        )
    return await _api_page(request, who, new_token=token)


@router.post("/settings/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: web.RowId) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, _form = got
    _ = web.gettext_for(request, who)
    revoked = await gateway_of(request).store.revoke_token(str(token_id))
    if not revoked:
        return await _api_page(
            request,
            who,
            error=_("There is no active token {id}.").format(id=token_id),
            status_code=404,
        )
    return web.redirect("/inbox/settings/api", _("The token is revoked; it no longer works."))


@router.post("/settings/webhooks")
async def add_webhook(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    url = field(form, "url").strip()
    verify_token = field(form, "verify_token")
    wanted = [f for f in form.getlist("fields") if isinstance(f, str) and f in FIELDS]
    typed = {"url": url, "verify_token": verify_token, "fields": wanted}
    gateway = gateway_of(request)
    error: str | None = None
    if not url.startswith(("http://", "https://")):
        error = _("The callback URL must start with https:// (or http://) and name a host.")
    elif not 1 <= len(verify_token) <= VERIFY_TOKEN_MAX:
        error = _("Enter the verify token your endpoint expects (1 to {n} characters).").format(
            n=VERIFY_TOKEN_MAX
        )
    elif not wanted:
        error = _("Choose at least one kind of event.")
    else:
        try:
            await gateway.outbox.subscribe(url, verify_token, gateway.app_secret, wanted)
        except SubscriptionRefused as exc:
            error = _("The endpoint did not confirm the subscription: {reason}").format(
                reason=exc.reason[:300]
            )
        except SubscriptionLimitReached:
            error = _("The gateway allows {n} webhook subscriptions; remove one first.").format(
                n=gateway.settings.webhooks.max_subscriptions
            )
        except InvalidSubscription:
            error = _("The callback URL must start with https:// (or http://) and name a host.")
    if error is not None:
        return await _api_page(request, who, error=error, status_code=400, typed=typed)
    return web.redirect("/inbox/settings/api", _("Webhooks now go to {url}.").format(url=url[:100]))


@router.post("/settings/webhooks/{subscription_id}/remove")
async def remove_webhook(request: Request, subscription_id: web.RowId) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, _form = got
    _ = web.gettext_for(request, who)
    try:
        await gateway_of(request).outbox.remove(subscription_id)
    except SubscriptionNotFound:
        return await _api_page(
            request,
            who,
            error=_("There is no webhook subscription {id}.").format(id=subscription_id),
            status_code=404,
        )
    return web.redirect("/inbox/settings/api", _("Webhooks no longer go there."))


# --- message templates -------------------------------------------------------------------------


async def _templates_page(
    request: Request,
    who: SignedIn,
    *,
    error: str | None = None,
    status_code: int = 200,
    typed: dict[str, str] | None = None,
) -> HTMLResponse:
    _ = web.gettext_for(request, who)
    templates: list[dict[str, Any]] = []
    try:
        templates = await gateway_of(request).all_templates()
    except Exception as exc:
        error = error or relay_sentence(exc, _)
    return web.page(
        request,
        "settings_templates.html",
        who=who,
        status_code=status_code,
        section="templates",
        templates=sorted(templates, key=lambda t: (str(t.get("name")), str(t.get("language")))),
        categories=TEMPLATE_CATEGORIES,
        typed=typed or {"name": "", "language": "", "category": "UTILITY", "body": ""},
        body_max=TEMPLATE_BODY_MAX,
        error=error,
    )


@router.get("/settings/templates")
async def templates_page(request: Request) -> Response:
    who = await web.manager(request)
    if isinstance(who, Response):
        return who
    return await _templates_page(request, who)


@router.post("/settings/templates")
async def submit_template(request: Request) -> Response:
    got = await web.posted(request, manage=True)
    if isinstance(got, Response):
        return got
    who, form = got
    _ = web.gettext_for(request, who)
    typed = {k: field(form, k).strip() for k in ("name", "language", "category", "body")}
    error: str | None = None
    if not TEMPLATE_NAME.fullmatch(typed["name"]):
        error = _("A template's name is lower-case letters, digits and underscores.")
    elif not TEMPLATE_LANGUAGE.fullmatch(typed["language"]):
        error = _("Write the language as a code such as de, en or en_US.")
    elif typed["category"] not in TEMPLATE_CATEGORIES:
        error = _("Choose a category from the list.")
    elif not 1 <= len(typed["body"]) <= TEMPLATE_BODY_MAX:
        error = _("The text has 1 to {n} characters.").format(n=TEMPLATE_BODY_MAX)
    if error is None:
        template = {
            "name": typed["name"],
            "language": typed["language"],
            "category": typed["category"],
            "components": [{"type": "BODY", "text": typed["body"]}],
        }
        try:
            await gateway_of(request).submit_template(template)
        except Exception as exc:
            error = relay_sentence(exc, _)
    if error is not None:
        return await _templates_page(request, who, error=error, status_code=400, typed=typed)
    return web.redirect(
        "/inbox/settings/templates",
        _("The template {name} is submitted for review.").format(name=typed["name"]),
    )
