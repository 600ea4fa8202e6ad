"""An independent auditor of a relay's key log (``tresen audit``).

The auditor follows every signed epoch head the relay publishes, checks the operator's
signature, that each head names its predecessor, and that each log extends the previous one
(an RFC 9162 consistency proof per new log size), and keeps the heads it accepted in a state
folder. It publishes them (``roots.json``) so that other auditors and clients can compare:
two signed heads for one epoch, or two logs of one size with different roots, prove that the
relay showed different parties different histories (:func:`compare_roots`). The auditor
sees no account and no key: heads and consistency proofs reveal neither.

State folder: ``operator.json`` (the operator keys trusted: pinned on first use or with
``--operator-key``, then following endorsed rotations) and ``roots.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tresen.client.api import RelayApi, RelayError
from tresen.client.transparency import (
    RootConflict,
    compare_roots,
    load_roots,
    parse_signed_epoch,
)
from tresen.crypto.certificates import CertificateError, KeyRing, PublishedKey
from tresen.crypto.encoding import b64
from tresen.crypto.transparency import (
    EpochHead,
    ProofError,
    decode_head,
    hashes_of,
    head_hash,
    verify_consistency,
    verify_epoch,
)

__all__ = ["AuditFailure", "Auditor", "FollowResult"]

PAGE = 500
MAX_PAGES = 1000
"""Pages of epochs one ``follow`` reads at most (half a million epochs)."""


class AuditFailure(Exception):
    """The relay's log is not one consistent history: what was found, with the evidence."""

    def __init__(self, message: str, evidence: dict[str, Any]) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class FollowResult:
    checked: int
    """New epoch heads checked and kept."""
    latest: EpochHead | None


class Auditor:
    def __init__(
        self,
        relay_url: str,
        state_dir: Path,
        *,
        operator_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.api = RelayApi(relay_url, transport=transport)
        self._operator_key = operator_key

    async def close(self) -> None:
        await self.api.close()

    # --- state -------------------------------------------------------------------------------

    @property
    def _ring_file(self) -> Path:
        return self.state_dir / "operator.json"

    @property
    def roots_file(self) -> Path:
        return self.state_dir / "roots.json"

    def roots(self) -> list[dict[str, Any]]:
        """The heads accepted so far, oldest first (what ``roots.json`` publishes)."""
        if not self.roots_file.exists():
            return []
        return load_roots(self.roots_file.read_text())

    def _save_roots(self, roots: list[dict[str, Any]]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.roots_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(roots, indent=1) + "\n")
        os.replace(temporary, self.roots_file)

    async def ring(self) -> KeyRing:
        """The operator keys this auditor trusts, following endorsed rotations."""
        ring = None
        if self._ring_file.exists():
            ring = KeyRing.from_json(json.loads(self._ring_file.read_text()))
            if self._operator_key is not None and ring.public_key(ring.pinned_key_id) != (
                self._operator_key.strip()
            ):
                raise AuditFailure(
                    "this state folder pinned another operator key",
                    {"pinned": ring.fingerprint()},
                )
        published = await self.api.operator_keys()
        if ring is None:
            pinned = self._operator_key
            if pinned is None:
                current = next(
                    k for k in published["keys"] if k["key_id"] == published["current_key_id"]
                )
                pinned = str(current["public_key"])
            ring = KeyRing(pinned.strip())
        keys = []
        for entry in published.get("keys", ()):
            try:
                keys.append(PublishedKey.from_json(entry))
            except CertificateError:
                continue
        ring.update(keys)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._ring_file.write_text(json.dumps(ring.to_json()) + "\n")
        return ring

    # --- following ---------------------------------------------------------------------------

    async def follow(self) -> FollowResult:
        """Check and keep every epoch published since the last one kept.

        Raises :class:`AuditFailure` at the first head that does not extend the history
        kept (nothing after it is kept)."""
        ring = await self.ring()
        roots = self.roots()
        last: tuple[EpochHead, bytes] | None = None
        if roots:
            _, body = parse_signed_epoch(roots[-1])
            last = (decode_head(body), body)
        checked = 0
        try:
            for _ in range(MAX_PAGES):
                after = -1 if last is None else last[0].epoch
                page = await self.api.key_log_epochs(after, PAGE)
                if not page:
                    break
                for entry in page:
                    head, body = await self._check(entry, last, ring)
                    roots.append(_root(entry, head, body))
                    last = (head, body)
                    checked += 1
        finally:
            if checked:
                self._save_roots(roots)
        return FollowResult(checked, None if last is None else last[0])

    async def _check(
        self, entry: dict[str, Any], last: tuple[EpochHead, bytes] | None, ring: KeyRing
    ) -> tuple[EpochHead, bytes]:
        try:
            signed, body = parse_signed_epoch(entry)
            head = verify_epoch(signed, ring)
        except CertificateError as exc:
            raise AuditFailure(f"an epoch head that does not verify: {exc}", entry) from None
        if last is None:
            return head, body
        seen, seen_body = last
        evidence = {"earlier": b64(seen_body), "later": b64(body), "signature": signed.signature}
        if head.epoch != seen.epoch + 1 or head.previous != head_hash(seen_body):
            raise AuditFailure(
                f"epoch {head.epoch} does not follow epoch {seen.epoch}: the chain of heads "
                "is broken",
                evidence,
            )
        if head.tree_size < seen.tree_size:
            raise AuditFailure(
                f"epoch {head.epoch} has a smaller log than epoch {seen.epoch}", evidence
            )
        if head.tree_size == seen.tree_size:
            if head.log_root != seen.log_root:
                raise AuditFailure(f"epoch {head.epoch} has another log of the same size", evidence)
            return head, body
        try:
            proof = hashes_of(await self.api.key_log_consistency(seen.tree_size, head.tree_size))
        except (RelayError, ProofError) as exc:
            raise AuditFailure(
                f"no consistency proof from epoch {seen.epoch} to {head.epoch}: {exc}", evidence
            ) from None
        if not verify_consistency(
            seen.tree_size, head.tree_size, proof, seen.log_root, head.log_root
        ):
            raise AuditFailure(
                f"the log of epoch {head.epoch} does not extend the log of epoch {seen.epoch}",
                evidence,
            )
        return head, body

    async def compare(self, theirs: list[dict[str, Any]]) -> list[RootConflict]:
        """Conflicts between the heads kept here and ``theirs`` (another auditor's or a
        client's published roots); only heads the operator signed count."""
        return compare_roots(self.roots(), theirs, await self.ring())


def _root(entry: dict[str, Any], head: EpochHead, body: bytes) -> dict[str, Any]:
    return {
        "epoch": head.epoch,
        "tree_size": head.tree_size,
        "log_root": b64(head.log_root),
        "head": b64(head_hash(body)),
        "body": entry["body"],
        "signature": entry["signature"],
    }
