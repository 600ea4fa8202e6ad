"""The client's local SQLite store.

Everything secret is encrypted with the client's 32-byte key before it is written: the device
token and message payloads are sealed (AES-256-GCM), Olm account and session state are
vodozemac pickles encrypted with the same key. The database file alone reveals who talked to
whom and when, never what was said.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from tresen.client.lock import FolderLock
from tresen.crypto.secrets import seal, unseal

__all__ = [
    "KEY_LOG_ROOTS_KEPT",
    "ChatSummary",
    "KnownBusiness",
    "LocalStore",
    "LoggedRoot",
    "MessageStatus",
    "PeerDevice",
    "StoredMessage",
    "Trust",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS peers (
    account_id TEXT PRIMARY KEY,
    phone TEXT,
    trust TEXT NOT NULL DEFAULT 'trusted',
    updated_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS peer_devices (
    account_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    registration_id INTEGER NOT NULL,
    curve25519 TEXT NOT NULL,
    ed25519 TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, device_id)
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    pickle TEXT NOT NULL,
    last_used_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_sessions_peer ON sessions (account_id, device_id, last_used_ms);
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    chat TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    sender_account TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    client_msg_id TEXT,
    payload BLOB,
    status TEXT NOT NULL,
    server_ms INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS ix_messages_chat ON messages (chat, server_ms);
CREATE TABLE IF NOT EXISTS businesses (
    account_id TEXT PRIMARY KEY,
    display_name TEXT,
    tick TEXT NOT NULL DEFAULT 'not_verified',
    profile TEXT,
    checked_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS contacts (
    phone TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS attachments (
    message_id TEXT PRIMARY KEY,
    path BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS key_log_roots (
    epoch INTEGER PRIMARY KEY,
    tree_size INTEGER NOT NULL,
    body BLOB NOT NULL,
    signature TEXT NOT NULL,
    seen_ms INTEGER NOT NULL
);
"""

KEY_LOG_ROOTS_KEPT = 1000
"""Epoch heads kept (the newest; the first one seen stays too), for comparing with others."""


class Trust(StrEnum):
    TRUSTED = "trusted"
    CHANGED = "changed"  # a known device's identity key changed; sending waits for the user
    # The relay's key log does not vouch for the keys it gave (docs/architecture.md, "Key
    # transparency"); sending waits for the user as for a changed key.
    KEY_TRANSPARENCY = "key_transparency"


class MessageStatus(StrEnum):
    # Outgoing, not yet accepted by the relay (it could not be reached): kept in the outbox
    # and sent, in order and with its client message id, when the connection returns.
    PENDING = "pending"
    SENT = "sent"
    # Outgoing: a device of the recipient could not decrypt it and asked for it again; it is
    # being re-encrypted over a new session. Incoming: this device could not decrypt it and
    # asked the sender's device for it again ("waiting for this message").
    WAITING = "waiting"
    DELIVERED = "delivered"
    READ = "read"
    RECEIVED = "received"
    SEEN = "seen"  # received and read by this user
    # Received: could not be decrypted or decoded. Sent: the relay reported that no device
    # of the recipient received it (it expired); final.
    FAILED = "failed"


_RANK = {
    MessageStatus.SENT: 0,
    MessageStatus.WAITING: 0,
    MessageStatus.DELIVERED: 1,
    MessageStatus.READ: 2,
    MessageStatus.FAILED: 3,
}


@dataclass(frozen=True, slots=True)
class PeerDevice:
    account_id: str
    device_id: int
    registration_id: int
    curve25519: str
    ed25519: str


@dataclass(frozen=True, slots=True)
class LoggedRoot:
    """A signed epoch head of the relay's key log, as this client saw and checked it."""

    epoch: int
    tree_size: int
    body: bytes
    signature: str
    seen_ms: int


@dataclass(frozen=True, slots=True)
class StoredMessage:
    message_id: str
    chat: str
    outgoing: bool
    sender_account: str
    sender_device: int
    client_msg_id: str | None
    payload: bytes | None
    status: MessageStatus
    server_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class ChatSummary:
    account_id: str
    phone: str | None
    last_ms: int
    unread: int
    business: bool = False
    display_name: str | None = None
    verified: bool = False


@dataclass(frozen=True, slots=True)
class KnownBusiness:
    """What the store remembers of a business: its name and tick at the last check."""

    account_id: str
    display_name: str | None
    tick: str
    profile: dict[str, Any] | None
    checked_ms: int

    @property
    def verified(self) -> bool:
        return self.tick == "verified"


class LocalStore:
    """One SQLite file per client; all calls are short and run on the caller's thread."""

    def __init__(self, path: Path, key: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.folder = path.parent
        self._key = key
        # Raises FolderInUse while another process (or client) has this folder open.
        self._lock = FolderLock.acquire(path.parent)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            path.chmod(0o600)
        except BaseException:
            self._lock.release()
            raise
        # Read on every send: kept in memory, dropped on every change (and on a rollback).
        self._trust: dict[str, Trust] = {}
        self._devices: dict[str, dict[int, PeerDevice]] = {}
        self._by_phone: dict[str, str] = {}

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for the parts that keep tables of their own (``client/queues.py``)."""
        return self._db

    def close(self) -> None:
        self._db.close()
        self._lock.release()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes that must land together (e.g. a message and its session state)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._forget_cached()
            raise
        self._db.execute("COMMIT")

    def _forget_cached(self) -> None:
        self._trust.clear()
        self._devices.clear()
        self._by_phone.clear()

    # --- meta ------------------------------------------------------------------------------

    def get_meta(self, k: str) -> bytes | None:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, k: str, v: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, v))

    def delete_meta(self, k: str) -> None:
        self._db.execute("DELETE FROM meta WHERE k = ?", (k,))

    def get_secret(self, k: str) -> bytes | None:
        sealed = self.get_meta(k)
        return None if sealed is None else unseal(self._key, sealed, context=k.encode())

    def set_secret(self, k: str, v: bytes) -> None:
        self.set_meta(k, seal(self._key, v, context=k.encode()))

    # --- peers -----------------------------------------------------------------------------

    def peer_phone(self, account_id: str) -> str | None:
        row = self._db.execute(
            "SELECT phone FROM peers WHERE account_id = ?", (account_id,)
        ).fetchone()
        return None if row is None else row[0]

    def account_for_phone(self, phone: str) -> str | None:
        known = self._by_phone.get(phone)
        if known is not None:
            return known
        row = self._db.execute("SELECT account_id FROM peers WHERE phone = ?", (phone,)).fetchone()
        if row is None:
            return None
        self._by_phone[phone] = str(row[0])
        return str(row[0])

    def remember_peer(self, account_id: str, phone: str | None, now_ms: int) -> None:
        self._by_phone.clear()
        self._db.execute(
            "INSERT INTO peers (account_id, phone, updated_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (account_id) DO UPDATE SET phone = coalesce(excluded.phone, phone)",
            (account_id, phone, now_ms),
        )

    def trust(self, account_id: str) -> Trust:
        known = self._trust.get(account_id)
        if known is not None:
            return known
        row = self._db.execute(
            "SELECT trust FROM peers WHERE account_id = ?", (account_id,)
        ).fetchone()
        trust = Trust.TRUSTED if row is None else Trust(row[0])
        self._trust[account_id] = trust
        return trust

    def set_trust(self, account_id: str, trust: Trust, now_ms: int) -> None:
        self._trust.pop(account_id, None)
        self._db.execute(
            "INSERT INTO peers (account_id, trust, updated_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (account_id) DO UPDATE SET trust = excluded.trust, "
            "updated_ms = excluded.updated_ms",
            (account_id, str(trust), now_ms),
        )

    def peer_devices(self, account_id: str) -> dict[int, PeerDevice]:
        known = self._devices.get(account_id)
        if known is None:
            rows = self._db.execute(
                "SELECT account_id, device_id, registration_id, curve25519, ed25519 "
                "FROM peer_devices WHERE account_id = ?",
                (account_id,),
            )
            known = self._devices[account_id] = {r[1]: PeerDevice(*r) for r in rows}
        return dict(known)

    def put_peer_device(self, device: PeerDevice, now_ms: int) -> None:
        self._devices.pop(device.account_id, None)
        self._db.execute(
            "INSERT INTO peer_devices (account_id, device_id, registration_id, curve25519, "
            "ed25519, first_seen_ms) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (account_id, device_id) DO UPDATE SET "
            "registration_id = excluded.registration_id, curve25519 = excluded.curve25519, "
            "ed25519 = excluded.ed25519",
            (
                device.account_id,
                device.device_id,
                device.registration_id,
                device.curve25519,
                device.ed25519,
                now_ms,
            ),
        )

    def forget_peer(self, account_id: str) -> int:
        """Forget everything held about one peer: its number, devices and sessions, the
        messages of its chat (with their queued and downloaded files' records), and its
        business profile. Returns the number of messages forgotten. The files themselves are
        the caller's (``Attachments`` folder)."""
        self._forget_cached()
        chat = "SELECT message_id FROM messages WHERE chat = ? OR sender_account = ?"
        with self.transaction():
            for table in ("outbox", "attachments"):
                exists = self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).fetchone()
                if exists:
                    self._db.execute(
                        f"DELETE FROM {table} WHERE local_id IN ({chat})"  # noqa: S608
                        if table == "outbox"
                        else f"DELETE FROM {table} WHERE message_id IN ({chat})",  # noqa: S608
                        (account_id, account_id),
                    )
            if self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'retries'"
            ).fetchone():
                self._db.execute("DELETE FROM retries WHERE peer = ?", (account_id,))
            forgotten = self._db.execute(
                "DELETE FROM messages WHERE chat = ? OR sender_account = ?",
                (account_id, account_id),
            ).rowcount
            for table in ("peers", "peer_devices", "sessions", "businesses"):
                self._db.execute(
                    f"DELETE FROM {table} WHERE account_id = ?",  # noqa: S608
                    (account_id,),
                )
        return int(forgotten)

    def business_accounts(self) -> list[str]:
        """The accounts this store knows as businesses."""
        rows = self._db.execute("SELECT account_id FROM businesses ORDER BY account_id")
        return [str(r[0]) for r in rows]

    def peers_with_devices(self) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT account_id FROM peer_devices ORDER BY 1")
        return [str(r[0]) for r in rows]

    def forget_peer_device(self, account_id: str, device_id: int) -> None:
        self._devices.pop(account_id, None)
        self._db.execute(
            "DELETE FROM peer_devices WHERE account_id = ? AND device_id = ?",
            (account_id, device_id),
        )
        self._db.execute(
            "DELETE FROM sessions WHERE account_id = ? AND device_id = ?", (account_id, device_id)
        )

    # --- sessions --------------------------------------------------------------------------

    def sessions(self, account_id: str, device_id: int) -> list[tuple[str, str]]:
        """(session_id, pickle) of a peer device, most recently used first."""
        rows = self._db.execute(
            "SELECT session_id, pickle FROM sessions WHERE account_id = ? AND device_id = ? "
            "ORDER BY last_used_ms DESC",
            (account_id, device_id),
        )
        return [(r[0], r[1]) for r in rows]

    def put_session(
        self, account_id: str, device_id: int, session_id: str, pickle: str, now_ms: int
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO sessions (session_id, account_id, device_id, pickle, "
            "last_used_ms) VALUES (?, ?, ?, ?, ?)",
            (session_id, account_id, device_id, pickle, now_ms),
        )

    def drop_sessions(self, account_id: str, device_id: int) -> None:
        self._db.execute(
            "DELETE FROM sessions WHERE account_id = ? AND device_id = ?", (account_id, device_id)
        )

    def drop_session(self, session_id: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))

    # --- messages --------------------------------------------------------------------------

    def forget_message(self, message_id: str) -> None:
        self._db.execute("DELETE FROM messages WHERE message_id = ?", (message_id,))

    def clear_payloads(self, accepted_before_ms: int, limit: int) -> int:
        """Drop the sealed payload of at most ``limit`` messages the relay accepted before
        ``accepted_before_ms`` (a gateway keeps its own copy); their rows stay, so that a
        repeated delivery is still recognised. Returns how many were cleared."""
        cleared = self._db.execute(
            "UPDATE messages SET payload = NULL WHERE message_id IN (SELECT message_id FROM "
            "messages WHERE payload IS NOT NULL AND server_ms < ? LIMIT ?)",
            (accepted_before_ms, limit),
        ).rowcount
        return int(cleared)

    def has_message(self, message_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM messages WHERE message_id = ?", (message_id,)
        ).fetchone()
        return row is not None

    def put_message(self, message: StoredMessage) -> None:
        payload = (
            None
            if message.payload is None
            else seal(self._key, message.payload, context=message.message_id.encode())
        )
        self._db.execute(
            "INSERT OR IGNORE INTO messages (message_id, chat, outgoing, sender_account, "
            "sender_device, client_msg_id, payload, status, server_ms, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message.message_id,
                message.chat,
                int(message.outgoing),
                message.sender_account,
                message.sender_device,
                message.client_msg_id,
                payload,
                str(message.status),
                message.server_ms,
                message.error,
            ),
        )

    def advance_status(
        self, message_id: str, status: MessageStatus, *, error: str | None = None
    ) -> bool:
        """Move an outgoing message forward (sent → delivered → read), never back; or mark
        it failed (with ``error``) or waiting (being resent), only while it is merely sent or
        waiting. A failed message stays so."""
        row = self._db.execute(
            "SELECT status FROM messages WHERE message_id = ? AND outgoing = 1", (message_id,)
        ).fetchone()
        if row is None:
            return False
        current = _RANK.get(MessageStatus(row[0]), -1)
        if status is MessageStatus.FAILED:
            # A message that reached the recipient did not fail, whatever came later.
            moves = current == _RANK[MessageStatus.SENT]
        elif status is MessageStatus.WAITING:
            # Resending it to a device that could not read it: only while no device did.
            moves = MessageStatus(row[0]) is MessageStatus.SENT
        else:
            moves = current < _RANK[status]
        if not moves:
            return False
        self._db.execute(
            "UPDATE messages SET status = ?, error = coalesce(?, error) WHERE message_id = ?",
            (str(status), error, message_id),
        )
        return True

    def unseen(self, message_ids: list[str]) -> list[str]:
        """Those of ``message_ids`` that are received but not yet seen, in the given order."""
        found = []
        for message_id in message_ids:
            row = self._db.execute(
                "SELECT 1 FROM messages WHERE message_id = ? AND status = 'received'",
                (message_id,),
            ).fetchone()
            if row is not None:
                found.append(message_id)
        return found

    def mark_seen(self, message_ids: list[str]) -> list[str]:
        """Incoming messages that were not yet seen, now marked seen."""
        fresh = []
        for message_id in message_ids:
            cursor = self._db.execute(
                "UPDATE messages SET status = 'seen' WHERE message_id = ? AND status = 'received'",
                (message_id,),
            )
            if cursor.rowcount:
                fresh.append(message_id)
        return fresh

    def messages(self, chat: str, limit: int = 200) -> list[StoredMessage]:
        rows = self._db.execute(
            "SELECT message_id, chat, outgoing, sender_account, sender_device, client_msg_id, "
            "payload, status, server_ms, error FROM messages WHERE chat = ? "
            "ORDER BY server_ms DESC, rowid DESC LIMIT ?",
            (chat, limit),
        ).fetchall()
        return [self._message(r) for r in reversed(rows)]

    def message(self, message_id: str) -> StoredMessage | None:
        row = self._db.execute(
            "SELECT message_id, chat, outgoing, sender_account, sender_device, client_msg_id, "
            "payload, status, server_ms, error FROM messages WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return None if row is None else self._message(row)

    def _message(self, r: Any) -> StoredMessage:
        message_id = str(r[0])
        sealed = r[6]
        payload = (
            None
            if sealed is None
            else unseal(self._key, bytes(sealed), context=message_id.encode())
        )
        return StoredMessage(
            message_id=message_id,
            chat=str(r[1]),
            outgoing=bool(r[2]),
            sender_account=str(r[3]),
            sender_device=int(r[4]),
            client_msg_id=None if r[5] is None else str(r[5]),
            payload=payload,
            status=MessageStatus(str(r[7])),
            server_ms=int(r[8]),
            error=None if r[9] is None else str(r[9]),
        )

    def chats(self) -> list[ChatSummary]:
        rows = self._db.execute(
            "SELECT m.chat, p.phone, max(m.server_ms), "
            "sum(CASE WHEN m.status = 'received' THEN 1 ELSE 0 END), "
            "b.account_id IS NOT NULL, b.display_name, coalesce(b.tick = 'verified', 0) "
            "FROM messages m LEFT JOIN peers p ON p.account_id = m.chat "
            "LEFT JOIN businesses b ON b.account_id = m.chat "
            "WHERE m.chat != '' GROUP BY m.chat ORDER BY max(m.server_ms) DESC"
        )
        return [
            ChatSummary(r[0], r[1], int(r[2]), int(r[3]), bool(r[4]), r[5], bool(r[6]))
            for r in rows
        ]

    # --- businesses --------------------------------------------------------------------------

    def mark_business(self, account_id: str) -> None:
        """Remember that an account is a business (its chats are labelled as such)."""
        self._db.execute(
            "INSERT INTO businesses (account_id) VALUES (?) ON CONFLICT (account_id) DO NOTHING",
            (account_id,),
        )

    def put_business(
        self,
        account_id: str,
        display_name: str,
        tick: str,
        profile: dict[str, Any],
        now_ms: int,
    ) -> None:
        self._db.execute(
            "INSERT INTO businesses (account_id, display_name, tick, profile, checked_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
            "display_name = excluded.display_name, tick = excluded.tick, "
            "profile = excluded.profile, checked_ms = excluded.checked_ms",
            (account_id, display_name, tick, json.dumps(profile), now_ms),
        )

    def withdraw_tick(self, account_id: str, tick: str) -> None:
        self._db.execute("UPDATE businesses SET tick = ? WHERE account_id = ?", (tick, account_id))

    def known_business(self, account_id: str) -> KnownBusiness | None:
        row = self._db.execute(
            "SELECT display_name, tick, profile, checked_ms FROM businesses WHERE account_id = ?",
            (account_id,),
        ).fetchone()
        if row is None:
            return None
        profile = None if row[2] is None else json.loads(row[2])
        return KnownBusiness(account_id, row[0], str(row[1]), profile, int(row[3]))

    # --- attachments (client/attachments.py) -------------------------------------------------

    def attachment_path(self, message_id: str) -> Path | None:
        """Where the file of ``message_id`` was kept (the path is sealed: it holds the sender's
        file name)."""
        row = self._db.execute(
            "SELECT path FROM attachments WHERE message_id = ?", (message_id,)
        ).fetchone()
        if row is None:
            return None
        context = b"attachment:" + message_id.encode()
        return Path(unseal(self._key, bytes(row[0]), context=context).decode())

    def put_attachment_path(self, message_id: str, path: Path) -> None:
        sealed = seal(self._key, str(path).encode(), context=b"attachment:" + message_id.encode())
        self._db.execute(
            "INSERT OR REPLACE INTO attachments (message_id, path) VALUES (?, ?)",
            (message_id, sealed),
        )

    # --- the key log's roots (client/transparency.py) -----------------------------------------

    def latest_root(self) -> LoggedRoot | None:
        row = self._db.execute(
            "SELECT epoch, tree_size, body, signature, seen_ms FROM key_log_roots "
            "ORDER BY epoch DESC LIMIT 1"
        ).fetchone()
        return None if row is None else LoggedRoot(row[0], row[1], bytes(row[2]), row[3], row[4])

    def root(self, epoch: int) -> LoggedRoot | None:
        row = self._db.execute(
            "SELECT epoch, tree_size, body, signature, seen_ms FROM key_log_roots WHERE epoch = ?",
            (epoch,),
        ).fetchone()
        return None if row is None else LoggedRoot(row[0], row[1], bytes(row[2]), row[3], row[4])

    def put_root(self, root: LoggedRoot) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO key_log_roots (epoch, tree_size, body, signature, seen_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (root.epoch, root.tree_size, root.body, root.signature, root.seen_ms),
        )
        self._db.execute(
            "DELETE FROM key_log_roots WHERE epoch != (SELECT min(epoch) FROM key_log_roots) "
            "AND epoch NOT IN (SELECT epoch FROM key_log_roots ORDER BY epoch DESC LIMIT ?)",
            (KEY_LOG_ROOTS_KEPT,),
        )

    def roots(self) -> list[LoggedRoot]:
        rows = self._db.execute(
            "SELECT epoch, tree_size, body, signature, seen_ms FROM key_log_roots ORDER BY epoch"
        )
        return [LoggedRoot(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def forget_roots(self) -> None:
        self._db.execute("DELETE FROM key_log_roots")

    # --- contacts (the address book, client/contacts.py) -------------------------------------

    def contact_name(self, phone: str) -> str | None:
        row = self._db.execute("SELECT name FROM contacts WHERE phone = ?", (phone,)).fetchone()
        return None if row is None else str(row[0])

    def put_contact(self, phone: str, name: str, now_ms: int) -> None:
        self._db.execute(
            "INSERT INTO contacts (phone, name, updated_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (phone) DO UPDATE SET name = excluded.name, "
            "updated_ms = excluded.updated_ms",
            (phone, name, now_ms),
        )

    def delete_contact(self, phone: str) -> bool:
        cursor = self._db.execute("DELETE FROM contacts WHERE phone = ?", (phone,))
        return cursor.rowcount > 0

    def contacts(self) -> list[tuple[str, str, int]]:
        """(phone, name, updated_ms) of every named number, by name."""
        rows = self._db.execute(
            "SELECT phone, name, updated_ms FROM contacts ORDER BY name COLLATE NOCASE, phone"
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
