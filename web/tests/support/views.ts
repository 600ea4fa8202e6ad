// JSON views of payloads for comparing with the Python reference: bytes as standard base64,
// fields as they are on the wire (defaults left out), as msgspec.json writes them.

import { toBase64 } from "../../src/wire/base64";
import { unframe } from "../../src/wire/framing";
import { unpack } from "../../src/wire/msgpack";

export function jsonView(value: unknown): unknown {
  if (value instanceof Uint8Array) return toBase64(value);
  if (Array.isArray(value)) return value.map(jsonView);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonView(v)]));
  }
  return value;
}

/** The wire map framed in `raw`, as JSON. */
export function wireView(raw: Uint8Array): unknown {
  return jsonView(unpack(unframe(raw)));
}

export function bytesOf(fill: number, length: number): Uint8Array {
  return new Uint8Array(length).fill(fill);
}
