// Key transparency as a client verifies it: the verification half of the Python SDK's
// crypto/transparency.py, byte for byte (docs/protocol.md §14.1).
//
// - The log: an RFC 9162 Merkle tree. Leaf hash SHA-256(0x00 || leaf), inner node
//   SHA-256(0x01 || left || right); a leaf is the msgpack map of a device set
//   (`{type: "devices", v, account_id, epoch, devices: [[id, curve25519, ed25519], ...]}`) or
//   of a business certificate (`{type: "certificate", v, account_id, epoch, serial, digest}`).
// - The map: a compact sparse Merkle tree from SHA-256("tresen-kt-account-v1\0" + account id)
//   to the 8-byte big-endian leaf index || leaf hash of the account's latest device leaf. Map
//   leaf SHA-256(0x02 || key || value), inner node SHA-256(0x03 || left || right), an empty
//   subtree 32 zero bytes.
// - The epoch head: a msgpack map signed by an operator key as "tresen-kt-epoch-v1\0" + body;
//   its hash (same prefix) is what the next head names as `previous`.
//
// Indices and sizes go up to 2^53 here, so the RFC's bit operations are written as arithmetic
// (JavaScript's bit operators stop at 32 bits).

import { Base64Error, fromBase64 } from "../wire/base64";
import { MsgpackError, pack, unpackWith } from "../wire/msgpack";
import { bytes, decodeWith, int, required, SchemaError, str, struct, withDefault } from "../wire/schema";
import { verifyEd25519 } from "./ed25519";
import { concat } from "./olm";
import { CertificateError, type OperatorKeyRing, UnknownOperatorKey } from "./operator";

export const TRANSPARENCY_VERSION = 1;
export const HASH_BYTES = 32;
export const EMPTY = new Uint8Array(HASH_BYTES);
const encoder = new TextEncoder();
export const EPOCH_PREFIX = encoder.encode("tresen-kt-epoch-v1\0");
const ACCOUNT_PREFIX = encoder.encode("tresen-kt-account-v1\0");
/** No honest proof has more hashes: 64 for the log (2^64 leaves), 257 for the map. */
export const MAX_PROOF_HASHES = 600;

/** A proof, leaf or epoch head that does not verify: the log is not what it claims. */
export class ProofError extends CertificateError {
  override name = "ProofError";
}

async function sha256(...parts: Uint8Array[]): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts) as BufferSource));
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

// --- leaves and hashes -------------------------------------------------------------------------

/** One device of a device set: its id and identity keys (unpadded base64, as listed). */
export interface DeviceEntry {
  device_id: number;
  curve25519: string;
  ed25519: string;
}

/** The log leaf of an account's device set as of `epoch` (devices sorted by id here). */
export function encodeDevicesLeaf(accountId: string, epoch: number, devices: readonly DeviceEntry[]): Uint8Array {
  const sorted = [...devices].sort((a, b) => a.device_id - b.device_id);
  return pack({
    type: "devices",
    v: TRANSPARENCY_VERSION,
    account_id: accountId,
    epoch,
    devices: sorted.map((d) => [d.device_id, d.curve25519, d.ed25519]),
  });
}

/** The log leaf of business certificate `serial`, issued to `accountId` and logged in
 * `epoch`: `digest` is the SHA-256 of the certificate's signed body. */
export function encodeCertificateLeaf(accountId: string, epoch: number, serial: number, digest: Uint8Array): Uint8Array {
  return pack({ type: "certificate", v: TRANSPARENCY_VERSION, account_id: accountId, epoch, serial, digest });
}

/** What a certificate leaf names: the SHA-256 of the certificate's signed body. */
export function certificateDigest(body: Uint8Array): Promise<Uint8Array> {
  return sha256(body);
}

/** Where an account sits in the map. */
export function accountKey(accountId: string): Promise<Uint8Array> {
  return sha256(ACCOUNT_PREFIX, encoder.encode(accountId));
}

export function logLeafHash(leaf: Uint8Array): Promise<Uint8Array> {
  return sha256(Uint8Array.of(0), leaf);
}

export function logNodeHash(left: Uint8Array, right: Uint8Array): Promise<Uint8Array> {
  return sha256(Uint8Array.of(1), left, right);
}

export function mapLeafHash(key: Uint8Array, value: Uint8Array): Promise<Uint8Array> {
  return sha256(Uint8Array.of(2), key, value);
}

export function mapNodeHash(left: Uint8Array, right: Uint8Array): Promise<Uint8Array> {
  return sha256(Uint8Array.of(3), left, right);
}

/** What the map holds for an account: where its latest device leaf is, and its hash. */
export function mapValue(leafIndex: number, leafHash: Uint8Array): Uint8Array {
  const index = new Uint8Array(8);
  new DataView(index.buffer).setBigUint64(0, BigInt(leafIndex));
  return concat(index, leafHash);
}

// --- epoch heads -------------------------------------------------------------------------------

/** What the operator signs for each epoch. */
export interface EpochHead {
  v: number;
  epoch: number;
  tree_size: number;
  log_root: Uint8Array;
  map_root: Uint8Array;
  /** The head hash of the previous epoch's body (32 zero bytes for epoch 0). */
  previous: Uint8Array;
  published_ms: number;
  key_id: string;
}

/** A head's exact bytes and the operator's signature (base64) over the prefixed bytes. */
export interface SignedEpoch {
  body: Uint8Array;
  signature: string;
}

const headSchema = struct<EpochHead>({
  forbidUnknown: true,
  fields: [
    withDefault("v", int(), () => TRANSPARENCY_VERSION),
    required("epoch", int()),
    required("tree_size", int()),
    required("log_root", bytes()),
    required("map_root", bytes()),
    required("previous", bytes()),
    required("published_ms", int()),
    required("key_id", str()),
  ],
});

export function headHash(body: Uint8Array): Promise<Uint8Array> {
  return sha256(EPOCH_PREFIX, body);
}

/** The head in `body`, decoded strictly; no signature check (see verifyEpoch). */
export function decodeHead(body: Uint8Array): EpochHead {
  let head: EpochHead;
  try {
    head = unpackWith(body, (value) => decodeWith(headSchema, value));
  } catch (error) {
    if (error instanceof SchemaError || error instanceof MsgpackError) throw new ProofError(`not an epoch head: ${error.message}`);
    throw error;
  }
  if (head.v !== TRANSPARENCY_VERSION) throw new ProofError(`unsupported epoch head version ${head.v}`);
  if (head.log_root.length !== HASH_BYTES || head.map_root.length !== HASH_BYTES) {
    throw new ProofError("an epoch head's roots are 32 bytes");
  }
  if (head.previous.length !== HASH_BYTES || head.epoch < 0 || head.tree_size < 0) throw new ProofError("malformed epoch head");
  return head;
}

/** The head, if a key of `ring` signed exactly these bytes. Throws `UnknownOperatorKey`
 * (refresh the ring and try again) or `ProofError`. A retired key still verifies the heads
 * it signed: heads are history. */
export async function verifyEpoch(signed: SignedEpoch, ring: OperatorKeyRing): Promise<EpochHead> {
  const head = decodeHead(signed.body);
  if (!ring.has(head.key_id)) {
    throw new UnknownOperatorKey(`epoch ${head.epoch} is signed by operator key ${head.key_id}, which this client does not trust`);
  }
  const good = await verifyEd25519(ring.publicKey(head.key_id), concat(EPOCH_PREFIX, signed.body), signed.signature);
  if (!good) throw new ProofError(`the operator's signature on epoch ${head.epoch} does not verify`);
  return head;
}

/** The signed head in an epoch's JSON (`{body, signature, ...}`); the fields beside them are
 * never read: verifiers decode the signed body. */
export function signedEpochFromJson(data: unknown): SignedEpoch {
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw new ProofError("an epoch is an object");
  const { body, signature } = data as Record<string, unknown>;
  if (typeof body !== "string" || typeof signature !== "string") throw new ProofError("an epoch needs body and signature");
  try {
    return { body: fromBase64(body), signature };
  } catch (error) {
    if (error instanceof Base64Error) throw new ProofError("an epoch's body is not base64");
    throw error;
  }
}

// --- the log (RFC 9162) ------------------------------------------------------------------------

const odd = (n: number): boolean => n % 2 === 1;
const half = (n: number): number => Math.floor(n / 2);

function powerOfTwo(n: number): boolean {
  let m = n;
  while (m > 1 && !odd(m)) m = half(m);
  return m === 1;
}

function validCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** RFC 9162 §2.1.3.2: leaf `index` of a tree of `size` leaves, under `root`. */
export async function verifyInclusion(
  leafHash: Uint8Array,
  index: number,
  size: number,
  path: readonly Uint8Array[],
  root: Uint8Array,
): Promise<boolean> {
  if (!validCount(index) || !validCount(size) || index >= size || path.length > 64) return false;
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of path) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      r = await logNodeHash(p, r);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = await logNodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && equalBytes(r, root);
}

/** RFC 9162 §2.1.4.2: the tree of `first` leaves is a prefix of the tree of `second` leaves.
 * An empty first tree is consistent with any tree. */
export async function verifyConsistency(
  first: number,
  second: number,
  proof: readonly Uint8Array[],
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
): Promise<boolean> {
  if (!validCount(first) || !validCount(second) || first > second || proof.length > 128) return false;
  if (first === 0) return proof.length === 0;
  if (first === second) return proof.length === 0 && equalBytes(firstRoot, secondRoot);
  const path = [...proof];
  // A power of two: the first tree is a whole subtree, its root the proof's first hash.
  if (powerOfTwo(first)) path.unshift(firstRoot);
  if (path.length === 0) return false;
  let fn = first - 1;
  let sn = second - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = await logNodeHash(c, fr);
      sr = await logNodeHash(c, sr);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = await logNodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && equalBytes(fr, firstRoot) && equalBytes(sr, secondRoot);
}

// --- the map (compact sparse Merkle tree) ------------------------------------------------------

/** The siblings along a key's path from the root (top first) and where the path ends: at a
 * leaf (`leaf_key`, `leaf_value`) or at an empty subtree (both null). */
export interface MapProof {
  siblings: Uint8Array[];
  leaf_key: Uint8Array | null;
  leaf_value: Uint8Array | null;
}

function bit(key: Uint8Array, depth: number): number {
  return (key[depth >> 3]! >> (7 - (depth & 7))) & 1;
}

/** Whether `a` and `b` share their first `depth` bits. */
function samePrefix(a: Uint8Array, b: Uint8Array, depth: number): boolean {
  const whole = depth >> 3;
  for (let i = 0; i < whole; i += 1) if (a[i] !== b[i]) return false;
  const rest = depth & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[whole]! & mask) === (b[whole]! & mask);
}

/** The value the map with `root` holds for `key` (null: none), or `ProofError`. */
export async function verifyMapProof(key: Uint8Array, proof: MapProof, root: Uint8Array): Promise<Uint8Array | null> {
  const depth = proof.siblings.length;
  if (depth > 8 * HASH_BYTES || proof.siblings.some((s) => s.length !== HASH_BYTES)) throw new ProofError("malformed map proof");
  let h: Uint8Array;
  if (proof.leaf_key === null) {
    if (proof.leaf_value !== null) throw new ProofError("malformed map proof");
    h = EMPTY;
  } else {
    if (proof.leaf_key.length !== HASH_BYTES || proof.leaf_value === null) throw new ProofError("malformed map proof");
    if (!samePrefix(proof.leaf_key, key, depth)) throw new ProofError("the map proof ends at a leaf off the key's path");
    h = await mapLeafHash(proof.leaf_key, proof.leaf_value);
  }
  for (let d = depth - 1; d >= 0; d -= 1) {
    const sibling = proof.siblings[d]!;
    h = bit(key, d) ? await mapNodeHash(sibling, h) : await mapNodeHash(h, sibling);
  }
  if (!equalBytes(h, root)) throw new ProofError("the map proof does not lead to the signed map root");
  return proof.leaf_key !== null && equalBytes(proof.leaf_key, key) ? proof.leaf_value : null;
}

/** Hashes from their base64 texts (`ProofError` if one is not 32 bytes of base64). */
export function hashesOf(texts: unknown): Uint8Array[] {
  if (!Array.isArray(texts)) throw new ProofError("a proof is a list of hashes");
  if (texts.length > MAX_PROOF_HASHES) throw new ProofError("a proof with too many hashes");
  return texts.map((text) => {
    const raw = typeof text === "string" ? base64OrNull(text) : null;
    if (!raw || raw.length !== HASH_BYTES) throw new ProofError("a proof hash is not 32 bytes of base64");
    return raw;
  });
}

function base64OrNull(text: string): Uint8Array | null {
  try {
    return fromBase64(text);
  } catch (error) {
    if (error instanceof Base64Error) return null;
    throw error;
  }
}

/** A map proof as the relay sends it in JSON. */
export function mapProofFromJson(data: unknown): MapProof {
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw new ProofError("malformed map proof");
  const { siblings, leaf_key: leafKey, leaf_value: leafValue } = data as Record<string, unknown>;
  if (!Array.isArray(siblings)) throw new ProofError("malformed map proof");
  const optional = (value: unknown): Uint8Array | null => {
    if (value === null || value === undefined) return null;
    const raw = typeof value === "string" ? base64OrNull(value) : null;
    if (!raw) throw new ProofError("malformed map proof");
    return raw;
  };
  return { siblings: hashesOf(siblings), leaf_key: optional(leafKey), leaf_value: optional(leafValue) };
}
