"""The automation engine: what happens to each customer message after it is recorded.

The recorder tells the engine of every committed customer message (``recorded``, its
``on_recorded`` hook, next to the inbox's hub). Messages of one conversation are handled one
after the other, different conversations at once (up to ``MAX_RUNNING``). For each message:

1. The bot takes the conversation (status ``bot``) when a bot is on and the conversation is
   new or was resolved before the customer wrote again. It never takes one people work on.
2. Greeting and away messages are sent when due (``hours.due``).
3. In a conversation the bot holds, the FAQ bot answers, suggests ("did you mean", up to
   three buttons), asks for an action's missing detail, calls the action, or hands over; or
   the message is posted to the business's own bot.
4. Otherwise the message is the team's: it goes on to automatic assignment.

A hand-over makes the conversation open for people (automatic assignment then gives it out
by the inbox's rules), records the reason and the bot's transcript in the conversation's
activity, and tells the customer when people will answer. The bot stays silent in it until an
agent resolves it (or gives it back to the bot).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.client.consent import keyword_action
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.gateway.automation.agent_bot import AgentBot, AgentBotSettings, agent_bot_payload
from tresen.gateway.automation.config import (
    Answer,
    AnswerKind,
    AutomationSettings,
    BotMode,
    IntentSpec,
    Localized,
    pick,
)
from tresen.gateway.automation.hours import Facts, Hours, due
from tresen.gateway.automation.http_actions import (
    DEFAULT_FAILURE,
    ActionCaller,
    ActionError,
    HttpAction,
    find_params,
    parse_action,
)
from tresen.gateway.automation.language import guess_language
from tresen.gateway.automation.matcher import Decision, IntentExamples, Match, Matcher, Thresholds
from tresen.gateway.automation.store import AutomationStore, BotState
from tresen.gateway.cloudapi.errors import GraphError
from tresen.gateway.cloudapi.requests import SendRequest, parse_message_request
from tresen.gateway.inbox.conversations import (
    Conversations,
    ConversationState,
    Status,
    preview,
)
from tresen.gateway.recorder import Received
from tresen.gateway.schema import activity, messages
from tresen.gateway.service import Gateway
from tresen.gateway.store import StoredMessage

__all__ = ["MAX_PENDING", "MAX_RUNNING", "Automation", "Reason", "Subscriptions"]

log = get_logger(__name__)

VERSION_CHECK_S = 1.0
"""How often the configuration's version is read again (changes made through this process's
store are seen at once; those of another process, such as ``bot import``, within this time)."""
MAX_RUNNING = 32
MAX_PENDING = 10_000
PROFILE_TTL_MS = 5 * 60 * 1000
PROFILE_RETRY_MS = 10 * 1000
PROFILE_WAIT_S = 5.0
SEEN = 4096
TRANSCRIPT_LINES = 20
INTENT_BUTTON = "intent:"
PERSON_BUTTON = "handoff"

PERSON_TITLE: Localized = {"en": "Talk to a person", "de": "Mit Mensch sprechen"}


class Reason:
    """Why the bot handed a conversation over (kept as these codes)."""

    PERSON = "person"
    MISUNDERSTOOD = "misunderstood"
    RULE = "rule"
    INTENT = "intent"
    ACTION_FAILED = "action_failed"
    EXTERNAL = "external"
    EXTERNAL_DOWN = "external_down"


class Subscriptions(Protocol):
    async def took(self, message: StoredMessage, recorded: Callable[[], Awaitable[bool]]) -> bool:
        """Whether a customer's message was a subscription keyword (``START NEWS``,
        ``START``, ``STOP``) and was handled as one; ``recorded()`` waits for the message's
        record (whether it committed)."""
        ...


@dataclass(slots=True)
class _Turn:
    """One customer message being handled."""

    contact: str
    message: StoredMessage
    text: str
    language: str
    state: BotState
    settings: AutomationSettings
    hours: Hours | None
    entry: Mapping[str, Any]
    """The message as the Cloud API's webhooks tell of it."""
    recording: asyncio.Future[None]
    """The message's record, committing meanwhile."""


def message_text(message: StoredMessage) -> str:
    """What the customer wrote or pressed (a button's id when it names an intent)."""
    content = message.content
    if message.type == "text":
        return str(content.get("body", ""))
    if message.type == "button":
        return str(content.get("payload") or content.get("text") or "")
    if message.type == "interactive":
        reply = content.get(str(content.get("type", "")), {})
        if isinstance(reply, dict):
            pressed = str(reply.get("id", ""))
            if pressed.startswith(INTENT_BUTTON) or pressed == PERSON_BUTTON:
                return pressed
            return str(reply.get("title", ""))
    return ""


class Automation:
    def __init__(
        self,
        gateway: Gateway,
        store: AutomationStore,
        conversations: Conversations,
        *,
        clock: Clock,
        forward: Callable[[str], Awaitable[None]],
        caller: ActionCaller | None = None,
        agent_bot_transport: Any = None,
        max_pending: int = MAX_PENDING,
        subscriptions: Subscriptions | None = None,
    ) -> None:
        """``forward(contact)`` hands a customer message of the team's on to automatic
        assignment (the inbox's opening and assignment); ``subscriptions`` sees each message
        first and takes the subscription keywords."""
        self.gateway = gateway
        self._subscriptions = subscriptions
        self.store = store
        self.conversations = conversations
        self.clock = clock
        self._forward = forward
        self.caller = caller or ActionCaller()
        self._agent_bot_transport = agent_bot_transport
        self._max_pending = max_pending
        self._version = -1
        self._changes = -1
        self._checked = 0.0
        self._settings = AutomationSettings()
        self._intents: dict[str, IntentSpec] = {}
        self._matcher: Matcher | None = None
        self._actions: dict[str, HttpAction] = {}
        self._agent_bot: AgentBot | None = None
        self._reload = asyncio.Lock()
        self._slots = asyncio.Semaphore(MAX_RUNNING)
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._user_ids: OrderedDict[str, str] = OrderedDict()
        """The customers' Cloud API user ids, as their messages came (no lookup to answer)."""
        self._profile_at = -PROFILE_TTL_MS
        self._profile_task: asyncio.Task[None] | None = None
        self.handled = 0

    # --- life cycle --------------------------------------------------------------------------

    async def close(self) -> None:
        if self._profile_task is not None:
            self._profile_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._profile_task
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(self._running)
        await self.caller.aclose()
        if self._agent_bot is not None:
            await self._agent_bot.aclose()

    async def idle(self) -> None:
        """Wait until every message taken so far is handled (for tests and shutdown)."""
        while self._running:
            await asyncio.wait(set(self._running))

    # --- taking messages ---------------------------------------------------------------------

    def received(self, op: Received, recording: asyncio.Future[None]) -> None:
        """The gateway's ``on_received``: take a customer message as it arrives, while its
        record commits (``recording``). What needs the record (the team's assignment, a
        hand-over's transcript) waits for it; the answer does not."""
        wamid = op.message.wamid
        if wamid in self._seen:
            return  # the relay handed it over again
        self._seen[wamid] = None
        if len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        contact = op.message.contact
        self._user_ids[contact] = op.contact.user_id
        self._user_ids.move_to_end(contact)
        if len(self._user_ids) > SEEN:
            self._user_ids.popitem(last=False)
        if len(self._running) >= self._max_pending:
            log.warning("automation behind; a message goes to the team unhandled")
            self._spawn(contact, self._after(recording, contact))
            return
        self._spawn(contact, self._handle(op.message, op.entry, recording))

    async def _after(self, recording: asyncio.Future[None], contact: str) -> None:
        """Hand the message to the team once it is recorded (not at all if it was not: the
        relay hands it over again)."""
        if await _recorded(recording):
            await self._forward(contact)

    def _spawn(self, contact: str, work: Coroutine[Any, Any, None]) -> None:
        before = self._lanes.get(contact)

        async def run() -> None:
            try:
                if before is not None:
                    await asyncio.wait([before])
                async with self._slots:
                    await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("automation failed for a message")
            finally:
                # Cancelled (the gateway stopping) before its turn came: the message is
                # handled when the relay hands it over again.
                work.close()
                if self._lanes.get(contact) is asyncio.current_task():
                    del self._lanes[contact]

        task = asyncio.create_task(run(), name="automation")
        self._lanes[contact] = task
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    # --- configuration -----------------------------------------------------------------------

    async def current(self) -> AutomationSettings:
        """The settings, with the matcher and actions rebuilt when the configuration changed
        (here or in another process)."""
        if self._fresh():
            return self._settings
        async with self._reload:  # one reader at a time; the others wait for what it finds
            if self._fresh():
                return self._settings
            changes = self.store.changes
            version = await self.store.version()
            if version != self._version:
                await self._load(version)
            self._checked, self._changes = time.monotonic(), changes
            return self._settings

    def _fresh(self) -> bool:
        return (
            self._version >= 0
            and self.store.changes == self._changes
            and time.monotonic() - self._checked < VERSION_CHECK_S
        )

    async def _load(self, version: int) -> None:
        """Read the configuration of ``version`` and build the matcher from it."""
        settings = await self.store.settings()
        intents = [i for i in await self.store.intents() if i.enabled]
        actions: dict[str, HttpAction] = {}
        for spec in await self.store.actions():
            try:
                action = parse_action(spec)
            except ActionError as exc:
                log.warning("action not usable", action=spec.get("name"), error=str(exc))
                continue
            actions[action.name] = action
        thresholds = Thresholds()
        if settings.bot.answer_threshold:
            thresholds = replace(thresholds, answer=settings.bot.answer_threshold)
        if settings.bot.suggest_threshold:
            thresholds = replace(thresholds, suggest=settings.bot.suggest_threshold)
        examples = [IntentExamples(i.name, i.examples) for i in intents]
        self._matcher = await asyncio.to_thread(Matcher, examples, thresholds)
        self._intents = {i.name: i for i in intents}
        self._actions = actions
        await self._renew_agent_bot(settings)
        self._settings = settings
        self._version = version

    async def _renew_agent_bot(self, settings: AutomationSettings) -> None:
        if self._agent_bot is not None:
            await self._agent_bot.aclose()
            self._agent_bot = None
        if settings.bot.mode is BotMode.EXTERNAL and settings.bot.external_url:
            secret = await self.store.agent_bot_secret() or await self.store.new_agent_bot_secret()
            self._agent_bot = AgentBot(
                AgentBotSettings(url=settings.bot.external_url, secret=secret),
                transport=self._agent_bot_transport,
                clock=self.clock,
            )

    async def match(self, text: str) -> Match:
        """What the FAQ bot makes of ``text`` now (the inbox's "try it" box): the business's
        hand-over words first, as for a customer's message."""
        settings = await self.current()
        assert self._matcher is not None
        rule = _rule(text, settings.bot.handoff_keywords)
        if rule is not None:
            language = guess_language(text)
            return Match(Decision.HANDOFF, None, 0.0, (), language, reason=f"rule: {rule}")
        return await asyncio.to_thread(self._matcher.match, text)

    def intent_title(self, name: str, language: str) -> str:
        intent = self._intents.get(name)
        return pick(intent.title, language) if intent else name

    # --- one message -------------------------------------------------------------------------

    async def _handle(
        self, message: StoredMessage, entry: Mapping[str, Any], recording: asyncio.Future[None]
    ) -> None:
        try:
            await self._handle_one(message, entry, recording)
        finally:
            self.handled += 1
            if not await _recorded(recording):
                self._seen.pop(message.wamid, None)  # handled again when it comes again

    async def _handle_one(
        self, message: StoredMessage, entry: Mapping[str, Any], recording: asyncio.Future[None]
    ) -> None:
        contact = message.contact
        text = message_text(message)
        if self._subscriptions is not None and await self._subscriptions.took(
            message, lambda: _recorded(recording)
        ):
            # The subscription answered (a confirmation asked for, or nothing after STOP):
            # a greeting or the bot on top would muddle it. People still see the message.
            await self._after(recording, contact)
            return
        if message.type == "text" and keyword_action(text) is not None:
            # STOP and START: the customer's own client confirms them; an answer on top
            # ("Hello!" after "You will no longer receive marketing messages") would read
            # as the opposite. People still see the message.
            await self._after(recording, contact)
            return
        settings = await self.current()
        if not settings.anything_on:
            # Nothing automatic: the team's message, unless the bot (turned off since) still
            # holds the conversation.
            conversation = await self.conversations.state(contact)
            if conversation.status is Status.BOT:
                if await _recorded(recording):  # the transcript holds the message
                    await self.hand_over(contact, "off", tell=False)
            else:
                await self._after(recording, contact)
            return
        # Both kept in memory by their one writer: no database read for most messages.
        state = await self.store.state(contact)
        conversation = await self.conversations.state(contact)
        history: tuple[int | None, int | None] = (None, None)
        if settings.greeting.enabled or settings.away.enabled:
            async with self.conversations.db.read() as conn:
                history = await self._history(conn, contact, message)
        language = guess_language(text, default=state.language or "en") if text else None
        turn = _Turn(
            contact,
            message,
            text,
            language or state.language or "en",
            replace(state, language=language or state.language),
            settings,
            Hours.from_profile(await self._profile()),
            entry,
            recording,
        )
        holds = conversation.status is Status.BOT
        if (
            settings.bot.mode is not BotMode.OFF
            and not holds
            and self._may_take(conversation, message)
        ):
            await self.conversations.set_status(contact, Status.BOT)
            turn.state = replace(turn.state, took_ms=message.created_ms, misunderstood=0)
            turn.state = replace(turn.state, waiting=None)
            await self.store.log(contact, "took")
            holds = True
        elif holds and settings.bot.mode is BotMode.OFF:
            # The bot was turned off while it held the conversation: people take it.
            await self.hand_over(contact, "off", language=turn.language, tell=False)
            holds = False
        greeted = await self._greet_or_away(turn, holds, history)
        try:
            if holds and settings.bot.mode is BotMode.FAQ:
                await self._faq(turn, greeted)
            elif holds and settings.bot.mode is BotMode.EXTERNAL:
                await self._external(turn)
            else:
                await self._after(recording, contact)
        finally:
            if turn.state != state:
                await self.store.save_state(turn.state)

    def _may_take(self, conversation: ConversationState, message: StoredMessage) -> bool:
        """A new conversation, or one resolved before the customer wrote again."""
        if conversation.status is None:
            return True
        return (
            conversation.status is Status.RESOLVED and message.created_ms > conversation.status_ms
        )

    async def _profile(self) -> dict[str, Any] | None:
        """The business profile (its hours), read again from the relay every few minutes: in
        the background once known, so that no answer waits for the relay's profile."""
        now = self.clock.now_ms()
        if self.gateway.profile is None and now - self._profile_at >= PROFILE_RETRY_MS:
            self._profile_at = now
            await self._read_profile()
        elif now - self._profile_at >= PROFILE_TTL_MS and self._profile_task is None:
            self._profile_at = now
            self._profile_task = asyncio.create_task(self._read_profile())
            self._profile_task.add_done_callback(self._profile_read)
        return self.gateway.profile

    async def _read_profile(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(PROFILE_WAIT_S):
                await self.gateway.business_profile()

    def _profile_read(self, _task: asyncio.Task[None]) -> None:
        self._profile_task = None

    # --- greeting and away -------------------------------------------------------------------

    async def _greet_or_away(
        self, turn: _Turn, holds: bool, history: tuple[int | None, int | None]
    ) -> bool:
        """Send the greeting and the away message when due; whether the greeting went."""
        before, answered = history
        facts = Facts(
            now_ms=self.clock.now_ms(),
            first_message=before is None,
            silent_since_ms=before,
            agent_answered_ms=answered,
            greeted_ms=turn.state.greeted_ms,
            away_ms=turn.state.away_ms,
            bot_holds=holds,
        )
        kinds = due(turn.settings, turn.hours, facts)
        for kind in kinds:
            if kind == "greeting":
                text = pick(turn.settings.greeting.text, turn.language)
                turn.state = replace(turn.state, greeted_ms=facts.now_ms)
            else:
                text = pick(turn.settings.away.text, turn.language)
                turn.state = replace(turn.state, away_ms=facts.now_ms)
            await self._say(turn.contact, self._fill(text, turn))
            await self.store.log(turn.contact, kind)
        return "greeting" in kinds

    @staticmethod
    async def _history(
        conn: AsyncConnection, contact: str, message: StoredMessage
    ) -> tuple[int | None, int | None]:
        """The time of the conversation's latest message before ``message``, and of the
        latest answer of an agent."""
        before = (
            await conn.execute(
                select(messages.c.created_ms)
                .where(
                    messages.c.contact == contact,
                    messages.c.wamid != message.wamid,
                    messages.c.created_ms <= message.created_ms,
                )
                .order_by(messages.c.created_ms.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        answered = (
            await conn.execute(
                select(activity.c.at_ms)
                .where(
                    and_(
                        activity.c.contact == contact,
                        activity.c.kind == "reply",
                        activity.c.agent_id.is_not(None),
                    )
                )
                .order_by(activity.c.at_ms.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        return before, answered

    def _fill(self, text: str, turn: _Turn) -> str:
        name = self.gateway.display_name or "us"
        opens = turn.hours.opens(self.clock.now_ms(), turn.language) if turn.hours else ""
        return text.replace("{name}", name).replace("{opens}", opens)

    # --- the FAQ bot -------------------------------------------------------------------------

    async def _faq(self, turn: _Turn, greeted: bool) -> None:
        text = turn.text
        bot = turn.settings.bot
        if not text:
            return  # a reaction or a media message: nothing for the bot to answer
        if text == PERSON_BUTTON:
            await self.hand_over(turn.contact, Reason.PERSON, turn=turn)
            return
        if text.startswith(INTENT_BUTTON):
            intent = self._intents.get(text.removeprefix(INTENT_BUTTON))
            if intent is not None:
                await self._answer(turn, intent, 1.0)
                return
        if turn.state.waiting and await self._fill_waiting(turn):
            return
        rule = _rule(text, bot.handoff_keywords)
        if rule is not None:
            await self.hand_over(turn.contact, Reason.RULE, detail=rule, turn=turn)
            return
        assert self._matcher is not None
        match = await asyncio.to_thread(self._matcher.match, text)
        if match.decision is Decision.HANDOFF:
            await self.hand_over(turn.contact, Reason.PERSON, turn=turn)
        elif match.decision is Decision.ANSWER and match.intent in self._intents:
            await self._answer(turn, self._intents[match.intent], match.score)
        elif match.decision is Decision.SUGGEST and match.alternatives:
            await self._suggest(turn, match)
        else:
            await self._not_understood(turn, greeted, match)

    async def _not_understood(self, turn: _Turn, greeted: bool, match: Match) -> None:
        if greeted:
            return  # "Hello" answered by the greeting is no misunderstanding
        misunderstood = turn.state.misunderstood + 1
        turn.state = replace(turn.state, misunderstood=misunderstood)
        await self.store.log(turn.contact, "unanswered", score=match.score, detail=turn.text)
        if misunderstood >= turn.settings.bot.misunderstood_limit:
            await self.hand_over(turn.contact, Reason.MISUNDERSTOOD, turn=turn)
            return
        await self._say(turn.contact, pick(turn.settings.bot.not_understood, turn.language))

    async def _suggest(self, turn: _Turn, match: Match) -> None:
        choices = [
            {"id": f"{INTENT_BUTTON}{name}", "title": self.intent_title(name, turn.language)}
            for name, _score in match.alternatives[:3]
            if name in self._intents
        ]
        if not choices:
            await self._not_understood(turn, False, match)
            return
        body = pick(turn.settings.bot.did_you_mean, turn.language)
        await self._send(turn.contact, _buttons(body, choices))
        await self.store.log(
            turn.contact, "suggested", intent=match.intent, score=match.score, detail=turn.text
        )

    async def _answer(self, turn: _Turn, intent: IntentSpec, score: float) -> None:
        turn.state = replace(turn.state, misunderstood=0, waiting=None)
        answer = intent.answer
        if answer.kind is AnswerKind.ACTION:
            action = self._actions.get(answer.action or "")
            if action is None:
                await self._action_failed(turn, intent.name, "the action is not configured")
                return
            await self._run_action(turn, intent, action, {})
            return
        if answer.kind is AnswerKind.HANDOFF:
            if answer.text:
                await self._say(turn.contact, self._fill(pick(answer.text, turn.language), turn))
            await self.hand_over(
                turn.contact, Reason.INTENT, detail=intent.name, turn=turn, tell=not answer.text
            )
            return
        await self._send(turn.contact, self._answer_message(answer, turn))
        await self.store.log(turn.contact, "answered", intent=intent.name, score=score)

    def _answer_message(self, answer: Answer, turn: _Turn) -> dict[str, Any]:
        if answer.kind is AnswerKind.BUTTONS:
            choices = [{"id": c.id, "title": pick(c.title, turn.language)} for c in answer.choices]
            return _buttons(self._fill(pick(answer.text, turn.language), turn), choices)
        if answer.kind is AnswerKind.TEMPLATE:
            assert answer.template is not None
            name, language = answer.template
            return {"type": "template", "template": {"name": name, "language": {"code": language}}}
        return _text(self._fill(pick(answer.text, turn.language), turn))

    # --- actions -----------------------------------------------------------------------------

    async def _run_action(
        self, turn: _Turn, intent: IntentSpec, action: HttpAction, known: Mapping[str, str]
    ) -> None:
        found, missing = find_params(action, turn.text)
        params = {**known, **found}
        missing = next((p for p in action.params if p.name not in params), None)
        if missing is not None:
            asked = int((turn.state.waiting or {}).get("asked", 0))
            if asked >= turn.settings.bot.misunderstood_limit:
                await self.hand_over(turn.contact, Reason.MISUNDERSTOOD, turn=turn)
                return
            turn.state = replace(
                turn.state,
                waiting={"intent": intent.name, "params": params, "asked": asked + 1},
            )
            await self._say(turn.contact, pick(missing.ask, turn.language))
            return
        turn.state = replace(turn.state, waiting=None)
        customer = await self._customer(turn.contact)
        outcome = await self.caller.call(action, params, customer=customer, language=turn.language)
        if not outcome.ok or outcome.message is None:
            await self._action_failed(turn, action.name, outcome.error, outcome.message)
            return
        await self._send(turn.contact, outcome.message)
        await self.store.log(turn.contact, "action", intent=intent.name, detail=action.name)

    async def _fill_waiting(self, turn: _Turn) -> bool:
        """The customer's answer to the bot's question for an action's detail; whether it
        was taken as one (else the message is matched anew)."""
        waiting = turn.state.waiting or {}
        intent = self._intents.get(str(waiting.get("intent", "")))
        action = self._actions.get(intent.answer.action or "") if intent else None
        if intent is None or action is None:
            turn.state = replace(turn.state, waiting=None)
            return False
        found, _missing = find_params(action, turn.text)
        if not found and self._matcher is not None:
            match = await asyncio.to_thread(self._matcher.match, turn.text)
            if match.decision in {Decision.ANSWER, Decision.HANDOFF}:
                turn.state = replace(turn.state, waiting=None)
                return False  # a new question instead of the answer
        known = {str(k): str(v) for k, v in dict(waiting.get("params") or {}).items()}
        await self._run_action(turn, intent, action, known)
        return True

    async def _action_failed(
        self, turn: _Turn, action: str, error: str, failure: dict[str, Any] | None = None
    ) -> None:
        """Say so politely (the action's failure text) and hand over."""
        log.info("bot action failed", action=action, error=error)
        await self.store.log(turn.contact, "action_failed", intent=action, detail=error)
        await self._send(turn.contact, failure or _text(pick(DEFAULT_FAILURE, turn.language)))
        await self.hand_over(
            turn.contact, Reason.ACTION_FAILED, detail=f"{action}: {error}", turn=turn
        )

    async def _customer(self, contact: str) -> dict[str, str]:
        found = await self.gateway.store.contact(contact)
        if found is None:
            return {"id": contact}
        return {
            "id": contact,
            "phone": found.phone or "",
            "wa_id": found.wa_id or "",
            "user_id": found.user_id,
            "name": found.profile_name or "",
        }

    # --- the business's own bot --------------------------------------------------------------

    async def _external(self, turn: _Turn) -> None:
        if self._agent_bot is None:
            await self.hand_over(turn.contact, Reason.EXTERNAL_DOWN, turn=turn)
            return
        customer = await self._customer(turn.contact)
        payload = agent_bot_payload(
            event="message_created",
            message=turn.entry,
            contact=customer,
            conversation={"status": str(Status.BOT)},
        )
        outcome = await self._agent_bot.deliver(payload)
        if not outcome.ok:
            await self.hand_over(
                turn.contact, Reason.EXTERNAL_DOWN, detail=outcome.error, turn=turn
            )

    # --- hand-over ---------------------------------------------------------------------------

    async def hand_over(
        self,
        contact: str,
        reason: str,
        *,
        detail: str = "",
        turn: _Turn | None = None,
        language: str | None = None,
        tell: bool = True,
    ) -> None:
        """Give the conversation to people: open, with the reason and the bot's transcript in
        its activity; the customer is told when people answer (``tell``)."""
        state = turn.state if turn else await self.store.state(contact)
        language = turn.language if turn else (language or state.language or "en")
        if turn is not None:
            turn.state = replace(turn.state, misunderstood=0, waiting=None)
        elif state.waiting or state.misunderstood:
            await self.store.save_state(replace(state, misunderstood=0, waiting=None))
        took_ms = state.took_ms
        recorded = turn is None or await _recorded(turn.recording)
        await self.conversations.set_status(contact, Status.OPEN)
        record = {
            "reason": reason,
            "detail": detail[:300],
            "transcript": await self._transcript(contact, took_ms),
        }
        await self.conversations.record(contact, None, "handoff", json.dumps(record))
        await self.store.log(contact, "handoff", detail=reason, intent=detail[:40] or None)
        if tell:
            hours = turn.hours if turn else Hours.from_profile(await self._profile())
            bot = (turn.settings if turn else await self.current()).bot
            closed = hours is not None and not hours.open_at(self.clock.now_ms())
            text = pick(bot.handoff_closed if closed else bot.handoff, language)
            opens = hours.opens(self.clock.now_ms(), language) if hours else ""
            await self._say(contact, text.replace("{opens}", opens))
        if recorded:
            await self._forward(contact)

    async def _transcript(self, contact: str, since_ms: int | None) -> list[dict[str, Any]]:
        """The conversation's latest messages since the bot took it: who said what."""
        query = (
            select(messages.c.direction, messages.c.type, messages.c.content, messages.c.created_ms)
            .where(messages.c.contact == contact)
            .order_by(messages.c.created_ms.desc())
            .limit(TRANSCRIPT_LINES)
        )
        if since_ms is not None:
            query = query.where(messages.c.created_ms >= since_ms - 1000)
        async with self.conversations.db.read() as conn:
            rows = (await conn.execute(query)).all()
        lines = []
        for row in reversed(rows):
            try:
                content = json.loads(row.content)
            except ValueError:
                content = {}
            lines.append(
                {
                    "from": "customer" if row.direction == "in" else "business",
                    "text": preview(str(row.type), content)[:300],
                    "at_ms": int(row.created_ms),
                }
            )
        return lines

    # --- sending -----------------------------------------------------------------------------

    async def _say(self, contact: str, text: str) -> None:
        await self._send(contact, _text(text))

    async def _send(self, contact: str, message: dict[str, Any]) -> None:
        user_id = self._user_ids.get(contact)
        if user_id is None:
            found = await self.gateway.store.contact(contact)
            if found is None:
                return
            user_id = found.user_id
        body = {"messaging_product": "whatsapp", "recipient": user_id, **message}
        try:
            request = parse_message_request(body)
            assert isinstance(request, SendRequest)
            await self.gateway.send(request)
        except GraphError as exc:
            log.warning("automatic message not sent", code=exc.code, error=exc.details)


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": text[:4096]}}


def _buttons(body: str, choices: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    return {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": body[:1024]},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": c["id"][:256], "title": c["title"][:20]}}
                    for c in choices[:3]
                ]
            },
        },
    }


def _rule(text: str, keywords: Sequence[str]) -> str | None:
    """The business's hand-over word or phrase that ``text`` contains, if any."""
    folded = f" {' '.join(text.casefold().split())} "
    for keyword in keywords:
        if f" {keyword.casefold()} " in folded or (" " in keyword and keyword.casefold() in folded):
            return keyword
    return None


async def _recorded(recording: asyncio.Future[None]) -> bool:
    """Whether the message's record committed (waited for)."""
    try:
        await asyncio.shield(recording)
    except Exception:
        return False
    return True
