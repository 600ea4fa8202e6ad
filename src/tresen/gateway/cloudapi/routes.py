"""The Cloud API's routes: ``/{version}/{node}/{edge}`` with bearer tokens.

Any version a current client sends (``v14.0`` … ``v26.0`` and later) is accepted. ``node`` is
this gateway's ``phone_number_id`` (the number's digits) or its ``waba_id``; other ids are
answered with error 100 as the Graph API does.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from tresen.client.api import RelayError
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.cloudapi.messages import (
    authorize,
    check_phone,
    clean_text,
    decode_json,
    request_token,
    send_messages,
)
from tresen.gateway.cloudapi.schemas import (
    BlockedUsers,
    BlockResult,
    BusinessProfiles,
    MediaUploaded,
    MessagesAnswer,
    NodeAnswer,
    SubscribedApps,
    Success,
    TemplateCreated,
    TemplateDeleted,
    TemplateList,
    error_responses,
)
from tresen.gateway.cloudapi.schemas import json_body as body_schema
from tresen.gateway.cloudapi.uploads import read_upload
from tresen.gateway.ids import is_user_id, wa_id_of
from tresen.gateway.media.library import MediaRefused
from tresen.gateway.media.store import MediaRecord
from tresen.gateway.service import Gateway, relay_trouble
from tresen.wire.business import InvalidProfile, ProfileEdit

__all__ = ["router"]


async def clean_parameters(request: Request) -> None:
    """No path or query parameter holds a control character (a NUL cannot be stored)."""
    for name, value in request.query_params.multi_items():
        clean_text(name, "name")
        clean_text(value, name[:40])
    for name, value in request.path_params.items():
        clean_text(str(value), name)


router = APIRouter(dependencies=[Depends(clean_parameters)])

Version = Annotated[
    str,
    Path(pattern=r"^v[0-9]{1,3}\.[0-9]{1,2}$", description="Graph API version, e.g. v23.0"),
]
Node = Annotated[str, Path(pattern=r"^[0-9]{1,20}$", description="phone_number_id or waba_id")]

_json = msgspec.json.Encoder()
# ``display_name`` is the Tresen addition: it names the business in the directory, and a
# number becomes a business by saving a profile with it.
PROFILE_FIELDS = (
    "display_name",
    "about",
    "address",
    "description",
    "email",
    "websites",
    "vertical",
)
MAX_BLOCK_USERS = 100
MESSAGE_TEMPLATE_LIMIT = 6000
"""Reported as ``summary.message_template_limit`` (the Cloud API's ceiling); the relay
sets no limit of its own."""


def ok(body: Any, status: int = 200) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token of this gateway (`tresen gateway token create`)",
)
_access_token = APIKeyQuery(
    name="access_token",
    auto_error=False,
    scheme_name="access_token",
    description="The same token as a query parameter, as Graph accepts it",
)


async def authorized(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[str | None, Depends(_access_token)],
) -> Gateway:
    """The gateway, once the request's token is a current API token (190/104 otherwise).
    ``_credentials`` only documents the header: it is parsed as the fast path parses it."""
    token = request_token(request.headers.get("authorization"), access_token)
    return await authorize(gateway_of(request), request.app.state.api_buckets, token)


Authorized = Annotated[Gateway, Depends(authorized)]


async def json_body(request: Request, *, empty: Any = None) -> Any:
    """The request's JSON body (at most ``max_request_bytes``); ``empty`` for none, when
    given (else an empty body is error 100)."""
    limit: int = request.app.state.max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GraphError(100, f"The request body exceeds {limit} bytes", http_status=413)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise GraphError(100, f"The request body exceeds {limit} bytes", http_status=413)
    if not raw and empty is not None:
        return empty
    return decode_json(bytes(raw))


def _waba(gateway: Gateway, node: str) -> None:
    if node not in (gateway.waba_id, gateway.phone_number_id):
        raise GraphError(
            100,
            f"Unsupported request: object with ID '{node}' does not exist on this gateway "
            f"(its waba_id is {gateway.waba_id})",
            subcode=33,
        )


_OBJECT_WITH_PRODUCT: dict[str, Any] = {
    "type": "object",
    "required": ["messaging_product"],
    "properties": {"messaging_product": {"type": "string", "enum": ["whatsapp"]}},
}
_OVERRIDE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "override_callback_uri": {"type": "string", "format": "uri"},
        "verify_token": {"type": "string"},
    },
}
_WEBHOOK_CONFIGURATION: dict[str, Any] = {
    "type": "object",
    "required": ["webhook_configuration"],
    "properties": {"webhook_configuration": _OVERRIDE},
}
_TEMPLATE: dict[str, Any] = {
    "type": "object",
    "required": ["name", "language", "category", "components"],
    "properties": {
        "name": {"type": "string"},
        "language": {"type": "string"},
        "category": {"type": "string", "enum": ["MARKETING", "UTILITY", "AUTHENTICATION"]},
        "components": {"type": "array", "items": {"type": "object"}},
        "parameter_format": {"type": "string", "enum": ["POSITIONAL", "NAMED"]},
    },
}
_BLOCK_USERS: dict[str, Any] = {
    "type": "object",
    "required": ["messaging_product", "block_users"],
    "properties": {
        "messaging_product": {"type": "string", "enum": ["whatsapp"]},
        "block_users": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_BLOCK_USERS,
            "items": {
                "type": "object",
                "properties": {"user": {"type": "string"}, "user_id": {"type": "string"}},
            },
        },
    },
}
_SEND_EXAMPLE = {
    "messaging_product": "whatsapp",
    "to": "4915112345678",
    "type": "text",
    "text": {"body": "Your table is ready", "preview_url": False},
}


@router.post(
    "/{version}/{node}/messages",
    summary="Send a message, mark one read, or show the typing indicator",
    openapi_extra=body_schema(_OBJECT_WITH_PRODUCT, _SEND_EXAMPLE),
    responses={
        **error_responses(body=True),
        200: {
            "model": MessagesAnswer,
            "description": "accepted by the relay",
            "content": {
                "application/json": {
                    "example": {
                        "messaging_product": "whatsapp",
                        "contacts": [
                            {
                                "input": "4915112345678",
                                "wa_id": "4915112345678",
                                "user_id": "DE.17093030613609840875",
                            }
                        ],
                        "messages": [{"id": "wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjA"}],
                    }
                }
            },
        },
    },
)
async def send_message(
    version: Version, node: Node, request: Request, gateway: Authorized
) -> Response:
    """Answered by :class:`~tresen.gateway.cloudapi.fastpath.MessagesFastPath` in front of
    this app; the route documents it and serves it when the front is not installed."""
    return ok(await send_messages(gateway, node, await json_body(request)))


# --- media ---------------------------------------------------------------------------------

MediaToken = Annotated[
    str, Path(pattern=r"^[0-9]{1,20}\.[0-9]{1,15}\.[A-Za-z0-9_-]{1,64}$", max_length=120)
]
_UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "type", "messaging_product"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "type": {"type": "string", "example": "image/jpeg"},
                        "messaging_product": {"type": "string", "enum": ["whatsapp"]},
                        "ttl_minutes": {"type": "integer", "minimum": 1},
                    },
                }
            }
        },
    }
}


def _media_refused(exc: MediaRefused) -> GraphError:
    return GraphError(exc.code, exc.details)


def _no_media(node: str) -> GraphError:
    return GraphError(
        100,
        f"Unsupported request: object with ID '{node}' does not exist on this gateway (not "
        "this number, its business account or a living media of this number)",
        subcode=33,
    )


@router.get(
    "/media/{token}",
    summary="Download a media's file (the URL that GET /{media_id} gives)",
    description="The URL works for a few minutes (media.download_url_s) and needs the bearer "
    "token, as Meta's media URLs do.",
    responses={
        200: {
            "description": "the file",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(body=False),
    },
)
async def download_media(token: MediaToken, gateway: Authorized) -> Response:
    record = await gateway.media.by_token(token)
    path = None if record is None else gateway.media.path(record.id)
    if record is None or path is None or not path.is_file():
        raise GraphError(
            100,
            "Unsupported request: this media URL expired or does not exist; ask GET "
            "/{media_id} for a new one",
            http_status=404,
        )
    return FileResponse(
        path,
        media_type=record.mime_type,
        headers={"Cache-Control": "private, no-store"},
    )


@router.post(
    "/{version}/{node}/media",
    summary="Upload a media file (image, video, audio, document, sticker)",
    openapi_extra=_UPLOAD,
    responses={
        200: {"model": MediaUploaded, "description": "stored; its media id"},
        **error_responses(body=True),
    },
)
async def upload_media(
    version: Version, node: Node, request: Request, gateway: Authorized
) -> Response:
    check_phone(gateway, node)
    async with read_upload(request, gateway.media.max_upload_bytes) as upload:
        try:
            record = await gateway.media.save_upload(
                upload.file, upload.mime_type, upload.filename, upload.ttl_minutes
            )
        except MediaRefused as exc:
            raise _media_refused(exc) from None
    return ok({"id": record.id})


async def _own_media(gateway: Gateway, node: str, phone_number_id: str | None) -> MediaRecord:
    if phone_number_id is not None and phone_number_id != gateway.phone_number_id:
        raise _no_media(node)
    record = await gateway.media.get(node)
    if record is None:
        raise _no_media(node)
    return record


def _media_url(request: Request, gateway: Gateway, record: MediaRecord) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    return {
        "messaging_product": "whatsapp",
        "url": f"{base}/media/{gateway.media.download_token(record.id)}",
        "mime_type": record.mime_type,
        "sha256": record.sha256,
        "file_size": record.file_size,
        "id": record.id,
    }


@router.delete(
    "/{version}/{node}",
    summary="Delete a media (and the encrypted copies the relay still holds of it)",
    responses={200: {"model": Success, "description": "deleted"}, **error_responses(body=False)},
)
async def delete_media(
    version: Version,
    node: Node,
    gateway: Authorized,
    phone_number_id: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
) -> Response:
    record = await _own_media(gateway, node, phone_number_id)
    if not await gateway.media.delete(record.id):
        raise _no_media(node)
    return ok({"success": True})


# --- phone number and business profile -----------------------------------------------------


@router.get(
    "/{version}/{node}",
    summary="The phone number, the business account, or a media's download URL",
    description="A media id answers the media URL object: a URL of this gateway that "
    "serves the file for a few minutes to a request with the bearer token.",
    responses={
        200: {
            "model": NodeAnswer,
            "description": "the phone number, the business account or the media",
        },
        **error_responses(body=False),
    },
)
async def phone_number(
    version: Version,
    node: Node,
    request: Request,
    gateway: Authorized,
    phone_number_id: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
) -> Response:
    if node == gateway.waba_id and node != gateway.phone_number_id:
        return ok({"id": gateway.waba_id, "name": await _display_name(gateway)})
    if node != gateway.phone_number_id:
        return ok(_media_url(request, gateway, await _own_media(gateway, node, phone_number_id)))
    check_phone(gateway, node)
    profile = await _own_profile(gateway)
    quality = await _quality(gateway)
    return ok(
        {
            "id": gateway.phone_number_id,
            "display_phone_number": gateway.phone,
            "verified_name": profile.get("display_name", ""),
            "name_status": "APPROVED"
            if profile.get("verification") == "verified"
            else "PENDING_REVIEW",
            "code_verification_status": "VERIFIED",
            "quality_rating": quality,
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
        }
    )


async def _display_name(gateway: Gateway) -> str:
    return str((await _own_profile(gateway)).get("display_name", ""))


async def _own_profile(gateway: Gateway) -> dict[str, Any]:
    try:
        return await gateway.business_profile() or {}
    except Exception as exc:
        raise relay_trouble(exc) from None


async def _quality(gateway: Gateway) -> str:
    try:
        quality = await gateway.client.quality()
    except Exception:
        return "UNKNOWN"
    return str(quality.get("rating", quality.get("quality", "UNKNOWN"))).upper()


@router.get(
    "/{version}/{node}/whatsapp_business_profile",
    summary="The business profile (about, address, description, email, websites, vertical)",
    responses={200: {"model": BusinessProfiles, "description": "the profile"}, **error_responses()},
)
async def get_profile(
    version: Version, node: Node, gateway: Authorized, fields: str | None = None
) -> Response:
    check_phone(gateway, node)
    profile = await _own_profile(gateway)
    entry: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "about": profile.get("about", ""),
        "address": profile.get("address", ""),
        "description": profile.get("description", ""),
        "email": profile.get("email", ""),
        "websites": profile.get("websites", []),
        "vertical": profile.get("category") or "UNDEFINED",
    }
    if profile.get("has_picture"):
        entry["profile_picture_url"] = (
            f"{gateway.client.relay_url}/v1/businesses/{gateway.account_id}/picture"
        )
    if fields:
        wanted = {f.strip() for f in fields.split(",")}
        entry = {k: v for k, v in entry.items() if k in wanted or k == "messaging_product"}
    return ok({"data": [entry]})


@router.post(
    "/{version}/{node}/whatsapp_business_profile",
    summary="Create or update the business profile",
    description="A number becomes a business, listed in the directory, by saving a profile "
    "with a `display_name` (a Tresen field); later saves change only the fields they carry.",
    openapi_extra=body_schema(_OBJECT_WITH_PRODUCT),
    responses={200: {"model": Success, "description": "saved"}, **error_responses(body=True)},
)
async def update_profile(
    version: Version, node: Node, request: Request, gateway: Authorized
) -> Response:
    check_phone(gateway, node)
    body = await json_body(request)
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        raise GraphError(100, "The parameter messaging_product is required and must be 'whatsapp'.")
    unknown = set(body) - {"messaging_product", *PROFILE_FIELDS, "profile_picture_handle"}
    if unknown:
        raise GraphError(100, f"Unknown profile fields: {', '.join(sorted(unknown))}")
    if "profile_picture_handle" in body:
        raise GraphError(100, "profile_picture_handle: upload pictures with the relay's API")
    update = {k: v for k, v in body.items() if k in PROFILE_FIELDS}
    if "vertical" in update:
        update["category"] = update.pop("vertical")
        if update["category"] == "UNDEFINED":
            update["category"] = "OTHER"
    wrong = [k for k, v in update.items() if not isinstance(v, list if k == "websites" else str)]
    if wrong or not all(isinstance(w, str) for w in update.get("websites", [])):
        field = wrong[0] if wrong else "websites"
        raise GraphError(
            100,
            f"Param {field} must be " + ("a list of URLs" if field == "websites" else "a string"),
        )
    try:
        await gateway.save_business_profile(ProfileEdit(**update))
    except InvalidProfile as exc:
        raise GraphError(
            100,
            f"Invalid business profile: {exc}",
            extra={"problems": [p.to_dict() for p in exc.problems]},
        ) from None
    except RelayError as exc:
        if exc.code == 100 and exc.details.get("problems"):
            # The relay's own rules (a new profile needs a display name), field by field.
            raise GraphError(
                100,
                f"Invalid business profile: {str(exc).partition(' (')[2].rstrip(')')}",
                extra={"problems": exc.details["problems"]},
            ) from None
        raise relay_trouble(exc) from None
    except Exception as exc:
        raise relay_trouble(exc) from None
    return ok({"success": True})


@router.post(
    "/{version}/{node}",
    summary="Phone number settings (webhook override)",
    openapi_extra=body_schema(_WEBHOOK_CONFIGURATION),
    responses={200: {"model": Success, "description": "subscribed"}, **error_responses(body=True)},
)
async def phone_settings(
    version: Version, node: Node, request: Request, gateway: Authorized
) -> Response:
    check_phone(gateway, node)
    body = await json_body(request)
    config = body.get("webhook_configuration") if isinstance(body, dict) else None
    if not isinstance(config, dict):
        raise GraphError(100, "Param webhook_configuration is required")
    await gateway.subscribe_override(
        config.get("override_callback_uri"), config.get("verify_token")
    )
    return ok({"success": True})


# --- webhooks ------------------------------------------------------------------------------


@router.post(
    "/{version}/{node}/subscribed_apps",
    summary="Subscribe (or override) the webhook",
    openapi_extra=body_schema(_OVERRIDE, required=False),
    responses={200: {"model": Success, "description": "subscribed"}, **error_responses(body=True)},
)
async def subscribe_app(
    version: Version, node: Node, request: Request, gateway: Authorized
) -> Response:
    _waba(gateway, node)
    body: Any = await json_body(request, empty={})
    if not isinstance(body, dict):
        raise GraphError(100, "The request body must be a JSON object")
    uri = body.get("override_callback_uri")
    if uri is not None:
        await gateway.subscribe_override(uri, body.get("verify_token"))
    return ok({"success": True})


@router.get(
    "/{version}/{node}/subscribed_apps",
    summary="Where webhooks go",
    responses={
        200: {"model": SubscribedApps, "description": "the app's callbacks"},
        **error_responses(body=False),
    },
)
async def subscribed_apps(version: Version, node: Node, gateway: Authorized) -> Response:
    _waba(gateway, node)
    subscriptions = await gateway.outbox.list()
    return ok(
        {
            "data": [
                {
                    "whatsapp_business_api_data": {"id": str(s.id), "name": "Tresen gateway"},
                    "override_callback_uri": s.url,
                }
                for s in subscriptions
            ]
        }
    )


@router.delete(
    "/{version}/{node}/subscribed_apps",
    summary="Stop sending webhooks",
    responses={200: {"model": Success, "description": "removed"}, **error_responses(body=False)},
)
async def unsubscribe_app(version: Version, node: Node, gateway: Authorized) -> Response:
    _waba(gateway, node)
    for subscription in await gateway.outbox.list():
        await gateway.outbox.remove(subscription.url)
    return ok({"success": True})


# --- templates -----------------------------------------------------------------------------


@router.get(
    "/{version}/{node}/message_templates",
    summary="This business's templates",
    responses={
        200: {"model": TemplateList, "description": "a page of templates"},
        **error_responses(body=False),
    },
)
async def list_templates(
    version: Version,
    node: Node,
    request: Request,
    gateway: Authorized,
    name: str | None = None,
    status: str | None = None,
    category: str | None = None,
    language: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    after: str | None = None,
    summary: str | None = None,
) -> Response:
    _waba(gateway, node)
    statuses = _choices(status)
    categories = _choices(category)
    languages = set((language or "").replace(" ", "").split(",")) - {""}
    params = {
        k: v
        for k, v in {
            "name": name,
            # The relay filters one status; a list (pywa joins them with commas) is
            # filtered here.
            "status": status if len(statuses) == 1 else None,
            "limit": limit,
            "after": after,
        }.items()
        if v is not None
    }
    try:
        page = await gateway.client.api.templates(**params)
    except Exception as exc:
        raise relay_trouble(exc) from None

    def wanted(t: dict[str, Any]) -> bool:
        return (
            (not statuses or str(t.get("status", "")).upper() in statuses)
            and (not categories or str(t.get("category", "")).upper() in categories)
            and (not languages or t.get("language") in languages)
        )

    now_s = gateway.clock.now_ms() // 1000
    data = [_cloud_template(t, now_s) for t in page.get("data", []) if wanted(t)]
    # The relay's ``next`` is a path of the relay; clients (pywa's ``Result.next``) follow
    # ``next`` as it is, so it becomes this URL with the ``after`` cursor (the same filters).
    paging = dict(page.get("paging") or {})
    cursor = (paging.get("cursors") or {}).get("after")
    if paging.get("next") and cursor:
        paging["next"] = str(request.url.include_query_params(after=cursor))
    else:
        paging.pop("next", None)
    body: dict[str, Any] = {"data": data, "paging": paging}
    if summary is not None:
        try:
            everything = await gateway.all_templates()
        except Exception as exc:
            raise relay_trouble(exc) from None
        body["summary"] = {
            "total_count": sum(1 for t in everything if wanted(t)),
            "message_template_count": len(everything),
            "message_template_limit": MESSAGE_TEMPLATE_LIMIT,
            "are_translations_complete": True,
        }
    return ok(body)


def _choices(value: str | None) -> set[str]:
    return set((value or "").upper().replace(" ", "").split(",")) - {""}


def _cloud_template(template: dict[str, Any], now_s: int) -> dict[str, Any]:
    """A relay template as the Cloud API lists it: the quality score carries the time it
    holds for (the relay keeps no history of scores, so: now, when it was read)."""
    out = {k: v for k, v in template.items() if k != "paused_until_ms"}
    quality = template.get("quality_score")
    score = quality.get("score") if isinstance(quality, dict) else None
    out["quality_score"] = {"score": str(score or "UNKNOWN"), "date": now_s}
    return out


@router.post(
    "/{version}/{node}/message_templates",
    summary="Submit a template for review",
    openapi_extra=body_schema(_TEMPLATE),
    responses={
        200: {"model": TemplateCreated, "description": "submitted, PENDING review"},
        **error_responses(body=True),
    },
)
async def create_template(
    version: Version, node: Node, request: Request, gateway: Authorized
) -> Response:
    _waba(gateway, node)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise GraphError(100, "The request body must be a JSON object")
    try:
        created = await gateway.submit_template(body)
    except Exception as exc:
        raise relay_trouble(exc) from None
    return ok(created)


@router.delete(
    "/{version}/{node}/message_templates",
    summary="Delete a template by name",
    responses={
        200: {"model": TemplateDeleted, "description": "deleted"},
        **error_responses(body=False),
    },
)
async def delete_template(
    version: Version,
    node: Node,
    gateway: Authorized,
    name: Annotated[str, Query(min_length=1, max_length=512)],
    hsm_id: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}$")] = None,
) -> Response:
    _waba(gateway, node)
    try:
        result = await gateway.client.api.delete_template(name, hsm_id)
    except RelayError as exc:
        raise relay_trouble(exc) from None
    except Exception as exc:
        raise relay_trouble(exc) from None
    return ok({"success": True, **{k: v for k, v in result.items() if k != "success"}})


# --- blocking ------------------------------------------------------------------------------


def _block_users(body: Any) -> list[str]:
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        raise GraphError(100, "The parameter messaging_product is required and must be 'whatsapp'.")
    users = body.get("block_users")
    if not isinstance(users, list) or not 1 <= len(users) <= MAX_BLOCK_USERS:
        raise GraphError(100, f"Param block_users must hold 1 to {MAX_BLOCK_USERS} users")
    out = []
    for i, entry in enumerate(users):
        # A phone number or wa_id in ``user``, or a business-scoped user id in ``user_id``.
        user = entry.get("user", entry.get("user_id")) if isinstance(entry, dict) else None
        if not isinstance(user, str) or not user.strip() or len(user) > 128:
            raise GraphError(
                100, f"Param block_users[{i}] needs 'user' (a phone number) or 'user_id'"
            )
        out.append(user)
    return out


async def _account_of(gateway: Gateway, user: str) -> str:
    if is_user_id(user):
        contact = await gateway.store.contact_by_user_id(user)
        if contact is None:
            raise LookupError("no customer with this user id has written to this business")
        return contact.account_id
    digits = "".join(ch for ch in user if ch.isdigit())
    if not 6 <= len(digits) <= 15:
        raise LookupError(f"{user[:40]} is not a phone number or user id")
    return await gateway.resolve_phone("+" + digits, user)


@router.post(
    "/{version}/{node}/block_users",
    summary="Block customers",
    openapi_extra=body_schema(_BLOCK_USERS),
    responses={
        200: {"model": BlockResult, "description": "blocked, and those that failed"},
        **error_responses(body=True),
    },
)
async def block_users(
    version: Version, node: Node, request: Request, gateway: Authorized
) -> Response:
    check_phone(gateway, node)
    return ok(await _change_blocks(gateway, _block_users(await json_body(request)), block=True))


@router.delete(
    "/{version}/{node}/block_users",
    summary="Unblock customers",
    openapi_extra=body_schema(_BLOCK_USERS),
    responses={
        200: {"model": BlockResult, "description": "unblocked, and those that failed"},
        **error_responses(body=True),
    },
)
async def unblock_users(
    version: Version, node: Node, request: Request, gateway: Authorized
) -> Response:
    check_phone(gateway, node)
    return ok(await _change_blocks(gateway, _block_users(await json_body(request)), block=False))


async def _change_blocks(gateway: Gateway, users: list[str], *, block: bool) -> dict[str, Any]:
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for user in users:
        try:
            account = await _account_of(gateway, user)
            if block:
                await gateway.client.block(account)
            else:
                await gateway.client.unblock(account)
        except (RelayError, GraphError, LookupError) as exc:
            code = exc.code if isinstance(exc, RelayError | GraphError) else 139100
            failed.append(
                {
                    "input": user,
                    "errors": [
                        {
                            "message": str(exc),
                            "code": code,
                            "error_data": {"details": str(exc)},
                        }
                    ],
                }
            )
            continue
        contact = await gateway.contact_for_account(account)
        entry: dict[str, Any] = {"input": user, "user_id": contact.user_id}
        if contact.wa_id:
            entry["wa_id"] = contact.wa_id
        done.append(entry)
    key = "added_users" if block else "removed_users"
    result: dict[str, Any] = {key: done}
    if failed:
        result["failed_users"] = failed
    return {"messaging_product": "whatsapp", "block_users": result}


@router.get(
    "/{version}/{node}/block_users",
    summary="Blocked customers",
    responses={
        200: {"model": BlockedUsers, "description": "the blocked customers"},
        **error_responses(body=False),
    },
)
async def blocked_users(version: Version, node: Node, gateway: Authorized) -> Response:
    check_phone(gateway, node)
    try:
        accounts = await gateway.client.blocked()
    except RelayError as exc:
        raise relay_trouble(exc) from None
    data = []
    for account in accounts:
        contact = await gateway.contact_for_account(account)
        # ``input`` (pywa reads it) is what a block by phone number would have given.
        wa_id = wa_id_of(contact.phone)
        entry: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "input": wa_id or contact.user_id,
            "user_id": contact.user_id,
        }
        if wa_id:
            entry["wa_id"] = wa_id
        data.append(entry)
    return ok({"data": data})
