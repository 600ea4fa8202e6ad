// Encrypted attachments (docs/protocol.md §8.8): a file sealed with a fresh key, chunk by chunk
// (AES-256-GCM STREAM), as the Python SDK's crypto/attachments.py does it. The relay stores the
// blob and learns nothing but its length; the key and the blob's SHA-256 travel inside the
// end-to-end media payload. Blob format, version 1:
//
//     0x01 || 7-byte random nonce prefix || chunk_0 || chunk_1 || ...
//
// Each chunk is AES-256-GCM(key, nonce = prefix || u32-BE index || u8 last-flag) over 65 536
// bytes of plaintext (the final chunk 0 to 65 536 bytes): ciphertext, then the 16-byte tag.
// With the index and the last-flag in the nonce, chunks cannot be reordered, dropped,
// repeated or cut off undetected. An empty file is one empty final chunk.

import { CryptoError } from "./olm";

export const FORMAT_VERSION = 1;
export const KEY_BYTES = 32;
export const CHUNK_BYTES = 65_536;
const TAG_BYTES = 16;
const PREFIX_BYTES = 7;
const HEADER_BYTES = 1 + PREFIX_BYTES;
const SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES;
const MAX_CHUNKS = 2 ** 32;

/** An attachment that cannot be sealed or opened; `code` is stable for apps. */
export class AttachmentError extends CryptoError {
  override name = "AttachmentError";
  readonly code: string = "attachment_error";
}
/** The downloaded blob is not the one the sender described (its SHA-256 differs). */
export class AttachmentDigestMismatch extends AttachmentError {
  override name = "AttachmentDigestMismatch";
  override readonly code = "attachment_digest_mismatch";
}
/** The blob has the right digest but does not decrypt: wrong key, damaged, reordered,
 * dropped or truncated chunks, or an unknown format version. */
export class AttachmentCorrupt extends AttachmentError {
  override name = "AttachmentCorrupt";
  override readonly code = "attachment_corrupt";
}
/** The file exceeds the limit it is sent under. */
export class AttachmentTooLarge extends AttachmentError {
  override name = "AttachmentTooLarge";
  override readonly code = "attachment_too_large";
}

/** A sealed file: the blob to upload (or carry inline) and the fields of the media payload
 * that describe it. */
export interface SealedFile {
  blob: Uint8Array;
  key: Uint8Array;
  sha256: Uint8Array;
  size: number;
  plain_size: number;
}

/** The length of the blob that a file of `plainSize` bytes encrypts to. */
export function blobSize(plainSize: number): number {
  if (plainSize < 0) throw new RangeError("a size is never negative");
  const chunks = Math.max(1, Math.ceil(plainSize / CHUNK_BYTES));
  return HEADER_BYTES + plainSize + chunks * TAG_BYTES;
}

function nonce(prefix: Uint8Array, index: number, last: boolean): Uint8Array {
  if (index >= MAX_CHUNKS) throw new AttachmentTooLarge(`a blob holds at most ${MAX_CHUNKS} chunks`);
  const out = new Uint8Array(PREFIX_BYTES + 5);
  out.set(prefix);
  new DataView(out.buffer).setUint32(PREFIX_BYTES, index);
  out[PREFIX_BYTES + 4] = last ? 1 : 0;
  return out;
}

function aesKey(raw: Uint8Array, usage: "encrypt" | "decrypt"): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", raw as BufferSource, { name: "AES-GCM" }, false, [usage]);
}

/** Encrypt `file` with a fresh key; `maxPlainSize` refuses a larger file (AttachmentTooLarge)
 * before anything is encrypted. */
export async function sealFile(file: Uint8Array, options: { maxPlainSize?: number } = {}): Promise<SealedFile> {
  if (options.maxPlainSize !== undefined && file.length > options.maxPlainSize) {
    throw new AttachmentTooLarge(`${file.length} bytes exceed the limit of ${options.maxPlainSize} bytes`);
  }
  const keyBytes = crypto.getRandomValues(new Uint8Array(KEY_BYTES));
  const key = await aesKey(keyBytes, "encrypt");
  const prefix = crypto.getRandomValues(new Uint8Array(PREFIX_BYTES));
  const blob = new Uint8Array(blobSize(file.length));
  blob[0] = FORMAT_VERSION;
  blob.set(prefix, 1);
  let at = HEADER_BYTES;
  const chunks = Math.max(1, Math.ceil(file.length / CHUNK_BYTES));
  for (let index = 0; index < chunks; index += 1) {
    const chunk = file.subarray(index * CHUNK_BYTES, (index + 1) * CHUNK_BYTES);
    const iv = nonce(prefix, index, index === chunks - 1);
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt({ name: "AES-GCM", iv: iv as BufferSource, tagLength: 128 }, key, chunk as BufferSource),
    );
    blob.set(sealed, at);
    at += sealed.length;
  }
  const sha256 = new Uint8Array(await crypto.subtle.digest("SHA-256", blob as BufferSource));
  return { blob, key: keyBytes, sha256, size: blob.length, plain_size: file.length };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  // Constant time for equal lengths, like hmac.compare_digest.
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.min(a.length, b.length); i += 1) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** The plaintext of `blob`: its SHA-256 must be `sha256` (else AttachmentDigestMismatch,
 * before anything is decrypted), and every chunk must authenticate under `key` (else
 * AttachmentCorrupt). */
export async function openBlob(blob: Uint8Array, key: Uint8Array, sha256: Uint8Array): Promise<Uint8Array> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", blob as BufferSource));
  if (!sameBytes(digest, sha256)) {
    throw new AttachmentDigestMismatch("the attachment's digest does not match the sender's");
  }
  if (key.length !== KEY_BYTES) throw new AttachmentCorrupt(`an attachment key has ${KEY_BYTES} bytes, not ${key.length}`);
  const aes = await aesKey(key, "decrypt");
  if (blob.length < HEADER_BYTES) throw new AttachmentCorrupt("the blob is shorter than its header");
  if (blob[0] !== FORMAT_VERSION) throw new AttachmentCorrupt(`unknown attachment format version ${blob[0]}`);
  const prefix = blob.subarray(1, HEADER_BYTES);
  const parts: Uint8Array[] = [];
  let written = 0;
  // Chunks of SEALED_CHUNK_BYTES; the last is the one after which nothing follows.
  for (let index = 0, at = HEADER_BYTES; ; index += 1, at += SEALED_CHUNK_BYTES) {
    const sealed = blob.subarray(at, at + SEALED_CHUNK_BYTES);
    const last = !(sealed.length === SEALED_CHUNK_BYTES && at + SEALED_CHUNK_BYTES < blob.length);
    if (sealed.length < TAG_BYTES) throw new AttachmentCorrupt("the blob ends inside a chunk's tag");
    let chunk: Uint8Array;
    try {
      const iv = nonce(prefix, index, last);
      chunk = new Uint8Array(
        await crypto.subtle.decrypt({ name: "AES-GCM", iv: iv as BufferSource, tagLength: 128 }, aes, sealed as BufferSource),
      );
    } catch (error) {
      if (error instanceof AttachmentError) throw error;
      throw new AttachmentCorrupt(`chunk ${index} of the attachment does not decrypt`);
    }
    parts.push(chunk);
    written += chunk.length;
    if (last) break;
  }
  const out = new Uint8Array(written);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
