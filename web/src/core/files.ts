// Files in chats (docs/protocol.md §8.8, §13), as the Python SDK's client/attachments.py sends
// and opens them: a file is sealed here with a fresh key; a small one travels inside the
// message, a larger one is uploaded to the relay's blob store in pieces, resuming after a lost
// connection; the `media` payload with the key and the blob's digest then goes out like a text.
// A received file is downloaded, its digest checked before anything is decrypted, and kept
// decrypted in memory only (a bounded cache of object URLs), never in the local store.

import {
  AttachmentError,
  AttachmentTooLarge,
  blobSize,
  openBlob,
  sealFile,
  type SealedFile,
} from "../crypto/attachments";
import { toBase64 } from "../wire/base64";
import {
  attachedFile,
  encodePayload,
  MAX_INLINE_BLOB_BYTES,
  MAX_THUMBNAIL_BYTES,
  type Media,
  type MediaKind,
  type Payload,
} from "../wire/payloads";
import { Offline, RelayError } from "./api";
import type { Message } from "./client";
import { describeInBrowser, type Describe, type FileFacts } from "./filefacts";

export type { Describe, FileFacts } from "./filefacts";

/** Largest blob of an image, video, audio or sticker (the relay's default). */
export const MEDIA_LIMIT_BYTES = 16 * 1024 * 1024;
/** Largest blob of a document (the relay's default). */
export const DOCUMENT_LIMIT_BYTES = 100 * 1024 * 1024;
/** A WebP up to this size is sent as a sticker; a larger one is a picture. */
export const STICKER_MAX_BYTES = 500 * 1024;
/** How much of a blob one upload request carries: small enough to resend after a lost
 * connection and to show progress, large enough that requests do not dominate. */
export const PIECE_BYTES = 2 * 1024 * 1024;
/** Failed requests in a row (no byte further) before an upload or download gives up. */
export const MAX_STALLED_TRIES = 5;
/** Decrypted files kept in memory: at most this many bytes (the newest file always stays). */
export const CACHE_BYTES = 64 * 1024 * 1024;
export const CACHE_ENTRIES = 64;

const RELAY_OFFSET_MISMATCH = 150073;
const RELAY_UPLOAD_COMPLETE = 150074;
const RELAY_NOT_FOUND = 150072;
const RELAY_RANGE_NOT_SATISFIABLE = 150075;

/** A file over its kind's limit, refused before anything is uploaded. */
export class FileTooLarge extends AttachmentTooLarge {
  override name = "FileTooLarge";
  constructor(
    readonly kind: MediaKind,
    readonly limit: number,
    readonly blobBytes: number,
  ) {
    super(`a file sent as ${kind} may be ${limit} bytes once encrypted; this one would be ${blobBytes}`);
  }
}

/** The relay no longer has the blob (expired, deleted) or could not hand it over. */
export class AttachmentUnavailable extends AttachmentError {
  override name = "AttachmentUnavailable";
  override readonly code = "attachment_not_found";
}

// --- what a file is sent as ------------------------------------------------------------------

const EXTENSIONS: Record<string, string> = {
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  png: "image/png",
  gif: "image/gif",
  webp: "image/webp",
  avif: "image/avif",
  bmp: "image/bmp",
  heic: "image/heic",
  svg: "image/svg+xml",
  mp4: "video/mp4",
  m4v: "video/mp4",
  mov: "video/quicktime",
  webm: "video/webm",
  "3gp": "video/3gpp",
  mp3: "audio/mpeg",
  m4a: "audio/mp4",
  aac: "audio/aac",
  ogg: "audio/ogg",
  oga: "audio/ogg",
  opus: "audio/ogg",
  wav: "audio/wav",
  amr: "audio/amr",
  pdf: "application/pdf",
  txt: "text/plain",
  csv: "text/csv",
  zip: "application/zip",
  doc: "application/msword",
  docx: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  xls: "application/vnd.ms-excel",
  xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  ppt: "application/vnd.ms-powerpoint",
  pptx: "application/vnd.openxmlformats-officedocument.presentationml.presentation",
  odt: "application/vnd.oasis.opendocument.text",
  ics: "text/calendar",
  vcf: "text/vcard",
};

function extensionOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

/** The MIME type of a file: what the browser says, else guessed from its name. */
export function mimeTypeOf(name: string, declared: string): string {
  const type = declared.trim().toLowerCase();
  if (type && type.length <= 255) return type;
  return EXTENSIONS[extensionOf(name)] ?? "application/octet-stream";
}

/** The kind a file of `mimeType` and `size` bytes is sent as. An SVG is a document: it is a
 * program as much as a picture, and browsers do not decode it into a bitmap. */
export function kindOf(mimeType: string, size: number): MediaKind {
  const [major = "", minor = ""] = mimeType.toLowerCase().split("/", 2);
  if (major === "image") {
    if (minor === "svg+xml") return "document";
    if (minor === "webp" && size <= STICKER_MAX_BYTES) return "sticker";
    return "image";
  }
  if (major === "video") return "video";
  if (major === "audio") return "audio";
  return "document";
}

/** The largest blob the relay takes for a file of `kind`. */
export function blobLimit(kind: MediaKind): number {
  return kind === "document" ? DOCUMENT_LIMIT_BYTES : MEDIA_LIMIT_BYTES;
}

/** What a chosen file is sent as. */
export interface FilePlan {
  kind: MediaKind;
  mime_type: string;
  filename?: string;
  /** The length of the blob it encrypts to. */
  blob_bytes: number;
}

/** Kind, type and name of a file, or FileTooLarge when its blob would exceed its kind's
 * limit, so that nothing is read, encrypted or uploaded in vain. */
export function planFile(file: { name: string; type: string; size: number }): FilePlan {
  const mime = mimeTypeOf(file.name, file.type);
  const kind = kindOf(mime, file.size);
  const bytes = blobSize(file.size);
  const limit = blobLimit(kind);
  if (bytes > limit) throw new FileTooLarge(kind, limit, bytes);
  const plan: FilePlan = { kind, mime_type: mime, blob_bytes: bytes };
  const name = shortened(file.name.trim());
  if (name) plan.filename = name;
  return plan;
}

/** Whether a blob travels inside the message rather than through the blob store: when it and
 * the thumbnail together are at most MAX_INLINE_BLOB_BYTES (no request to the blob store, and
 * the recipient opens it without a download). */
export function carriedInline(blobBytes: number, thumbnailBytes: number): boolean {
  return blobBytes + thumbnailBytes <= MAX_INLINE_BLOB_BYTES;
}

/** At most 255 characters (the payload's limit), the extension kept. */
function shortened(name: string): string {
  const chars = [...name];
  if (chars.length <= 255) return name;
  const extension = extensionOf(name);
  if (extension && extension.length <= 10) return `${chars.slice(0, 254 - extension.length).join("")}.${extension}`;
  return chars.slice(0, 255).join("");
}

const UNSAFE = /[^\p{L}\p{N}_.\- ()+,@=]+/gu;

/** `name` as a plain file name: no path, no separators, no leading dot, no control
 * characters, at most 120 characters (the extension kept); else `fallback`. As the Python
 * SDK's safe_filename, so both save a file under the same name. */
export function safeFilename(name: string | undefined, fallback: string): string {
  let text = (name ?? "").normalize("NFC").replaceAll("\\", "/");
  text = text.slice(text.lastIndexOf("/") + 1);
  text = text.replace(UNSAFE, "_").replace(/^[ ._]+|[ ._]+$/g, "");
  if (!text) return fallback;
  const chars = [...text];
  const dot = text.lastIndexOf(".");
  const extension = dot > 0 ? text.slice(dot + 1) : "";
  if (extension && [...extension].length <= 10) {
    const stem = [...text.slice(0, dot)];
    return `${stem.slice(0, 120 - [...extension].length - 1).join("")}.${extension}`;
  }
  return chars.slice(0, 120).join("");
}

const SUFFIXES: Record<string, string> = {
  "image/jpeg": ".jpg",
  "image/png": ".png",
  "image/gif": ".gif",
  "image/webp": ".webp",
  "video/mp4": ".mp4",
  "video/webm": ".webm",
  "audio/mpeg": ".mp3",
  "audio/ogg": ".ogg",
  "audio/mp4": ".m4a",
  "application/pdf": ".pdf",
  "text/plain": ".txt",
};

/** The name a received file is saved under. */
export function savedName(media: Media): string {
  return safeFilename(media.filename, `${media.kind}${SUFFIXES[media.mime_type.toLowerCase()] ?? ".bin"}`);
}

// Types a page may show from a blob: URL. Anything else (HTML, SVG, PDF, scripts) is kept as
// opaque bytes, so that a blob: URL, which has the app's origin, can never run as a document.
const SHOWN_TYPES = /^(image\/(jpeg|png|gif|webp|avif|bmp)|video\/[a-z0-9.+-]+|audio\/[a-z0-9.+-]+)$/;

export function blobTypeOf(mimeType: string): string {
  const type = mimeType.toLowerCase();
  return SHOWN_TYPES.test(type) ? type : "application/octet-stream";
}

/** The thumbnail a media payload carries, as a data: URL (the app's CSP allows them). */
export function thumbnailUrl(media: Media): string | null {
  return media.thumbnail ? `data:image/jpeg;base64,${toBase64(media.thumbnail)}` : null;
}

// --- uploading -------------------------------------------------------------------------------

/** The relay routes an upload takes (RelayApi has them). */
export interface UploadApi {
  createAttachment(kind: "media" | "document", size: number): Promise<{ id: string; offset: number }>;
  appendAttachment(id: string, offset: number, piece: Uint8Array): Promise<{ offset: number; complete: boolean }>;
  attachmentUpload(id: string): Promise<{ offset: number; size: number; complete: boolean }>;
}

export interface TransferOptions {
  pieceBytes?: number;
  /** Bytes the relay holds so far, of `total`. */
  onProgress?: (done: number, total: number) => void;
  /** Waits between tries after a failure (a timer in the app; nothing in tests). */
  pause?: (ms: number) => Promise<void>;
}

function realPause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Back off 0.5, 1, 2, 4, 8 seconds: a connection that comes back within about 15 s resumes. */
function backoffMs(tries: number): number {
  return 250 * 2 ** tries;
}

function resumable(error: unknown): boolean {
  if (error instanceof Offline || error instanceof TypeError) return true;
  return error instanceof RelayError && (error.code === RELAY_OFFSET_MISMATCH || error.code === RELAY_UPLOAD_COMPLETE);
}

/** Upload `blob` in pieces and return the relay's id of it. After a lost connection the relay
 * is asked how much arrived (`GET .../upload`) and the upload goes on from there; after
 * MAX_STALLED_TRIES failures in a row the last error is thrown. */
export async function uploadBlob(
  api: UploadApi,
  blob: Uint8Array,
  kind: MediaKind,
  options: TransferOptions = {},
): Promise<string> {
  const piece = options.pieceBytes ?? PIECE_BYTES;
  const pause = options.pause ?? realPause;
  const created = await api.createAttachment(kind === "document" ? "document" : "media", blob.length);
  const id = created.id;
  let offset: number | null = created.offset;
  let stalled = 0;
  for (;;) {
    try {
      if (offset === null) {
        const state = await api.attachmentUpload(id);
        offset = state.complete ? state.size : state.offset;
      }
      options.onProgress?.(offset, blob.length);
      if (offset >= blob.length) return id;
      const answer = await api.appendAttachment(id, offset, blob.subarray(offset, offset + piece));
      offset = answer.offset;
      stalled = 0;
    } catch (error) {
      stalled += 1;
      if (!resumable(error) || stalled > MAX_STALLED_TRIES) throw error;
      // The relay says where to go on when the offset was wrong; else it is asked.
      const told = error instanceof RelayError && error.code === RELAY_OFFSET_MISMATCH ? Number(error.details["offset"]) : NaN;
      offset = Number.isSafeInteger(told) && told >= 0 ? told : null;
      await pause(backoffMs(stalled));
    }
  }
}

// --- downloading -----------------------------------------------------------------------------

export interface DownloadApi {
  downloadAttachment(id: string, start: number, sink: (chunk: Uint8Array, at: number) => void): Promise<void>;
}

/** The blob of `media` as the relay has it (at most `media.size` bytes), resuming with a range
 * after a broken connection. Not checked: openBlob checks the digest. */
export async function downloadBlob(api: DownloadApi, media: Media, options: TransferOptions = {}): Promise<Uint8Array> {
  if (media.blob) return media.blob;
  const id = media.blob_id;
  if (id === undefined) throw new AttachmentUnavailable("the message names no file");
  const pause = options.pause ?? realPause;
  const out = new Uint8Array(media.size);
  let have = 0;
  let stalled = 0;
  const sink = (chunk: Uint8Array, at: number): void => {
    if (at >= out.length) return;
    const part = chunk.subarray(0, out.length - at);
    out.set(part, at);
    have = at + part.length;
    options.onProgress?.(have, out.length);
  };
  while (have < out.length) {
    const start = have;
    try {
      await api.downloadAttachment(id, start, sink);
      break; // the relay sent all it has; a shorter blob fails the digest check
    } catch (error) {
      if (error instanceof RelayError && error.code === RELAY_NOT_FOUND) {
        throw new AttachmentUnavailable("the relay no longer has this file");
      }
      if (error instanceof RelayError && error.code === RELAY_RANGE_NOT_SATISFIABLE) break;
      if (!(error instanceof Offline || error instanceof TypeError)) throw error;
      stalled = have > start ? 0 : stalled + 1;
      if (stalled > MAX_STALLED_TRIES) throw error;
      await pause(backoffMs(Math.max(stalled, 1)));
    }
  }
  return have === out.length ? out : out.slice(0, have);
}

// --- decrypted files in memory ---------------------------------------------------------------

/** A received file, decrypted: shown or saved from its object URL. */
export interface OpenedFile {
  blob: Blob;
  url: string;
  name: string;
  mime: string;
}

/** Decrypted files by their blob's digest and key, least recently used evicted first (its
 * object URL revoked). The newest file stays even when it alone is over the budget. */
export class FileCache {
  private readonly entries = new Map<string, OpenedFile>();
  private bytes = 0;

  constructor(
    readonly maxBytes = CACHE_BYTES,
    readonly maxEntries = CACHE_ENTRIES,
  ) {}

  get(key: string): OpenedFile | undefined {
    const found = this.entries.get(key);
    if (found) {
      this.entries.delete(key);
      this.entries.set(key, found);
    }
    return found;
  }

  put(key: string, file: OpenedFile): void {
    const old = this.entries.get(key);
    if (old) this.drop(key, old);
    this.entries.set(key, file);
    this.bytes += file.blob.size;
    for (const [oldest, entry] of this.entries) {
      if (this.entries.size <= 1 || (this.bytes <= this.maxBytes && this.entries.size <= this.maxEntries)) break;
      this.drop(oldest, entry);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    for (const [key, entry] of this.entries) this.drop(key, entry);
  }

  private drop(key: string, entry: OpenedFile): void {
    this.entries.delete(key);
    this.bytes -= entry.blob.size;
    URL.revokeObjectURL(entry.url);
  }
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function cacheKey(media: Media): string {
  return `${hex(media.sha256)}:${hex(media.key)}`;
}

// --- the chat's side -------------------------------------------------------------------------

/** Where files that wait for the network are kept, sealed like everything in the store. */
export interface KeptFiles {
  put(store: "files", id: string, value: unknown): Promise<void>;
  delete(store: "files", id: string): Promise<void>;
  all<T>(store: "files"): Promise<T[]>;
}

/** What Files needs of the client (Client has it). `store`, `connected` and `subscribe` let
 * files written offline wait across reloads and go out when the relay is back. */
export interface FileClient {
  readonly api: UploadApi & DownloadApi;
  send(to: string, payload: Media): Promise<Message>;
  payloadOf(message: Message): Payload | null;
  readonly store?: KeptFiles;
  readonly connected?: boolean;
  subscribe?(listener: () => void): () => void;
}

/** `waiting`: no network; the file waits (kept in the store) and goes when the relay is back. */
export type UploadStage = "encrypting" | "uploading" | "sending" | "waiting" | "failed";

/** The largest file kept to wait for the network across reloads (larger ones wait in this
 * tab only). */
export const KEEP_MAX_BYTES = 32 * 1024 * 1024;

interface KeptUpload {
  id: string;
  chat: string;
  name: string;
  type: string;
  caption?: string;
  bytes: Uint8Array;
}

function offline(error: unknown): boolean {
  return error instanceof Offline || error instanceof TypeError || (error instanceof Error && error.name === "NotConnected");
}

/** A file on its way out, shown as an outgoing bubble until its message exists. */
export interface Upload {
  id: string;
  chat: string;
  file: Blob;
  name: string;
  kind: MediaKind;
  size: number;
  caption?: string;
  stage: UploadStage;
  /** Bytes the relay holds, of `total` (0 of 0 for a file carried inside the message). */
  done: number;
  total: number;
  error?: unknown;
}

export interface FilesOptions extends TransferOptions {
  describe?: Describe;
  cache?: FileCache;
}

let uploadCounter = 0;

/** One client's files: uploads in progress (by chat) and decrypted files in memory. */
export class Files {
  private readonly uploads = new Map<string, Upload>();
  private readonly listeners = new Set<() => void>();
  private readonly opening = new Map<string, Promise<OpenedFile>>();
  readonly cache: FileCache;

  private wasConnected = false;
  private resending: Promise<void> | null = null;

  constructor(
    private readonly client: FileClient,
    private readonly options: FilesOptions = {},
  ) {
    this.cache = options.cache ?? new FileCache();
    this.wasConnected = client.connected ?? false;
    client.subscribe?.(() => {
      const now = client.connected ?? false;
      if (now && !this.wasConnected) void this.resendWaiting();
      this.wasConnected = now;
    });
  }

  /** Bring back the files that waited for the network when the tab was closed. */
  async restore(): Promise<void> {
    const kept = (await this.client.store?.all<KeptUpload>("files")) ?? [];
    for (const entry of kept) {
      if (this.uploads.has(entry.id)) continue;
      const file = new Blob([entry.bytes as BlobPart], { type: entry.type });
      const plan = planFile({ name: entry.name, type: entry.type, size: file.size });
      const upload: Upload = { id: entry.id, chat: entry.chat, file, name: entry.name, kind: plan.kind, size: file.size, stage: "waiting", done: 0, total: 0 };
      if (entry.caption) upload.caption = entry.caption;
      this.uploads.set(upload.id, upload);
    }
    this.changed();
    if (this.client.connected) await this.resendWaiting();
  }

  /** Send, oldest first, every file that waits for the network. */
  resendWaiting(): Promise<void> {
    if (!this.resending) {
      this.resending = (async () => {
        for (const upload of [...this.uploads.values()]) {
          if (upload.stage !== "waiting") continue;
          const plan = planFile({ name: upload.name, type: upload.file.type, size: upload.size });
          upload.stage = "encrypting";
          this.changed();
          try {
            await this.run(upload, plan);
          } catch {
            if ((upload.stage as UploadStage) === "waiting") break; // the network went again
          }
        }
      })().finally(() => {
        this.resending = null;
      });
    }
    return this.resending;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /** The files of `chat` still on their way out, oldest first. */
  pending(chat: string): Upload[] {
    return [...this.uploads.values()].filter((u) => u.chat === chat);
  }

  /** Send `file` to `chat`: refused at once when too large (FileTooLarge, nothing else
   * happens); otherwise shown as an upload until its message is handed to the client's outbox.
   * An upload that cannot finish (no network for long, the relay refuses) stays as a failed
   * upload the user may try again or dismiss, and this throws its error. */
  async send(chat: string, file: File | Blob, caption?: string): Promise<Message> {
    const name = file instanceof File ? file.name : "";
    const plan = planFile({ name, type: file.type, size: file.size });
    uploadCounter += 1;
    const upload: Upload = {
      id: `upload-${Date.now().toString(36)}-${uploadCounter}`,
      chat,
      file,
      name,
      kind: plan.kind,
      size: file.size,
      stage: "encrypting",
      done: 0,
      total: 0,
    };
    const text = caption?.trim();
    if (text) upload.caption = text;
    this.uploads.set(upload.id, upload);
    this.changed();
    return this.run(upload, plan);
  }

  /** Try a failed upload again. */
  retry(id: string): Promise<Message> {
    const upload = this.uploads.get(id);
    if (!upload || upload.stage !== "failed") return Promise.reject(new Error("no failed upload with this id"));
    const plan = planFile({ name: upload.name, type: upload.file.type, size: upload.size });
    upload.stage = "encrypting";
    delete upload.error;
    this.changed();
    return this.run(upload, plan);
  }

  /** Forget a failed upload, or one that waits for the network. */
  dismiss(id: string): void {
    const stage = this.uploads.get(id)?.stage;
    if (stage !== "failed" && stage !== "waiting") return;
    this.uploads.delete(id);
    void this.client.store?.delete("files", id);
    this.changed();
  }

  private async run(upload: Upload, plan: FilePlan): Promise<Message> {
    try {
      const media = await this.prepare(upload, plan);
      upload.stage = "sending";
      this.changed();
      // From here the client's outbox keeps the message, with or without a network.
      const message = await this.client.send(upload.chat, media);
      this.uploads.delete(upload.id);
      await this.client.store?.delete("files", upload.id);
      this.changed();
      return message;
    } catch (error) {
      upload.error = error;
      if (offline(error)) {
        // No network: the file waits, across reloads when it is not too large, and goes out
        // by itself when the relay is back.
        upload.stage = "waiting";
        if (upload.size <= KEEP_MAX_BYTES) await this.keep(upload);
      } else {
        upload.stage = "failed";
      }
      this.changed();
      throw error;
    }
  }

  private async keep(upload: Upload): Promise<void> {
    const store = this.client.store;
    if (!store) return;
    const kept: KeptUpload = {
      id: upload.id,
      chat: upload.chat,
      name: upload.name,
      type: upload.file.type,
      bytes: new Uint8Array(await upload.file.arrayBuffer()),
    };
    if (upload.caption) kept.caption = upload.caption;
    try {
      await store.put("files", upload.id, kept);
    } catch {
      // A full disk: it still waits in this tab.
    }
  }

  private async prepare(upload: Upload, plan: FilePlan): Promise<Media> {
    const { kind } = plan;
    // A picture the browser cannot decode goes without dimensions and thumbnail.
    const describe = this.options.describe ?? describeInBrowser;
    const facts = await describe(upload.file, kind, plan.mime_type).catch((): FileFacts => ({}));
    const draft: Media = {
      t: "media",
      kind,
      blob_id: "pending",
      key: new Uint8Array(32),
      sha256: new Uint8Array(32),
      size: 1,
      plain_size: upload.size,
      mime_type: plan.mime_type,
    };
    if (plan.filename) draft.filename = plan.filename;
    if (upload.caption) draft.caption = upload.caption;
    const visual = kind === "image" || kind === "sticker" || kind === "video";
    if (visual && facts.width && facts.height && facts.width <= 65_535 && facts.height <= 65_535) {
      draft.width = facts.width;
      draft.height = facts.height;
    }
    if (visual && facts.thumbnail && facts.thumbnail.length > 0 && facts.thumbnail.length <= MAX_THUMBNAIL_BYTES) {
      draft.thumbnail = facts.thumbnail;
    }
    if ((kind === "audio" || kind === "video") && facts.duration_ms !== undefined) draft.duration_ms = Math.round(facts.duration_ms);
    // Checked as the recipient will check it, so a field that does not fit (a caption too
    // long) fails before anything is uploaded.
    encodePayload(draft);
    const plain = new Uint8Array(await upload.file.arrayBuffer());
    const sealed = await sealFile(plain, { maxPlainSize: upload.size });
    const media = this.described(draft, sealed);
    if (carriedInline(sealed.size, draft.thumbnail?.length ?? 0)) {
      delete media.blob_id;
      media.blob = sealed.blob;
    } else {
      upload.stage = "uploading";
      upload.total = sealed.size;
      this.changed();
      media.blob_id = await uploadBlob(this.client.api, sealed.blob, kind, {
        ...this.options,
        onProgress: (done) => {
          upload.done = done;
          this.changed();
        },
      });
    }
    // The sender shows its own file without downloading it again.
    this.remember(media, new Blob([plain as BlobPart], { type: blobTypeOf(media.mime_type) }));
    return media;
  }

  private described(draft: Media, sealed: SealedFile): Media {
    return { ...draft, key: sealed.key, sha256: sealed.sha256, size: sealed.size, plain_size: sealed.plain_size };
  }

  private remember(media: Media, blob: Blob): OpenedFile {
    const opened: OpenedFile = { blob, url: URL.createObjectURL(blob), name: savedName(media), mime: media.mime_type };
    this.cache.put(cacheKey(media), opened);
    return opened;
  }

  /** The file of `message` (a media message, or a template's or reply buttons' file header),
   * downloaded, checked and decrypted; from memory when it was opened before. Throws
   * AttachmentDigestMismatch or AttachmentCorrupt when the blob is not the one the sender
   * described, AttachmentUnavailable when the relay no longer has it, Offline. */
  open(message: Message, options: TransferOptions = {}): Promise<OpenedFile> {
    const payload = this.client.payloadOf(message);
    const media = payload ? attachedFile(payload) : undefined;
    if (!media) return Promise.reject(new Error("this message carries no file"));
    return this.openMedia(media, options);
  }

  openMedia(media: Media, options: TransferOptions = {}): Promise<OpenedFile> {
    const key = cacheKey(media);
    const cached = this.cache.get(key);
    if (cached) return Promise.resolve(cached);
    let running = this.opening.get(key);
    if (!running) {
      running = (async () => {
        const blob = await downloadBlob(this.client.api, media, { ...this.options, ...options });
        const plain = await openBlob(blob, media.key, media.sha256);
        return this.remember(media, new Blob([plain as BlobPart], { type: blobTypeOf(media.mime_type) }));
      })().finally(() => this.opening.delete(key));
      this.opening.set(key, running);
    }
    return running;
  }

  /** The cached file of `media`, if it was opened (or sent) in this tab. */
  peek(media: Media): OpenedFile | undefined {
    return this.cache.get(cacheKey(media));
  }
}

const perClient = new WeakMap<FileClient, Files>();

/** The Files of `client`, made on first use (and then bringing back the files that waited
 * for the network when the tab was last closed). */
export function filesOf(client: FileClient): Files {
  let files = perClient.get(client);
  if (!files) {
    files = new Files(client);
    perClient.set(client, files);
    void files.restore().catch(() => undefined);
  }
  return files;
}

/** Send `file` to `chat` (see Files.send). */
export function sendFile(client: FileClient, chat: string, file: File | Blob, caption?: string): Promise<Message> {
  return filesOf(client).send(chat, file, caption);
}

/** The decrypted file of `message` (see Files.open). */
export function openFile(client: FileClient, message: Message): Promise<OpenedFile> {
  return filesOf(client).open(message);
}
