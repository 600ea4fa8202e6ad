// Standard-alphabet base64, as the relay and vodozemac spell keys, signatures and bodies.

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i += 1) LOOKUP[ALPHABET.charCodeAt(i)] = i;

export class Base64Error extends Error {
  override name = "Base64Error";
}

/** Base64 of `bytes`; `padded` false leaves out the trailing `=` (vodozemac's spelling). */
export function toBase64(bytes: Uint8Array, padded = true): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + ALPHABET[n & 63]!;
  }
  const left = bytes.length - i;
  if (left === 1) {
    const n = bytes[i]! << 16;
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + (padded ? "==" : "");
  } else if (left === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + (padded ? "=" : "");
  }
  return out;
}

/** The bytes of standard base64 text, padded or not; anything else throws `Base64Error`. */
export function fromBase64(text: string): Uint8Array {
  const body = text.replace(/={0,2}$/, "");
  if (body.length % 4 === 1) throw new Base64Error("base64 text of impossible length");
  const out = new Uint8Array(Math.floor((body.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let at = 0;
  for (let i = 0; i < body.length; i += 1) {
    const code = body.charCodeAt(i);
    const digit = code < 128 ? LOOKUP[code]! : -1;
    if (digit < 0) throw new Base64Error(`not base64: ${JSON.stringify(body[i])}`);
    value = (value << 6) | digit;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at] = (value >> bits) & 0xff;
      at += 1;
    }
  }
  return out;
}

/** URL-safe base64 without padding (ids the relay hands out). */
export function toBase64Url(bytes: Uint8Array): string {
  return toBase64(bytes, false).replace(/\+/g, "-").replace(/\//g, "_");
}
