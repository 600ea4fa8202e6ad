"""The Python side of the web app's protocol-library tests (web/tests/wire-interop.test.ts).

Reads one JSON command per line on stdin and answers one JSON line on stdout, so that the
TypeScript ports of the wire and crypto modules can be held against the Python reference:
payloads encoded and decoded both ways, certificates, revocation lists, key endorsements and
templates signed with the relay's own signing code, consent statements, attachments and
safety numbers, and a key log (docs/protocol.md §14) published with the relay's own
structures, honest or tampered with. Bytes travel as standard base64; a Python exception becomes
``{"error": "Type: message"}``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
import vodozemac

from tresen.client.business import judge
from tresen.client.templates import (
    TemplateRejected,
    check_template_message,
    verify_template,
)
from tresen.crypto.attachments import AttachmentError, decrypt_bytes, encrypt_bytes
from tresen.crypto.certificates import (
    BusinessCertificate,
    CertificateError,
    KeyRing,
    OperatorKey,
    PublishedKey,
    SignedCertificate,
    SignedRevocationList,
    key_fingerprint,
    key_id_of,
    verify_certificate,
    verify_revocations,
)
from tresen.crypto.consent import (
    ConsentScope,
    ConsentState,
    ConsentStatement,
    SignedConsent,
    sign_statement,
    verify_statement,
)
from tresen.crypto.delivery import (
    DELIVERY_PREFIX,
    DeliveryFacts,
    ForgedReceipt,
    delivery_message,
    verify_delivery,
)
from tresen.crypto.encoding import unb64 as crypto_unb64
from tresen.crypto.olm import CryptoError, DeviceIdentity
from tresen.crypto.safety import Party, fingerprint, safety_number
from tresen.crypto.transparency import (
    EMPTY,
    EPOCH_PREFIX,
    MAP_ROOT,
    CertificateLeaf,
    DeviceEntry,
    DevicesLeaf,
    EpochHead,
    MapNode,
    MapUpdate,
    account_key,
    append_leaves,
    consistency_ranges,
    encode_leaf,
    frontier,
    head_hash,
    inclusion_ranges,
    log_leaf_hash,
    map_proof,
    map_value,
    range_hash,
)
from tresen.relay.templates.validation import validate_submission
from tresen.wire.e2e import (
    AnyPayload,
    InvalidPayload,
    PayloadTooLarge,
    Unsupported,
    decode_payload,
    encode_payload,
    padded_size,
)
from tresen.wire.templates import (
    TEMPLATE_PREFIX,
    ParameterMismatch,
    RenderedTemplate,
    SignedTemplate,
    SignedTemplateBody,
    render,
)

_payload_json = msgspec.json.Decoder(AnyPayload)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class _EveryPosition(Mapping[bytes, MapNode | None]):
    """The whole map for :func:`map_proof`: a position not stored is an empty subtree."""

    def __init__(self, nodes: dict[bytes, MapNode]) -> None:
        self.nodes = nodes

    def __getitem__(self, position: bytes) -> MapNode | None:
        return self.nodes.get(position)

    def __contains__(self, position: object) -> bool:
        return True

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)


class KeyLogModel:
    """The relay's key log in memory, published as relay/transparency/service.py publishes
    it (same structures and signatures), with the tampering a lying relay could do."""

    def __init__(self, operator: OperatorKey) -> None:
        self.operator = operator
        self.leaves: list[bytes] = []
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.map: dict[bytes, MapNode] = {}
        self.heads: list[tuple[bytes, str]] = []
        self.accounts: dict[str, tuple[int, int, list[DeviceEntry]]] = {}
        self.certificates: dict[int, tuple[int, CertificateLeaf]] = {}

    def publish(
        self,
        changes: dict[str, list[list[Any]]],
        published_ms: int,
        certificates: list[list[Any]] | None = None,
    ) -> dict[str, Any]:
        """An epoch with each account's new device set, then each certificate
        (``[serial, account_id, body]``, its leaf naming the SHA-256 of the body)."""
        number, size = len(self.heads), len(self.leaves)
        leaves, values = [], {}
        for account_id, devices in changes.items():
            entries = sorted((DeviceEntry(*d) for d in devices), key=lambda e: e.device_id)
            leaf = encode_leaf(DevicesLeaf(account_id=account_id, epoch=number, devices=entries))
            self.accounts[account_id] = (size + len(leaves), number, entries)
            values[account_key(account_id)] = map_value(size + len(leaves), log_leaf_hash(leaf))
            leaves.append(leaf)
        for serial, account_id, body in certificates or []:
            logged = certificate_leaf(account_id, number, serial, unb64(body))
            self.certificates[serial] = (size + len(leaves), logged)
            leaves.append(encode_leaf(logged))
        edge = {node: self.nodes[node] for node in frontier(size)}
        new, log_root = append_leaves(size, edge, [log_leaf_hash(leaf) for leaf in leaves])
        self.nodes.update(new)
        self.leaves.extend(leaves)
        return self._sign(number, log_root, self._change_map(values), published_ms)

    def _change_map(self, changes: dict[bytes, bytes | None]) -> bytes:
        if not changes:
            root = self.map.get(MAP_ROOT)
            return EMPTY if root is None else root.hash
        update = MapUpdate(changes)
        while wanted := update.wanted():
            update.feed({p: self.map[p] for p in wanted if p in self.map})
        map_root, writes, deletes = update.finish()
        for position in deletes:
            self.map.pop(position, None)
        self.map.update(writes)
        return map_root

    def _sign(self, number: int, log_root: bytes, map_root: bytes, ms: int) -> dict[str, Any]:
        previous = EMPTY if not self.heads else head_hash(self.heads[-1][0])
        body = msgspec.msgpack.encode(
            EpochHead(
                epoch=number,
                tree_size=len(self.leaves),
                log_root=log_root,
                map_root=map_root,
                previous=previous,
                published_ms=ms,
                key_id=self.operator.key_id,
            )
        )
        signature = self.operator.sign(EPOCH_PREFIX + body)
        self.heads.append((body, signature))
        return self.epoch_json(-1)

    def epoch_json(self, at: int) -> dict[str, Any]:
        body, signature = self.heads[at]
        head = msgspec.msgpack.decode(body, type=EpochHead)
        return {
            "epoch": head.epoch,
            "tree_size": head.tree_size,
            "log_root": b64(head.log_root),
            "map_root": b64(head.map_root),
            "previous": b64(head.previous),
            "published_ms": head.published_ms,
            "key_id": head.key_id,
            "body": b64(body),
            "signature": signature,
            "head": b64(head_hash(body)),
        }

    def lookup(self, account_id: str, since: int | None) -> dict[str, Any]:
        """What ``/v1/transparency/lookup`` answers, against the latest epoch."""
        size = len(self.leaves)
        proof = map_proof(account_key(account_id), _EveryPosition(self.map))
        assert proof is not None
        logged = self.accounts.get(account_id)
        answer: dict[str, Any] = {
            "account_id": account_id,
            "epoch": self.epoch_json(-1),
            "leaf_index": None if logged is None else logged[0],
            "leaf_epoch": None if logged is None else logged[1],
            "devices": []
            if logged is None
            else [
                {"device_id": d.device_id, "curve25519": d.curve25519, "ed25519": d.ed25519}
                for d in logged[2]
            ],
            "map_proof": {
                "siblings": [b64(s) for s in proof.siblings],
                "leaf_key": None if proof.leaf_key is None else b64(proof.leaf_key),
                "leaf_value": None if proof.leaf_value is None else b64(proof.leaf_value),
            },
            "inclusion": []
            if logged is None
            else [b64(range_hash(a, b, self.nodes)) for a, b in inclusion_ranges(logged[0], size)],
            "consistency": None,
        }
        if since is not None and since <= size:
            answer["consistency"] = {
                "first": since,
                "second": size,
                "proof": self.consistency(since, size),
            }
        return answer

    def consistency(self, first: int, second: int) -> list[str]:
        return [b64(range_hash(a, b, self.nodes)) for a, b in consistency_ranges(first, second)]

    def certificate(self, serial: int) -> dict[str, Any]:
        """What ``/v1/transparency/certificates/{serial}`` answers (``{"not_logged": true}``
        for 150082)."""
        if serial not in self.certificates:
            return {"not_logged": True}
        index, leaf = self.certificates[serial]
        return {
            "serial": serial,
            "account_id": leaf.account_id,
            "digest": b64(leaf.digest),
            "leaf_index": index,
            "leaf_epoch": leaf.epoch,
            "epoch": self.epoch_json(-1),
            "inclusion": [
                b64(range_hash(a, b, self.nodes))
                for a, b in inclusion_ranges(index, len(self.leaves))
            ],
        }

    def rewrite(self, account_id: str, curve25519: str, ms: int) -> dict[str, Any]:
        """Change the account's logged leaf in place (and the map), then sign a new epoch."""
        index, epoch, entries = self.accounts[account_id]
        entries = [DeviceEntry(e.device_id, curve25519, e.ed25519) for e in entries]
        leaf = encode_leaf(DevicesLeaf(account_id=account_id, epoch=epoch, devices=entries))
        self.leaves[index] = leaf
        self.accounts[account_id] = (index, epoch, entries)
        self.nodes, log_root = append_leaves(0, {}, [log_leaf_hash(x) for x in self.leaves])
        map_root = self._change_map(
            {account_key(account_id): map_value(index, log_leaf_hash(leaf))}
        )
        return self._sign(len(self.heads), log_root, map_root, ms)

    def remove(self, account_id: str, ms: int) -> dict[str, Any]:
        """Drop the account from the map (the log keeps its leaf), then sign a new epoch."""
        self.accounts.pop(account_id, None)
        map_root = self._change_map({account_key(account_id): None})
        root = range_hash(0, len(self.leaves), self.nodes)
        return self._sign(len(self.heads), root, map_root, ms)


class Peer:
    def __init__(self) -> None:
        # Operator keys by the name a test gives them, created on first use.
        self.operators: dict[str, OperatorKey] = {}
        self.devices: dict[str, DeviceIdentity] = {}
        self.key_log: KeyLogModel | None = None
        self.saved_logs: dict[str, KeyLogModel] = {}

    def operator(self, name: str) -> OperatorKey:
        if name not in self.operators:
            self.operators[name] = OperatorKey.generate()
        return self.operators[name]

    def device(self, name: str) -> DeviceIdentity:
        if name not in self.devices:
            self.devices[name] = DeviceIdentity.create()
        return self.devices[name]

    def handle(self, command: dict[str, Any]) -> Any:
        op = command.pop("op")
        return getattr(self, f"op_{op}")(**command)

    # --- payloads ------------------------------------------------------------------------------

    def op_encode_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Build the payload from its JSON form (bytes in base64) and encode it."""
        try:
            built = _payload_json.decode(json.dumps(payload))
        except (msgspec.ValidationError, InvalidPayload) as exc:
            return {"invalid": str(exc)}
        try:
            return {"raw": b64(encode_payload(built))}
        except PayloadTooLarge as exc:
            return {"too_large": str(exc)}
        except InvalidPayload as exc:
            return {"invalid": str(exc)}

    def op_decode_payload(self, raw: str) -> dict[str, Any]:
        try:
            payload = decode_payload(unb64(raw))
        except InvalidPayload as exc:
            return {"invalid": str(exc)}
        if isinstance(payload, Unsupported):
            return {"unsupported": {"tag": payload.tag, "v": payload.v}}
        return {"payload": json.loads(msgspec.json.encode(payload))}

    def op_padded_size(self, sizes: list[int]) -> list[int]:
        return [padded_size(n) for n in sizes]

    # --- the operator's signatures -------------------------------------------------------------

    def op_operator_key(self, name: str) -> dict[str, Any]:
        key = self.operator(name)
        return {
            "public_key": key.public_key,
            "key_id": key.key_id,
            "fingerprint": key.fingerprint(),
        }

    def op_key_id(self, public_key: str) -> dict[str, Any]:
        return {"key_id": key_id_of(public_key), "fingerprint": key_fingerprint(public_key)}

    def op_endorse(self, name: str, by: str, signs_from_ms: int) -> dict[str, Any]:
        key = self.operator(name)
        return {"endorsement": self.operator(by).endorse(key.public_key, signs_from_ms)}

    def op_sign_certificate(self, key: str, **fields: Any) -> dict[str, Any]:
        operator = self.operator(key)
        cert = BusinessCertificate(key_id=operator.key_id, **fields)
        return operator.sign_certificate(cert).to_json()

    def op_sign_revocations(self, key: str, issued_ms: int, serials: list[int]) -> dict[str, Any]:
        return self.operator(key).sign_revocations(issued_ms, serials).to_json()

    def op_sign_raw(self, key: str, message: str) -> dict[str, Any]:
        """Any bytes signed by an operator key (for bodies a test builds itself)."""
        return {"signature": self.operator(key).sign(unb64(message))}

    def op_sign_template(
        self,
        key: str,
        template: dict[str, Any],
        template_id: int,
        business_account: str,
        approved_ms: int,
    ) -> dict[str, Any]:
        """The relay's approval: the submission checked as the relay checks it, then signed."""
        operator = self.operator(key)
        clean = validate_submission(template)
        body = msgspec.msgpack.encode(
            SignedTemplateBody(
                key_id=operator.key_id,
                id=template_id,
                business_account=business_account,
                name=clean.name,
                language=clean.language,
                category=clean.category,
                parameter_format=clean.parameter_format,
                components=clean.components,
                approved_ms=approved_ms,
            )
        )
        signed = SignedTemplate(template_id, body, operator.sign(TEMPLATE_PREFIX + body))
        return signed.to_json()

    def ring(self, pinned: str, published: list[dict[str, Any]]) -> KeyRing:
        ring = KeyRing(pinned)
        ring.update([PublishedKey.from_json(entry) for entry in published])
        return ring

    def op_ring(self, pinned: str, published: list[dict[str, Any]]) -> dict[str, Any]:
        ring = KeyRing(pinned)
        update = ring.update([PublishedKey.from_json(entry) for entry in published])
        return {
            "added": update.added,
            "retired": update.retired,
            "ignored": update.ignored,
            "key_ids": ring.key_ids,
            "retires": {k: ring.retires_ms(k) for k in ring.key_ids},
            "json": ring.to_json(),
        }

    def op_verify_certificate(
        self,
        certificate: dict[str, Any],
        pinned: str,
        published: list[dict[str, Any]],
        now_ms: int,
        revoked: list[int],
    ) -> dict[str, Any]:
        ring = self.ring(pinned, published)
        try:
            signed = SignedCertificate.from_json(certificate)
            cert = verify_certificate(signed, ring, now_ms, revoked)
        except CertificateError as exc:
            return {"refused": type(exc).__name__, "reason": str(exc)}
        return {"certificate": msgspec.to_builtins(cert)}

    def op_verify_revocations(
        self,
        revocations: dict[str, Any],
        pinned: str,
        published: list[dict[str, Any]],
        now_ms: int,
        max_age_ms: int,
    ) -> dict[str, Any]:
        ring = self.ring(pinned, published)
        try:
            signed = SignedRevocationList.from_json(revocations)
            listing = verify_revocations(signed, ring, now_ms, max_age_ms)
        except CertificateError as exc:
            return {"refused": type(exc).__name__, "reason": str(exc)}
        return {"revocations": msgspec.to_builtins(listing)}

    def op_judge(
        self,
        certificate: dict[str, Any] | None,
        pinned: str | None,
        published: list[dict[str, Any]],
        now_ms: int,
        revoked: list[int] | None,
        account_id: str,
        phone: str,
        display_name: str,
        device_keys: list[str],
        identity_changed: bool,
    ) -> dict[str, Any]:
        tick = judge(
            certificate,
            None if pinned is None else self.ring(pinned, published),
            now_ms,
            revoked=revoked,
            account_id=account_id,
            phone=phone,
            display_name=display_name,
            device_keys=device_keys,
            identity_changed=identity_changed,
        )
        return {
            "state": str(tick.state),
            "detail": tick.detail,
            "serial": tick.serial,
            "expires_ms": tick.expires_ms,
            "reason": tick.reason,
        }

    # --- templates -----------------------------------------------------------------------------

    def op_render(self, signed: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        """The signed template rendered with ``parameters`` (no signature check)."""
        template = SignedTemplate.from_json(signed)
        body = msgspec.msgpack.decode(template.body, type=SignedTemplateBody)
        try:
            return {"rendered": rendered_json(render(body, parameters))}
        except ParameterMismatch as exc:
            return {"problems": [[p.field, p.problem] for p in exc.problems]}

    def op_check_template(
        self,
        signed: dict[str, Any],
        pinned: str,
        published: list[dict[str, Any]],
        now_ms: int,
        payload: str,
        sender: str,
        template_ref: str | None,
    ) -> dict[str, Any]:
        """§10.5 steps 2 to 5: verify the signed template, then check the message against it."""
        ring = self.ring(pinned, published)
        try:
            template = verify_template(SignedTemplate.from_json(signed), ring, now_ms)
        except CertificateError as exc:
            return {"refused": type(exc).__name__, "reason": str(exc)}
        message = decode_payload(unb64(payload))
        try:
            shown = check_template_message(
                template,
                message,  # type: ignore[arg-type]  # the test sends a template payload
                sender=sender,
                template_ref=template_ref,
            )
        except TemplateRejected as exc:
            return {"rejected": exc.kind, "reason": exc.reason}
        return {"rendered": rendered_json(shown)}

    # --- consent -------------------------------------------------------------------------------

    def op_consent_body(self, nonce: str, **fields: Any) -> dict[str, Any]:
        statement = ConsentStatement(nonce=unb64(nonce), **fields)
        return {"body": b64(msgspec.msgpack.encode(statement))}

    def op_consent_sign(self, device: str, nonce: str, **fields: Any) -> dict[str, Any]:
        identity = self.device(device)
        statement = ConsentStatement(nonce=unb64(nonce), device_ed25519=identity.ed25519, **fields)
        signed = sign_statement(identity, statement)
        return {**signed.to_json(), "ed25519": identity.ed25519}

    def op_consent_verify(self, signed: dict[str, Any], ed25519: str) -> dict[str, Any]:
        try:
            statement = verify_statement(SignedConsent.from_json(signed), ed25519)
        except Exception as exc:  # the test compares the refusal
            return {"refused": type(exc).__name__, "reason": str(exc)}
        fields = msgspec.to_builtins(statement)
        fields["scope"] = str(ConsentScope(fields["scope"]))
        fields["state"] = str(ConsentState(fields["state"]))
        return {"statement": fields}

    # --- attachments and safety numbers --------------------------------------------------------

    def op_seal(self, plaintext: str) -> dict[str, Any]:
        blob, sealed = encrypt_bytes(unb64(plaintext))
        return {
            "blob": b64(blob),
            "key": b64(sealed.key),
            "sha256": b64(sealed.sha256),
            "size": sealed.size,
            "plain_size": sealed.plain_size,
        }

    def op_open(self, blob: str, key: str, sha256: str) -> dict[str, Any]:
        try:
            plaintext = decrypt_bytes(unb64(blob), key=unb64(key), sha256=unb64(sha256))
        except AttachmentError as exc:
            return {"code": exc.code, "reason": str(exc)}
        return {"plaintext": b64(plaintext)}

    def op_identity_keys(self, count: int) -> list[str]:
        return [vodozemac.Account().ed25519_key.to_base64() for _ in range(count)]

    def op_ed25519_valid(self, keys: list[str]) -> list[bool]:
        """Whether vodozemac reads each text as an Ed25519 public key."""
        valid = []
        for key in keys:
            try:
                vodozemac.Ed25519PublicKey.from_base64(key)
            except Exception:  # vodozemac's own exception types
                valid.append(False)
            else:
                valid.append(True)
        return valid

    def op_safety(self, mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
        a = Party(mine["phone"], mine["keys"])
        b = Party(theirs["phone"], theirs["keys"])
        try:
            return {
                "number": safety_number(a, b),
                "mine": fingerprint(a),
                "theirs": fingerprint(b),
            }
        except (ValueError, CryptoError) as exc:
            return {"refused": type(exc).__name__, "reason": str(exc)}

    # --- delivery receipts ---------------------------------------------------------------------

    def op_delivery_verify(
        self, statement: dict[str, Any], signature: str, ed25519: str
    ) -> dict[str, Any]:
        """Whether ``signature`` is the device's over the statement, as the gateway checks a
        receipt (``tresen.crypto.delivery``)."""
        facts = DeliveryFacts(
            message_id=statement["message_id"],
            business=statement["business"],
            customer=statement["customer"],
            device_id=statement["device_id"],
            template_id=statement["template_id"],
            delivered_ms=statement["delivered_ms"],
        )
        body = delivery_message(facts)[len(DELIVERY_PREFIX) :]
        try:
            verify_delivery(facts, crypto_unb64(signature), ed25519)
        except ForgedReceipt:
            return {"valid": False, "body": b64(body)}
        return {"valid": True, "body": b64(body)}

    # --- the key log -------------------------------------------------------------------------

    def log(self) -> KeyLogModel:
        assert self.key_log is not None, "kt_new first"
        return self.key_log

    def op_kt_new(self, key: str) -> dict[str, Any]:
        """A new, empty key log signed with operator key ``key``."""
        self.key_log = KeyLogModel(self.operator(key))
        return {}

    def op_kt_publish(
        self,
        changes: dict[str, list[list[Any]]],
        ms: int,
        certificates: list[list[Any]] | None = None,
    ) -> dict[str, Any]:
        """An epoch that logs each account's new device set (``[[id, curve, ed], ...]``) and
        each certificate (``[[serial, account_id, body], ...]``)."""
        return self.log().publish(changes, ms, certificates)

    def op_kt_certificate(self, serial: int) -> dict[str, Any]:
        return self.log().certificate(serial)

    def op_kt_certificate_leaf(
        self, account_id: str, epoch: int, serial: int, body: str
    ) -> dict[str, Any]:
        """A certificate's leaf and its hash, as the relay writes them."""
        leaf = encode_leaf(certificate_leaf(account_id, epoch, serial, unb64(body)))
        return {"leaf": b64(leaf), "hash": b64(log_leaf_hash(leaf))}

    def op_kt_lookup(self, account_id: str, since: int | None = None) -> dict[str, Any]:
        return self.log().lookup(account_id, since)

    def op_kt_consistency(self, first: int, second: int) -> list[str]:
        return self.log().consistency(first, second)

    def op_kt_rewrite(self, account_id: str, curve25519: str, ms: int) -> dict[str, Any]:
        return self.log().rewrite(account_id, curve25519, ms)

    def op_kt_remove(self, account_id: str, ms: int) -> dict[str, Any]:
        return self.log().remove(account_id, ms)

    def op_kt_save(self, name: str) -> dict[str, Any]:
        """Keep the log as it is now (to fork it: publish, then ``kt_restore``)."""
        self.saved_logs[name] = copy.deepcopy(self.log())
        return {}

    def op_kt_restore(self, name: str) -> dict[str, Any]:
        self.key_log = copy.deepcopy(self.saved_logs[name])
        return {}

    def op_kt_leaf(self, account_id: str, epoch: int, devices: list[list[Any]]) -> dict[str, Any]:
        """A device leaf, its hash and the account's map key, as the relay writes them."""
        entries = sorted((DeviceEntry(*d) for d in devices), key=lambda e: e.device_id)
        leaf = encode_leaf(DevicesLeaf(account_id=account_id, epoch=epoch, devices=entries))
        return {
            "leaf": b64(leaf),
            "hash": b64(log_leaf_hash(leaf)),
            "key": b64(account_key(account_id)),
        }


def certificate_leaf(account_id: str, epoch: int, serial: int, body: bytes) -> CertificateLeaf:
    return CertificateLeaf(
        account_id=account_id, epoch=epoch, serial=serial, digest=hashlib.sha256(body).digest()
    )


def rendered_json(shown: RenderedTemplate) -> dict[str, Any]:
    return {
        "template_id": shown.template_id,
        "name": shown.name,
        "language": shown.language,
        "category": str(shown.category),
        "body": shown.body,
        "header": None
        if shown.header is None
        else {
            "format": str(shown.header.format),
            "text": shown.header.text,
            "media": shown.header.media,
        },
        "footer": shown.footer,
        "buttons": [
            {
                "type": b.type,
                "text": b.text,
                "url": b.url,
                "phone_number": b.phone_number,
                "code": b.code,
                "payload": b.payload,
            }
            for b in shown.buttons
        ],
        "text": shown.text(),
    }


def main() -> None:
    peer = Peer()
    for line in sys.stdin:
        command: dict[str, Any] = json.loads(line)
        try:
            answer = peer.handle(command)
        except Exception as exc:  # the test reads the failure
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
