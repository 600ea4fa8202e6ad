"""The shapes of the Cloud API routes, for the OpenAPI document (``/openapi.json``).

The routes write their JSON themselves (the Cloud API's exact bytes, fast); these models
describe it, and a conformance test holds the routes to them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

__all__ = [
    "BlockResult",
    "BlockedUsers",
    "BusinessAccount",
    "BusinessProfiles",
    "GraphErrorEnvelope",
    "MediaUploaded",
    "MediaUrl",
    "MessagesAnswer",
    "NodeAnswer",
    "PhoneNumber",
    "SubscribedApps",
    "Success",
    "TemplateCreated",
    "TemplateDeleted",
    "TemplateList",
    "error_responses",
    "json_body",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class GraphErrorData(_Open):
    messaging_product: str = "whatsapp"
    details: str


class GraphErrorObject(BaseModel):
    message: str = Field(examples=["(#100) Invalid parameter"])
    type: str = Field(examples=["OAuthException"])
    code: int = Field(description="The Cloud API's error code (see docs/api.md)")
    error_subcode: int | None = None
    error_data: GraphErrorData
    fbtrace_id: str


class GraphErrorEnvelope(BaseModel):
    """Every error, as the Graph API answers it."""

    error: GraphErrorObject


class Success(BaseModel):
    success: bool


class SentContact(BaseModel):
    input: str
    wa_id: str | None = None
    user_id: str


class SentMessage(BaseModel):
    id: str = Field(examples=["wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjA"])
    message_status: str | None = Field(default=None, description="accepted, for templates")


class SendAnswer(BaseModel):
    messaging_product: str
    contacts: list[SentContact]
    messages: list[SentMessage]


class MessagesAnswer(RootModel[SendAnswer | Success]):
    """A send's ids, or ``success`` for marking read (and typing)."""


class Throughput(BaseModel):
    level: str


class PhoneNumber(BaseModel):
    id: str
    display_phone_number: str
    verified_name: str
    name_status: str
    code_verification_status: str
    quality_rating: str
    platform_type: str
    throughput: Throughput


class BusinessAccount(BaseModel):
    id: str
    name: str


class MediaUrl(BaseModel):
    """A media: where to download it (with the bearer token) for a few minutes, and what
    it is."""

    messaging_product: str
    url: str
    mime_type: str
    sha256: str = Field(description="hex SHA-256 of the file")
    file_size: int
    id: str


class MediaUploaded(BaseModel):
    id: str = Field(examples=["1037543291543636"])


class NodeAnswer(RootModel[PhoneNumber | BusinessAccount | MediaUrl]):
    """The phone number (``node`` is its id), the business account (its ``waba_id``) or a
    media (its media id)."""


class BusinessProfile(BaseModel):
    messaging_product: str
    about: str | None = None
    address: str | None = None
    description: str | None = None
    email: str | None = None
    websites: list[str] | None = None
    vertical: str | None = None
    profile_picture_url: str | None = None


class BusinessProfiles(BaseModel):
    data: list[BusinessProfile]


class AppData(BaseModel):
    id: str
    name: str


class SubscribedApp(BaseModel):
    whatsapp_business_api_data: AppData
    override_callback_uri: str


class SubscribedApps(BaseModel):
    data: list[SubscribedApp]


class QualityScore(BaseModel):
    score: str
    date: int = Field(description="Unix seconds")


class Template(_Open):
    id: str
    name: str
    language: str
    status: str
    category: str
    components: list[dict[str, Any]]
    quality_score: QualityScore


class Cursors(BaseModel):
    before: str | None = None
    after: str | None = None


class Paging(BaseModel):
    cursors: Cursors | None = None
    next: str | None = None


class TemplateSummary(BaseModel):
    total_count: int
    message_template_count: int
    message_template_limit: int
    are_translations_complete: bool


class TemplateList(BaseModel):
    data: list[Template]
    paging: Paging
    summary: TemplateSummary | None = None


class TemplateCreated(_Open):
    id: str
    status: str
    category: str


class TemplateDeleted(_Open):
    success: bool
    deleted: list[str] | None = None


class BlockedUser(BaseModel):
    messaging_product: str | None = None
    input: str
    wa_id: str | None = None
    user_id: str


class FailureError(BaseModel):
    message: str
    code: int
    error_data: dict[str, Any]


class BlockFailure(BaseModel):
    input: str
    errors: list[FailureError]


class BlockChanges(BaseModel):
    added_users: list[BlockedUser] | None = None
    removed_users: list[BlockedUser] | None = None
    failed_users: list[BlockFailure] | None = None


class BlockResult(BaseModel):
    messaging_product: str
    block_users: BlockChanges


class BlockedUsers(BaseModel):
    data: list[BlockedUser]


_ERROR_MEANINGS = {
    400: "invalid parameter or a refusal (code 100 and the Cloud API's codes)",
    401: "no token (104) or an invalid one (190)",
    403: "not allowed (10)",
    404: "no such object or operation (100)",
    413: "the body exceeds api.max_request_bytes (100)",
    429: "too many requests (4, 130429, 131056), with error_data.retry_after_ms",
    503: "the relay cannot be reached now (131016)",
}


def error_responses(*, body: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route (413 only where it reads a body)."""
    return {
        status: {"model": GraphErrorEnvelope, "description": meaning}
        for status, meaning in _ERROR_MEANINGS.items()
        if body or status != 413
    }


def json_body(schema: dict[str, Any], example: Any = None, *, required: bool = True) -> Any:
    """``openapi_extra`` for a route that reads its JSON body itself."""
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": required, "content": {"application/json": content}}}
