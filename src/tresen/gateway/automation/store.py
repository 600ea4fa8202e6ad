"""Where automation keeps its configuration, what it remembers of customers, and its log.

Every change of the configuration (settings, intents, actions) raises a version kept in the
database, so that a running gateway picks up what ``tresen gateway bot import`` wrote from
another process before the next message. Action headers (tokens of the business's systems)
and the external bot's signing secret are sealed with the gateway's key.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.crypto.secrets import SecretsError, seal, unseal
from tresen.gateway.automation.config import (
    AutomationSettings,
    BotConfig,
    ConfigError,
    IntentSpec,
    check_intents,
)
from tresen.gateway.automation.http_actions import ActionError, action_to_json, parse_action
from tresen.gateway.schema import automation_settings, bot_actions, bot_intents, bot_log, bot_state
from tresen.gateway.store import get_meta, set_meta

__all__ = [
    "MAX_UNANSWERED",
    "AutomationStore",
    "BotFigures",
    "BotState",
    "Unanswered",
]

VERSION_META = "automation_version"
SECRET_META = "agent_bot_secret"  # noqa: S105 (a key of the meta table)
SECRET_CONTEXT = b"gateway-agent-bot-secret"
HEADERS_CONTEXT = b"gateway-bot-action-headers"
MAX_UNANSWERED = 1000
"""Unanswered questions kept for the business to learn from (the oldest go first)."""
MAX_DETAIL = 1024
STATES_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class BotState:
    contact: str
    language: str | None = None
    misunderstood: int = 0
    waiting: Mapping[str, Any] | None = None
    took_ms: int | None = None
    greeted_ms: int | None = None
    away_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Unanswered:
    id: int
    contact: str
    text: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class BotFigures:
    """What automation did in a period."""

    took: int
    """Conversations the bot took."""
    handed_over: int
    answered: int
    unanswered: int
    greetings: int
    away: int
    reasons: tuple[tuple[str, int], ...]
    """Hand-over reasons, the most frequent first."""
    intents: tuple[tuple[str, int], ...]
    """Intents answered, the most frequent first."""

    @property
    def resolved_by_bot(self) -> int:
        return max(0, self.took - self.handed_over)

    @property
    def resolved_share(self) -> float | None:
        return None if not self.took else self.resolved_by_bot / self.took

    @property
    def handoff_rate(self) -> float | None:
        return None if not self.took else self.handed_over / self.took


class AutomationStore:
    def __init__(self, db: Database, clock: Clock, key: bytes) -> None:
        self.db = db
        self.clock = clock
        self._key = key
        self.changes = 0
        self._states: OrderedDict[str, BotState] = OrderedDict()
        """Changes made through this store (a change made elsewhere shows in ``version``)."""

    # --- version -----------------------------------------------------------------------------

    async def version(self) -> int:
        async with self.db.read() as conn:
            value = await get_meta(conn, VERSION_META)
        return 0 if value is None else int(value.decode())

    async def _bump(self, conn: AsyncConnection) -> None:
        value = await get_meta(conn, VERSION_META)
        await set_meta(conn, VERSION_META, str(int(value or b"0") + 1).encode())
        self.changes += 1

    # --- settings ----------------------------------------------------------------------------

    async def settings(self) -> AutomationSettings:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(automation_settings.c.config).where(automation_settings.c.id == 1)
                )
            ).scalar_one_or_none()
        if row is None:
            return AutomationSettings()
        return AutomationSettings.from_json(json.loads(row))

    async def save_settings(self, settings: AutomationSettings) -> None:
        async with self.db.write() as conn:
            await self._save_settings(conn, settings)
            await self._bump(conn)

    async def _save_settings(self, conn: AsyncConnection, settings: AutomationSettings) -> None:
        values = {"config": json.dumps(settings.to_json()), "updated_ms": self.clock.now_ms()}
        changed = await conn.execute(
            update(automation_settings).where(automation_settings.c.id == 1).values(**values)
        )
        if not changed.rowcount:
            await conn.execute(insert(automation_settings).values(id=1, **values))

    async def agent_bot_secret(self) -> str | None:
        """The signing secret of posts to the business's own bot (``None``: none made yet)."""
        async with self.db.read() as conn:
            sealed = await get_meta(conn, SECRET_META)
        if sealed is None:
            return None
        try:
            return unseal(self._key, sealed, context=SECRET_CONTEXT).decode()
        except SecretsError:
            return None

    async def new_agent_bot_secret(self) -> str:
        """A new signing secret (the old one stops verifying); shown once to the business."""
        secret = secrets.token_urlsafe(32)
        async with self.db.write() as conn:
            await set_meta(
                conn, SECRET_META, seal(self._key, secret.encode(), context=SECRET_CONTEXT)
            )
            await self._bump(conn)
        return secret

    # --- intents -----------------------------------------------------------------------------

    async def intents(self) -> list[IntentSpec]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(bot_intents.c.spec).order_by(bot_intents.c.position, bot_intents.c.name)
                )
            ).scalars()
            return [IntentSpec.from_json(json.loads(spec)) for spec in rows]

    async def intent(self, name: str) -> IntentSpec | None:
        async with self.db.read() as conn:
            spec = (
                await conn.execute(select(bot_intents.c.spec).where(bot_intents.c.name == name))
            ).scalar_one_or_none()
        return None if spec is None else IntentSpec.from_json(json.loads(spec))

    async def put_intent(self, intent: IntentSpec, *, was: str | None = None) -> None:
        """Add ``intent``, or change the one named ``was`` (renaming it keeps its place)."""
        async with self.db.write() as conn:
            current = await self._intents(conn)
            names = [i.name for i in current]
            if was is not None and was not in names:
                raise ConfigError("unknown_intent", f"there is no intent {was}")
            if intent.name in names and intent.name != was:
                raise ConfigError("duplicate_intent", f"there is an intent {intent.name} already")
            after = [intent if i.name == was else i for i in current]
            if was is None:
                after.append(intent)
            check_intents(after, await self._action_names(conn))
            if was is not None:
                position = names.index(was)
                await conn.execute(delete(bot_intents).where(bot_intents.c.name == was))
            else:
                position = len(current)
            await conn.execute(insert(bot_intents).values(**self._intent_row(intent, position)))
            await self._bump(conn)

    async def delete_intent(self, name: str) -> None:
        async with self.db.write() as conn:
            current = await self._intents(conn)
            remaining = [i for i in current if i.name != name]
            if len(remaining) == len(current):
                raise ConfigError("unknown_intent", f"there is no intent {name}")
            check_intents(remaining, await self._action_names(conn))
            await conn.execute(delete(bot_intents).where(bot_intents.c.name == name))
            await self._bump(conn)

    async def add_example(self, name: str, example: str) -> IntentSpec:
        """Teach the intent ``name`` one more phrasing (the business approved it)."""
        intent = await self.intent(name)
        if intent is None:
            raise ConfigError("unknown_intent", f"there is no intent {name}")
        changed = IntentSpec.from_json(
            {**intent.to_json(), "examples": [*intent.examples, example]}, "intent"
        )
        await self.put_intent(changed, was=name)
        return changed

    def _intent_row(self, intent: IntentSpec, position: int) -> dict[str, Any]:
        return {
            "name": intent.name,
            "position": position,
            "enabled": int(intent.enabled),
            "spec": json.dumps(intent.to_json(), ensure_ascii=False),
            "updated_ms": self.clock.now_ms(),
        }

    async def _intents(self, conn: AsyncConnection) -> list[IntentSpec]:
        rows = (
            await conn.execute(
                select(bot_intents.c.spec).order_by(bot_intents.c.position, bot_intents.c.name)
            )
        ).scalars()
        return [IntentSpec.from_json(json.loads(spec)) for spec in rows]

    # --- actions -----------------------------------------------------------------------------

    async def _action_names(self, conn: AsyncConnection) -> list[str]:
        return [str(n) for n in (await conn.execute(select(bot_actions.c.name))).scalars()]

    async def actions(self, *, with_headers: bool = True) -> list[dict[str, Any]]:
        """Every action as its JSON; headers opened (``with_headers``) or with their values
        hidden (for pages and exports)."""
        async with self.db.read() as conn:
            rows = (await conn.execute(select(bot_actions).order_by(bot_actions.c.name))).all()
        out = []
        for row in rows:
            spec = json.loads(row.spec)
            headers = json.loads(unseal(self._key, bytes(row.headers), context=HEADERS_CONTEXT))
            spec["headers"] = headers if with_headers else {h: "********" for h in headers}
            out.append(spec)
        return out

    async def put_action(self, spec: Mapping[str, Any]) -> None:
        """Add or replace the action named in ``spec``."""
        spec = checked_action(spec)
        async with self.db.write() as conn:
            await self._put_action(conn, spec)
            await self._bump(conn)

    async def _put_action(self, conn: AsyncConnection, spec: Mapping[str, Any]) -> None:
        body = dict(spec)
        headers = body.pop("headers", None) or {}
        name = str(body["name"])
        await conn.execute(delete(bot_actions).where(bot_actions.c.name == name))
        await conn.execute(
            insert(bot_actions).values(
                name=name,
                spec=json.dumps(body, ensure_ascii=False),
                headers=seal(self._key, json.dumps(headers).encode(), context=HEADERS_CONTEXT),
                updated_ms=self.clock.now_ms(),
            )
        )

    async def delete_action(self, name: str) -> None:
        async with self.db.write() as conn:
            users = [i.name for i in await self._intents(conn) if i.answer.action == name]
            if users:
                raise ConfigError(
                    "action_in_use", f"the action {name} is used by: {', '.join(users)}"
                )
            gone = await conn.execute(delete(bot_actions).where(bot_actions.c.name == name))
            if not gone.rowcount:
                raise ConfigError("unknown_action", f"there is no action {name}")
            await self._bump(conn)

    # --- the bot file ------------------------------------------------------------------------

    async def import_config(self, config: BotConfig) -> None:
        """Replace the intents and actions with the file's (and the settings, if it has
        them), in one transaction."""
        actions = [checked_action(a) for a in config.actions]
        async with self.db.write() as conn:
            await conn.execute(delete(bot_intents))
            await conn.execute(delete(bot_actions))
            for action in actions:
                await self._put_action(conn, action)
            for position, intent in enumerate(config.intents):
                await conn.execute(insert(bot_intents).values(**self._intent_row(intent, position)))
            if config.settings is not None:
                await self._save_settings(conn, config.settings)
            await self._bump(conn)

    async def export_config(self, *, with_headers: bool = False) -> BotConfig:
        return BotConfig(
            await self.settings(),
            tuple(await self.intents()),
            tuple(await self.actions(with_headers=with_headers)),
        )

    # --- what automation remembers of each customer ------------------------------------------

    async def state(self, contact: str) -> BotState:
        cached = self._states.get(contact)
        if cached is not None:
            self._states.move_to_end(contact)
            return cached
        async with self.db.read() as conn:
            return await self.state_in(conn, contact)

    async def state_in(self, conn: AsyncConnection, contact: str) -> BotState:
        """What automation remembers of ``contact`` (kept in memory too: automation is the
        one writer of these rows)."""
        cached = self._states.get(contact)
        if cached is not None:
            self._states.move_to_end(contact)
            return cached
        row = (await conn.execute(select(bot_state).where(bot_state.c.contact == contact))).first()
        state = BotState(contact)
        if row is not None:
            state = BotState(
                contact,
                row.language,
                int(row.misunderstood),
                json.loads(row.waiting) if row.waiting else None,
                row.took_ms,
                row.greeted_ms,
                row.away_ms,
            )
        self._remember(state)
        return state

    def _remember(self, state: BotState) -> None:
        self._states[state.contact] = state
        self._states.move_to_end(state.contact)
        if len(self._states) > STATES_CACHED:
            self._states.popitem(last=False)

    async def save_state(self, state: BotState) -> None:
        values = {
            "language": state.language,
            "misunderstood": state.misunderstood,
            "waiting": json.dumps(state.waiting) if state.waiting else None,
            "took_ms": state.took_ms,
            "greeted_ms": state.greeted_ms,
            "away_ms": state.away_ms,
            "updated_ms": self.clock.now_ms(),
        }
        async with self.db.write() as conn:
            changed = await conn.execute(
                update(bot_state).where(bot_state.c.contact == state.contact).values(**values)
            )
            if not changed.rowcount:
                await conn.execute(insert(bot_state).values(contact=state.contact, **values))
        self._remember(state)

    # --- the log -----------------------------------------------------------------------------

    async def log(
        self,
        contact: str,
        kind: str,
        *,
        intent: str | None = None,
        score: float | None = None,
        detail: str = "",
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(bot_log).values(
                    contact=contact,
                    kind=kind,
                    intent=intent,
                    score=None if score is None else round(score * 100),
                    detail=detail[:MAX_DETAIL],
                    at_ms=self.clock.now_ms(),
                )
            )
            if kind == "unanswered":
                await self._trim_unanswered(conn)

    async def _trim_unanswered(self, conn: AsyncConnection) -> None:
        keep = (
            select(bot_log.c.id)
            .where(bot_log.c.kind == "unanswered")
            .order_by(bot_log.c.id.desc())
            .limit(MAX_UNANSWERED)
            .subquery()
        )
        await conn.execute(
            delete(bot_log).where(bot_log.c.kind == "unanswered", bot_log.c.id.not_in(select(keep)))
        )

    async def unanswered(self, *, limit: int = 50) -> list[Unanswered]:
        """Questions the bot could not answer and nobody dismissed, the latest first."""
        query = (
            select(bot_log.c.id, bot_log.c.contact, bot_log.c.detail, bot_log.c.at_ms)
            .where(bot_log.c.kind == "unanswered", bot_log.c.dismissed_ms.is_(None))
            .order_by(bot_log.c.id.desc())
            .limit(max(1, min(limit, 500)))
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [Unanswered(int(r.id), str(r.contact), str(r.detail), int(r.at_ms)) for r in rows]

    async def dismiss(self, question_id: int) -> str:
        """Take an unanswered question off the list; its text."""
        async with self.db.write() as conn:
            text = (
                await conn.execute(
                    select(bot_log.c.detail).where(
                        bot_log.c.id == question_id, bot_log.c.kind == "unanswered"
                    )
                )
            ).scalar_one_or_none()
            if text is None:
                raise ConfigError("unknown_question", "there is no such question")
            await conn.execute(
                update(bot_log)
                .where(bot_log.c.id == question_id)
                .values(dismissed_ms=self.clock.now_ms())
            )
        return str(text)

    async def adopt(self, question_id: int, intent: str) -> IntentSpec:
        """Make an unanswered question an example of ``intent`` (the business approves what
        the bot learns) and take it off the list."""
        if await self.intent(intent) is None:
            raise ConfigError("unknown_intent", f"there is no intent {intent}")
        text = await self.dismiss(question_id)
        return await self.add_example(intent, text)

    async def figures(self, since_ms: int, until_ms: int) -> BotFigures:
        period = and_(bot_log.c.at_ms >= since_ms, bot_log.c.at_ms < until_ms)
        async with self.db.read() as conn:
            kinds = Counter(
                {
                    str(kind): int(n)
                    for kind, n in (
                        await conn.execute(
                            select(bot_log.c.kind, func.count())
                            .where(period)
                            .group_by(bot_log.c.kind)
                        )
                    ).all()
                }
            )
            reasons = (
                await conn.execute(
                    select(bot_log.c.detail, func.count().label("n"))
                    .where(period, bot_log.c.kind == "handoff")
                    .group_by(bot_log.c.detail)
                    .order_by(func.count().desc(), bot_log.c.detail)
                    .limit(20)
                )
            ).all()
            intents = (
                await conn.execute(
                    select(bot_log.c.intent, func.count().label("n"))
                    .where(period, bot_log.c.kind.in_(["answered", "action"]))
                    .group_by(bot_log.c.intent)
                    .order_by(func.count().desc(), bot_log.c.intent)
                    .limit(20)
                )
            ).all()
        return BotFigures(
            took=kinds["took"],
            handed_over=kinds["handoff"],
            answered=kinds["answered"] + kinds["action"],
            unanswered=kinds["unanswered"],
            greetings=kinds["greeting"],
            away=kinds["away"],
            reasons=tuple((str(r), int(n)) for r, n in reasons),
            intents=tuple((str(i), int(n)) for i, n in intents if i),
        )


def checked_action(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` checked as an HTTP action, in its normal form; refusals as ``ConfigError``."""
    try:
        return action_to_json(parse_action(spec))
    except ActionError as exc:
        name = spec.get("name", "?")
        raise ConfigError(exc.code, f"action {name}: {exc}") from None
