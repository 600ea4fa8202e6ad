"""This device's Olm sessions with the devices of its peers.

Several sessions may exist with one peer device (both sides may have started one at the same
time); the one that last decrypted or encrypted is used next. Session state is kept in the
store, encrypted with the client's key; a state that cannot be read back (damaged on disk)
is dropped, so that a new session is made instead of the conversation stopping for good.
"""

from __future__ import annotations

from tresen.client.api import DirectoryDevice, RelayApi
from tresen.client.device import Device
from tresen.client.store import LocalStore, PeerDevice
from tresen.core.clock import Clock
from tresen.core.logging import get_logger
from tresen.crypto import CryptoError
from tresen.crypto.olm import Ciphertext, OlmSession, verify_signed_key

__all__ = ["Decrypted", "Sessions"]

log = get_logger("tresen.client")


class Decrypted:
    """The plaintext of a message, the session that decrypted it, and whether it is new."""

    __slots__ = ("new", "plaintext", "session")

    def __init__(self, plaintext: bytes, session: OlmSession, new: bool) -> None:
        self.plaintext = plaintext
        self.session = session
        self.new = new


class Sessions:
    def __init__(self, api: RelayApi, store: LocalStore, clock: Clock, device: Device) -> None:
        self.api = api
        self.store = store
        self.clock = clock
        self.device = device
        self._cache: dict[tuple[str, int], list[OlmSession]] = {}

    def of(self, account_id: str, device_id: int) -> list[OlmSession]:
        """The sessions with one peer device, the one to use next first."""
        key = (account_id, device_id)
        if key not in self._cache:
            sessions = []
            for session_id, pickle in self.store.sessions(account_id, device_id):
                try:
                    sessions.append(OlmSession.from_pickle(pickle, self.device.key))
                except CryptoError as exc:
                    log.warning(
                        "unreadable session state dropped",
                        account_id=account_id,
                        device_id=device_id,
                        error=type(exc).__name__,
                    )
                    self.store.drop_session(session_id)
            self._cache[key] = sessions
        return self._cache[key]

    def keep(self, account_id: str, device_id: int, session: OlmSession) -> None:
        """Make ``session`` the one used next for that device, and store its new state."""
        self.promote(account_id, device_id, session)
        self.save(account_id, device_id, session)

    def promote(self, account_id: str, device_id: int, session: OlmSession) -> None:
        sessions = self.of(account_id, device_id)
        if session in sessions:
            sessions.remove(session)
        sessions.insert(0, session)

    def save(self, account_id: str, device_id: int, session: OlmSession) -> None:
        self.store.put_session(
            account_id,
            device_id,
            session.session_id,
            session.pickle(self.device.key),
            self.clock.now_ms(),
        )

    def forget(self, account_id: str, device_id: int) -> None:
        """Drop every session with a peer device (its keys changed, or it is gone)."""
        self.store.drop_sessions(account_id, device_id)
        self._cache.pop((account_id, device_id), None)

    async def ensure(self, account_id: str, devices: list[PeerDevice]) -> None:
        """Start a session with each of ``devices`` that has none, from a claimed key."""
        without = [d for d in devices if not self.of(account_id, d.device_id)]
        if without:
            await self.start(account_id, without)

    async def start(self, account_id: str, devices: list[PeerDevice]) -> list[int]:
        """Start a new session with each of ``devices`` (used next from now on), from a
        one-time key claimed for it; the ids of the devices a session was started with."""
        claimed = await self.api.claim(account_id, [d.device_id for d in devices])
        return self.start_from(account_id, devices, claimed)

    def start_from(
        self, account_id: str, devices: list[PeerDevice], claimed: list[DirectoryDevice]
    ) -> list[int]:
        """:meth:`start` with keys claimed already."""
        identity = self.device.require_identity()
        pinned = {d.device_id: d for d in devices}
        started = []
        for device in claimed:
            expected = pinned.get(device.device_id)
            if device.one_time_key is None or expected is None:
                continue
            key, is_fallback = device.one_time_key
            # The key must be signed by the identity we pinned, not merely by whoever answers.
            verify_signed_key(expected.ed25519, key, fallback=is_fallback)
            session = identity.create_outbound_session(expected.curve25519, key.public_key)
            self.keep(account_id, device.device_id, session)
            started.append(device.device_id)
        return started

    def encrypt(self, account_id: str, device_id: int, plaintext: bytes) -> Ciphertext | None:
        """Encrypt with the session used next for that device (``None``: there is none)."""
        sessions = self.of(account_id, device_id)
        if not sessions:
            return None
        session = sessions[0]
        ciphertext = session.encrypt(plaintext)
        self.keep(account_id, device_id, session)
        return ciphertext

    def decrypt(
        self, sender: str, device_id: int, message: Ciphertext, device: PeerDevice | None
    ) -> Decrypted:
        """Decrypt with a session of that device, or (a pre-key message) a new inbound one
        from ``device``'s pinned identity key. The new state is the caller's to store, with
        the message (``save``)."""
        identity = self.device.require_identity()
        for session in self.of(sender, device_id):
            if message.type == 0 and not session.matches(message):
                continue
            try:
                plaintext = session.decrypt(message)
            except CryptoError:
                continue
            self.promote(sender, device_id, session)
            return Decrypted(plaintext, session, False)
        if message.type != 0:
            raise CryptoError("no session can decrypt this message")
        if device is None:
            raise CryptoError("the sending device is not in the relay's directory")
        session, plaintext = identity.create_inbound_session(device.curve25519, message)
        self.promote(sender, device_id, session)
        return Decrypted(plaintext, session, True)
