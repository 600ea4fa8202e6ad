"""Key transparency: the verifiable log of device keys and certificates, and its proofs.

Pure functions and structures, no I/O: the relay builds the log and the map with them, clients
and auditors verify with them. docs/architecture.md ("Key transparency") has the design and
its threat model, docs/protocol.md the wire formats.

Two Merkle structures, both SHA-256, committed together in each signed epoch:

- **The log**: an append-only Merkle tree as in RFC 9162 (Certificate Transparency v2). Leaf
  ``i`` hashes ``0x00 || leaf bytes``, an inner node ``0x01 || left || right``; the tree of
  ``n`` leaves splits at the largest power of two below ``n``. Inclusion and consistency
  proofs, and their verification, are those of RFC 9162 §2.1.3 and §2.1.4. A leaf is the
  msgpack encoding of :class:`DevicesLeaf` (an account's whole device set, written each time
  it changes) or of :class:`CertificateLeaf` (a business certificate the operator issued).
- **The map**: a compact sparse Merkle tree from ``account_key(account_id)`` (256 bits) to
  ``leaf index || leaf hash`` of the account's latest :class:`DevicesLeaf`, so that a lookup
  proves that a device set is the *current* one, not merely one that was logged once. A leaf
  sits at the shallowest depth where it is alone in its subtree; an empty subtree hashes to 32
  zero bytes, a map leaf to ``SHA-256(0x02 || key || value)``, an inner node to
  ``SHA-256(0x03 || left || right)``. Given a root, a key has one answer: the path along the
  key's bits ends at that key's leaf, at another key's leaf or at an empty subtree.

The relay's operator key signs every epoch head (:class:`EpochHead`) as
``b"tresen-kt-epoch-v1\\x00" + body``; a head names its predecessor's hash, so the heads form
a chain as well.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from tresen.crypto.certificates import (
    CertificateError,
    KeyRing,
    UnknownOperatorKey,
)
from tresen.crypto.encoding import ED25519_SIGNATURE_BYTES, ed25519_public_key, unb64

__all__ = [
    "EMPTY",
    "EPOCH_PREFIX",
    "HASH_BYTES",
    "MAP_ROOT",
    "TRANSPARENCY_VERSION",
    "CertificateLeaf",
    "DeviceEntry",
    "DevicesLeaf",
    "EpochHead",
    "MapNode",
    "MapProof",
    "MapUpdate",
    "ProofError",
    "SignedEpoch",
    "account_key",
    "append_leaves",
    "consistency_ranges",
    "decode_head",
    "decode_leaf",
    "encode_leaf",
    "frontier",
    "head_hash",
    "inclusion_ranges",
    "log_leaf_hash",
    "log_node_hash",
    "map_leaf_hash",
    "map_node_hash",
    "map_path_positions",
    "map_position",
    "map_proof",
    "map_value",
    "perfect_nodes",
    "range_hash",
    "split_map_value",
    "verify_consistency",
    "verify_epoch",
    "verify_inclusion",
    "verify_map_proof",
]

TRANSPARENCY_VERSION = 1
HASH_BYTES = 32
EMPTY = bytes(HASH_BYTES)
EPOCH_PREFIX = b"tresen-kt-epoch-v1\x00"
_ACCOUNT_PREFIX = b"tresen-kt-account-v1\x00"
MAX_PROOF_HASHES = 600
"""No honest proof has more hashes: 64 for the log (2^64 leaves), 257 for the map."""


class ProofError(CertificateError):
    """A proof, leaf or epoch head that does not verify: the log is not what it claims."""


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- leaves ----------------------------------------------------------------------------------


class DeviceEntry(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """One device of a :class:`DevicesLeaf`: its id and identity keys (unpadded base64)."""

    device_id: int
    curve25519: str
    ed25519: str


class DevicesLeaf(
    msgspec.Struct, tag="devices", kw_only=True, frozen=True, forbid_unknown_fields=True
):
    """An account's device set as of ``epoch`` (sorted by device id; empty: no devices)."""

    v: int = TRANSPARENCY_VERSION
    account_id: str
    epoch: int
    devices: list[DeviceEntry]


class CertificateLeaf(
    msgspec.Struct, tag="certificate", kw_only=True, frozen=True, forbid_unknown_fields=True
):
    """A business certificate the operator issued: its serial and the SHA-256 of its body."""

    v: int = TRANSPARENCY_VERSION
    account_id: str
    epoch: int
    serial: int
    digest: bytes


Leaf = DevicesLeaf | CertificateLeaf
_leaf_decoder = msgspec.msgpack.Decoder(Leaf)


def encode_leaf(leaf: Leaf) -> bytes:
    return msgspec.msgpack.encode(leaf)


def decode_leaf(raw: bytes) -> Leaf:
    try:
        leaf: Leaf = _leaf_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ProofError(f"not a log leaf: {exc}") from None
    return leaf


def account_key(account_id: str) -> bytes:
    """Where an account sits in the map."""
    return _sha256(_ACCOUNT_PREFIX + account_id.encode())


# --- hashes ----------------------------------------------------------------------------------


def log_leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf)


def log_node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right)


def map_leaf_hash(key: bytes, value: bytes) -> bytes:
    return _sha256(b"\x02" + key + value)


def map_node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x03" + left + right)


def map_value(leaf_index: int, leaf_hash: bytes) -> bytes:
    """What the map holds for an account: where its latest device leaf is, and its hash."""
    return leaf_index.to_bytes(8, "big") + leaf_hash


def split_map_value(value: bytes) -> tuple[int, bytes]:
    if len(value) != 8 + HASH_BYTES:
        raise ProofError("a map value is a leaf index and a hash")
    return int.from_bytes(value[:8], "big"), value[8:]


# --- epoch heads -----------------------------------------------------------------------------


class EpochHead(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What the operator signs for each epoch."""

    v: int = TRANSPARENCY_VERSION
    epoch: int
    tree_size: int
    log_root: bytes
    map_root: bytes
    previous: bytes
    """:func:`head_hash` of the previous epoch's body (32 zero bytes for epoch 0)."""
    published_ms: int
    key_id: str


@dataclass(frozen=True, slots=True)
class SignedEpoch:
    body: bytes
    signature: str


def head_hash(body: bytes) -> bytes:
    return _sha256(EPOCH_PREFIX + body)


def decode_head(body: bytes) -> EpochHead:
    try:
        head = msgspec.msgpack.decode(body, type=EpochHead)
    except msgspec.DecodeError as exc:
        raise ProofError(f"not an epoch head: {exc}") from None
    if head.v != TRANSPARENCY_VERSION:
        raise ProofError(f"unsupported epoch head version {head.v}")
    if len(head.log_root) != HASH_BYTES or len(head.map_root) != HASH_BYTES:
        raise ProofError("an epoch head's roots are 32 bytes")
    if len(head.previous) != HASH_BYTES or head.epoch < 0 or head.tree_size < 0:
        raise ProofError("malformed epoch head")
    return head


def verify_epoch(signed: SignedEpoch, ring: KeyRing) -> EpochHead:
    """The head, if a key of ``ring`` signed exactly these bytes. Raises
    :class:`UnknownOperatorKey` (refresh the ring and try again) or :class:`ProofError`.

    A retired key still verifies the heads it signed before it retired: heads are history,
    and an auditor replays old ones."""
    head = decode_head(signed.body)
    if head.key_id not in ring:
        raise UnknownOperatorKey(
            f"epoch {head.epoch} is signed by operator key {head.key_id}, "
            "which this client does not trust"
        )
    try:
        verifier = ed25519_public_key(ring.public_key(head.key_id))
        verifier.verify(
            unb64(signed.signature, ED25519_SIGNATURE_BYTES), EPOCH_PREFIX + signed.body
        )
    except Exception:
        raise ProofError(
            f"the operator's signature on epoch {head.epoch} does not verify"
        ) from None
    return head


# --- the log (RFC 9162) ----------------------------------------------------------------------


def _split(n: int) -> int:
    """The largest power of two below ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def frontier(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees (level, index) that make up a tree of ``size`` leaves, left to
    right: the nodes an append needs besides the new leaves."""
    return [
        (level, (size >> level) - 1)
        for level in reversed(range(size.bit_length()))
        if size >> level & 1
    ]


def perfect_nodes(lo: int, hi: int) -> list[tuple[int, int]]:
    """The stored perfect subtrees (level, index) whose hashes give ``MTH(D[lo:hi])``."""
    out: list[tuple[int, int]] = []
    _perfect(lo, hi, out)
    return out


def _perfect(lo: int, hi: int, out: list[tuple[int, int]]) -> None:
    n = hi - lo
    if n & (n - 1) == 0 and lo % n == 0:
        level = n.bit_length() - 1
        out.append((level, lo >> level))
        return
    k = _split(n)
    _perfect(lo, lo + k, out)
    _perfect(lo + k, hi, out)


def range_hash(lo: int, hi: int, nodes: Mapping[tuple[int, int], bytes]) -> bytes:
    """``MTH(D[lo:hi])`` from stored perfect subtrees (``KeyError`` if one is missing)."""
    if hi <= lo:
        return _sha256(b"")
    n = hi - lo
    if n & (n - 1) == 0 and lo % n == 0:
        level = n.bit_length() - 1
        return nodes[(level, lo >> level)]
    k = _split(n)
    return log_node_hash(range_hash(lo, lo + k, nodes), range_hash(lo + k, hi, nodes))


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes prove leaf ``index`` in a tree of ``size``, leaf first."""
    if not 0 <= index < size:
        raise ValueError("the leaf is not in the tree")
    out: list[tuple[int, int]] = []
    lo, hi, m = 0, size, index
    stack: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            stack.append((lo + k, hi))
            hi = lo + k
        else:
            stack.append((lo, lo + k))
            lo, m = lo + k, m - k
    out.extend(reversed(stack))
    return out


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes prove that the tree of ``first`` leaves is a prefix of the
    tree of ``second`` leaves (RFC 9162 §2.1.4.1), in proof order."""
    if not 0 <= first <= second:
        raise ValueError("the first tree must not be larger than the second")
    if first in (0, second):
        return []
    stack: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, second, first, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                stack.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            stack.append((lo + k, hi))
            hi = lo + k
        else:
            stack.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    return list(reversed(stack))


def append_leaves(
    size: int, edge: Mapping[tuple[int, int], bytes], leaf_hashes: Sequence[bytes]
) -> tuple[dict[tuple[int, int], bytes], bytes]:
    """Append ``leaf_hashes`` to a tree of ``size`` whose :func:`frontier` hashes are
    ``edge``: the new perfect nodes to store, and the new root."""
    known: dict[tuple[int, int], bytes] = dict(edge)
    new: dict[tuple[int, int], bytes] = {}
    index = size
    for leaf in leaf_hashes:
        level, i, h = 0, index, leaf
        new[(0, i)] = known[(0, i)] = h
        while i & 1:
            h = log_node_hash(known[(level, i - 1)], h)
            level, i = level + 1, i >> 1
            new[(level, i)] = known[(level, i)] = h
        index += 1
    return new, range_hash(0, index, known) if index else _sha256(b"")


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size or len(path) > 64:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = log_node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = log_node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2; an empty first tree is consistent with any tree."""
    if not 0 <= first <= second or len(proof) > 128:
        return False
    if first == 0:
        return not proof
    if first == second:
        return not proof and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = log_node_hash(c, fr)
            sr = log_node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = log_node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# --- the map (compact sparse Merkle tree) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class MapNode:
    """A stored map node: an inner node (``key`` is ``None``) or a leaf."""

    hash: bytes
    key: bytes | None = None
    value: bytes | None = None

    @property
    def is_leaf(self) -> bool:
        return self.key is not None


def _bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def _with_bit(key: bytes, depth: int, bit: int) -> bytes:
    raw = bytearray(key)
    mask = 1 << (7 - (depth & 7))
    if bit:
        raw[depth >> 3] |= mask
    else:
        raw[depth >> 3] &= ~mask & 0xFF
    return bytes(raw)


def map_position(key: bytes, depth: int) -> bytes:
    """The stored name of the node at ``depth`` on ``key``'s path: the depth (2 bytes) and
    the first ``depth`` bits of the key."""
    prefix = bytearray(key[: (depth + 7) >> 3])
    if depth & 7:
        prefix[-1] &= (0xFF << (8 - (depth & 7))) & 0xFF
    return depth.to_bytes(2, "big") + bytes(prefix)


def map_path_positions(key: bytes, start: int, stop: int) -> list[bytes]:
    """The positions a proof for ``key`` reads at depths ``start`` to ``stop - 1``: the node
    on the path and its sibling one level below."""
    out = []
    for depth in range(start, min(stop, 8 * HASH_BYTES)):
        out.append(map_position(key, depth))
        out.append(map_position(_with_bit(key, depth, 1 - _bit(key, depth)), depth + 1))
    if stop > 8 * HASH_BYTES >= start:
        out.append(map_position(key, 8 * HASH_BYTES))
    return out


class MapProof(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The siblings along a key's path from the root (top first) and where the path ends:
    at a leaf (``leaf_key``, ``leaf_value``) or at an empty subtree (both ``None``)."""

    siblings: list[bytes]
    leaf_key: bytes | None = None
    leaf_value: bytes | None = None


def map_proof(key: bytes, nodes: Mapping[bytes, MapNode | None]) -> MapProof | None:
    """The proof for ``key`` from stored ``nodes``; ``None`` if a node on the path is not in
    ``nodes`` yet (read the next :func:`map_path_positions` and try again)."""
    siblings: list[bytes] = []
    for depth in range(8 * HASH_BYTES + 1):
        position = map_position(key, depth)
        if position not in nodes:
            return None
        node = nodes[position]
        if node is None:
            return MapProof(siblings=siblings)
        if node.is_leaf:
            return MapProof(siblings=siblings, leaf_key=node.key, leaf_value=node.value)
        sibling_position = map_position(_with_bit(key, depth, 1 - _bit(key, depth)), depth + 1)
        if sibling_position not in nodes:
            return None
        sibling = nodes[sibling_position]
        siblings.append(EMPTY if sibling is None else sibling.hash)
    raise ProofError("the map is deeper than its keys")


def verify_map_proof(key: bytes, proof: MapProof, root: bytes) -> bytes | None:
    """The value the map with ``root`` holds for ``key`` (``None``: none), or
    :class:`ProofError`."""
    depth = len(proof.siblings)
    if depth > 8 * HASH_BYTES or any(len(s) != HASH_BYTES for s in proof.siblings):
        raise ProofError("malformed map proof")
    if proof.leaf_key is None:
        if proof.leaf_value is not None:
            raise ProofError("malformed map proof")
        h = EMPTY
    else:
        if len(proof.leaf_key) != HASH_BYTES or proof.leaf_value is None:
            raise ProofError("malformed map proof")
        if map_position(proof.leaf_key, depth) != map_position(key, depth):
            raise ProofError("the map proof ends at a leaf off the key's path")
        h = map_leaf_hash(proof.leaf_key, proof.leaf_value)
    for d in reversed(range(depth)):
        sibling = proof.siblings[d]
        h = map_node_hash(sibling, h) if _bit(key, d) else map_node_hash(h, sibling)
    if h != root:
        raise ProofError("the map proof does not lead to the signed map root")
    return proof.leaf_value if proof.leaf_key == key else None


MAP_ROOT = map_position(EMPTY, 0)
"""Where the map's root node is stored."""


@dataclass
class MapUpdate:
    """A batch of changes to the map, applied without holding the map in memory.

    Read in rounds: while :meth:`wanted` names positions, read them from storage and
    :meth:`feed` what was found (a missing position is an empty subtree); then
    :meth:`finish` gives the new root, the nodes to write and the positions to delete.
    Only the paths of changed keys and their siblings are read.
    """

    changes: dict[bytes, bytes | None]
    nodes: dict[bytes, MapNode | None] = field(default_factory=dict)
    _frontier: dict[bytes, tuple[int, bytes, list[bytes]]] = field(default_factory=dict)
    _writes: dict[bytes, MapNode] = field(default_factory=dict)
    _deletes: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        keys = sorted(self.changes)
        if keys:
            self._frontier = {MAP_ROOT: (0, keys[0], keys)}

    def wanted(self) -> list[bytes]:
        return list(self._frontier)

    def feed(self, found: Mapping[bytes, MapNode]) -> None:
        following: dict[bytes, tuple[int, bytes, list[bytes]]] = {}
        for position, (depth, sample, keys) in self._frontier.items():
            node = found.get(position)
            self.nodes[position] = node
            if node is None or node.is_leaf or not keys:
                continue
            left, right = _split_keys(keys, depth)
            for bit, part in ((0, left), (1, right)):
                child_sample = _with_bit(sample, depth, bit)
                following[map_position(child_sample, depth + 1)] = (depth + 1, child_sample, part)
        self._frontier = following

    def finish(self) -> tuple[bytes, dict[bytes, MapNode], set[bytes]]:
        if self._frontier:
            raise RuntimeError("read the wanted positions first")
        if not self.changes:
            root = self.nodes.get(MAP_ROOT)
            return (EMPTY if root is None else root.hash), {}, set()
        keys = sorted(self.changes)
        new_root = self._compute(MAP_ROOT, 0, keys[0], keys)
        if new_root is None:
            self._deletes.add(MAP_ROOT)
        else:
            self._writes[MAP_ROOT] = new_root
        deletes = {p for p in self._deletes if p not in self._writes}
        return (EMPTY if new_root is None else new_root.hash), self._writes, deletes

    def _compute(
        self, position: bytes, depth: int, sample: bytes, keys: list[bytes]
    ) -> MapNode | None:
        old = self.nodes.get(position)
        if not keys:
            return old
        if old is None or old.is_leaf:
            leaves: dict[bytes, bytes] = {}
            if old is not None and old.key is not None and old.value is not None:
                leaves[old.key] = old.value
            for key in keys:
                value = self.changes[key]
                if value is None:
                    leaves.pop(key, None)
                else:
                    leaves[key] = value
            ordered = sorted(leaves)
            return self._build(depth, ordered, [leaves[k] for k in ordered], 0, len(ordered))
        left, right = _split_keys(keys, depth)
        children = []
        for bit, part in ((0, left), (1, right)):
            child_sample = _with_bit(sample, depth, bit)
            child_position = map_position(child_sample, depth + 1)
            new = self._compute(child_position, depth + 1, child_sample, part)
            children.append((child_position, self.nodes.get(child_position), new))
        (_, _, ln), (_, _, rn) = children
        if ln is None and rn is None:
            result = None
        elif ln is None and rn is not None and rn.is_leaf:
            result = rn
        elif rn is None and ln is not None and ln.is_leaf:
            result = ln
        else:
            result = MapNode(
                map_node_hash(EMPTY if ln is None else ln.hash, EMPTY if rn is None else rn.hash)
            )
            for child_position, before, after in children:
                if after is None:
                    if before is not None:
                        self._deletes.add(child_position)
                elif after is not before:
                    self._writes[child_position] = after
            return result
        # Collapsed into a leaf (lifted to this position) or into nothing.
        for child_position, before, _ in children:
            if before is not None:
                self._deletes.add(child_position)
        return result

    def _build(
        self, depth: int, keys: list[bytes], values: list[bytes], lo: int, hi: int
    ) -> MapNode | None:
        """The canonical subtree at ``depth`` of ``keys[lo:hi]`` (sorted, sharing their first
        ``depth`` bits); stores every node below its root."""
        if hi == lo:
            return None
        if hi - lo == 1:
            return MapNode(map_leaf_hash(keys[lo], values[lo]), keys[lo], values[lo])
        middle = bisect_left(keys, _threshold(keys[lo], depth), lo, hi)
        left = self._build(depth + 1, keys, values, lo, middle)
        right = self._build(depth + 1, keys, values, middle, hi)
        if left is not None:
            self._writes[map_position(keys[lo], depth + 1)] = left
        if right is not None:
            self._writes[map_position(keys[middle], depth + 1)] = right
        return MapNode(
            map_node_hash(
                EMPTY if left is None else left.hash, EMPTY if right is None else right.hash
            )
        )


def _threshold(key: bytes, depth: int) -> bytes:
    """The smallest key that shares ``key``'s first ``depth`` bits and has bit ``depth`` set."""
    return _with_bit(map_position(key, depth)[2:].ljust(HASH_BYTES, b"\x00"), depth, 1)


def _split_keys(keys: list[bytes], depth: int) -> tuple[list[bytes], list[bytes]]:
    """Sorted keys sharing their first ``depth`` bits, split by the next bit."""
    if not keys:
        return [], []
    middle = bisect_left(keys, _threshold(keys[0], depth))
    return keys[:middle], keys[middle:]


def hashes_of(texts: Iterable[str]) -> list[bytes]:
    """Hashes from their unpadded base64 texts (:class:`ProofError` if one is not)."""
    out = []
    for text in texts:
        try:
            out.append(unb64(text, HASH_BYTES))
        except ValueError:
            raise ProofError("a proof hash is not 32 bytes of base64") from None
    if len(out) > MAX_PROOF_HASHES:
        raise ProofError("a proof with too many hashes")
    return out
