// Safety numbers (docs/protocol.md §8.4): a fingerprint of two accounts' identity keys that two
// people compare out of band. Signal's numeric fingerprint over all of an account's devices,
// as the Python SDK's crypto/safety.py computes it. Per party:
//
//     keys   = the distinct Ed25519 identity keys of the account's devices, raw, sorted bytewise
//     data   = version (u16 big-endian) || keys || phone (E.164, ASCII)
//     5200 times:  data = SHA-512(data || keys)
//     digits = data[0:30] in six 5-byte chunks, each big-endian % 100000, 5 digits each
//
// The number is both parties' 30 digits, the smaller string first, in 12 groups of 5.

import { pyRepr } from "../wire/pytext";
import { ed25519KeyBytes, isEd25519Point, KeyFormatError } from "./keys";
import { concat } from "./olm";

export const SAFETY_NUMBER_VERSION = 1;
export const ITERATIONS = 5200;

const E164 = /^\+[1-9][0-9]{1,14}$/;

/** One side of a conversation: an account's phone number and its devices' Ed25519 keys. */
export interface Party {
  phone: string;
  identityKeys: readonly string[];
}

function keyBytes(value: string): Uint8Array {
  const raw = ed25519KeyBytes(value);
  if (!raw || !isEd25519Point(raw)) {
    throw new KeyFormatError(`not an Ed25519 public key in unpadded base64: ${pyRepr(value)}`);
  }
  return raw;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i += 1) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** The party's 30 digits (half of a safety number). Throws for a phone number that is not
 * E.164 (`Error`) or a key that is not an Ed25519 key in unpadded base64 (`KeyFormatError`). */
export async function fingerprint(party: Party): Promise<string> {
  if (!E164.test(party.phone)) throw new Error(`not a phone number in E.164 form: ${pyRepr(party.phone)}`);
  if (party.identityKeys.length === 0) throw new Error("a party needs at least one identity key");
  const distinct = new Map<string, Uint8Array>();
  for (const key of party.identityKeys) distinct.set(key, keyBytes(key));
  const keys = concat(...[...distinct.values()].sort(compareBytes));
  const version = new Uint8Array([SAFETY_NUMBER_VERSION >> 8, SAFETY_NUMBER_VERSION & 0xff]);
  let data = concat(version, keys, new TextEncoder().encode(party.phone));
  for (let i = 0; i < ITERATIONS; i += 1) {
    data = new Uint8Array(await crypto.subtle.digest("SHA-512", concat(data, keys) as BufferSource));
  }
  let digits = "";
  for (let at = 0; at < 30; at += 5) {
    let n = 0;
    for (const byte of data.subarray(at, at + 5)) n = n * 256 + byte;
    digits += String(n % 100_000).padStart(5, "0");
  }
  return digits;
}

/** 60 digits in 12 groups of 5, the same on both sides. */
export async function safetyNumber(mine: Party, theirs: Party): Promise<string> {
  const digits = [await fingerprint(mine), await fingerprint(theirs)].sort().join("");
  return digits.match(/.{5}/g)!.join(" ");
}
