"""The key log's Merkle structures: the RFC 9162 log (against the reference roots of RFC 6962's
test data) and the sparse Merkle map, built incrementally as the relay builds them."""

from __future__ import annotations

import random

import pytest

from tresen.crypto.transparency import (
    MapNode,
    MapUpdate,
    ProofError,
    append_leaves,
    consistency_ranges,
    frontier,
    inclusion_ranges,
    log_leaf_hash,
    map_path_positions,
    map_proof,
    range_hash,
    verify_consistency,
    verify_inclusion,
    verify_map_proof,
)

# The leaves and roots of the Certificate Transparency reference test data.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def grow(store: dict[tuple[int, int], bytes], size: int, leaves: list[bytes]) -> bytes:
    edge = {node: store[node] for node in frontier(size)}
    new, root = append_leaves(size, edge, [log_leaf_hash(leaf) for leaf in leaves])
    store.update(new)
    return root


def test_appending_one_leaf_at_a_time_gives_the_reference_roots() -> None:
    store: dict[tuple[int, int], bytes] = {}
    for size, leaf in enumerate(LEAVES):
        assert grow(store, size, [leaf]).hex() == ROOTS[size]


def test_appending_in_batches_gives_the_same_log_and_its_proofs_verify() -> None:
    rng = random.Random(3)
    leaves = [rng.randbytes(rng.randint(0, 40)) for _ in range(70)]
    store: dict[tuple[int, int], bytes] = {}
    roots: dict[int, bytes] = {}
    size = 0
    while size < len(leaves):
        batch = leaves[size : size + rng.randint(1, 9)]
        roots[size + len(batch)] = grow(store, size, batch)
        size += len(batch)
    assert roots[size] == range_hash(0, size, store)
    for n, root in roots.items():
        for i in range(n):
            path = [range_hash(a, b, store) for a, b in inclusion_ranges(i, n)]
            assert verify_inclusion(log_leaf_hash(leaves[i]), i, n, path, root)
            assert not verify_inclusion(log_leaf_hash(b"other"), i, n, path, root)
        for m, earlier in roots.items():
            if m > n:
                continue
            proof = [range_hash(a, b, store) for a, b in consistency_ranges(m, n)]
            assert verify_consistency(m, n, proof, earlier, root)
            if m < n:
                assert not verify_consistency(m, n, proof, log_leaf_hash(b"forged"), root)
                assert not verify_consistency(m, n, proof[:-1], earlier, root)


def test_a_rewritten_leaf_breaks_consistency() -> None:
    store: dict[tuple[int, int], bytes] = {}
    first = grow(store, 0, LEAVES[:5])
    forked: dict[tuple[int, int], bytes] = {}
    grow(forked, 0, [*LEAVES[:2], b"swapped", *LEAVES[3:5]])
    later = grow(forked, 5, LEAVES[5:])
    proof = [range_hash(a, b, forked) for a, b in consistency_ranges(5, 8)]
    assert not verify_consistency(5, 8, proof, first, later)


def apply(db: dict[bytes, MapNode], changes: dict[bytes, bytes | None]) -> bytes:
    update = MapUpdate(changes)
    while wanted := update.wanted():
        update.feed({p: db[p] for p in wanted if p in db})
    root, writes, deletes = update.finish()
    for position in deletes:
        del db[position]
    db.update(writes)
    return root


def test_the_map_updated_in_batches_equals_the_map_built_at_once_and_proves_each_key() -> None:
    rng = random.Random(5)
    db: dict[bytes, MapNode] = {}
    truth: dict[bytes, bytes] = {}
    for _ in range(40):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randint(1, 25)):
            if truth and rng.random() < 0.35:
                key = rng.choice(sorted(truth))
                changes[key] = None if rng.random() < 0.5 else rng.randbytes(40)
            else:
                changes[rng.randbytes(32)] = rng.randbytes(40)
        root = apply(db, changes)
        for key, value in changes.items():
            if value is None:
                truth.pop(key, None)
            else:
                truth[key] = value
        whole: dict[bytes, MapNode] = {}
        assert apply(whole, dict(truth)) == root
        assert whole == db  # nothing stale is left behind
        for key in [*sorted(truth)[:10], rng.randbytes(32)]:
            nodes = {p: db.get(p) for p in map_path_positions(key, 0, 257)}
            proof = map_proof(key, nodes)
            assert proof is not None
            assert verify_map_proof(key, proof, root) == truth.get(key)


def test_a_map_proof_for_another_value_or_root_fails() -> None:
    db: dict[bytes, MapNode] = {}
    keys = [bytes([i]) * 32 for i in range(1, 9)]
    root = apply(db, {k: k[:8] + bytes(32) for k in keys})
    key = keys[3]
    proof = map_proof(key, {p: db.get(p) for p in map_path_positions(key, 0, 257)})
    assert proof is not None
    with pytest.raises(ProofError):
        verify_map_proof(key, proof, bytes(32))
    forged = type(proof)(siblings=proof.siblings, leaf_key=key, leaf_value=bytes(40))
    with pytest.raises(ProofError):
        verify_map_proof(key, forged, root)
    # An absent key cannot be shown as present, nor a present one as absent.
    hidden = type(proof)(siblings=proof.siblings)
    with pytest.raises(ProofError):
        verify_map_proof(key, hidden, root)
