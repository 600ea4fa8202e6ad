"""Test support for key transparency: a relay that lies to one client, a relay that rewrites
its log's history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import delete, update
from support import RunningRelay

from tresen.core.ids import AccountId
from tresen.crypto.transparency import (
    DeviceEntry,
    DevicesLeaf,
    MapUpdate,
    account_key,
    decode_leaf,
    encode_leaf,
    log_leaf_hash,
    log_node_hash,
    map_value,
)
from tresen.relay.operator.service import CertificateRecord, OperatorPrincipal
from tresen.relay.schema import devices, kt_accounts, kt_log_nodes, kt_pending_certificates
from tresen.relay.transparency import repo

Rewrite = Callable[[httpx.Request, dict[str, Any]], dict[str, Any]]


class LyingTransport(httpx.AsyncBaseTransport):
    """The relay as one client sees it: answers pass through ``rewrite`` while it is set."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.rewrite: Rewrite | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.rewrite is None or response.status_code != 200:
            return response
        await response.aread()
        await response.aclose()
        body = self.rewrite(request, response.json())
        return httpx.Response(200, json=body, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def rewrite_leaf(relay: RunningRelay, account_id: str, curve25519: str) -> None:
    """The relay changes an account's logged device set in place (a past leaf, the log nodes
    above it, the map entry) and signs a new epoch over the rewritten log."""
    async with relay.ctx.db.write() as conn:
        logged = await repo.account_leaf(conn, account_id)
        latest = await repo.latest_epoch(conn)
        assert logged is not None
        assert latest is not None
        old = decode_leaf(logged.leaf)
        assert isinstance(old, DevicesLeaf)
        entries = [DeviceEntry(d.device_id, curve25519, d.ed25519) for d in old.devices]
        leaf = encode_leaf(DevicesLeaf(account_id=account_id, epoch=old.epoch, devices=entries))
        h, level, i = log_leaf_hash(leaf), 0, logged.leaf_idx
        while (i + 1) << level <= latest.tree_size:
            await conn.execute(
                update(kt_log_nodes)
                .where(kt_log_nodes.c.level == level, kt_log_nodes.c.idx == i)
                .values(hash=h)
            )
            sibling = (await repo.log_nodes(conn, [(level, i ^ 1)])).get((level, i ^ 1))
            if sibling is None:
                break
            h = log_node_hash(sibling, h) if i & 1 else log_node_hash(h, sibling)
            level, i = level + 1, i >> 1
        await repo.put_account_leaves(conn, {account_id: repo.LoggedLeaf(logged.leaf_idx, leaf)})
        change = MapUpdate(
            {account_key(account_id): map_value(logged.leaf_idx, log_leaf_hash(leaf))}
        )
        while wanted := change.wanted():
            change.feed(await repo.map_nodes(conn, wanted))
        _, writes, deletes = change.finish()
        await repo.write_map_nodes(conn, writes, deletes)
        await conn.execute(
            update(devices)
            .where(devices.c.account_id == account_id)
            .values(identity_curve25519=curve25519)
        )
        await relay.ctx.transparency.publish_in(conn, force=True)


async def remove_entry(relay: RunningRelay, account_id: str) -> None:
    """The relay drops an account from its map (while still handing out its keys) and signs
    an epoch over that."""
    async with relay.ctx.db.write() as conn:
        changes: dict[bytes, bytes | None] = {account_key(account_id): None}
        removal = MapUpdate(changes)
        while wanted := removal.wanted():
            removal.feed(await repo.map_nodes(conn, wanted))
        _, writes, deletes = removal.finish()
        await repo.write_map_nodes(conn, writes, deletes)
        await conn.execute(delete(kt_accounts).where(kt_accounts.c.account_id == account_id))
        await relay.ctx.transparency.publish_in(conn, force=True)


async def verify_unlogged(relay: RunningRelay, account_id: str) -> CertificateRecord:
    """The operator verifies ``account_id`` but keeps its certificate out of the key log, to
    show it to some clients only; the certificate."""
    certificate, _ = await relay.ctx.operator.verify(
        OperatorPrincipal("tests"), AccountId(account_id)
    )
    async with relay.ctx.db.write() as conn:
        await conn.execute(
            delete(kt_pending_certificates).where(
                kt_pending_certificates.c.account_id == account_id
            )
        )
    return certificate
