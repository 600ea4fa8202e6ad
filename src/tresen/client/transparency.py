"""The relay's key log as this client checks it (docs/architecture.md, "Key transparency").

Every device set of a peer comes with proofs against an operator-signed epoch head: that the
set is the account's latest entry in the map, and that its leaf is in the append-only log.
The client keeps the heads it saw (``key_log_roots`` in its store) and accepts a newer head
only with a consistency proof that its log extends the one seen before, so the relay cannot
rewrite history, nor show this client one history and others another without the two
diverging for good. :func:`compare_roots` finds such a fork between two clients' or auditors'
roots.

What fails is a :class:`KeyLogFailure`: for one peer (the keys given do not match the log),
or for the log as a whole (``forked``: a head that does not extend the ones seen before).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tresen.client.api import DirectoryDevice, RelayError
from tresen.client.store import LocalStore, LoggedRoot
from tresen.core.clock import Clock
from tresen.crypto.certificates import CertificateError, KeyRing, UnknownOperatorKey
from tresen.crypto.encoding import b64, unb64
from tresen.crypto.transparency import (
    CertificateLeaf,
    DeviceEntry,
    DevicesLeaf,
    EpochHead,
    MapProof,
    ProofError,
    SignedEpoch,
    account_key,
    decode_head,
    encode_leaf,
    hashes_of,
    head_hash,
    log_leaf_hash,
    map_value,
    verify_consistency,
    verify_epoch,
    verify_inclusion,
    verify_map_proof,
)

__all__ = [
    "KeyLog",
    "KeyLogFailure",
    "RootConflict",
    "compare_roots",
    "load_roots",
    "parse_signed_epoch",
    "roots_json",
]


class KeyLogFailure(Exception):
    """The relay's key log does not vouch for what the relay said.

    ``forked``: the log itself is not the one seen before (a rewritten or forked history);
    otherwise it concerns one account's keys."""

    def __init__(self, message: str, *, forked: bool = False) -> None:
        super().__init__(message)
        self.forked = forked


@dataclass(frozen=True, slots=True)
class RootConflict:
    """Two signed heads that cannot both belong to one honest log."""

    epoch: int
    reason: str
    mine: str
    theirs: str


def parse_signed_epoch(data: Any) -> tuple[SignedEpoch, bytes]:
    """The signed head in an epoch's JSON and its raw body (:class:`ProofError` if malformed)."""
    if not isinstance(data, dict):
        raise ProofError("an epoch is an object")
    body, signature = data.get("body"), data.get("signature")
    if not isinstance(body, str) or not isinstance(signature, str):
        raise ProofError("an epoch needs body and signature")
    try:
        raw = unb64(body)
    except ValueError:
        raise ProofError("an epoch's body is not base64") from None
    return SignedEpoch(raw, signature), raw


def _int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"{name} is not a count")
    return value


def _map_proof(data: Any) -> MapProof:
    if not isinstance(data, dict) or not isinstance(data.get("siblings"), list):
        raise ProofError("malformed map proof")
    leaf_key, leaf_value = data.get("leaf_key"), data.get("leaf_value")
    try:
        return MapProof(
            siblings=hashes_of(data["siblings"]),
            leaf_key=None if leaf_key is None else unb64(str(leaf_key)),
            leaf_value=None if leaf_value is None else unb64(str(leaf_value)),
        )
    except ValueError:
        raise ProofError("malformed map proof") from None


class KeyLog:
    """The heads this client has seen, and the checks of the proofs that come with keys."""

    def __init__(
        self,
        store: LocalStore,
        clock: Clock,
        ring: Callable[[], KeyRing | None],
        refresh_ring: Callable[[], Awaitable[object]],
        consistency: Callable[[int, int], Awaitable[list[str]]],
    ) -> None:
        self.store = store
        self.clock = clock
        self.ring = ring
        self.refresh_ring = refresh_ring
        self.consistency = consistency

    @property
    def since(self) -> int | None:
        """The log size of the newest head seen: proofs are asked for from there."""
        latest = self.store.latest_root()
        return None if latest is None else latest.tree_size

    @property
    def epoch(self) -> int | None:
        """The newest epoch seen. Taken when a request is sent and given to :meth:`check`:
        the answer may come from that epoch or a later one, even if a newer one was seen
        while it was on its way (look-ups run side by side)."""
        latest = self.store.latest_root()
        return None if latest is None else _decode(latest).epoch

    def roots(self) -> list[LoggedRoot]:
        return self.store.roots()

    def forget(self) -> None:
        """Forget every head seen: the next one is trusted as the first (after the operator
        has explained a fork, or when moving to a relay that starts a new log)."""
        self.store.forget_roots()

    async def check(
        self,
        account_id: str,
        devices: Sequence[DirectoryDevice],
        proof: dict[str, Any] | None,
        *,
        own: tuple[int, str, str] | None = None,
        asked_at: int | None = None,
    ) -> None:
        """That ``devices`` are the account's current device set in the relay's key log.

        ``own`` (this device's id and identity keys) must be among them when the account is
        this client's own. Without a ``proof`` from a relay whose log this client has seen
        before, that is a failure; from one it never saw, the relay keeps no log.
        ``asked_at``: :attr:`epoch` when the request was sent (else the newest epoch seen
        now): an answer from an older epoch is a history that went back.
        Raises :class:`KeyLogFailure`.
        """
        if proof is None:
            if self.store.latest_root() is not None:
                raise KeyLogFailure(f"the relay gave no key-log proof for {account_id}")
            return
        try:
            head = await self._head(proof.get("epoch"), proof.get("consistency"), asked_at)
            self._check_devices(account_id, devices, proof, head, own)
        except (CertificateError, KeyError, TypeError, ValueError) as exc:
            raise KeyLogFailure(f"the key log does not vouch for {account_id}: {exc}") from None

    async def check_certificate(
        self,
        account_id: str,
        serial: int,
        body: bytes,
        proof: dict[str, Any] | None,
        *,
        asked_at: int | None = None,
    ) -> None:
        """That the certificate ``serial`` (its exact ``body``), issued to ``account_id``, is in
        the key log: a certificate shown to this client only is not.

        Without a ``proof`` from a relay whose log this client has seen before, that is a
        failure; from one it never saw, the relay keeps no log. ``asked_at`` as for
        :meth:`check`. Raises :class:`KeyLogFailure`.
        """
        if proof is None:
            if self.store.latest_root() is not None:
                raise KeyLogFailure(f"the relay gave no key-log proof for certificate {serial}")
            return
        try:
            head = await self._head(proof.get("epoch"), None, asked_at)
            leaf_index, leaf_epoch = _int(proof, "leaf_index"), _int(proof, "leaf_epoch")
            if leaf_index is None or leaf_epoch is None or leaf_epoch > head.epoch:
                raise ProofError("the proof does not say where the certificate was logged")
            leaf = CertificateLeaf(
                account_id=account_id,
                epoch=leaf_epoch,
                serial=serial,
                digest=hashlib.sha256(body).digest(),
            )
            leaf_hash = log_leaf_hash(encode_leaf(leaf))
            inclusion = hashes_of(proof.get("inclusion") or [])
            if not verify_inclusion(
                leaf_hash, leaf_index, head.tree_size, inclusion, head.log_root
            ):
                raise KeyLogFailure(f"certificate {serial} is not in the signed log")
        except (CertificateError, KeyError, TypeError, ValueError) as exc:
            raise KeyLogFailure(
                f"the key log does not vouch for certificate {serial}: {exc}"
            ) from None

    def _check_devices(
        self,
        account_id: str,
        devices: Sequence[DirectoryDevice],
        proof: dict[str, Any],
        head: EpochHead,
        own: tuple[int, str, str] | None,
    ) -> None:
        entries = sorted(
            (DeviceEntry(d.device_id, d.curve25519, d.ed25519) for d in devices),
            key=lambda e: e.device_id,
        )
        if own is not None and DeviceEntry(*own) not in entries:
            raise KeyLogFailure("the key log does not list this device with its own keys")
        key = account_key(account_id)
        value = verify_map_proof(key, _map_proof(proof.get("map_proof")), head.map_root)
        leaf_index, leaf_epoch = _int(proof, "leaf_index"), _int(proof, "leaf_epoch")
        if value is None:
            if entries:
                raise KeyLogFailure(f"the key log has no devices of {account_id}")
            return
        if leaf_index is None or leaf_epoch is None or leaf_epoch > head.epoch:
            raise ProofError("the proof does not say where the devices were logged")
        leaf = encode_leaf(DevicesLeaf(account_id=account_id, epoch=leaf_epoch, devices=entries))
        leaf_hash = log_leaf_hash(leaf)
        if value != map_value(leaf_index, leaf_hash):
            raise KeyLogFailure(f"the keys of {account_id} are not the ones the key log holds")
        inclusion = hashes_of(proof.get("inclusion") or [])
        if not verify_inclusion(leaf_hash, leaf_index, head.tree_size, inclusion, head.log_root):
            raise KeyLogFailure(f"the devices of {account_id} are not in the signed log")

    async def _head(self, epoch: Any, consistency: Any, asked_at: int | None) -> EpochHead:
        """The head of ``epoch`` (JSON), checked and remembered: signed by the operator, and
        extending the newest head seen before (or, if it is older than that but no older
        than epoch ``asked_at``, extended by it)."""
        signed, body = parse_signed_epoch(epoch)
        head = await self._verified(signed)
        latest = self.store.latest_root()
        if latest is not None:
            seen = _decode(latest)
            if head.epoch == seen.epoch:
                if head_hash(body) != head_hash(latest.body):
                    raise KeyLogFailure(
                        f"two different signed heads for epoch {head.epoch}", forked=True
                    )
                return head
            if head.epoch < seen.epoch:
                earlier = self.store.root(head.epoch)
                if earlier is not None and head_hash(earlier.body) != head_hash(body):
                    raise KeyLogFailure(
                        f"two different signed heads for epoch {head.epoch}", forked=True
                    )
                if asked_at is None or head.epoch < asked_at:
                    raise KeyLogFailure(
                        f"the relay answered from epoch {head.epoch}, older than epoch "
                        f"{asked_at if asked_at is not None else seen.epoch} seen before: "
                        "its history went back",
                        forked=True,
                    )
                # Answered before the newer epoch seen meanwhile was published: that one
                # must extend this one.
                if earlier is None:
                    await self._extends(head, body, seen, None)
                return head
            await self._extends(seen, latest.body, head, consistency)
        self.store.put_root(
            LoggedRoot(head.epoch, head.tree_size, body, signed.signature, self.clock.now_ms())
        )
        return head

    async def _verified(self, signed: SignedEpoch) -> EpochHead:
        ring = self.ring()
        if ring is None:
            raise ProofError("no operator key is pinned")
        try:
            return verify_epoch(signed, ring)
        except UnknownOperatorKey:
            await self.refresh_ring()  # signed by a key rotated in since
            ring = self.ring()
            assert ring is not None
            return verify_epoch(signed, ring)

    async def _extends(
        self, seen: EpochHead, seen_body: bytes, head: EpochHead, consistency: Any
    ) -> None:
        """That the log of ``head`` extends the log of the earlier ``seen`` (signed as
        ``seen_body``), by ``consistency`` (JSON) if it proves it from there, else by a proof
        asked for."""
        if head.tree_size < seen.tree_size:
            raise KeyLogFailure(
                f"epoch {head.epoch} has a smaller log than epoch {seen.epoch} had", forked=True
            )
        if head.epoch == seen.epoch + 1 and head.previous != head_hash(seen_body):
            raise KeyLogFailure(
                f"epoch {head.epoch} does not follow epoch {seen.epoch}", forked=True
            )
        proof: list[bytes] | None = None
        if isinstance(consistency, dict) and consistency.get("first") == seen.tree_size:
            proof = hashes_of(consistency.get("proof") or [])
        if proof is None:
            try:
                proof = hashes_of(await self.consistency(seen.tree_size, head.tree_size))
            except RelayError as exc:
                raise KeyLogFailure(
                    f"the relay proves no consistency from epoch {seen.epoch}: {exc.message}",
                    forked=True,
                ) from None
        if not verify_consistency(
            seen.tree_size, head.tree_size, proof, seen.log_root, head.log_root
        ):
            raise KeyLogFailure(
                f"the log of epoch {head.epoch} does not extend the log of epoch {seen.epoch}",
                forked=True,
            )


def _decode(root: LoggedRoot) -> EpochHead:
    return decode_head(root.body)


def roots_json(roots: Iterable[LoggedRoot]) -> list[dict[str, Any]]:
    """Heads as published for comparison (``tresen audit roots --json``)."""
    out = []
    for root in roots:
        head = _decode(root)
        out.append(
            {
                "epoch": head.epoch,
                "tree_size": head.tree_size,
                "log_root": b64(head.log_root),
                "head": b64(head_hash(root.body)),
                "body": b64(root.body),
                "signature": root.signature,
            }
        )
    return out


def compare_roots(
    mine: Iterable[dict[str, Any]], theirs: Iterable[dict[str, Any]], ring: KeyRing
) -> list[RootConflict]:
    """Heads of the same epoch, or logs of the same size, that differ: the relay showed the
    two sides different histories. Only heads the operator signed (a key of ``ring``) count,
    so nobody can fake a fork; heads are compared by their signed bodies."""
    by_epoch: dict[int, str] = {}
    by_size: dict[int, tuple[int, str]] = {}
    for entry in mine:
        with contextlib.suppress(CertificateError):
            signed, body = parse_signed_epoch(entry)
            head = verify_epoch(signed, ring)
            by_epoch[head.epoch] = b64(head_hash(body))
            by_size[head.tree_size] = (head.epoch, b64(head.log_root))
    conflicts = []
    for entry in theirs:
        try:
            signed, body = parse_signed_epoch(entry)
            head = verify_epoch(signed, ring)
        except CertificateError:
            continue
        digest = b64(head_hash(body))
        known = by_epoch.get(head.epoch)
        if known is not None and known != digest:
            conflicts.append(RootConflict(head.epoch, "same epoch, other head", known, digest))
            continue
        sized = by_size.get(head.tree_size)
        if sized is not None and sized[1] != b64(head.log_root):
            conflicts.append(
                RootConflict(
                    head.epoch, "same log size, other log root", sized[1], b64(head.log_root)
                )
            )
    return conflicts


def load_roots(text: str) -> list[dict[str, Any]]:
    """Roots published by :func:`roots_json` (a JSON list)."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("a list of roots")
    return [e for e in data if isinstance(e, dict)]
