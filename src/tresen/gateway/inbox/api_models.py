"""What the inbox's JSON API takes and answers, as it appears in the gateway's OpenAPI
document. Requests are decoded strictly: unknown fields and wrong types are refused."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tresen.core.fields import TEXT_PATTERN
from tresen.gateway.inbox.agents import Agent
from tresen.gateway.inbox.conversations import Activity, Conversation, Status, ThreadMessage
from tresen.gateway.inbox.quick import QuickReply
from tresen.gateway.inbox.tokens import AgentToken

__all__ = [
    "MAX_TEXT",
    "ActivityPublic",
    "AgentPublic",
    "AgentsPublic",
    "AssigneeSet",
    "ConversationDetail",
    "ConversationPage",
    "ConversationPublic",
    "InboxError",
    "InboxErrorEnvelope",
    "LabelAdd",
    "LabelsPublic",
    "MessageCreate",
    "MessagePublic",
    "MessageSent",
    "NoteCreate",
    "QuickRepliesPublic",
    "QuickReplyCreate",
    "QuickReplyPublic",
    "StatusSet",
    "TokenPublic",
]

MAX_TEXT = 4096
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=TEXT_PATTERN)]
LabelName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[\w-]{1,32}$")]
Wamid = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^wamid\.[A-Za-z0-9_=+/.-]{1,120}$")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class InboxError(BaseModel):
    code: str = Field(
        description="Stable, for programs: invalid_input, refused, not_sent, unauthenticated, "
        "csrf_failed, forbidden, not_found, conflict, too_large, rate_limited",
        examples=["not_found"],
    )
    message: str = Field(
        description="For people, in the agent's language", examples=["There is no such …"]
    )


class InboxErrorEnvelope(BaseModel):
    error: InboxError


class AgentPublic(BaseModel):
    """An agent; ``username``, ``role`` and ``active`` only for owners and admins (and for
    oneself)."""

    id: int
    display_name: str
    username: str | None = None
    role: Literal["owner", "admin", "agent"] | None = None
    active: bool | None = None
    language: str | None = None

    @classmethod
    def of(cls, agent: Agent, *, full: bool) -> AgentPublic:
        if not full:
            return cls(id=agent.id, display_name=agent.display_name)
        return cls(
            id=agent.id,
            display_name=agent.display_name,
            username=agent.username,
            role=str(agent.role),
            active=agent.active,
            language=agent.language,
        )


class AgentsPublic(BaseModel):
    agents: list[AgentPublic]


class ConversationPublic(BaseModel):
    contact: str = Field(description="The customer's contact id: the conversation's key")
    name: str
    phone: str | None
    status: Status
    snoozed_until_ms: int | None
    assignee: int | None = Field(description="The id of the agent answering it")
    last_ms: int = Field(description="When the latest message was (ms since the epoch)")
    preview: str
    unread: int
    window_left_ms: int = Field(description="How long free-form answers are still possible")
    labels: list[str]

    @classmethod
    def of(cls, c: Conversation) -> ConversationPublic:
        return cls(
            contact=c.contact,
            name=c.name,
            phone=c.phone,
            status=c.status,
            snoozed_until_ms=c.snoozed_until_ms,
            assignee=c.assignee,
            last_ms=c.last_ms,
            preview=c.preview,
            unread=c.unread,
            window_left_ms=c.window_left_ms,
            labels=list(c.labels),
        )


class ConversationPage(BaseModel):
    conversations: list[ConversationPublic]
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` for the next page; null on the last page"
    )


class MessagePublic(BaseModel):
    wamid: str
    incoming: bool
    kind: str
    text: str
    status: str
    error: str | None
    at_ms: int

    @classmethod
    def of(cls, m: ThreadMessage) -> MessagePublic:
        return cls(
            wamid=m.wamid,
            incoming=m.incoming,
            kind=m.kind,
            text=m.text,
            status=m.status,
            error=m.error,
            at_ms=m.at_ms,
        )


class ActivityPublic(BaseModel):
    kind: str = Field(description="note, reply, assign, status, label or unlabel")
    agent_id: int | None
    detail: str
    at_ms: int

    @classmethod
    def of(cls, a: Activity) -> ActivityPublic:
        return cls(kind=a.kind, agent_id=a.agent_id, detail=a.detail, at_ms=a.at_ms)


class ConversationDetail(BaseModel):
    conversation: ConversationPublic
    messages: list[MessagePublic] = Field(description="The latest 200, oldest first")
    activity: list[ActivityPublic] = Field(description="The latest 200, oldest first")


class MessageCreate(_Strict):
    text: Text = Field(description="The answer, or ``/shortcut`` for a quick reply")
    reply_to: Wamid | None = Field(default=None, description="The wamid of a message to quote")


class MessageSent(BaseModel):
    wamid: str


class NoteCreate(_Strict):
    text: Text


class HandoffCreate(_Strict):
    reason: str = Field(
        default="",
        max_length=300,
        description="Why the bot hands over, for the team (shown with the conversation)",
    )


class AssigneeSet(_Strict):
    agent_id: int | None = Field(
        ge=1, le=2**31 - 1, description="The agent to answer it; null for no one"
    )


class StatusSet(_Strict):
    status: Status
    snooze_seconds: Literal[3600, 14400, 86400, 604800] | None = Field(
        default=None, description="For ``snoozed``: how long (1 hour, 4 hours, 1 day, 1 week)"
    )

    # Strict mode would refuse the enum's JSON string; the status alone is lax.
    model_config = ConfigDict(extra="forbid", strict=False)

    def snooze(self) -> str | None:
        return None if self.snooze_seconds is None else str(self.snooze_seconds)


class LabelAdd(_Strict):
    name: LabelName


class LabelsPublic(BaseModel):
    labels: list[str]


class QuickReplyPublic(BaseModel):
    id: int
    shortcut: str
    text: str

    @classmethod
    def of(cls, q: QuickReply) -> QuickReplyPublic:
        return cls(id=q.id, shortcut=q.shortcut, text=q.text)


class QuickReplyCreate(_Strict):
    shortcut: Annotated[str, Field(min_length=1, max_length=33, pattern=r"^/?[a-z0-9][a-z0-9_-]*$")]
    text: Text


class QuickRepliesPublic(BaseModel):
    quick_replies: list[QuickReplyPublic]


class TokenPublic(BaseModel):
    id: int
    name: str
    hint: str
    created_ms: int
    last_used_ms: int | None
    revoked_ms: int | None

    @classmethod
    def of(cls, t: AgentToken) -> TokenPublic:
        return cls(
            id=t.id,
            name=t.name,
            hint=t.hint,
            created_ms=t.created_ms,
            last_used_ms=t.last_used_ms,
            revoked_ms=t.revoked_ms,
        )


def error_responses(*, body: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error answers every route of the inbox's API documents (413 where it reads a
    body)."""
    meanings = {
        400: "Invalid input, or an action the conversation's state refuses",
        401: "No session cookie or agent token, or one that ended",
        403: "A session's state change without its X-CSRF-Token header, or the role forbids",
        404: "No such conversation, agent or endpoint",
        409: "The message could not be sent (e.g. the 24-hour window is closed)",
        413: "The request body is too large",
        429: "Too many requests with this token or session; see Retry-After",
    }
    return {
        status: {"model": InboxErrorEnvelope, "description": meaning}
        for status, meaning in meanings.items()
        if body or status != 413
    }
