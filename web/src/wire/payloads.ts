// End-to-end payloads (docs/protocol.md §8.2, §8.3, §8.5): what a client encrypts into a
// ciphertext's body, as the Python SDK's wire/e2e.py defines them.
//
// Field names are the wire names. Every payload is a msgpack map with the tag `t` and the
// version `v`, framed and padded (framing.ts). Forward compatibility, on purpose:
// - an unknown tag, or a `v` newer than PAYLOAD_VERSION, decodes to `Unsupported`, so the app
//   can show "update to see this message" instead of failing;
// - unknown fields of a known tag are ignored (a newer sender may add optional ones);
// - known tags with missing, mistyped or out-of-range fields throw `InvalidPayload`, with
//   msgspec's reason.

import { frame, InvalidPayload, MAX_PAYLOAD_BYTES, PayloadTooLarge, unframe } from "./framing";
import { MsgpackError, pack, unpackWith } from "./msgpack";
import { isPyBlank } from "./pytext";
import {
  array,
  bool,
  bytes,
  decodeWith,
  dict,
  type Field,
  int,
  listOrMap,
  oneOf,
  required,
  type Schema,
  SchemaError,
  str,
  struct,
  unset,
  withDefault,
  writeWith,
} from "./schema";

export {
  InvalidPayload,
  MAX_PAYLOAD_BYTES,
  MAX_TRANSCRIPT_BYTES,
  paddedSize,
  PayloadTooLarge,
} from "./framing";

export const PAYLOAD_VERSION = 1;
export const MAX_REPLY_BUTTONS = 3;
export const MAX_LIST_ROWS = 10;
/** How long a typing indicator shows at most (as in WhatsApp). */
export const TYPING_MS = 25_000;
/** Largest thumbnail carried inside a media payload (a small JPEG). */
export const MAX_THUMBNAIL_BYTES = 12 * 1024;
/** Largest blob carried inside a media payload instead of the relay's blob store. */
export const MAX_INLINE_BLOB_BYTES = 16 * 1024;

export type MediaKind = "image" | "document" | "audio" | "video" | "sticker";
export const MEDIA_KINDS: readonly MediaKind[] = ["image", "document", "audio", "video", "sticker"];
export type InteractiveKind = "button" | "list";
export type ReplyKind = "button_reply" | "list_reply";

const VISUAL_KINDS: readonly MediaKind[] = ["image", "video", "sticker"];
const HEADER_KINDS: readonly MediaKind[] = ["image", "video", "document"];
const TIMED_KINDS: readonly MediaKind[] = ["audio", "video"];

// Fields with a default are optional here; `decodePayload` always fills them in (`v` 1,
// `preview_url` false, `buttons` [], ...), and `encodePayload` leaves them off the wire.

/** The message being quoted (Cloud API `context`). */
export interface ReplyContext {
  message_id: string;
  sender?: string;
}

export interface Text {
  t: "text";
  v?: number;
  text: string;
  preview_url?: boolean;
  context?: ReplyContext;
}

/** An emoji on a message; "" removes the sender's reaction. */
export interface Reaction {
  t: "reaction";
  v?: number;
  message_id: string;
  emoji: string;
}

/** The user read these messages (keeps read markers in step across the user's devices). */
export interface ReadReceipt {
  t: "read_receipt";
  v?: number;
  message_ids: string[];
}

/** A customer's device received and accepted a template message (sent under class receipt):
 * `signature` is its Ed25519 identity key's signature over the delivery statement
 * (crypto/delivery.ts), so the business can show the delivery to whoever it must. */
export interface DeliveryReceipt {
  t: "delivery_receipt";
  v?: number;
  /** The relay's message id of the template message. */
  message_id: string;
  template_id: string;
  /** When this device decrypted the message, by its clock (Unix milliseconds). */
  delivered_ms: number;
  signature: Uint8Array;
}

/** A copy of a message this account sent, for its other devices: `payload` is the framed
 * encoding of the message sent (never itself a transcript). */
export interface SentTranscript {
  t: "sent_transcript";
  v?: number;
  to: string;
  message_id: string;
  client_msg_id: string;
  server_ms: number;
  payload: Uint8Array;
}

export type TemplateParameters = Record<string, string[] | Record<string, string>>;

/** A message made of the operator-signed template `template_id`, shown only as that
 * template renders it (templates.ts). */
export interface Template {
  t: "template";
  v?: number;
  template_id: string;
  name: string;
  language: string;
  parameters?: TemplateParameters;
  /** `button:N` → the payload a tap on that QUICK_REPLY button returns; never shown. */
  button_payloads?: Record<string, string>;
  /** The file of an IMAGE, VIDEO or DOCUMENT header. */
  header_media?: Media;
}

export interface Button {
  id: string;
  title: string;
}

export interface ListRow {
  id: string;
  title: string;
  description?: string;
}

export interface ListSection {
  title?: string;
  rows: ListRow[];
}

/** Reply buttons or a list to choose from (rules across fields: §8.5). */
export interface Interactive {
  t: "interactive";
  v?: number;
  type: InteractiveKind;
  body: string;
  buttons?: Button[];
  sections?: ListSection[];
  header?: string;
  footer?: string;
  button?: string;
  context?: ReplyContext;
  /** Reply buttons only, instead of `header`: an image, video or document. */
  header_media?: Media;
}

/** The answer to an `interactive` message: the button tapped or the row picked. */
export interface InteractiveReply {
  t: "interactive_reply";
  v?: number;
  kind: ReplyKind;
  message_id: string;
  id: string;
  title: string;
  description?: string;
}

/** A tap on a QUICK_REPLY button of the template message `message_id`. */
export interface ButtonReply {
  t: "button_reply";
  v?: number;
  message_id: string;
  payload: string;
  text: string;
}

/** The sender is typing an answer to `message_id` (class SYSTEM; shown up to TYPING_MS). */
export interface Typing {
  t: "typing";
  v?: number;
  message_id: string;
}

/** Please encrypt `message_id` again over the new session this request arrives on (§8.6). */
export interface RetryRequest {
  t: "retry";
  v?: number;
  message_id: string;
  sender_device: number;
  attempt?: number;
}

/** The device named in a retry request holds no such message it sent to the requester. */
export interface RetryRefused {
  t: "retry_refused";
  v?: number;
  message_id: string;
}

/** An attachment (§8.8): uploaded as the blob `blob_id`, or carried inline as `blob`. */
export interface Media {
  t: "media";
  v?: number;
  kind: MediaKind;
  key: Uint8Array;
  sha256: Uint8Array;
  size: number;
  plain_size: number;
  mime_type: string;
  blob_id?: string;
  blob?: Uint8Array;
  filename?: string;
  caption?: string;
  width?: number;
  height?: number;
  duration_ms?: number;
  voice?: boolean;
  thumbnail?: Uint8Array;
  context?: ReplyContext;
}

export type KnownPayload =
  | Text
  | Reaction
  | ReadReceipt
  | DeliveryReceipt
  | SentTranscript
  | Template
  | Interactive
  | InteractiveReply
  | ButtonReply
  | Typing
  | Media
  | RetryRequest
  | RetryRefused;

/** A payload this client does not understand: a tag it does not know (`tag`), or a newer
 * `v`. Its own `t` keeps the union discriminated. */
export interface Unsupported {
  t: "unsupported";
  tag: string;
  v: number;
}

export type Payload = KnownPayload | Unsupported;

// --- schemas (the msgspec structs of wire/e2e.py, field for field) ---------------------------

const messageRef = str({ min: 1, max: 64 });
const accountRef = str({ min: 1, max: 32 });
const version = withDefault("v", int(), () => PAYLOAD_VERSION);
const versionField = { ...version, alwaysWritten: true };

function payload(
  tag: string,
  fields: readonly Field[],
  check?: (p: Record<string, unknown>) => string | null,
): Schema<unknown> {
  // msgspec puts the base's keyword-only `v` after the payload's own fields.
  return struct({ tag: { field: "t", value: tag }, fields: [...fields, versionField], ...(check ? { check } : {}) });
}

const replyContext = struct<ReplyContext>({
  fields: [required("message_id", messageRef), unset("sender", accountRef)],
});

function repeated(values: Iterable<string>): boolean {
  const seen = new Set<string>();
  for (const value of values) {
    if (seen.has(value)) return true;
    seen.add(value);
  }
  return false;
}

function mediaProblem(m: Media): string | null {
  if ((m.blob_id === undefined) === (m.blob === undefined)) return "exactly one of blob_id and blob names the file";
  if (m.blob !== undefined && m.blob.length !== m.size) return "the inline blob's length is not its size";
  if ((m.width === undefined) !== (m.height === undefined)) return "width and height come together";
  if (m.width !== undefined && !VISUAL_KINDS.includes(m.kind)) return "only images, videos and stickers have dimensions";
  if (m.thumbnail !== undefined && !VISUAL_KINDS.includes(m.kind)) return "only images, videos and stickers have a thumbnail";
  if (m.duration_ms !== undefined && !TIMED_KINDS.includes(m.kind)) return "only audio and video have a duration";
  if (m.voice && m.kind !== "audio") return "only audio is a voice note";
  return null;
}

const pixels = int({ ge: 1, le: 65_535 });
const media = payload(
  "media",
  [
    required("kind", oneOf(MEDIA_KINDS)),
    required("key", bytes({ min: 32, max: 32 })),
    required("sha256", bytes({ min: 32, max: 32 })),
    required("size", int({ ge: 1, le: 2 ** 53 })),
    required("plain_size", int({ ge: 0, le: 2 ** 53 })),
    required("mime_type", str({ min: 1, max: 255 })),
    unset("blob_id", str({ pattern: "^[A-Za-z0-9_-]{1,128}$" })),
    unset("blob", bytes({ min: 1, max: MAX_INLINE_BLOB_BYTES })),
    unset("filename", str({ min: 1, max: 255 })),
    unset("caption", str({ min: 1, max: 1024 })),
    unset("width", pixels),
    unset("height", pixels),
    unset("duration_ms", int({ ge: 0, le: 2 ** 53 })),
    withDefault("voice", bool, () => false),
    unset("thumbnail", bytes({ min: 1, max: MAX_THUMBNAIL_BYTES })),
    unset("context", replyContext),
  ],
  (m) => {
    const problem = mediaProblem(m as unknown as Media);
    return problem && `media ${String(m["kind"])}: ${problem}`;
  },
);

const text = payload("text", [
  required("text", str({ min: 1, max: 4096 })),
  withDefault("preview_url", bool, () => false),
  unset("context", replyContext),
]);

const reaction = payload("reaction", [required("message_id", messageRef), required("emoji", str({ max: 16 }))]);

const readReceipt = payload("read_receipt", [required("message_ids", array(messageRef, { min: 1, max: 256 }))]);

const deliveryReceipt = payload("delivery_receipt", [
  required("message_id", messageRef),
  required("template_id", str({ min: 1, max: 64 })),
  required("delivered_ms", int({ ge: 0, le: 2 ** 53 })),
  required("signature", bytes({ min: 64, max: 64 })),
]);

const sentTranscript = payload("sent_transcript", [
  required("to", accountRef),
  required("message_id", messageRef),
  required("client_msg_id", str({ min: 1, max: 64 })),
  required("server_ms", int({ ge: 0 })),
  required("payload", bytes()),
]);

const template = payload(
  "template",
  [
    required("template_id", str({ pattern: "^[1-9][0-9]{0,18}$" })),
    required("name", str({ min: 1, max: 512 })),
    required("language", str({ min: 2, max: 15 })),
    withDefault("parameters", dict(str(), listOrMap(array(str()), dict(str(), str()))), () => ({})),
    withDefault(
      "button_payloads",
      dict(str({ pattern: "^button:[0-9]$" }), str({ min: 1, max: 256 }), { max: 10 }),
      () => ({}),
    ),
    unset("header_media", media),
  ],
  (t) => {
    const file = t["header_media"] as Media | undefined;
    if (file && !HEADER_KINDS.includes(file.kind)) return `template: a ${file.kind} cannot be a header`;
    if (file && (file.caption !== undefined || file.context !== undefined)) {
      return "template: a header's file has no caption or reply of its own";
    }
    return null;
  },
);

const button = struct<Button>({
  fields: [required("id", str({ min: 1, max: 256 })), required("title", str({ min: 1, max: 20 }))],
});
const listRow = struct<ListRow>({
  fields: [
    required("id", str({ min: 1, max: 200 })),
    required("title", str({ min: 1, max: 24 })),
    unset("description", str({ max: 72 })),
  ],
});
const listSection = struct<ListSection>({
  fields: [unset("title", str({ max: 24 })), required("rows", array(listRow, { min: 1, max: 10 }))],
});

function interactiveProblem(p: Interactive): string | null {
  const file = p.header_media;
  if (file) {
    if (p.type !== "button") return "only reply buttons have a file as their header";
    if (p.header !== undefined) return "the header is a text or a file, not both";
    if (!HEADER_KINDS.includes(file.kind)) return `a header's file is an image, a video or a document, not ${file.kind}`;
    if (file.context !== undefined || file.caption !== undefined) return "a header's file has no caption and quotes nothing";
  }
  const buttons = p.buttons ?? [];
  const sections = p.sections ?? [];
  if (p.type === "button") {
    if (buttons.length === 0) return `needs 1 to ${MAX_REPLY_BUTTONS} buttons`;
    if (sections.length > 0 || p.button !== undefined) return "has buttons only, no list sections or menu button";
    if (repeated(buttons.map((b) => b.id))) return "button ids must differ";
    if (repeated(buttons.map((b) => b.title))) return "button titles must differ";
    return null;
  }
  if (p.button === undefined) return "needs the label of its menu button (button)";
  if (sections.length === 0) return "needs 1 to 10 sections";
  if (buttons.length > 0) return "has list sections only, no reply buttons";
  const rows = sections.flatMap((s) => s.rows);
  if (rows.length > MAX_LIST_ROWS) return `has ${rows.length} rows, at most ${MAX_LIST_ROWS} in all sections together`;
  if (repeated(rows.map((r) => r.id))) return "row ids must differ";
  if (sections.length > 1 && sections.some((s) => isPyBlank(s.title ?? ""))) {
    return "every section needs a title when there is more than one";
  }
  return null;
}

const interactive = payload(
  "interactive",
  [
    required("type", oneOf<InteractiveKind>(["button", "list"])),
    required("body", str({ min: 1, max: 1024 })),
    withDefault("buttons", array(button, { max: MAX_REPLY_BUTTONS }), () => []),
    withDefault("sections", array(listSection, { max: 10 }), () => []),
    unset("header", str({ min: 1, max: 60 })),
    unset("footer", str({ min: 1, max: 60 })),
    unset("button", str({ min: 1, max: 20 })),
    unset("context", replyContext),
    unset("header_media", media),
  ],
  (p) => {
    const problem = interactiveProblem(p as unknown as Interactive);
    return problem && `interactive ${String(p["type"])}: ${problem}`;
  },
);

const interactiveReply = payload(
  "interactive_reply",
  [
    required("kind", oneOf<ReplyKind>(["button_reply", "list_reply"])),
    required("message_id", messageRef),
    required("id", str({ min: 1, max: 256 })),
    required("title", str({ min: 1, max: 24 })),
    unset("description", str({ max: 72 })),
  ],
  (p) => (p["kind"] === "button_reply" && p["description"] !== undefined ? "a button reply has no description" : null),
);

const buttonReply = payload("button_reply", [
  required("message_id", messageRef),
  required("payload", str({ min: 1, max: 256 })),
  required("text", str({ min: 1, max: 25 })),
]);

const typing = payload("typing", [required("message_id", messageRef)]);

const retryRequest = payload("retry", [
  required("message_id", messageRef),
  required("sender_device", int({ ge: 1, le: 2n ** 63n - 1n })),
  withDefault("attempt", int({ ge: 1, le: 100 }), () => 1),
]);

const retryRefused = payload("retry_refused", [required("message_id", messageRef)]);

const SCHEMAS: Readonly<Record<KnownPayload["t"], Schema<unknown>>> = {
  text,
  reaction,
  read_receipt: readReceipt,
  delivery_receipt: deliveryReceipt,
  sent_transcript: sentTranscript,
  template,
  interactive,
  interactive_reply: interactiveReply,
  button_reply: buttonReply,
  typing,
  media,
  retry: retryRequest,
  retry_refused: retryRefused,
};

function schemaOf(tag: string): Schema<unknown> | undefined {
  return Object.hasOwn(SCHEMAS, tag) ? SCHEMAS[tag as KnownPayload["t"]] : undefined;
}

/** Just enough of any payload, of any version, to route it. */
const header = struct<{ t: string; v: number }>({
  fields: [required("t", str()), withDefault("v", int({ ge: 1 }), () => PAYLOAD_VERSION)],
});

// --- encoding and decoding -------------------------------------------------------------------

function invalid(error: unknown): never {
  if (error instanceof SchemaError || error instanceof MsgpackError) {
    throw new InvalidPayload(`invalid payload: ${error.message}`);
  }
  throw error;
}

function decodeBody(body: Uint8Array): Payload {
  try {
    let map: unknown;
    const { t, v } = unpackWith(body, (value) => {
      map = value;
      return decodeWith(header, value);
    });
    const schema = schemaOf(t);
    if (!schema || v > PAYLOAD_VERSION) return { t: "unsupported", tag: t, v };
    return decodeWith(schema, map) as KnownPayload;
  } catch (error) {
    return invalid(error);
  }
}

/** The payload framed in `raw` (a decrypted plaintext); the padding is ignored. Every field
 * with a default is filled in. Throws `InvalidPayload`. */
export function decodePayload(raw: Uint8Array): Payload {
  return decodeBody(unframe(raw));
}

/** The framed, padded plaintext of `payload`, ready to encrypt for every device.
 *
 * The payload is checked as a receiver checks it (a bad field is the sender's error, not a
 * message its peers silently drop): `InvalidPayload`; above the size limit (49 152 bytes,
 * 51 200 for a transcript) `PayloadTooLarge`. */
export function encodePayload(payload: KnownPayload): Uint8Array {
  const schema = schemaOf(payload.t);
  let body: Uint8Array;
  try {
    body = pack(schema ? writeWith(schema, payload) : payload);
  } catch (error) {
    return invalid(error);
  }
  if (decodeBody(body).t === "unsupported") {
    throw new InvalidPayload(`only payloads of version ${PAYLOAD_VERSION} can be encoded`);
  }
  const transcript = payload.t === "sent_transcript";
  if (transcript) checkTranscribed(payload.payload);
  return frame(body, { transcript, tag: payload.t });
}

function checkTranscribed(raw: Uint8Array): void {
  if (raw.length > MAX_PAYLOAD_BYTES) {
    throw new PayloadTooLarge(`a transcribed payload exceeds ${MAX_PAYLOAD_BYTES} bytes`);
  }
  const inner = decodePayload(raw);
  if (inner.t === "sent_transcript" || inner.t === "unsupported") {
    throw new InvalidPayload("a transcript must wrap a message payload of a known version");
  }
}

/** The file a message carries: a media message's, or the file header of a template or of
 * reply buttons (`undefined`: none). */
export function attachedFile(payload: Payload): Media | undefined {
  if (payload.t === "media") return payload;
  if (payload.t === "template" || payload.t === "interactive") return payload.header_media;
  return undefined;
}
