// The operator's key ring, certificates, revocation lists and the tick on their own (the cases
// of tests/crypto/test_certificates.py and client/business.py's `judge`), with keys made here.

import { beforeAll, describe, expect, it } from "vitest";
import {
  CERTIFICATE_PREFIX,
  checkBinding,
  currentPublishedKey,
  endorsementMessage,
  ExpiredCertificate,
  ForgedCertificate,
  judgeTick,
  keyFingerprint,
  keyIdOf,
  OperatorKeyRing,
  type PublishedKey,
  publishedKeyFromJson,
  REVOCATIONS_PREFIX,
  RevokedCertificate,
  type SignedDocument,
  StaleRevocationList,
  UnknownOperatorKey,
  verifyCertificate,
  verifyRevocations,
} from "../src/crypto/operator";
import { CryptoError } from "../src/crypto/olm";
import { toBase64 } from "../src/wire/base64";
import { pack } from "../src/wire/msgpack";
import { testKey, type TestKey } from "./support/signing";

const NOW = 1_767_225_600_000;
const DAY = 86_400_000;
const ACCOUNT = "a6a8d2daa6ff17aebf0a720206b257c4";
const DEVICES = ["B".repeat(43), "A".repeat(43)];

let k1: TestKey;
let k2: TestKey;
let k3: TestKey;
beforeAll(async () => {
  [k1, k2, k3] = [await testKey(), await testKey(), await testKey()];
});

async function certificate(key: TestKey, changes: Record<string, unknown> = {}): Promise<SignedDocument> {
  const body = pack({
    v: 1,
    serial: 1,
    account_id: ACCOUNT,
    phone: "+4915112345678",
    display_name: "Bäckerei Müller",
    device_keys: [...DEVICES].sort(),
    issued_ms: NOW,
    expires_ms: NOW + 365 * DAY,
    key_id: await keyIdOf(key.publicKey),
    ...changes,
  });
  return { body, signature: await key.sign(new Uint8Array([...CERTIFICATE_PREFIX, ...body])) };
}

async function revocations(key: TestKey, issuedMs: number, serials: number[]): Promise<SignedDocument> {
  const body = pack({ v: 1, issued_ms: issuedMs, serials, key_id: await keyIdOf(key.publicKey) });
  return { body, signature: await key.sign(new Uint8Array([...REVOCATIONS_PREFIX, ...body])) };
}

async function published(key: TestKey, by: TestKey | null, signsFrom: number, retires: number | null = null): Promise<PublishedKey> {
  const keyId = await keyIdOf(key.publicKey);
  const endorsement = by && (await by.sign(endorsementMessage(keyId, key.publicKey, signsFrom)));
  return { key_id: keyId, public_key: key.publicKey, endorsement, signs_from_ms: signsFrom, retires_ms: retires };
}

describe("operator keys", () => {
  it("are named by 16 hex digits of SHA-256, and shown as the whole digest in groups of four", async () => {
    const raw = new Uint8Array(32).fill(1);
    const digest = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", raw)), (b) => b.toString(16).padStart(2, "0")).join("");
    const key = toBase64(raw, false);
    expect(await keyIdOf(key)).toBe(digest.slice(0, 16));
    expect(await keyFingerprint(key)).toBe(digest.match(/.{4}/g)!.join(" "));
    expect((await keyFingerprint(key)).split(" ")).toHaveLength(16);
  });

  it("form a ring that follows a chain of endorsements", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    const update = await ring.update([await published(k3, k2, NOW + DAY), await published(k2, k1, NOW)]);
    expect(update.added).toEqual([await keyIdOf(k2.publicKey), await keyIdOf(k3.publicKey)]);
    expect(ring.keyIds).toEqual([await keyIdOf(k1.publicKey), await keyIdOf(k2.publicKey), await keyIdOf(k3.publicKey)]);
    expect(await ring.fingerprint()).toBe(await keyFingerprint(k1.publicKey));
  });

  it("ignore a key nobody in the ring endorsed, or one endorsed for other bytes", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    const unendorsed = await published(k2, null, NOW);
    const selfEndorsed = await published(k3, k3, NOW);
    const otherBytes = { ...(await published(k2, k1, NOW)), signs_from_ms: NOW + 1 };
    const update = await ring.update([unendorsed, selfEndorsed, otherBytes]);
    expect(update.added).toEqual([]);
    expect(update.ignored).toEqual([unendorsed.key_id, selfEndorsed.key_id, otherBytes.key_id]);
    expect(ring.has(unendorsed.key_id)).toBe(false);
  });

  it("learn a retirement, which only ever moves earlier; a retired key endorses nothing later", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    const id = await keyIdOf(k1.publicKey);
    expect((await ring.update([await published(k1, null, 0, NOW)])).retired).toEqual([id]);
    expect((await ring.update([await published(k1, null, 0, NOW + DAY)])).retired).toEqual([]);
    expect(ring.retiresMs(id)).toBe(NOW);
    const late = await ring.update([await published(k2, k1, NOW + 1)]);
    expect(late.ignored).toEqual([await keyIdOf(k2.publicKey)]);
    // Another key under a trusted key's id is ignored, not trusted.
    const impostor = { ...(await published(k1, null, 0)), public_key: k2.publicKey };
    expect((await ring.update([impostor])).ignored).toEqual([id]);
  });

  it("keep the ring through its JSON form, and refuse a malformed pinned key", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    await ring.update([await published(k1, null, 0, NOW + DAY), await published(k2, k1, NOW)]);
    const restored = await OperatorKeyRing.fromJson(JSON.parse(JSON.stringify(ring.toJson())));
    expect(restored.keyIds).toEqual(ring.keyIds);
    expect(restored.retiresMs(await keyIdOf(k1.publicKey))).toBe(NOW + DAY);
    for (const bad of [`${k1.publicKey}=`, "AAAA", "not a key", ""]) {
      await expect(OperatorKeyRing.pin(bad)).rejects.toThrow("the pinned operator key is not an Ed25519 key in unpadded base64");
    }
    await expect(OperatorKeyRing.fromJson({ pinned: k1.publicKey, keys: [{}] })).rejects.toThrow("malformed key ring");
  });

  it("come from GET /v1/operator/keys: malformed entries are skipped, the current key can be pinned", async () => {
    const answer = {
      current_key_id: await keyIdOf(k2.publicKey),
      keys: [await published(k1, null, 0, NOW), await published(k2, k1, NOW), { key_id: 5 }, "junk"],
    };
    expect(currentPublishedKey(answer)).toBe(k2.publicKey);
    expect(() => currentPublishedKey({ keys: [] })).toThrow(CryptoError);
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    const update = await ring.follow(answer);
    expect(update.added).toEqual([await keyIdOf(k2.publicKey)]);
    expect(() => publishedKeyFromJson({ key_id: "x" })).toThrow("malformed published operator key");
  });
});

describe("certificates", () => {
  it("verify with the pinned key, until they expire or are revoked", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    const signed = await certificate(k1);
    expect((await verifyCertificate(signed, ring, NOW)).display_name).toBe("Bäckerei Müller");
    await expect(verifyCertificate(signed, ring, NOW + 365 * DAY)).rejects.toThrow(new ExpiredCertificate("certificate 1 expired"));
    await expect(verifyCertificate(signed, ring, NOW, [1])).rejects.toThrow(new RevokedCertificate("certificate 1 was revoked"));
  });

  it("are refused when a byte changed, another key signed, or the bytes are no certificate", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    const signed = await certificate(k1);
    for (let i = 0; i < signed.body.length; i += 7) {
      const body = signed.body.slice();
      body[i]! ^= 1;
      await expect(verifyCertificate({ ...signed, body }, ring, NOW)).rejects.toThrow(CryptoError);
    }
    await expect(verifyCertificate(await certificate(k2), ring, NOW)).rejects.toThrow(UnknownOperatorKey);
    const impostor = await certificate(k2, { key_id: await keyIdOf(k1.publicKey) });
    await expect(verifyCertificate(impostor, ring, NOW)).rejects.toThrow(new ForgedCertificate("the signature of the certificate does not verify"));
    const asRevocations = { ...signed, signature: await k1.sign(new Uint8Array([...REVOCATIONS_PREFIX, ...signed.body])) };
    await expect(verifyCertificate(asRevocations, ring, NOW)).rejects.toThrow(ForgedCertificate);
    const garbage = pack({ key_id: await keyIdOf(k1.publicKey) });
    const signedGarbage = { body: garbage, signature: await k1.sign(new Uint8Array([...CERTIFICATE_PREFIX, ...garbage])) };
    await expect(verifyCertificate(signedGarbage, ring, NOW)).rejects.toThrow("not a certificate: Object missing required field `serial`");
  });

  it("of a rotated-away key stay valid until the key retires", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    await ring.update([await published(k1, null, 0, NOW + DAY), await published(k2, k1, NOW)]);
    const old = await certificate(k1);
    expect((await verifyCertificate(old, ring, NOW + DAY - 1)).serial).toBe(1);
    await expect(verifyCertificate(old, ring, NOW + DAY)).rejects.toThrow(ExpiredCertificate);
    expect((await verifyCertificate(await certificate(k2), ring, NOW + DAY)).serial).toBe(1);
  });

  it("bind exactly what the operator certified", async () => {
    const cert = await verifyCertificate(await certificate(k1), await OperatorKeyRing.pin(k1.publicKey), NOW);
    const seen = { accountId: ACCOUNT, phone: "+4915112345678", displayName: "Bäckerei Müller", deviceKeys: [...DEVICES, DEVICES[0]!] };
    expect(checkBinding(cert, seen)).toBe(true);
    expect(checkBinding(cert, { ...seen, displayName: "Baeckerei Mueller" })).toBe(false);
    expect(checkBinding(cert, { ...seen, phone: "+4915100000000" })).toBe(false);
    expect(checkBinding(cert, { ...seen, accountId: "x" })).toBe(false);
    expect(checkBinding(cert, { ...seen, deviceKeys: [DEVICES[0]!] })).toBe(false);
    expect(checkBinding(cert, { ...seen, deviceKeys: [...DEVICES, "C".repeat(43)] })).toBe(false);
  });
});

describe("revocation lists", () => {
  it("verify when fresh and signed by a current key", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    expect((await verifyRevocations(await revocations(k1, NOW, [3, 7]), ring, NOW + 1000, DAY)).serials).toEqual([3, 7]);
    await expect(verifyRevocations(await revocations(k1, NOW - 2 * DAY, []), ring, NOW, DAY)).rejects.toThrow(
      new StaleRevocationList("revocation list is 172800 s old (at most 86400 s allowed)"),
    );
    await expect(verifyRevocations(await revocations(k2, NOW, []), ring, NOW, DAY)).rejects.toThrow(UnknownOperatorKey);
    await expect(verifyRevocations(await certificate(k1), ring, NOW, DAY)).rejects.toThrow(ForgedCertificate);
  });

  it("signed by a retired key vouch for nothing", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    await ring.update([await published(k1, null, 0, NOW)]);
    await expect(verifyRevocations(await revocations(k1, NOW, []), ring, NOW, DAY)).rejects.toThrow(StaleRevocationList);
  });
});

describe("the tick", () => {
  it("is earned only by a valid certificate that binds what the device sees, checked against a fresh list", async () => {
    const ring = await OperatorKeyRing.pin(k1.publicKey);
    const signed = await certificate(k1, { serial: 42 });
    const json = { body: toBase64(signed.body), signature: signed.signature };
    const seen = { accountId: ACCOUNT, phone: "+4915112345678", displayName: "Bäckerei Müller", deviceKeys: DEVICES, revoked: [] as number[] };
    const verified = await judgeTick(json, ring, NOW, seen);
    expect(verified).toEqual({ state: "verified", detail: "", serial: 42, expires_ms: NOW + 365 * DAY, verified: true, reason: "verified by the operator" });
    expect((await judgeTick(null, ring, NOW, seen)).state).toBe("not_verified");
    expect((await judgeTick(json, null, NOW, seen)).state).toBe("no_operator_key");
    expect((await judgeTick(json, ring, NOW, { ...seen, revoked: null })).state).toBe("no_revocation_list");
    expect((await judgeTick(json, ring, NOW, { ...seen, identityChanged: true })).state).toBe("identity_changed");
    expect((await judgeTick(json, ring, NOW, { ...seen, displayName: "Other" })).state).toBe("changed");
    const revoked = await judgeTick(json, ring, NOW, { ...seen, revoked: [42] });
    expect([revoked.state, revoked.reason]).toEqual(["revoked", "the operator revoked the certificate (certificate 42 was revoked)"]);
    expect((await judgeTick(json, ring, NOW + 366 * DAY, seen)).state).toBe("expired");
    expect((await judgeTick({ ...json, signature: json.signature.replace(/^./, (c) => (c === "A" ? "B" : "A")) }, ring, NOW, seen)).state).toBe("forged");
    expect((await judgeTick("junk", ring, NOW, seen)).state).toBe("forged");
    const stranger = await certificate(k2);
    expect((await judgeTick({ body: toBase64(stranger.body), signature: stranger.signature }, ring, NOW, seen)).state).toBe("unknown_operator_key");
  });
});
