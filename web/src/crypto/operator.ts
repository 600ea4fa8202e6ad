// The operator's keys as this device trusts them, and what they vouch for: verified-business
// certificates and the revocation list (docs/protocol.md §9.3), checked offline. The
// verification side of the Python SDK's crypto/certificates.py, and the tick decision of
// client/business.py (`judge`).
//
// Byte formats (all texts UTF-8, numbers decimal ASCII):
// - key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key; the
//   fingerprint shown to people is the whole SHA-256 in hex, in groups of four;
// - certificate: `tresen-cert-v1\0` + the msgpack map of BusinessCertificate;
// - revocation list: `tresen-revocations-v1\0` + the msgpack map of RevocationList;
// - endorsement (rotation): the previous key signs `tresen-operator-key-v1\0` + key_id + `\0`
//   + public_key (its base64 text) + `\0` + signs_from_ms.
//
// The ring starts from one pinned key and only grows by keys that a key already in it
// endorsed. A certificate is valid while now < expires_ms and its signing key has not retired.

import { Base64Error, fromBase64 } from "../wire/base64";
import { MsgpackError, unpackWith } from "../wire/msgpack";
import { array, decodeWith, int, required, SchemaError, str, struct } from "../wire/schema";
import { verifyEd25519 } from "./ed25519";
import { ED25519_KEY_BYTES, ed25519KeyBytes } from "./keys";
import { concat, CryptoError } from "./olm";

export const CERTIFICATE_VERSION = 1;
const encoder = new TextEncoder();
export const CERTIFICATE_PREFIX = encoder.encode("tresen-cert-v1\0");
export const REVOCATIONS_PREFIX = encoder.encode("tresen-revocations-v1\0");
export const ENDORSEMENT_PREFIX = encoder.encode("tresen-operator-key-v1\0");
/** How old a revocation list may be and still count (the Python client's default). */
export const REVOCATIONS_MAX_AGE_S = 86_400;


/** A certificate or revocation list that must not be trusted. */
export class CertificateError extends CryptoError {
  override name = "CertificateError";
}
/** Signed by a key that is not in the ring (not pinned, not endorsed): refresh and retry. */
export class UnknownOperatorKey extends CertificateError {
  override name = "UnknownOperatorKey";
}
/** The signature does not verify, or the signed bytes are not a certificate. */
export class ForgedCertificate extends CertificateError {
  override name = "ForgedCertificate";
}
/** Past its expiry, or its signing key has retired. */
export class ExpiredCertificate extends CertificateError {
  override name = "ExpiredCertificate";
}
/** Its serial is on the revocation list. */
export class RevokedCertificate extends CertificateError {
  override name = "RevokedCertificate";
}
/** A revocation list too old to rely on, or signed by a retired key. */
export class StaleRevocationList extends CertificateError {
  override name = "StaleRevocationList";
}

// --- keys ------------------------------------------------------------------------------------

/** Standard base64 with optional padding and exactly `size` bytes (Python's `unb64`). */
function base64Bytes(text: string, size: number): Uint8Array | null {
  try {
    const raw = fromBase64(text);
    return raw.length === size ? raw : null;
  } catch (error) {
    if (error instanceof Base64Error) return null;
    throw error;
  }
}

async function sha256Hex(raw: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", raw as BufferSource));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function rawKey(publicKey: string): Uint8Array {
  const raw = base64Bytes(publicKey, ED25519_KEY_BYTES);
  if (!raw) throw new CertificateError("not an Ed25519 public key in base64");
  return raw;
}

/** The key id of an operator public key: 16 hex digits of SHA-256. */
export async function keyIdOf(publicKey: string): Promise<string> {
  return (await sha256Hex(rawKey(publicKey))).slice(0, 16);
}

/** The whole SHA-256 of the raw public key in hex, in groups of four, for people. */
export async function keyFingerprint(publicKey: string): Promise<string> {
  const digest = await sha256Hex(rawKey(publicKey));
  return digest.match(/.{1,4}/g)!.join(" ");
}

/** What the previous operator key signs to hand over to a new one. */
export function endorsementMessage(keyId: string, publicKey: string, signsFromMs: number): Uint8Array {
  return concat(
    ENDORSEMENT_PREFIX,
    encoder.encode(keyId),
    new Uint8Array([0]),
    encoder.encode(publicKey),
    new Uint8Array([0]),
    encoder.encode(String(signsFromMs)),
  );
}

// --- signed structures -----------------------------------------------------------------------

/** What the operator vouches for (msgpack map in this field order). */
export interface BusinessCertificate {
  v: number;
  serial: number;
  account_id: string;
  phone: string;
  display_name: string;
  /** Ed25519 identity keys of the business's devices, sorted, unpadded base64. */
  device_keys: string[];
  issued_ms: number;
  expires_ms: number;
  key_id: string;
}

/** Serials of revoked certificates that have not expired yet, as of `issued_ms`. */
export interface RevocationList {
  v: number;
  issued_ms: number;
  serials: number[];
  key_id: string;
}

/** A document's exact bytes and the operator's signature (unpadded base64) over them. */
export interface SignedDocument {
  body: Uint8Array;
  signature: string;
}

const certificateSchema = struct<BusinessCertificate>({
  forbidUnknown: true,
  fields: [
    { name: "v", schema: int(), default: () => CERTIFICATE_VERSION },
    required("serial", int()),
    required("account_id", str()),
    required("phone", str()),
    required("display_name", str()),
    required("device_keys", array(str())),
    required("issued_ms", int()),
    required("expires_ms", int()),
    required("key_id", str()),
  ],
});

const revocationsSchema = struct<RevocationList>({
  forbidUnknown: true,
  fields: [
    { name: "v", schema: int(), default: () => CERTIFICATE_VERSION },
    required("issued_ms", int()),
    required("serials", array(int())),
    required("key_id", str()),
  ],
});

// Read before the signature is checked, only to choose the key to check it with.
const keyIdOnly = struct<{ key_id: string }>({ fields: [required("key_id", str())] });

function strictly<T>(decode: () => T, refuse: (reason: string) => never): T {
  try {
    return decode();
  } catch (error) {
    if (error instanceof SchemaError || error instanceof MsgpackError) refuse(error.message);
    throw error;
  }
}

/** The certificate in `body`, decoded strictly; no signature check (see verifyCertificate). */
export function decodeCertificate(body: Uint8Array): BusinessCertificate {
  const cert = strictly(
    () => unpackWith(body, (value) => decodeWith(certificateSchema, value)),
    (reason) => {
      throw new ForgedCertificate(`not a certificate: ${reason}`);
    },
  );
  if (cert.v !== CERTIFICATE_VERSION) throw new ForgedCertificate(`unsupported certificate version ${cert.v}`);
  return cert;
}

function parseSignedJson(data: unknown, what: string): SignedDocument {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new ForgedCertificate(`${what} must be an object with body and signature`);
  }
  const { body, signature } = data as Record<string, unknown>;
  if (typeof body !== "string" || typeof signature !== "string") {
    throw new ForgedCertificate(`${what} needs body and signature as strings`);
  }
  try {
    return { body: fromBase64(body), signature };
  } catch (error) {
    if (error instanceof Base64Error) throw new ForgedCertificate(`${what} body is not base64`);
    throw error;
  }
}

/** A certificate as the relay serves it: `{"body": base64, "signature": unpadded base64}`. */
export function certificateFromJson(data: unknown): SignedDocument {
  return parseSignedJson(data, "certificate");
}

/** The revocation list as `GET /v1/certificates/revoked` serves it. */
export function revocationsFromJson(data: unknown): SignedDocument {
  return parseSignedJson(data, "revocation list");
}

// --- the ring --------------------------------------------------------------------------------

/** An operator public key as the relay publishes it (`GET /v1/operator/keys`). */
export interface PublishedKey {
  key_id: string;
  public_key: string;
  /** The previous key's signature (none for the first key). */
  endorsement: string | null;
  signs_from_ms: number;
  /** Set once a newer key took over: its certificates are valid until then. */
  retires_ms: number | null;
}

function jsonInteger(value: unknown): number {
  if (typeof value === "number" && Number.isFinite(value)) return Math.trunc(value);
  if (typeof value === "string" && /^\s*[-+]?\d+\s*$/.test(value)) return Number.parseInt(value, 10);
  throw new CertificateError("malformed published operator key");
}

function jsonText(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  throw new CertificateError("malformed published operator key");
}

/** One entry of `GET /v1/operator/keys`; throws `CertificateError` for a malformed one. */
export function publishedKeyFromJson(data: unknown): PublishedKey {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new CertificateError("malformed published operator key");
  }
  const entry = data as Record<string, unknown>;
  const endorsement = entry["endorsement"];
  const retires = entry["retires_ms"];
  return {
    key_id: jsonText(entry["key_id"]),
    public_key: jsonText(entry["public_key"]),
    endorsement: endorsement === null || endorsement === undefined ? null : jsonText(endorsement),
    signs_from_ms: jsonInteger(entry["signs_from_ms"]),
    retires_ms: retires === null || retires === undefined ? null : jsonInteger(retires),
  };
}

/** What `OperatorKeyRing.update` did: keys added (endorsed), retirements learned, and keys
 * ignored because no trusted key endorsed them (or they contradict a trusted key). */
export interface RingUpdate {
  added: string[];
  retired: string[];
  ignored: string[];
}

interface TrustedKey {
  keyId: string;
  publicKey: string;
  signsFromMs: number;
  retiresMs: number | null;
}

/** The operator keys this device trusts: one pinned key and the keys it endorsed, in turn.
 * A retirement time, once learned, only moves earlier, so a relay cannot extend the life of
 * a rotated-away key later. */
export class OperatorKeyRing {
  private constructor(
    private readonly keys: Map<string, TrustedKey>,
    readonly pinnedKeyId: string,
  ) {}

  /** A ring of the one key pinned (from configuration, or trusted on first use after its
   * fingerprint was shown). */
  static async pin(pinnedPublicKey: string): Promise<OperatorKeyRing> {
    if (!ed25519KeyBytes(pinnedPublicKey)) {
      throw new CertificateError("the pinned operator key is not an Ed25519 key in unpadded base64");
    }
    const keyId = await keyIdOf(pinnedPublicKey);
    const keys = new Map([[keyId, { keyId, publicKey: pinnedPublicKey, signsFromMs: 0, retiresMs: null }]]);
    return new OperatorKeyRing(keys, keyId);
  }

  has(keyId: string): boolean {
    return this.keys.has(keyId);
  }

  /** The trusted key ids, oldest first. */
  get keyIds(): string[] {
    return [...this.keys.values()]
      .sort((a, b) => a.signsFromMs - b.signsFromMs || (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0))
      .map((k) => k.keyId);
  }

  private key(keyId: string): TrustedKey {
    const key = this.keys.get(keyId);
    if (!key) throw new UnknownOperatorKey(`operator key ${keyId} is not in the ring`);
    return key;
  }

  publicKey(keyId: string): string {
    return this.key(keyId).publicKey;
  }

  retiresMs(keyId: string): number | null {
    return this.key(keyId).retiresMs;
  }

  /** The fingerprint of a key of the ring (the pinned one by default). */
  fingerprint(keyId?: string): Promise<string> {
    return keyFingerprint(this.key(keyId ?? this.pinnedKeyId).publicKey);
  }

  /** Take in the relay's published keys: a key joins only if a key of the ring endorsed it. */
  async update(published: Iterable<PublishedKey>): Promise<RingUpdate> {
    const result: RingUpdate = { added: [], retired: [], ignored: [] };
    const pending = [...published];
    let progress = true;
    while (progress) {
      progress = false;
      for (const key of [...pending]) {
        const known = this.keys.get(key.key_id);
        if (known) {
          pending.splice(pending.indexOf(key), 1);
          if (known.publicKey !== key.public_key) result.ignored.push(key.key_id);
          else if (learnRetirement(known, key.retires_ms)) result.retired.push(key.key_id);
          continue;
        }
        const trusted = await this.endorsed(key);
        if (trusted) {
          this.keys.set(key.key_id, trusted);
          pending.splice(pending.indexOf(key), 1);
          result.added.push(key.key_id);
          progress = true; // it may endorse others in the list
        }
      }
    }
    result.ignored.push(...pending.map((k) => k.key_id));
    return result;
  }

  /** Follow the rotations in a `GET /v1/operator/keys` answer (malformed entries skipped). */
  follow(answer: unknown): Promise<RingUpdate> {
    const entries = answer !== null && typeof answer === "object" ? (answer as Record<string, unknown>)["keys"] : undefined;
    const keys: PublishedKey[] = [];
    for (const entry of Array.isArray(entries) ? entries : []) {
      try {
        keys.push(publishedKeyFromJson(entry));
      } catch (error) {
        if (!(error instanceof CertificateError)) throw error;
      }
    }
    return this.update(keys);
  }

  private async endorsed(key: PublishedKey): Promise<TrustedKey | null> {
    if (key.endorsement === null) return null;
    if (!ed25519KeyBytes(key.public_key) || (await keyIdOf(key.public_key)) !== key.key_id) return null;
    const message = endorsementMessage(key.key_id, key.public_key, key.signs_from_ms);
    for (const endorser of this.keys.values()) {
      // A key hands over while it still signs, never after its own retirement.
      if (endorser.retiresMs !== null && key.signs_from_ms > endorser.retiresMs) continue;
      if (await verifyEd25519(endorser.publicKey, message, key.endorsement)) {
        return { keyId: key.key_id, publicKey: key.public_key, signsFromMs: key.signs_from_ms, retiresMs: key.retires_ms };
      }
    }
    return null;
  }

  /** The key the body's `key_id` names, if it signed `prefix + body` with `signature`
   * (for verifyCertificate and verifyRevocations; throws UnknownOperatorKey or
   * ForgedCertificate). */
  async signer(body: Uint8Array, signature: string, prefix: Uint8Array, what: string): Promise<TrustedKey> {
    const { key_id: keyId } = strictly(
      () => unpackWith(body, (value) => decodeWith(keyIdOnly, value)),
      () => {
        throw new ForgedCertificate(`${what} is not readable`);
      },
    );
    const key = this.keys.get(keyId);
    if (!key) {
      throw new UnknownOperatorKey(`${what} is signed by operator key ${keyId}, which this client does not trust`);
    }
    if (!(await verifyEd25519(key.publicKey, concat(prefix, body), signature))) {
      throw new ForgedCertificate(`the signature of the ${what} does not verify`);
    }
    return key;
  }

  /** The ring for the device's store (the Python client's JSON shape); `fromJson` restores it. */
  toJson(): { pinned: string; keys: { public_key: string; signs_from_ms: number; retires_ms: number | null }[] } {
    return {
      pinned: this.key(this.pinnedKeyId).publicKey,
      keys: [...this.keys.values()].map((k) => ({
        public_key: k.publicKey,
        signs_from_ms: k.signsFromMs,
        retires_ms: k.retiresMs,
      })),
    };
  }

  /** The ring as `toJson` saved it: the device's own (sealed) state, trusted as saved. */
  static async fromJson(data: unknown): Promise<OperatorKeyRing> {
    const malformed = () => new CertificateError("malformed key ring");
    if (data === null || typeof data !== "object") throw malformed();
    const { pinned, keys } = data as Record<string, unknown>;
    if (typeof pinned !== "string" || !Array.isArray(keys)) throw malformed();
    const ring = await OperatorKeyRing.pin(pinned);
    for (const entry of keys as unknown[]) {
      if (entry === null || typeof entry !== "object") throw malformed();
      const { public_key: publicKey, signs_from_ms: signsFrom, retires_ms: retires } = entry as Record<string, unknown>;
      if (typeof publicKey !== "string" || !ed25519KeyBytes(publicKey)) throw malformed();
      if (typeof signsFrom !== "number" || !Number.isInteger(signsFrom)) throw malformed();
      if (retires !== null && retires !== undefined && (typeof retires !== "number" || !Number.isInteger(retires))) {
        throw malformed();
      }
      const keyId = await keyIdOf(publicKey);
      ring.keys.set(keyId, { keyId, publicKey, signsFromMs: signsFrom, retiresMs: retires ?? null });
    }
    return ring;
  }
}

function learnRetirement(key: TrustedKey, retiresMs: number | null): boolean {
  if (retiresMs === null || (key.retiresMs !== null && key.retiresMs <= retiresMs)) return false;
  key.retiresMs = retiresMs;
  return true;
}

/** The public key of the key a `GET /v1/operator/keys` answer names as current: what a device
 * pins on first use (after showing its fingerprint) when none is configured. */
export function currentPublishedKey(answer: unknown): string {
  const data = answer !== null && typeof answer === "object" ? (answer as Record<string, unknown>) : {};
  const keys = Array.isArray(data["keys"]) ? (data["keys"] as unknown[]) : [];
  for (const entry of keys) {
    const key = entry !== null && typeof entry === "object" ? (entry as Record<string, unknown>) : {};
    if (key["key_id"] === data["current_key_id"] && typeof key["public_key"] === "string") return key["public_key"];
  }
  throw new CertificateError("the relay names no current operator key");
}

// --- verification ----------------------------------------------------------------------------

/** The certificate, if the operator signed it and it is valid at `nowMs`. `revoked`: the
 * serials of a revocation list checked with verifyRevocations. Throws UnknownOperatorKey,
 * ForgedCertificate, ExpiredCertificate or RevokedCertificate. */
export async function verifyCertificate(
  signed: SignedDocument,
  ring: OperatorKeyRing,
  nowMs: number,
  revoked: Iterable<number> = [],
): Promise<BusinessCertificate> {
  const key = await ring.signer(signed.body, signed.signature, CERTIFICATE_PREFIX, "certificate");
  const cert = decodeCertificate(signed.body);
  if (nowMs >= cert.expires_ms) throw new ExpiredCertificate(`certificate ${cert.serial} expired`);
  if (key.retiresMs !== null && nowMs >= key.retiresMs) {
    throw new ExpiredCertificate(`certificate ${cert.serial} is signed by operator key ${key.keyId}, which retired`);
  }
  if (new Set(revoked).has(cert.serial)) throw new RevokedCertificate(`certificate ${cert.serial} was revoked`);
  return cert;
}

/** The revocation list, if the operator signed it with a current key within `maxAgeMs`. A
 * stale one (StaleRevocationList) leaves the device unable to tell what was revoked since. */
export async function verifyRevocations(
  signed: SignedDocument,
  ring: OperatorKeyRing,
  nowMs: number,
  maxAgeMs: number,
): Promise<RevocationList> {
  const key = await ring.signer(signed.body, signed.signature, REVOCATIONS_PREFIX, "revocation list");
  const listing = strictly(
    () => unpackWith(signed.body, (value) => decodeWith(revocationsSchema, value)),
    (reason) => {
      throw new ForgedCertificate(`not a revocation list: ${reason}`);
    },
  );
  if (listing.v !== CERTIFICATE_VERSION) {
    throw new ForgedCertificate(`unsupported revocation list version ${listing.v}`);
  }
  if (key.retiresMs !== null && nowMs >= key.retiresMs) {
    // A retired (perhaps leaked) key must not be able to vouch that nothing is revoked.
    throw new StaleRevocationList(`revocation list signed by retired key ${key.keyId}`);
  }
  if (nowMs - listing.issued_ms > maxAgeMs) {
    throw new StaleRevocationList(
      `revocation list is ${Math.floor((nowMs - listing.issued_ms) / 1000)} s old ` +
        `(at most ${Math.floor(maxAgeMs / 1000)} s allowed)`,
    );
  }
  return listing;
}

export interface Binding {
  accountId: string;
  phone: string;
  displayName: string;
  /** The Ed25519 identity keys of the business's devices as this device sees them now. */
  deviceKeys: Iterable<string>;
}

function sortedDistinct(values: Iterable<string>): string[] {
  return [...new Set(values)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Whether a valid certificate vouches for the business as the device sees it now: a changed
 * name, number or device key means no tick until the operator certifies the new state. */
export function checkBinding(cert: BusinessCertificate, binding: Binding): boolean {
  const keys = sortedDistinct(binding.deviceKeys);
  return (
    cert.account_id === binding.accountId &&
    cert.phone === binding.phone &&
    cert.display_name === binding.displayName &&
    cert.device_keys.length === keys.length &&
    cert.device_keys.every((key, i) => key === keys[i])
  );
}

// --- the tick --------------------------------------------------------------------------------

export type TickState =
  | "verified"
  | "not_verified"
  | "no_operator_key"
  | "unknown_operator_key"
  | "forged"
  | "expired"
  | "revoked"
  | "no_revocation_list"
  | "changed"
  | "identity_changed"
  | "not_logged";

export const TICK_REASONS: Readonly<Record<TickState, string>> = {
  verified: "verified by the operator",
  not_verified: "not verified by the operator",
  no_operator_key: "no operator key is pinned on this device",
  unknown_operator_key: "the certificate is signed by a key this device does not trust",
  forged: "the certificate's signature does not verify",
  expired: "the certificate has expired",
  revoked: "the operator revoked the certificate",
  no_revocation_list: "no fresh revocation list could be checked",
  changed: "the name, number or devices changed since the operator verified it",
  identity_changed: "its identity keys changed; compare safety numbers first",
  not_logged: "the certificate is not in the operator's public key log",
};

/** No tick for a certificate that passed every other check but is not in the key log (a
 * certificate shown to this device only). */
export function notLogged(verified: Tick, detail: string): Tick {
  return tick("not_logged", detail, verified.serial);
}

/** Whether to show the verified tick, and why (not). */
export interface Tick {
  state: TickState;
  detail: string;
  serial: number | null;
  expires_ms: number | null;
  verified: boolean;
  /** The reason in words, with the detail in parentheses. */
  reason: string;
}

function tick(state: TickState, detail = "", serial: number | null = null, expiresMs: number | null = null): Tick {
  const base = TICK_REASONS[state];
  return {
    state,
    detail,
    serial,
    expires_ms: expiresMs,
    verified: state === "verified",
    reason: detail ? `${base} (${detail})` : base,
  };
}

function failureState(error: CertificateError): TickState {
  if (error instanceof UnknownOperatorKey) return "unknown_operator_key";
  if (error instanceof ExpiredCertificate) return "expired";
  if (error instanceof RevokedCertificate) return "revoked";
  return "forged";
}

/** The tick for a business as this device sees it now (the Python client's `judge`).
 *
 * `certificate` is the signed certificate as the relay serves it (null: the business has
 * none); `revoked` the serials of a revocation list already checked with verifyRevocations,
 * or null when no fresh list could be had; `identityChanged` whether the business's identity
 * keys changed since this device trusted them. */
export async function judgeTick(
  certificate: unknown,
  ring: OperatorKeyRing | null,
  nowMs: number,
  seen: Binding & { revoked: Iterable<number> | null; identityChanged?: boolean },
): Promise<Tick> {
  if (certificate === null || certificate === undefined) return tick("not_verified");
  if (!ring) return tick("no_operator_key");
  let cert: BusinessCertificate;
  try {
    cert = await verifyCertificate(certificateFromJson(certificate), ring, nowMs, seen.revoked ?? []);
  } catch (error) {
    if (error instanceof CertificateError) return tick(failureState(error), error.message);
    throw error;
  }
  if (seen.revoked === null) return tick("no_revocation_list", "", cert.serial);
  if (seen.identityChanged) return tick("identity_changed", "", cert.serial);
  if (!checkBinding(cert, seen)) return tick("changed", "", cert.serial);
  return tick("verified", "", cert.serial, cert.expires_ms);
}

/** The operator key a certificate names, unchecked (to fetch a key rotated in since). */
export function certificateKeyId(certificate: unknown): string | null {
  if (certificate === null || certificate === undefined) return null;
  try {
    return decodeCertificate(certificateFromJson(certificate).body).key_id;
  } catch (error) {
    if (error instanceof CertificateError) return null;
    throw error;
  }
}
