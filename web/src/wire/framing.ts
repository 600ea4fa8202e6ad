// The plaintext handed to Olm (docs/protocol.md §8.1):
//
//     u16 big-endian n || n bytes of msgpack || zero bytes up to the padded size
//
// Padded to a multiple of 64 bytes, and above 1 KiB to its Padmé bucket, so a ciphertext's
// length says little about the text.

export const MAX_PAYLOAD_BYTES = 48 * 1024;
/** A transcript wraps a payload of up to MAX_PAYLOAD_BYTES plus ids and a time: the next
 * padding bucket above it. */
export const MAX_TRANSCRIPT_BYTES = MAX_PAYLOAD_BYTES + 2 * 1024;

const LENGTH_BYTES = 2;
const PAD_QUANTUM = 64;

/** Bytes that are not a well-formed payload (the message says why). */
export class InvalidPayload extends Error {
  override name = "InvalidPayload";
}

/** The encoded payload exceeds MAX_PAYLOAD_BYTES (a transcript: MAX_TRANSCRIPT_BYTES). */
export class PayloadTooLarge extends Error {
  override name = "PayloadTooLarge";
}

function bitLength(n: number): number {
  let bits = 0;
  for (let rest = n; rest >= 1; rest = Math.floor(rest / 2)) bits += 1;
  return bits;
}

/** The size `n` framed bytes are padded to: a multiple of 64, and above 1 KiB the Padmé
 * bucket (Nikitin et al., 2019): at most 12 % overhead. */
export function paddedSize(n: number): number {
  const size = Math.ceil(n / PAD_QUANTUM) * PAD_QUANTUM;
  if (size <= 1024) return size;
  const exponent = bitLength(size) - 1;
  const mask = 2 ** (exponent - bitLength(exponent)) - 1;
  // (size + mask) & ~mask, in arithmetic that stays exact beyond 32 bits
  return Math.floor((size + mask) / (mask + 1)) * (mask + 1);
}

/** `body` (one msgpack map) framed and padded; throws `PayloadTooLarge` above the limit
 * (49 152 bytes, 51 200 for a transcript). `tag` names the payload in the error. */
export function frame(body: Uint8Array, options: { transcript?: boolean; tag?: string } = {}): Uint8Array {
  const limit = options.transcript ? MAX_TRANSCRIPT_BYTES : MAX_PAYLOAD_BYTES;
  const size = paddedSize(LENGTH_BYTES + body.length);
  if (size > limit) {
    const tag = options.tag ?? (options.transcript ? "sent_transcript" : undefined);
    throw new PayloadTooLarge(
      `a ${tag === undefined ? "" : `${tag} `}payload of ${size} bytes once padded exceeds the limit of ${limit}`,
    );
  }
  const out = new Uint8Array(size);
  out[0] = body.length >> 8;
  out[1] = body.length & 0xff;
  out.set(body, LENGTH_BYTES);
  return out;
}

/** The msgpack bytes framed in `raw` (a decrypted plaintext); the padding is not checked.
 * Throws `InvalidPayload`. */
export function unframe(raw: Uint8Array): Uint8Array {
  if (raw.length > MAX_TRANSCRIPT_BYTES) {
    throw new InvalidPayload(`payload of ${raw.length} bytes exceeds ${MAX_TRANSCRIPT_BYTES}`);
  }
  if (raw.length < LENGTH_BYTES) throw new InvalidPayload("payload is shorter than its length prefix");
  const n = (raw[0]! << 8) | raw[1]!;
  if (LENGTH_BYTES + n > raw.length) {
    throw new InvalidPayload(`length prefix says ${n} bytes, only ${raw.length - 2} follow`);
  }
  return raw.subarray(LENGTH_BYTES, LENGTH_BYTES + n);
}
