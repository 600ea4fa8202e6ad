// Ed25519 public keys as text: canonical unpadded base64 (vodozemac's spelling), and whether
// 32 bytes are a point of the curve at all (what vodozemac checks when it reads a key).

import { Base64Error, fromBase64, toBase64 } from "../wire/base64";
import { CryptoError } from "./olm";

export const ED25519_KEY_BYTES = 32;

/** A public key that is not canonical unpadded base64 of a key of the expected kind. */
export class KeyFormatError extends CryptoError {
  override name = "KeyFormatError";
}

/** The raw bytes of an Ed25519 public key in canonical unpadded base64, else null. */
export function ed25519KeyBytes(text: string): Uint8Array | null {
  let raw: Uint8Array;
  try {
    raw = fromBase64(text);
  } catch (error) {
    if (error instanceof Base64Error) return null;
    throw error;
  }
  return raw.length === ED25519_KEY_BYTES && toBase64(raw, false) === text ? raw : null;
}

const P = 2n ** 255n - 19n;
const D = (((-121665n * pow(121666n, P - 2n)) % P) + P) % P;

function pow(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = base % P;
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
  }
  return result;
}

/** Whether 32 bytes decompress to a point of Ed25519, as curve25519-dalek decides it (the
 * library under vodozemac): y is read modulo p without the sign bit, and the point exists when
 * (y² - 1) / (d·y² + 1) is a square. */
export function isEd25519Point(raw: Uint8Array): boolean {
  if (raw.length !== ED25519_KEY_BYTES) return false;
  let y = 0n;
  for (let i = ED25519_KEY_BYTES - 1; i >= 0; i -= 1) y = (y << 8n) | BigInt(raw[i]!);
  y &= (1n << 255n) - 1n;
  const yy = (y * y) % P;
  const u = (yy - 1n + P) % P;
  const v = (D * yy + 1n) % P;
  if (u === 0n) return true;
  const ratio = (u * pow(v, P - 2n)) % P;
  return pow(ratio, (P - 1n) / 2n) === 1n;
}
