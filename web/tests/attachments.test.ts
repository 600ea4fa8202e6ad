// Encrypted attachments on their own (tests/crypto/test_attachments.py): a file comes back as
// it was sent, and a blob changed in any way is refused with a stable code.

import { describe, expect, it } from "vitest";
import {
  AttachmentCorrupt,
  AttachmentDigestMismatch,
  AttachmentTooLarge,
  blobSize,
  CHUNK_BYTES,
  openBlob,
  sealFile,
} from "../src/crypto/attachments";
import { pattern } from "./support/examples";

const SEALED_CHUNK = CHUNK_BYTES + 16;

async function sha256(blob: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", blob as BufferSource));
}

/** The code the blob is refused with, when the sender described it as it is. */
async function refusal(blob: Uint8Array, key: Uint8Array): Promise<string> {
  try {
    await openBlob(blob, key, await sha256(blob));
  } catch (error) {
    return (error as { code: string }).code;
  }
  return "opened";
}

describe("attachments", () => {
  it("come back as they were sent, whatever their size", async () => {
    for (const size of [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES]) {
      const file = pattern(size, 5);
      const sealed = await sealFile(file);
      expect(sealed.size).toBe(blobSize(size));
      expect(sealed.blob).toHaveLength(sealed.size);
      expect(sealed.plain_size).toBe(size);
      expect(sealed.key).toHaveLength(32);
      expect(await openBlob(sealed.blob, sealed.key, sealed.sha256)).toEqual(file);
    }
  });

  it("get a fresh key and a different blob every time", async () => {
    const file = pattern(1000, 1);
    const [a, b] = [await sealFile(file), await sealFile(file)];
    expect(a.key).not.toEqual(b.key);
    expect(a.blob).not.toEqual(b.blob);
  });

  it("are refused when the blob is not the one described, before decrypting", async () => {
    const sealed = await sealFile(pattern(100, 2));
    const blob = sealed.blob.slice();
    blob[50]! ^= 1;
    await expect(openBlob(blob, sealed.key, sealed.sha256)).rejects.toThrow(AttachmentDigestMismatch);
    await expect(openBlob(blob, sealed.key, sealed.sha256)).rejects.toMatchObject({ code: "attachment_digest_mismatch" });
  });

  it("are refused when changed, reshaped, cut or opened with another key", async () => {
    const sealed = await sealFile(pattern(2 * CHUNK_BYTES + 100, 3));
    for (const at of [0, 1, 8, 8 + SEALED_CHUNK - 1, 8 + SEALED_CHUNK + 20, sealed.blob.length - 1]) {
      const blob = sealed.blob.slice();
      blob[at]! ^= 1;
      expect(await refusal(blob, sealed.key), `byte ${at}`).toBe("attachment_corrupt");
    }
    const chunks = [0, 1, 2].map((i) => sealed.blob.subarray(8 + i * SEALED_CHUNK, 8 + (i + 1) * SEALED_CHUNK));
    const header = sealed.blob.subarray(0, 8);
    const reshaped = [
      [header, chunks[1]!, chunks[0]!, chunks[2]!],
      [header, chunks[0]!, chunks[2]!],
      [header, chunks[0]!, chunks[0]!, chunks[1]!, chunks[2]!],
      [header, chunks[0]!, chunks[1]!],
      [header],
      [header.subarray(0, 4)],
    ].map((parts) => new Uint8Array(parts.flatMap((p) => [...p])));
    for (const blob of reshaped) expect(await refusal(blob, sealed.key)).toBe("attachment_corrupt");
    expect(await refusal(sealed.blob, pattern(32, 9))).toBe("attachment_corrupt");
    await expect(openBlob(sealed.blob, pattern(16, 9), sealed.sha256)).rejects.toThrow(AttachmentCorrupt);
  });

  it("over the limit are refused before anything is encrypted", async () => {
    await expect(sealFile(pattern(101, 1), { maxPlainSize: 100 })).rejects.toThrow(AttachmentTooLarge);
    expect((await sealFile(pattern(100, 1), { maxPlainSize: 100 })).plain_size).toBe(100);
    expect(blobSize(0)).toBe(8 + 16);
    expect(blobSize(CHUNK_BYTES)).toBe(8 + CHUNK_BYTES + 16);
    expect(blobSize(CHUNK_BYTES + 1)).toBe(8 + CHUNK_BYTES + 1 + 32);
  });
});
