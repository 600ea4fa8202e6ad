// Interim: the end-to-end payloads (docs/protocol.md §8.1, §8.2), without validation.

import { decode, encode } from "@msgpack/msgpack";

export class InvalidPayload extends Error {
  override name = "InvalidPayload";
}

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
export interface ReadReceipt {
  t: "read_receipt";
  v?: number;
  message_ids: string[];
}
export interface SentTranscript {
  t: "sent_transcript";
  v?: number;
  to: string;
  message_id: string;
  client_msg_id: string;
  server_ms: number;
  payload: Uint8Array;
}
export interface Typing {
  t: "typing";
  v?: number;
  message_id: string;
}
export interface Unsupported {
  t: "unsupported";
  tag: string;
  version: number;
}
export type Payload = Text | ReadReceipt | SentTranscript | Typing | { t: string; v?: number; [k: string]: unknown };

export function paddedSize(n: number): number {
  const size = Math.ceil((n + 2) / 64) * 64;
  if (size <= 1024) return size;
  const e = Math.floor(Math.log2(size));
  const s = Math.floor(Math.log2(e)) + 1;
  const mask = 2 ** (e - s) - 1;
  return Math.floor((size + mask) / (mask + 1)) * (mask + 1);
}

export function encodePayload(payload: Payload): Uint8Array {
  const { t, v: _v, ...rest } = payload as { t: string; v?: number };
  const body = encode({ t, v: 1, ...rest }, { ignoreUndefined: true });
  const out = new Uint8Array(paddedSize(body.length));
  out[0] = body.length >> 8;
  out[1] = body.length & 0xff;
  out.set(body, 2);
  return out;
}

export function decodePayload(framed: Uint8Array): Payload {
  if (framed.length < 2) throw new InvalidPayload("too short");
  const n = (framed[0]! << 8) | framed[1]!;
  if (n + 2 > framed.length) throw new InvalidPayload("length beyond the input");
  const value = decode(framed.subarray(2, 2 + n)) as Payload;
  if (typeof value !== "object" || value === null || typeof value.t !== "string") {
    throw new InvalidPayload("not a payload");
  }
  return value;
}
