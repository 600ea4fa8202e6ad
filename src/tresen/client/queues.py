"""What waits in the client's store: the outbox of messages the relay has not accepted yet,
the delivery receipts not sent yet, and the retries of messages a device could not decrypt
(asked for, or sent, again)."""

from __future__ import annotations

from dataclasses import dataclass

from tresen.client.store import LocalStore, StoredMessage

__all__ = ["Outbox", "PendingReceipt", "Queued", "ReceiptOutbox", "Retries"]

_OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    local_id TEXT NOT NULL UNIQUE REFERENCES messages (message_id),
    chat TEXT NOT NULL,
    klass INTEGER NOT NULL,
    template_ref TEXT
);
"""
_RECEIPTS = """
CREATE TABLE IF NOT EXISTS receipts_out (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    business TEXT NOT NULL,
    template_id TEXT NOT NULL,
    delivered_ms INTEGER NOT NULL,
    signature BLOB NOT NULL
);
"""
_RETRIES = """
CREATE TABLE IF NOT EXISTS retries (
    message_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    peer_device INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    requested INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, peer, peer_device)
);
"""


@dataclass(frozen=True, slots=True)
class Queued:
    """A message in the outbox: stored under ``local_id`` until the relay accepts it."""

    local_id: str
    chat: str
    klass: int
    template_ref: str | None


class Outbox:
    """Messages sent while the relay could not be reached, oldest first."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        store.db.executescript(_OUTBOX)

    def queue(self, message: StoredMessage, klass: int, template_ref: str | None) -> None:
        """Keep ``message`` (status pending) to be sent when the relay can be reached."""
        with self.store.transaction():
            self.store.put_message(message)
            self.store.db.execute(
                "INSERT INTO outbox (local_id, chat, klass, template_ref) VALUES (?, ?, ?, ?)",
                (message.message_id, message.chat, klass, template_ref),
            )

    def queued(self, chat: str | None = None) -> list[Queued]:
        """What waits in the outbox (of ``chat``, or of every chat), oldest first."""
        rows = self.store.db.execute(
            "SELECT o.local_id, o.chat, o.klass, o.template_ref FROM outbox o "
            "WHERE ? IS NULL OR o.chat = ? ORDER BY o.seq",
            (chat, chat),
        ).fetchall()
        return [Queued(str(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]

    def unqueue(self, local_id: str, *, keep_as: StoredMessage | None = None) -> bool:
        """Take a message out of the outbox: replaced by ``keep_as`` (what the relay accepted,
        or the message marked failed), or deleted. False if it was not queued (any more)."""
        with self.store.transaction():
            gone = self.store.db.execute("DELETE FROM outbox WHERE local_id = ?", (local_id,))
            if not gone.rowcount:
                return False
            self.store.db.execute("DELETE FROM messages WHERE message_id = ?", (local_id,))
            if keep_as is not None:
                self.store.put_message(keep_as)
        return True


@dataclass(frozen=True, slots=True)
class PendingReceipt:
    """A signed delivery receipt for the template message ``message_id`` of ``business``,
    not yet accepted by the relay."""

    message_id: str
    business: str
    template_id: str
    delivered_ms: int
    signature: bytes


class ReceiptOutbox:
    """Delivery receipts that wait to be sent, oldest first (queued in the transaction that
    stores the message they are for, so neither is kept without the other)."""

    MAX_WAITING = 100_000
    """Receipts kept while the relay cannot be reached; the oldest give way beyond."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        store.db.executescript(_RECEIPTS)

    def queue(self, receipt: PendingReceipt) -> None:
        self.store.db.execute(
            "INSERT INTO receipts_out (message_id, business, template_id, delivered_ms, "
            "signature) VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
            (
                receipt.message_id,
                receipt.business,
                receipt.template_id,
                receipt.delivered_ms,
                receipt.signature,
            ),
        )
        self.store.db.execute(
            "DELETE FROM receipts_out WHERE seq <= (SELECT MAX(seq) FROM receipts_out) - ?",
            (self.MAX_WAITING,),
        )

    def waiting(self, limit: int) -> list[PendingReceipt]:
        rows = self.store.db.execute(
            "SELECT message_id, business, template_id, delivered_ms, signature "
            "FROM receipts_out ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            PendingReceipt(str(r[0]), str(r[1]), str(r[2]), int(r[3]), bytes(r[4])) for r in rows
        ]

    def done(self, message_id: str) -> None:
        self.store.db.execute("DELETE FROM receipts_out WHERE message_id = ?", (message_id,))


class Retries:
    """How often a message was asked for (or sent) again, per peer device."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        store.db.executescript(_RETRIES)

    def count(self, message_id: str, peer: str, peer_device: int) -> int:
        """Count one more retry of ``message_id`` with that peer device; the count so far."""
        self.store.db.execute(
            "INSERT INTO retries (message_id, peer, peer_device, attempts) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (message_id, peer, peer_device) DO UPDATE SET "
            "attempts = attempts + 1, requested = 0",
            (message_id, peer, peer_device),
        )
        row = self.store.db.execute(
            "SELECT attempts FROM retries WHERE message_id = ? AND peer = ? AND peer_device = ?",
            (message_id, peer, peer_device),
        ).fetchone()
        return int(row[0])

    def requested(self, message_id: str, peer: str, peer_device: int) -> None:
        """The request for the latest retry reached the relay."""
        self.store.db.execute(
            "UPDATE retries SET requested = 1 "
            "WHERE message_id = ? AND peer = ? AND peer_device = ?",
            (message_id, peer, peer_device),
        )

    def unrequested(self) -> list[tuple[str, str, int, int]]:
        """(message id, peer, peer device, attempt) of retries whose request did not go out,
        for messages that still wait."""
        rows = self.store.db.execute(
            "SELECT r.message_id, r.peer, r.peer_device, r.attempts FROM retries r "
            "JOIN messages m ON m.message_id = r.message_id "
            "WHERE r.requested = 0 AND m.outgoing = 0 AND m.status = 'waiting'"
        ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

    def waiting(self, message_id: str) -> bool:
        """Whether ``message_id`` is a received message that waits to be sent again."""
        row = self.store.db.execute(
            "SELECT 1 FROM messages WHERE message_id = ? AND outgoing = 0 AND status = 'waiting'",
            (message_id,),
        ).fetchone()
        return row is not None

    def fail_waiting(self, message_id: str, sender: str, sender_device: int, error: str) -> bool:
        """Stop waiting for a received message from that device: it failed, with ``error``."""
        cursor = self.store.db.execute(
            "UPDATE messages SET status = 'failed', error = ? WHERE message_id = ? "
            "AND outgoing = 0 AND status = 'waiting' AND sender_account = ? AND sender_device = ?",
            (error, message_id, sender, sender_device),
        )
        return cursor.rowcount > 0
