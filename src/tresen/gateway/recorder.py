"""The gateway's hot path into its database: messages sent and received, and their statuses.

Every API send, every inbound message and every delivered or read report is recorded here,
with the webhook events it causes, in one transaction per batch (group commit). A batch is
written with a few multi-row statements rather than a few statements per message, which is
what lets one gateway keep up with the Cloud API's top throughput tier.

A ``delivered`` or ``read`` report can overtake the recording of the send it names (the
relay's receipt arrives on the connection while the API call is still on its way here); such
a report is kept in ``early_statuses`` and applied when the message is recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.batching import GroupCommitter
from tresen.core.db import Database
from tresen.core.logging import get_logger
from tresen.gateway.cloudapi.errors import webhook_error
from tresen.gateway.cloudapi.events import message_value, status_value
from tresen.gateway.schema import contacts, early_statuses, message_statuses, messages
from tresen.gateway.store import STATUS_RANK, Contact, GatewayStore, StoredMessage, contact_of
from tresen.gateway.webhooks.outbox import NewEvent, Outbox

__all__ = ["Echo", "Received", "Recorder", "Sent", "StatusReport"]

log = get_logger("tresen.gateway.recorder")

MAX_BATCH = 512


@dataclass(frozen=True, slots=True)
class Sent:
    """A message the API sent (its ``sent`` status becomes a webhook)."""

    message: StoredMessage
    contact: Contact


@dataclass(frozen=True, slots=True)
class Received:
    """A customer's message, with the webhook ``messages[0]`` entry that announces it."""

    message: StoredMessage
    contact: Contact
    entry: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Echo:
    """A message another device of the business sent: stored, announced to no one."""

    message: StoredMessage


@dataclass(frozen=True, slots=True)
class StatusReport:
    relay_message_id: str
    wamid: str
    status: str
    at_ms: int
    pricing: str | None
    error_code: int | None = None
    error: str | None = None


Op = Sent | Received | Echo | StatusReport


@dataclass(slots=True)
class _Current:
    """What the batch knows of a message while it applies statuses."""

    status: str
    direction: str
    origin: str
    message: StoredMessage | None
    pricing: str | None = None
    """As the relay reported it on ``delivered`` (JSON); ``read`` repeats it."""


class Recorder:
    """Records on a thread and event loop of its own.

    Its database round trips then do not queue behind the API's traffic on the main event
    loop (each would otherwise wait for a whole turn of a busy loop); callers await their
    record from the main loop as usual. ``database`` makes the recorder's own
    :class:`Database` inside its loop (connections belong to the loop that opened them).
    """

    def __init__(
        self,
        database: Callable[[], Database],
        store: GatewayStore,
        outbox: Outbox,
        *,
        waba_id: str,
        phone_number_id: str,
        on_events: Callable[[], None] | None = None,
        on_recorded: Callable[[Sequence[Op]], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._database = database
        self.store = store
        self.outbox = outbox
        self.waba_id = waba_id
        self.phone_number_id = phone_number_id
        self._on_events = on_events
        self._on_recorded = on_recorded
        self._max_batch = max_batch
        self._early: set[str] = set()
        self._contacts: dict[str, Contact] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committer: GroupCommitter[Op, None] | None = None
        self._stopping: asyncio.Event | None = None
        self._caller: asyncio.AbstractEventLoop | None = None
        self.db: Database | None = None
        self.commits = 0
        """Transactions committed (for tests and metrics: received messages share them)."""

    async def start(self) -> None:
        """Start the recorder's thread; returns once it is ready to record."""
        self._caller = asyncio.get_running_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="gateway-recorder", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            self.db = self._database()
            async with self.db.read() as conn:
                rows = await conn.execute(select(early_statuses.c.relay_message_id).distinct())
                self._early = {r.relay_message_id for r in rows}
            self._committer = GroupCommitter(self._process, max_batch=self._max_batch)
            self._committer.start()
        except BaseException as exc:
            ready.set_exception(exc)
            if self.db is not None:
                await self.db.dispose()
            return
        ready.set_result(None)
        try:
            await self._stopping.wait()
        finally:
            await self._committer.close()
            await self.db.dispose()

    async def close(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    async def record(self, op: Op) -> None:
        """Record ``op``; returns once it is committed."""
        if self._loop is None:
            raise RuntimeError("Recorder.start() was not called")
        done = asyncio.run_coroutine_threadsafe(self._submit(op), self._loop)
        await asyncio.wrap_future(done)

    async def _submit(self, op: Op) -> None:
        assert self._committer is not None
        await self._committer.submit(op)

    async def _contact(self, conn: AsyncConnection, account_id: str) -> Contact | None:
        known = self._contacts.get(account_id)
        if known is None:
            row = (
                await conn.execute(select(contacts).where(contacts.c.account_id == account_id))
            ).first()
            if row is None:
                return None
            known = self._contacts[account_id] = contact_of(row)
        return known

    async def _process(self, ops: Sequence[Op]) -> list[BaseException | None]:
        early_before = set(self._early)
        try:
            assert self.db is not None
            async with self.db.write() as conn:
                events = await self._apply(conn, ops)
            self.commits += 1
            self._announce(events, ops)
            return [None] * len(ops)
        except Exception as exc:
            self._early = early_before
            if len(ops) == 1:
                return [exc]
            log.warning("batch not recorded; recording one by one", error=type(exc).__name__)
        results: list[BaseException | None] = []
        for op in ops:
            early_before = set(self._early)
            try:
                assert self.db is not None
                async with self.db.write() as conn:
                    events = await self._apply(conn, [op])
                self.commits += 1
                self._announce(events, [op])
                results.append(None)
            except Exception as exc:
                self._early = early_before
                results.append(exc)
        return results

    def _announce(self, events: int, ops: Sequence[Op]) -> None:
        """Wake the webhook dispatcher for ``events`` new events, and tell ``on_recorded`` of
        the committed ``ops`` (both on the caller's event loop)."""
        if self._caller is None:
            return
        if events and self._on_events is not None:
            self._caller.call_soon_threadsafe(self._on_events)
        if self._on_recorded is not None:
            self._caller.call_soon_threadsafe(self._on_recorded, list(ops))

    async def _apply(self, conn: AsyncConnection, ops: Sequence[Op]) -> int:
        """Write ``ops``; the number of webhook events queued.

        The events go out in the order of the ops that made them (a customer's read receipt
        before the messages the customer wrote after it), except that a status never goes
        before the ``sent`` of its message, and one message's statuses go in their order
        (sent, delivered, read)."""
        # Each event with its place: (index of the op it comes from, 0 for a message's own
        # event or 1 for a status).
        events: list[tuple[tuple[int, int], NewEvent]] = []
        new_messages = await self._insert_messages(conn, ops)
        contacts = {
            op.contact.account_id: op.contact
            for op in ops
            if isinstance(op, Received) and op.message.wamid in new_messages
        }
        if contacts:
            await self.store.save_contacts(conn, list(contacts.values()))
            self._contacts.update(contacts)
        recorded_at: dict[str, int] = {}
        reports: list[StatusReport] = []
        places: list[tuple[int, int]] = []
        for index, op in enumerate(ops):
            if isinstance(op, Sent) and op.message.wamid in new_messages:
                value = status_value(
                    self.phone_number_id,
                    op.message,
                    op.contact,
                    "sent",
                    op.message.created_ms,
                    None,
                )
                events.append(((index, 0), NewEvent(op.contact.account_id, "messages", value)))
                recorded_at[op.message.wamid] = index
                new_messages.pop(op.message.wamid, None)  # one event per wamid, in order
            elif isinstance(op, Received) and op.message.wamid in new_messages:
                value = message_value(self.phone_number_id, op.contact, op.entry)
                events.append(((index, 0), NewEvent(op.contact.account_id, "messages", value)))
                new_messages.pop(op.message.wamid, None)
            elif isinstance(op, StatusReport):
                reports.append(op)
                places.append((index, 1))
        inserted_out = [
            (index, op.message)
            for index, op in enumerate(ops)
            if isinstance(op, Sent | Echo) and op.message.relay_message_id in self._early
        ]
        if inserted_out:
            # Statuses that came before their message: right after it.
            early = await self._take_early(conn, [message for _, message in inserted_out])
            index_of = {message.relay_message_id: index for index, message in inserted_out}
            places = [(index_of[r.relay_message_id], 1) for r in early] + places
            reports = early + reports
        if reports:
            places = [
                max(place, (recorded_at.get(report.wamid, -1), 1))
                for report, place in zip(reports, places, strict=True)
            ]
            events.extend(await self._apply_statuses(conn, reports, places))
        if not events:
            return 0
        events.sort(key=lambda event: event[0])  # stable: ties keep the order they were made in
        return await self.outbox.enqueue_many(
            conn, waba_id=self.waba_id, events=[event for _, event in events]
        )

    async def _insert_messages(
        self, conn: AsyncConnection, ops: Sequence[Op]
    ) -> dict[str, StoredMessage]:
        """Insert the batch's new messages; the ones inserted, by wamid."""
        candidates: dict[str, tuple[StoredMessage, str]] = {}
        for op in ops:
            if isinstance(op, Sent):
                candidates.setdefault(op.message.wamid, (op.message, "api"))
            elif isinstance(op, Received):
                candidates.setdefault(op.message.wamid, (op.message, "customer"))
            elif isinstance(op, Echo):
                candidates.setdefault(op.message.wamid, (op.message, "device"))
        if not candidates:
            return {}
        existing = {
            r.wamid
            for r in await conn.execute(
                select(messages.c.wamid).where(messages.c.wamid.in_(list(candidates)))
            )
        }
        fresh = {w: c for w, c in candidates.items() if w not in existing}
        if not fresh:
            return {}
        await conn.execute(
            insert(messages),
            [
                {
                    "wamid": m.wamid,
                    "relay_message_id": m.relay_message_id,
                    "contact": m.contact,
                    "direction": m.direction,
                    "origin": origin,
                    "type": m.type,
                    "content": json.dumps(m.content, ensure_ascii=False),
                    "context_wamid": m.context_wamid,
                    "status": m.status,
                    "error_code": m.error_code,
                    "error": None,
                    "pricing": m.pricing,
                    "callback_data": m.callback_data,
                    "template_name": m.content.get("name") if m.type == "template" else None,
                    "created_ms": m.created_ms,
                    "updated_ms": m.created_ms,
                }
                for m, origin in fresh.values()
            ],
        )
        sent = [m for m, _ in fresh.values() if m.direction == "out"]
        if sent:
            await conn.execute(
                insert(message_statuses),
                [{"wamid": m.wamid, "status": m.status, "at_ms": m.created_ms} for m in sent],
            )
        return {w: m for w, (m, _) in fresh.items()}

    async def _take_early(
        self, conn: AsyncConnection, inserted: list[StoredMessage]
    ) -> list[StatusReport]:
        relay_ids = [m.relay_message_id for m in inserted if m.relay_message_id]
        rows = (
            await conn.execute(
                select(early_statuses)
                .where(early_statuses.c.relay_message_id.in_(relay_ids))
                .order_by(early_statuses.c.id)
            )
        ).all()
        await conn.execute(
            delete(early_statuses).where(early_statuses.c.relay_message_id.in_(relay_ids))
        )
        self._early.difference_update(relay_ids)
        wamids = {m.relay_message_id: m.wamid for m in inserted}
        return [
            StatusReport(
                r.relay_message_id,
                wamids[r.relay_message_id],
                r.status,
                r.at_ms,
                r.pricing,
                r.error_code,
                r.error,
            )
            for r in rows
        ]

    async def _apply_statuses(
        self, conn: AsyncConnection, reports: list[StatusReport], places: list[tuple[int, int]]
    ) -> list[tuple[tuple[int, int], NewEvent]]:
        """Apply ``reports``; their webhook events, each with the place of its report
        (``places``, see :meth:`_apply`), never before an earlier status of its message."""
        wamids = list(dict.fromkeys(r.wamid for r in reports))
        rows = (await conn.execute(select(messages).where(messages.c.wamid.in_(wamids)))).all()
        current: dict[str, _Current] = {}
        for row in rows:
            current[row.wamid] = _Current(row.status, row.direction, row.origin, None, row.pricing)
            current[row.wamid].message = StoredMessage(
                wamid=row.wamid,
                relay_message_id=row.relay_message_id,
                contact=row.contact,
                direction=row.direction,
                type=row.type,
                content={},
                context_wamid=row.context_wamid,
                status=row.status,
                error_code=row.error_code,
                callback_data=row.callback_data,
                created_ms=row.created_ms,
            )
        updates: dict[str, dict[str, Any]] = {}
        history: list[dict[str, Any]] = []
        early: list[dict[str, Any]] = []
        events: list[tuple[tuple[int, int], NewEvent]] = []
        latest: dict[str, tuple[int, int]] = {}
        ranked = sorted(zip(reports, places, strict=True), key=lambda r: STATUS_RANK[r[0].status])
        for report, place in ranked:
            state = current.get(report.wamid)
            if state is None:
                early.append(
                    {
                        "relay_message_id": report.relay_message_id,
                        "status": report.status,
                        "at_ms": report.at_ms,
                        "pricing": report.pricing,
                        "error_code": report.error_code,
                        "error": report.error,
                    }
                )
                continue
            if state.direction != "out":
                continue
            if STATUS_RANK.get(state.status, 99) >= STATUS_RANK[report.status]:
                continue  # already there, or further
            state.status = report.status
            if report.pricing is not None:
                state.pricing = report.pricing
            # Pricing goes on delivered and read, never on sent (see docs/api.md).
            pricing = state.pricing if report.status in ("delivered", "read") else None
            change = updates.setdefault(
                report.wamid,
                {"w": report.wamid, "pricing": None, "error_code": None, "error": None},
            )
            change["status"] = report.status
            change["updated_ms"] = report.at_ms
            if report.pricing is not None:
                change["pricing"] = report.pricing
            if report.error_code is not None:
                change["error_code"] = report.error_code
                change["error"] = report.error
            history.append({"wamid": report.wamid, "status": report.status, "at_ms": report.at_ms})
            if state.origin == "api" and state.message is not None:
                contact = await self._contact(conn, state.message.contact)
                if contact is not None:
                    errors = (
                        [webhook_error(report.error_code, report.error or "")]
                        if report.error_code is not None
                        else None
                    )
                    value = status_value(
                        self.phone_number_id,
                        state.message,
                        contact,
                        report.status,
                        report.at_ms,
                        pricing,
                        errors,
                    )
                    place = max(place, latest.get(report.wamid, place))
                    latest[report.wamid] = place
                    events.append((place, NewEvent(contact.account_id, "messages", value)))
        if updates:
            await conn.execute(
                update(messages)
                .where(messages.c.wamid == bindparam("w"))
                .values(
                    status=bindparam("status"),
                    updated_ms=bindparam("updated_ms"),
                    pricing=func.coalesce(bindparam("pricing"), messages.c.pricing),
                    error_code=func.coalesce(bindparam("error_code"), messages.c.error_code),
                    error=func.coalesce(bindparam("error"), messages.c.error),
                ),
                list(updates.values()),
            )
            await conn.execute(insert(message_statuses), history)
        if early:
            await conn.execute(insert(early_statuses), early)
            self._early.update(e["relay_message_id"] for e in early)
        return events
