"""Key transparency: publishing signed epochs of the key log, and the proofs clients check.

Changes are queued in the transactions that make them (an account's device set, a
certificate issued; :mod:`tresen.relay.transparency.repo`). An epoch takes what is queued,
appends one leaf per changed account (its whole device set) and per certificate to the log,
points the account's map entry at its new leaf, and has the operator key sign the new head,
all in one transaction: only the nodes on changed paths are read and written, never the
whole tree.

Epochs are published by a periodic task (when ``max_pending`` changes wait, when the oldest
waited ``interval_s``, and every ``heartbeat_s`` regardless) and when a client looks up an
account whose change is not published yet, so a new device is usable at once; such on-demand
epochs come at most every ``min_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from tresen.core.clock import Clock
from tresen.core.db import Database
from tresen.core.errors import ErrorCode, TresenError
from tresen.core.logging import get_logger
from tresen.core.settings import TransparencySettings
from tresen.crypto.transparency import (
    EMPTY,
    EPOCH_PREFIX,
    MAP_ROOT,
    CertificateLeaf,
    DeviceEntry,
    DevicesLeaf,
    EpochHead,
    MapNode,
    MapProof,
    MapUpdate,
    ProofError,
    SignedEpoch,
    account_key,
    append_leaves,
    consistency_ranges,
    decode_head,
    decode_leaf,
    encode_leaf,
    frontier,
    head_hash,
    inclusion_ranges,
    log_leaf_hash,
    map_path_positions,
    map_proof,
    map_value,
    perfect_nodes,
    range_hash,
    verify_inclusion,
    verify_map_proof,
)
from tresen.relay.transparency import repo
from tresen.relay.transparency.repo import LoggedLeaf

__all__ = ["Epoch", "Lookup", "Signer", "TransparencyService"]

log = get_logger("tresen.relay.transparency")

_MAP_READ_DEPTHS = 24
"""Map levels read per query while building a proof (a million accounts need about 22)."""


class Signer(Protocol):
    """Signs a document with the operator's current key (``OperatorService.sign_document``)."""

    async def sign_document(
        self, prefix: bytes, make_body: Callable[[str], bytes], *, conn: AsyncConnection
    ) -> tuple[bytes, str, str]: ...


@dataclass(frozen=True, slots=True)
class Epoch:
    head: EpochHead
    signed: SignedEpoch

    @classmethod
    def of(cls, row: repo.EpochRow) -> Epoch:
        return cls(decode_head(row.body), SignedEpoch(row.body, row.signature))


@dataclass(frozen=True, slots=True)
class Lookup:
    """An account's current device set as the latest epoch commits it, with the proofs."""

    epoch: Epoch
    account_id: str
    leaf_index: int | None
    leaf: DevicesLeaf | None
    map_proof: MapProof
    inclusion: list[bytes]
    since: int | None
    consistency: list[bytes] | None
    """From the tree size ``since`` to this epoch's, when ``since`` was asked and fits."""

    @property
    def devices(self) -> list[DeviceEntry]:
        return [] if self.leaf is None else list(self.leaf.devices)


class TransparencyService:
    def __init__(
        self, db: Database, clock: Clock, settings: TransparencySettings, signer: Signer
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.signer = signer
        self._publishing = asyncio.Lock()
        self._last_published = float("-inf")  # event-loop time of this process's last epoch
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    async def start(self) -> None:
        """Publish what waits (a relay upgraded with accounts logs them all), then keep
        publishing in the background."""
        if not self.enabled:
            return
        while await self.publish(force=await self._no_epoch_yet()) is not None:
            async with self.db.read() as conn:
                if not await repo.count_pending(conn):
                    break
        if self._task is None:
            self._task = asyncio.create_task(self._publish_periodically())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _no_epoch_yet(self) -> bool:
        async with self.db.read() as conn:
            return await repo.latest_epoch(conn) is None

    async def _publish_periodically(self) -> None:
        tick = min(self.settings.interval_s, 1.0)
        while True:
            await asyncio.sleep(tick)
            try:
                if await self._due():
                    await self.publish(force=True)
            except Exception:
                log.exception("publishing an epoch failed")

    async def _due(self) -> bool:
        now = self.clock.now_ms()
        async with self.db.read() as conn:
            latest = await repo.latest_epoch(conn)
            if latest is None or now - latest.published_ms >= self.settings.heartbeat_s * 1000:
                return True
            if await repo.count_pending(conn) >= self.settings.max_pending:
                return True
            oldest = await repo.oldest_pending_ms(conn)
        return oldest is not None and now - oldest >= self.settings.interval_s * 1000

    # --- publishing --------------------------------------------------------------------------

    async def publish(self, *, force: bool = False) -> Epoch | None:
        """Publish an epoch with what waits (up to ``max_batch`` changes); without changes,
        only when ``force`` (a heartbeat). ``None`` if nothing was published."""
        async with self._publishing:
            async with self.db.write() as conn:
                epoch = await self.publish_in(conn, force=force)
            if epoch is not None:
                self._last_published = asyncio.get_running_loop().time()
                log.info(
                    "epoch published",
                    epoch=epoch.head.epoch,
                    tree_size=epoch.head.tree_size,
                )
            return epoch

    async def publish_in(self, conn: AsyncConnection, *, force: bool = False) -> Epoch | None:
        """:meth:`publish` inside ``conn``'s write transaction."""
        await repo.lock_log(conn)
        latest = await repo.latest_epoch(conn)
        batch = self.settings.max_batch
        account_ids = await repo.pending_accounts(conn, batch)
        certificates = await repo.pending_certificates(conn, batch - len(account_ids))
        if latest is not None and not account_ids and not certificates and not force:
            return None
        previous = None if latest is None else decode_head(latest.body)
        number = 0 if previous is None else previous.epoch + 1
        size = 0 if previous is None else previous.tree_size

        sets = await repo.device_sets(conn, account_ids)
        leaves: list[bytes] = []
        by_account: dict[str, LoggedLeaf] = {}
        for account_id in account_ids:
            leaf = encode_leaf(
                DevicesLeaf(account_id=account_id, epoch=number, devices=sets[account_id])
            )
            by_account[account_id] = LoggedLeaf(size + len(leaves), leaf)
            leaves.append(leaf)
        by_serial: list[tuple[int, str, LoggedLeaf]] = []
        for cert in certificates:
            leaf = encode_leaf(
                CertificateLeaf(
                    account_id=cert.account_id, epoch=number, serial=cert.serial, digest=cert.digest
                )
            )
            by_serial.append((cert.serial, cert.account_id, LoggedLeaf(size + len(leaves), leaf)))
            leaves.append(leaf)

        hashes = [log_leaf_hash(leaf) for leaf in leaves]
        edge = await repo.log_nodes(conn, frontier(size))
        new_nodes, log_root = append_leaves(size, edge, hashes)
        await repo.put_log_nodes(conn, new_nodes)

        changes: dict[bytes, bytes | None] = {
            account_key(a): map_value(logged.leaf_idx, hashes[logged.leaf_idx - size])
            for a, logged in by_account.items()
        }
        if changes:
            update = MapUpdate(changes)
            while wanted := update.wanted():
                update.feed(await repo.map_nodes(conn, wanted))
            map_root, writes, deletes = update.finish()
            await repo.write_map_nodes(conn, writes, deletes)
        else:
            # The head commits to the map as stored.
            root = (await repo.map_nodes(conn, [MAP_ROOT])).get(MAP_ROOT)
            map_root = EMPTY if root is None else root.hash
        await repo.put_account_leaves(conn, by_account)
        await repo.put_certificate_leaves(conn, by_serial)
        await repo.delete_pending(conn, account_ids, [c.serial for c in certificates])

        now = self.clock.now_ms()
        tree_size = size + len(leaves)

        def body_for(key_id: str) -> bytes:
            return msgspec.msgpack.encode(
                EpochHead(
                    epoch=number,
                    tree_size=tree_size,
                    log_root=log_root,
                    map_root=map_root,
                    previous=EMPTY if latest is None else head_hash(latest.body),
                    published_ms=now,
                    key_id=key_id,
                )
            )

        body, _key_id, signature = await self.signer.sign_document(
            EPOCH_PREFIX, body_for, conn=conn
        )
        row = repo.EpochRow(number, tree_size, now, body, signature)
        await repo.insert_epoch(conn, row)
        return Epoch.of(row)

    async def catch_up(self, account_id: str | None = None, *, serial: int | None = None) -> None:
        """Publish now if ``account_id``'s device set or certificate ``serial`` changed and is
        not in an epoch yet (at most one such epoch every ``min_interval_s``)."""
        if not self.enabled:
            return

        async def pending() -> bool:
            async with self.db.read() as conn:
                if account_id is not None and await repo.has_pending(conn, account_id):
                    return True
                return serial is not None and await repo.certificate_pending(conn, serial)

        if not await pending():
            return
        async with self._publishing:
            wait = self._last_published + self.settings.min_interval_s
            wait -= asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        if await pending():  # else published meanwhile
            await self.publish()

    # --- reading -----------------------------------------------------------------------------

    async def latest(self) -> Epoch:
        async with self.db.read() as conn:
            row = await repo.latest_epoch(conn)
        if row is None:
            raise _no_epoch()
        return Epoch.of(row)

    async def epoch(self, number: int) -> Epoch:
        async with self.db.read() as conn:
            row = await repo.epoch(conn, number)
        if row is None:
            raise TresenError(ErrorCode.NO_EPOCH, "no such epoch", epoch=number)
        return Epoch.of(row)

    async def epochs(self, after: int, limit: int) -> list[Epoch]:
        limit = min(limit, self.settings.max_epochs_per_page)
        async with self.db.read() as conn:
            rows = await repo.epochs_after(conn, after, limit)
        return [Epoch.of(r) for r in rows]

    async def consistency(self, first: int, second: int) -> list[bytes]:
        """The proof that the log of ``first`` leaves is a prefix of the log of ``second``."""
        async with self.db.read() as conn:
            latest = await repo.latest_epoch(conn)
            size = 0 if latest is None else latest.tree_size
            if not 0 <= first <= second <= size:
                raise TresenError(
                    ErrorCode.INVALID_PARAMETER,
                    "tree sizes must satisfy 0 <= first <= second <= the latest tree size",
                    field="second" if second > size else "first",
                    tree_size=size,
                )
            return await _range_hashes(conn, consistency_ranges(first, second))

    async def lookup(self, account_id: str, since: int | None = None) -> Lookup:
        """The account's device set in the latest epoch, with its proofs (after publishing
        the account's pending change, if any)."""
        await self.catch_up(account_id)
        for _ in range(5):
            async with self.db.read() as conn:
                found = await self.lookup_in(conn, account_id, since)
            if found is not None:
                return found
            # An epoch was published between two reads: read again.
        raise TresenError(ErrorCode.INTERNAL, "the log changed while it was read; try again")

    async def lookup_in(
        self, conn: AsyncConnection, account_id: str, since: int | None
    ) -> Lookup | None:
        """:meth:`lookup` within ``conn``; ``None`` when the rows read belong to different
        epochs (a publication committed in between)."""
        row = await repo.latest_epoch(conn)
        if row is None:
            raise _no_epoch()
        epoch = Epoch.of(row)
        head = epoch.head
        logged = await repo.account_leaf(conn, account_id)
        key = account_key(account_id)
        nodes: dict[bytes, MapNode | None] = {}
        depth = 0
        proof = map_proof(key, nodes)
        while proof is None:
            positions = map_path_positions(key, depth, depth + _MAP_READ_DEPTHS)
            found = await repo.map_nodes(conn, positions)
            nodes.update({p: found.get(p) for p in positions})
            depth += _MAP_READ_DEPTHS
            proof = map_proof(key, nodes)
        try:
            value = verify_map_proof(key, proof, head.map_root)
        except ProofError:
            return None
        if (value is None) != (logged is None):
            return None
        leaf: DevicesLeaf | None = None
        inclusion: list[bytes] = []
        if logged is not None:
            if logged.leaf_idx >= head.tree_size:
                return None
            leaf_hash = log_leaf_hash(logged.leaf)
            if value != map_value(logged.leaf_idx, leaf_hash):
                return None
            inclusion = await _range_hashes(conn, inclusion_ranges(logged.leaf_idx, head.tree_size))
            if not verify_inclusion(
                leaf_hash, logged.leaf_idx, head.tree_size, inclusion, head.log_root
            ):
                return None
            decoded = decode_leaf(logged.leaf)
            assert isinstance(decoded, DevicesLeaf)
            leaf = decoded
        consistency = None
        if since is not None and 0 <= since <= head.tree_size:
            consistency = await _range_hashes(conn, consistency_ranges(since, head.tree_size))
        return Lookup(
            epoch=epoch,
            account_id=account_id,
            leaf_index=None if logged is None else logged.leaf_idx,
            leaf=leaf,
            map_proof=proof,
            inclusion=inclusion,
            since=since if consistency is not None else None,
            consistency=consistency,
        )

    async def certificate(self, serial: int) -> tuple[Epoch, int, CertificateLeaf, list[bytes]]:
        """Where certificate ``serial`` is in the log: the latest epoch, the leaf index, the
        leaf and its inclusion proof (after publishing it, if it waits for an epoch)."""
        await self.catch_up(serial=serial)
        async with self.db.read() as conn:
            row = await repo.latest_epoch(conn)
            if row is None:
                raise _no_epoch()
            epoch = Epoch.of(row)
            found = await repo.certificate_leaf(conn, serial)
            if found is None or found[1].leaf_idx >= epoch.head.tree_size:
                raise TresenError(
                    ErrorCode.NOT_FOUND_IN_LOG, "that certificate is not logged", serial=serial
                )
            _account_id, logged = found
            inclusion = await _range_hashes(
                conn, inclusion_ranges(logged.leaf_idx, epoch.head.tree_size)
            )
        leaf = decode_leaf(logged.leaf)
        assert isinstance(leaf, CertificateLeaf)
        return epoch, logged.leaf_idx, leaf, inclusion


async def _range_hashes(conn: AsyncConnection, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    wanted = [node for lo, hi in ranges for node in perfect_nodes(lo, hi)]
    nodes = await repo.log_nodes(conn, wanted)
    try:
        return [range_hash(lo, hi, nodes) for lo, hi in ranges]
    except KeyError:
        raise TresenError(
            ErrorCode.INTERNAL, "the log is missing nodes it needs for this proof"
        ) from None


def _no_epoch() -> TresenError:
    return TresenError(ErrorCode.NO_EPOCH, "no epoch has been published yet")
