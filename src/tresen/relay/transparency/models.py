"""JSON shapes of key transparency (docs/protocol.md, "Key transparency"), shared by the
transparency routes and the key directory's, which returns proofs with device lists."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tresen.crypto.encoding import b64
from tresen.relay.transparency.service import Epoch, Lookup

__all__ = [
    "CertificateProofPublic",
    "ConsistencyPublic",
    "EpochPublic",
    "LoggedDevicePublic",
    "LookupPublic",
    "MapProofPublic",
    "epoch_public",
    "lookup_public",
]

_HASH = "32 bytes, unpadded standard base64"


class EpochPublic(BaseModel):
    epoch: int
    tree_size: int = Field(description="leaves in the log")
    log_root: str = Field(description=_HASH)
    map_root: str = Field(description=_HASH)
    previous: str = Field(description="hash of the previous epoch's head; " + _HASH)
    published_ms: int
    key_id: str = Field(description="the operator key that signed")
    body: str = Field(
        description="the signed head (msgpack, standard base64); verify this, not the fields"
    )
    signature: str = Field(
        description='Ed25519 signature over b"tresen-kt-epoch-v1\\x00" + body, unpadded base64'
    )


class LoggedDevicePublic(BaseModel):
    device_id: int
    curve25519: str
    ed25519: str


class MapProofPublic(BaseModel):
    siblings: list[str] = Field(description="sibling hashes from the root down")
    leaf_key: str | None = Field(description="where the path ends: a leaf's key, or null")
    leaf_value: str | None


class ConsistencyPublic(BaseModel):
    first: int
    second: int
    proof: list[str]


class LookupPublic(BaseModel):
    account_id: str
    epoch: EpochPublic
    leaf_index: int | None = Field(description="the account's latest device leaf; null: none")
    leaf_epoch: int | None = Field(description="the epoch that logged that leaf")
    devices: list[LoggedDevicePublic] = Field(description="the device set that leaf logs")
    map_proof: MapProofPublic
    inclusion: list[str] = Field(description="RFC 9162 inclusion proof of the leaf")
    consistency: ConsistencyPublic | None = Field(
        description="from the tree size the caller asked about (since) to this epoch's"
    )


def epoch_public(epoch: Epoch) -> EpochPublic:
    head = epoch.head
    return EpochPublic(
        epoch=head.epoch,
        tree_size=head.tree_size,
        log_root=b64(head.log_root),
        map_root=b64(head.map_root),
        previous=b64(head.previous),
        published_ms=head.published_ms,
        key_id=head.key_id,
        body=b64(epoch.signed.body),
        signature=epoch.signed.signature,
    )


def lookup_public(found: Lookup) -> LookupPublic:
    proof = found.map_proof
    return LookupPublic(
        account_id=found.account_id,
        epoch=epoch_public(found.epoch),
        leaf_index=found.leaf_index,
        leaf_epoch=None if found.leaf is None else found.leaf.epoch,
        devices=[
            LoggedDevicePublic(device_id=d.device_id, curve25519=d.curve25519, ed25519=d.ed25519)
            for d in found.devices
        ],
        map_proof=MapProofPublic(
            siblings=[b64(s) for s in proof.siblings],
            leaf_key=None if proof.leaf_key is None else b64(proof.leaf_key),
            leaf_value=None if proof.leaf_value is None else b64(proof.leaf_value),
        ),
        inclusion=[b64(h) for h in found.inclusion],
        consistency=None
        if found.consistency is None or found.since is None
        else ConsistencyPublic(
            first=found.since,
            second=found.epoch.head.tree_size,
            proof=[b64(h) for h in found.consistency],
        ),
    )


class CertificateProofPublic(BaseModel):
    serial: int
    account_id: str
    digest: str = Field(description="SHA-256 of the certificate's body; " + _HASH)
    leaf_index: int
    leaf_epoch: int = Field(description="the epoch that logged the certificate")
    epoch: EpochPublic
    inclusion: list[str] = Field(description="RFC 9162 inclusion proof of the leaf")
