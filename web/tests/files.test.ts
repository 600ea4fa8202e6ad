// Files in chats, without a browser: what a chosen file is sent as, the limits checked before
// anything is uploaded, the choice between carrying a blob inside the message and uploading
// it, uploads and downloads that resume against a relay whose connection breaks (a fake
// fetch), the digest check, and the bounded cache of decrypted files.

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Offline, RelayApi, RelayError } from "../src/core/api";
import type { Message } from "../src/core/client";
import {
  AttachmentUnavailable,
  blobTypeOf,
  carriedInline,
  FileCache,
  Files,
  FileTooLarge,
  kindOf,
  MAX_STALLED_TRIES,
  mimeTypeOf,
  planFile,
  safeFilename,
  type FileFacts,
  type OpenedFile,
} from "../src/core/files";
import { AttachmentDigestMismatch, blobSize } from "../src/crypto/attachments";
import { decodePayload, encodePayload, MAX_INLINE_BLOB_BYTES, type Media } from "../src/wire/payloads";
import { pattern } from "./support/examples";

const MiB = 1024 * 1024;

// --- a relay's blob store behind a fake fetch ---------------------------------------------------

interface StoredBlob {
  size: number;
  bytes: Uint8Array;
  offset: number;
}

/** The relay's /v1/attachments routes (docs/protocol.md §13.1), in memory. `breakPatch(n)`
 * makes the n-th PATCH keep only half its body and then fail as a lost connection does;
 * `breakDownload(n)` cuts the n-th download off after `n` bytes; `down` refuses every request
 * as an unreachable relay does. */
class FakeRelay {
  readonly blobs = new Map<string, StoredBlob>();
  readonly requests: string[] = [];
  private patches = 0;
  private brokenPatches = new Set<number>();
  private downloadCut: number | null = null;
  down = false;
  /** Answer the next attachment's creation with the quota refusal (150071). */
  refuseCreate = false;

  breakPatch(n: number): void {
    this.brokenPatches.add(n);
  }

  breakDownloadAfter(bytes: number): void {
    this.downloadCut = bytes;
  }

  readonly fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const method = init.method ?? "GET";
    const path = String(input);
    const headers = new Headers(init.headers);
    this.requests.push(`${method} ${path}${headers.has("Range") ? ` ${headers.get("Range")}` : ""}`);
    if (this.down) throw new TypeError("Failed to fetch");
    if (headers.get("Authorization") !== "Bearer device-token") return error(401, 190, "no token");
    const id = /^\/v1\/attachments\/([A-Za-z0-9_-]+)/.exec(path)?.[1];
    if (method === "POST" && path === "/v1/attachments") {
      if (this.refuseCreate) return error(429, 150071, "quota exceeded");
      const { size } = JSON.parse(String(init.body)) as { size: number };
      const blobId = `blob${this.blobs.size + 1}`.padEnd(43, "x");
      this.blobs.set(blobId, { size, bytes: new Uint8Array(size), offset: 0 });
      return json(201, { id: blobId, size, offset: 0, upload_expires_ms: 0 });
    }
    const blob = id === undefined ? undefined : this.blobs.get(id);
    if (!blob) return error(404, 150072, "no such attachment");
    if (method === "PATCH") {
      this.patches += 1;
      const offset = Number(headers.get("Upload-Offset"));
      if (blob.offset === blob.size) return error(409, 150074, "complete", { offset: blob.offset });
      if (offset !== blob.offset) return error(409, 150073, "offset mismatch", { offset: blob.offset });
      const body = init.body as Uint8Array;
      const kept = this.brokenPatches.has(this.patches) ? body.subarray(0, Math.floor(body.length / 2)) : body;
      blob.bytes.set(kept, offset);
      blob.offset += kept.length;
      if (kept !== body) throw new TypeError("network error: the connection was reset");
      return json(200, { offset: blob.offset, complete: blob.offset === blob.size });
    }
    if (method === "GET" && path.endsWith("/upload")) {
      return json(200, { offset: blob.offset, size: blob.size, complete: blob.offset === blob.size, upload_expires_ms: 0 });
    }
    if (method === "GET") {
      if (blob.offset < blob.size) return error(404, 150072, "not complete");
      const start = Number(/bytes=(\d+)-/.exec(headers.get("Range") ?? "")?.[1] ?? 0);
      const part = blob.bytes.slice(start);
      const cut = this.downloadCut;
      this.downloadCut = null;
      let pulls = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          pulls += 1;
          if (pulls === 1) controller.enqueue(cut === null ? part : part.slice(0, cut));
          else if (cut === null) controller.close();
          else controller.error(new TypeError("network error: the connection was reset"));
        },
      });
      return new Response(stream, { status: start > 0 ? 206 : 200 });
    }
    return error(405, 100, "no such route");
  };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function error(status: number, code: number, message: string, details: Record<string, unknown> = {}): Response {
  return json(status, { error: { code, message, details } });
}

/** A chat client that keeps what it sends: the api of a relay behind `relay`. */
function fakeClient(relay: FakeRelay): {
  api: RelayApi;
  sent: Media[];
  send(to: string, payload: Media): Promise<Message>;
  payloadOf(message: Message): ReturnType<typeof decodePayload> | null;
} {
  vi.stubGlobal("fetch", relay.fetch);
  const api = new RelayApi("");
  api.token = "device-token";
  const sent: Media[] = [];
  return {
    api,
    sent,
    async send(to, payload) {
      sent.push(payload);
      return messageOf(payload, to);
    },
    payloadOf: (message) => (message.payload ? decodePayload(message.payload) : null),
  };
}

/** The message a recipient keeps: the payload as it travelled (encoded, then decoded). */
function messageOf(media: Media, chat = "peer"): Message {
  return { id: "m1", chat, outgoing: false, sender: chat, sender_device: 1, payload: encodePayload(media), status: "received", ms: 0 };
}

const noPause = async (): Promise<void> => undefined;

function fileOf(bytes: Uint8Array, name: string, type: string): File {
  return new File([bytes as BlobPart], name, { type });
}

async function bytesOf(opened: OpenedFile): Promise<Uint8Array> {
  return new Uint8Array(await opened.blob.arrayBuffer());
}

afterEach(() => {
  vi.unstubAllGlobals();
});

// --- what a file is sent as ------------------------------------------------------------------

describe("a chosen file", () => {
  it("is sent as the kind its type says: pictures, videos, sounds, stickers, documents", () => {
    expect(kindOf("image/jpeg", 2 * MiB)).toBe("image");
    expect(kindOf("image/png", 100)).toBe("image");
    expect(kindOf("image/webp", 30 * 1024)).toBe("sticker");
    expect(kindOf("image/webp", 2 * MiB)).toBe("image"); // a WebP photo, not a sticker
    expect(kindOf("video/mp4", MiB)).toBe("video");
    expect(kindOf("audio/ogg", MiB)).toBe("audio");
    expect(kindOf("application/pdf", MiB)).toBe("document");
    expect(kindOf("image/svg+xml", 1000)).toBe("document");
    expect(kindOf("application/octet-stream", 1)).toBe("document");
  });

  it("without a type from the browser is typed by its name", () => {
    expect(mimeTypeOf("Boarding pass.PDF", "")).toBe("application/pdf");
    expect(mimeTypeOf("holiday.jpeg", "")).toBe("image/jpeg");
    expect(mimeTypeOf("notes", "")).toBe("application/octet-stream");
    expect(mimeTypeOf("x.pdf", "Image/PNG")).toBe("image/png");
  });

  it("over its kind's limit is refused before it is read: 16 MiB for media, 100 MiB for documents", () => {
    const largest = 16 * MiB - 8 - 256 * 16; // its blob is exactly 16 MiB
    const image = planFile({ name: "a.jpg", type: "image/jpeg", size: largest });
    expect(image).toMatchObject({ kind: "image", mime_type: "image/jpeg", filename: "a.jpg" });
    expect(image.blob_bytes).toBe(16 * MiB);
    expect(() => planFile({ name: "a.jpg", type: "image/jpeg", size: largest + 1 })).toThrow(FileTooLarge);
    expect(() => planFile({ name: "a.jpg", type: "image/jpeg", size: 16 * MiB })).toThrow(FileTooLarge);
    expect(planFile({ name: "a.pdf", type: "application/pdf", size: 16 * MiB }).kind).toBe("document");
    let refusal: unknown;
    try {
      planFile({ name: "film.pdf", type: "application/pdf", size: 100 * MiB });
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(FileTooLarge);
    expect(refusal).toMatchObject({ code: "attachment_too_large", kind: "document", limit: 100 * MiB });
  });

  it("travels inside the message when blob and thumbnail are at most 16 KiB together", () => {
    expect(carriedInline(MAX_INLINE_BLOB_BYTES, 0)).toBe(true);
    expect(carriedInline(MAX_INLINE_BLOB_BYTES - 2000, 2000)).toBe(true);
    expect(carriedInline(MAX_INLINE_BLOB_BYTES - 2000, 2001)).toBe(false);
    expect(carriedInline(MAX_INLINE_BLOB_BYTES + 1, 0)).toBe(false);
  });

  it("is saved under a plain name, as the Python SDK names it", () => {
    expect(safeFilename("../../etc/passwd", "f.bin")).toBe("passwd");
    expect(safeFilename(".hidden", "f.bin")).toBe("hidden");
    expect(safeFilename("a/b\\c.pdf", "f.bin")).toBe("c.pdf");
    expect(safeFilename("", "f.bin")).toBe("f.bin");
    expect(safeFilename("...", "f.bin")).toBe("f.bin");
    expect(safeFilename("Rechnung Nr. 5 <März>.pdf", "f.bin")).toBe("Rechnung Nr. 5 _März_.pdf");
    expect(safeFilename("con\x00trol\x1f.txt", "f.bin")).toBe("con_trol_.txt");
    expect(safeFilename("tar.gz.", "f.bin")).toBe("tar.gz");
    expect(safeFilename(`${"x".repeat(200)}.pdf`, "f.bin")).toBe(`${"x".repeat(116)}.pdf`);
    expect(safeFilename("a".repeat(130), "f.bin")).toBe("a".repeat(120));
  });

  it("is shown from a blob: URL only as a picture, video or sound, never as a page", () => {
    expect(blobTypeOf("image/png")).toBe("image/png");
    expect(blobTypeOf("video/mp4")).toBe("video/mp4");
    expect(blobTypeOf("text/html")).toBe("application/octet-stream");
    expect(blobTypeOf("image/svg+xml")).toBe("application/octet-stream");
    expect(blobTypeOf("application/pdf")).toBe("application/octet-stream");
  });
});

// --- sending ---------------------------------------------------------------------------------

describe("sending a file", () => {
  let relay: FakeRelay;

  beforeEach(() => {
    relay = new FakeRelay();
  });

  it("too large asks nothing of the relay and shows no upload", async () => {
    const client = fakeClient(relay);
    const files = new Files(client, { pause: noPause });
    const huge = { size: 17 * MiB, type: "video/mp4", name: "clip.mp4" } as unknown as File;
    await expect(files.send("peer", huge)).rejects.toThrow(FileTooLarge);
    expect(relay.requests).toEqual([]);
    expect(files.pending("peer")).toEqual([]);
    expect(client.sent).toEqual([]);
  });

  it("small carries its blob inside the message, with dimensions and thumbnail", async () => {
    const client = fakeClient(relay);
    const thumbnail = pattern(900, 3);
    const describe = async (): Promise<FileFacts> => ({ width: 64, height: 48, thumbnail });
    const files = new Files(client, { pause: noPause, describe });
    const png = pattern(5000, 1);
    await files.send("peer", fileOf(png, "dot.png", "image/png"), "  A dot  ");
    expect(relay.requests).toEqual([]);
    const [media] = client.sent;
    expect(media).toMatchObject({ kind: "image", mime_type: "image/png", filename: "dot.png", caption: "A dot", width: 64, height: 48, plain_size: 5000 });
    expect(media?.blob_id).toBeUndefined();
    expect(media?.blob).toHaveLength(blobSize(5000));
    expect(media?.thumbnail).toEqual(thumbnail);
    expect(files.pending("peer")).toEqual([]);

    // The recipient opens it from the message alone.
    const recipient = new Files(fakeClient(new FakeRelay()), { pause: noPause });
    const opened = await recipient.open(messageOf(media!));
    expect(await bytesOf(opened)).toEqual(png);
    expect(opened).toMatchObject({ name: "dot.png", mime: "image/png" });
    expect(opened.blob.type).toBe("image/png");
  });

  it("whose blob and thumbnail exceed 16 KiB goes through the blob store", async () => {
    const client = fakeClient(relay);
    const describe = async (): Promise<FileFacts> => ({ width: 10, height: 10, thumbnail: pattern(2000, 1) });
    const files = new Files(client, { pause: noPause, describe });
    const plain = pattern(MAX_INLINE_BLOB_BYTES - 1000, 2); // fits alone, not with its thumbnail
    await files.send("peer", fileOf(plain, "a.png", "image/png"));
    const [media] = client.sent;
    expect(media?.blob).toBeUndefined();
    expect(relay.blobs.get(media?.blob_id ?? "")?.size).toBe(blobSize(plain.length));
    expect(relay.requests[0]).toBe("POST /v1/attachments");
  });

  it("resumes its upload after a lost connection, from where the relay's bytes end", async () => {
    const client = fakeClient(relay);
    const files = new Files(client, { pause: noPause, pieceBytes: 64 * 1024 });
    const progress: number[] = [];
    files.subscribe(() => {
      const [upload] = files.pending("peer");
      if (upload?.stage === "uploading") progress.push(upload.done);
    });
    relay.breakPatch(2);
    const plain = pattern(300_000, 4);
    await files.send("peer", fileOf(plain, "report.pdf", "application/pdf"));
    const [media] = client.sent;
    const stored = relay.blobs.get(media?.blob_id ?? "");
    expect(stored?.offset).toBe(stored?.size);
    // The broken PATCH kept half its piece; the client asked where to go on and went on there.
    const asked = relay.requests.indexOf(`GET /v1/attachments/${media?.blob_id}/upload`);
    expect(asked).toBeGreaterThan(0);
    expect(relay.requests.filter((r) => r.startsWith("PATCH"))).toHaveLength(Math.ceil(blobSize(plain.length) / (64 * 1024)) + 1);
    expect(progress.at(-1)).toBe(blobSize(plain.length));
    expect(progress).toContain(64 * 1024 + 32 * 1024);

    // The recipient downloads what the relay holds and gets the file back.
    const recipient = new Files(fakeClient(relay), { pause: noPause });
    const opened = await recipient.open(messageOf(media!));
    expect(await bytesOf(opened)).toEqual(plain);
    expect(opened.name).toBe("report.pdf");
    expect(opened.blob.type).toBe("application/octet-stream");
  });

  it("that cannot reach the relay waits, kept in the store, and goes by itself when the relay is back", async () => {
    const kept = new Map<string, unknown>();
    const store = {
      put: async (_store: "files", id: string, value: unknown) => void kept.set(id, structuredClone(value)),
      delete: async (_store: "files", id: string) => void kept.delete(id),
      all: async <T,>() => [...kept.values()] as T[],
    };
    const listeners = new Set<() => void>();
    const client = Object.assign(fakeClient(relay), {
      store,
      connected: true,
      subscribe(listener: () => void) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    });
    const waits: number[] = [];
    const pause = async (ms: number) => {
      waits.push(ms);
      relay.down = true;
    };
    const files = new Files(client, { pieceBytes: 64 * 1024, pause });
    relay.breakPatch(1);
    const file = fileOf(pattern(200_000, 5), "big.pdf", "application/pdf");
    await expect(files.send("peer", file, "Vertrag")).rejects.toBeInstanceOf(Offline);
    expect(waits).toHaveLength(MAX_STALLED_TRIES);
    expect(waits).toEqual([...waits].sort((a, b) => a - b));
    const [waiting] = files.pending("peer");
    expect(waiting).toMatchObject({ stage: "waiting", name: "big.pdf", kind: "document", caption: "Vertrag" });
    expect(client.sent).toEqual([]);
    expect(kept.size).toBe(1);

    // The tab is closed and opened again, still offline: the file is back, waiting.
    client.connected = false;
    const reopened = new Files(client, { pieceBytes: 64 * 1024, pause: noPause });
    await reopened.restore();
    expect(reopened.pending("peer")).toMatchObject([{ stage: "waiting", name: "big.pdf", caption: "Vertrag" }]);

    // The relay is back: the file goes without anyone asking, with its caption, and is
    // no longer kept.
    relay.down = false;
    client.connected = true;
    for (const listener of listeners) listener();
    await reopened.resendWaiting();
    expect(client.sent).toHaveLength(1);
    expect(client.sent[0]).toMatchObject({ filename: "big.pdf", caption: "Vertrag" });
    expect(reopened.pending("peer")).toEqual([]);
    expect(kept.size).toBe(0);
  });

  it("refused by the relay stays as a failed upload to try again", async () => {
    const client = fakeClient(relay);
    const files = new Files(client, { pause: noPause });
    relay.refuseCreate = true;
    await expect(files.send("peer", fileOf(pattern(200_000, 5), "big.pdf", "application/pdf"))).rejects.toBeInstanceOf(RelayError);
    const [failed] = files.pending("peer");
    expect(failed).toMatchObject({ stage: "failed" });
    relay.refuseCreate = false;
    await files.retry(failed!.id);
    expect(client.sent).toHaveLength(1);
    expect(files.pending("peer")).toEqual([]);
  });

  it("with a caption too long fails before anything is uploaded", async () => {
    const client = fakeClient(relay);
    const files = new Files(client, { pause: noPause });
    await expect(files.send("peer", fileOf(pattern(50_000, 1), "a.pdf", "application/pdf"), "x".repeat(1025))).rejects.toThrow(/caption/);
    expect(relay.requests).toEqual([]);
  });
});

// --- receiving -------------------------------------------------------------------------------

describe("opening a received file", () => {
  async function uploaded(relay: FakeRelay, plain: Uint8Array): Promise<Media> {
    const client = fakeClient(relay);
    await new Files(client, { pause: noPause }).send("peer", fileOf(plain, "film.pdf", "application/pdf"));
    return client.sent[0]!;
  }

  it("resumes a broken download with a range", async () => {
    const relay = new FakeRelay();
    const plain = pattern(120_000, 6);
    const media = await uploaded(relay, plain);
    relay.breakDownloadAfter(50_000);
    const files = new Files(fakeClient(relay), { pause: noPause });
    expect(await bytesOf(await files.open(messageOf(media)))).toEqual(plain);
    expect(relay.requests.filter((r) => r.startsWith("GET"))).toEqual([
      `GET /v1/attachments/${media.blob_id}`,
      `GET /v1/attachments/${media.blob_id} bytes=50000-`,
    ]);
  });

  it("refuses a blob that is not the one described, before decrypting", async () => {
    const relay = new FakeRelay();
    const media = await uploaded(relay, pattern(40_000, 7));
    relay.blobs.get(media.blob_id!)!.bytes[100]! ^= 1;
    const files = new Files(fakeClient(relay), { pause: noPause });
    await expect(files.open(messageOf(media))).rejects.toBeInstanceOf(AttachmentDigestMismatch);
    await expect(files.open(messageOf(media))).rejects.toMatchObject({ code: "attachment_digest_mismatch" });
    expect(files.cache.size).toBe(0);
  });

  it("says so when the relay no longer has it", async () => {
    const relay = new FakeRelay();
    const media = await uploaded(relay, pattern(40_000, 8));
    relay.blobs.clear();
    const files = new Files(fakeClient(relay), { pause: noPause });
    await expect(files.open(messageOf(media))).rejects.toBeInstanceOf(AttachmentUnavailable);
  });

  it("is downloaded once, however often it is shown", async () => {
    const relay = new FakeRelay();
    const media = await uploaded(relay, pattern(40_000, 9));
    const files = new Files(fakeClient(relay), { pause: noPause });
    const [a, b] = await Promise.all([files.open(messageOf(media)), files.open(messageOf(media))]);
    const c = await files.open(messageOf(media));
    expect(a.url).toBe(b.url);
    expect(c.url).toBe(a.url);
    expect(relay.requests.filter((r) => r.startsWith("GET"))).toHaveLength(1);
  });
});

describe("the cache of decrypted files", () => {
  function opened(bytes: number, name: string): OpenedFile {
    const blob = new Blob([new Uint8Array(bytes)]);
    return { blob, url: URL.createObjectURL(blob), name, mime: "application/pdf" };
  }

  it("forgets the least recently used file first and revokes its URL", () => {
    const revoked: string[] = [];
    vi.spyOn(URL, "revokeObjectURL").mockImplementation((url) => void revoked.push(url));
    const cache = new FileCache(1000, 10);
    const [a, b, c] = [opened(400, "a"), opened(400, "b"), opened(400, "c")];
    cache.put("a", a);
    cache.put("b", b);
    expect(cache.get("a")).toBe(a); // a is now the most recently used
    cache.put("c", c);
    expect(cache.get("b")).toBeUndefined();
    expect(cache.get("a")).toBe(a);
    expect(cache.get("c")).toBe(c);
    expect(revoked).toEqual([b.url]);
    vi.restoreAllMocks();
  });

  it("keeps the newest file even when it alone is over the budget, and holds a bounded number", () => {
    const cache = new FileCache(1000, 2);
    cache.put("big", opened(5000, "big"));
    expect(cache.size).toBe(1);
    cache.put("x", opened(10, "x"));
    expect(cache.get("big")).toBeUndefined();
    cache.put("y", opened(10, "y"));
    cache.put("z", opened(10, "z"));
    expect(cache.size).toBe(2);
    expect(cache.get("x")).toBeUndefined();
  });
});
