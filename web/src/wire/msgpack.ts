// MessagePack as the Python side writes and reads it with msgspec: integers as integers in
// their smallest form, bin as Uint8Array, maps with string keys.
//
// Signatures and the relay's canonical checks need the bytes msgspec writes, header for
// header, so `pack` lays out arrays and maps itself (msgspec gives some structs a longer map
// header than their size needs, see WIDE_MAP) and has @msgpack/msgpack write every value in
// them. Every structure we sign or encrypt holds only integers, strings, booleans, bytes,
// arrays and maps: `pack` refuses anything else (a fraction, a lone surrogate, which is no
// UTF-8). `unpack` keeps a non-string map key visible (msgspec names it in its error) instead
// of refusing the whole document, because inside a field a reader skips, such a key is no
// error.

import { Decoder, Encoder, ExtData } from "@msgpack/msgpack";

export class MsgpackError extends Error {
  override name = "MsgpackError";
}

/** Marks a map key that was not a string: `"\0int:5"`. Schemas report it as msgspec does. */
export const FOREIGN_KEY = "\u0000";

// Integers from 2^32 on are handed to the encoder as bigint, so that every integer is written
// as one (the encoder would write a number beyond 2^53 - 1 as a float).
const encoder = new Encoder({ useBigInt64: true });
const decoder = new Decoder({
  useBigInt64: false,
  mapKeyConverter: (key: unknown): string | number =>
    typeof key === "string" ? key : `${FOREIGN_KEY}${kindOf(key)}:${String(key)}`,
});

/** Marks a map that msgspec writes with a 16-bit length whatever its size: a struct that
 * leaves defaults out and has 16 fields or more (tag included) reserves the longer header. */
export const WIDE_MAP: unique symbol = Symbol("msgpack.wideMap");

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function header(small: number, size: number, wide: boolean, kind: "array" | "map"): Uint8Array {
  if (size < 16 && !wide) return Uint8Array.of(small | size);
  const out = new Uint8Array(size < 0x10000 ? 3 : 5);
  const view = new DataView(out.buffer);
  if (size < 0x10000) {
    out[0] = kind === "map" ? 0xde : 0xdc;
    view.setUint16(1, size);
  } else {
    out[0] = kind === "map" ? 0xdf : 0xdd;
    view.setUint32(1, size);
  }
  return out;
}

function scalar(value: unknown): Uint8Array {
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new MsgpackError(`not an integer: ${value}`);
    if (value < -(2 ** 63) || value >= 2 ** 64) throw new MsgpackError(`an integer beyond 64 bits: ${value}`);
    return encoder.encode(Math.abs(value) >= 2 ** 32 ? BigInt(value) : value);
  }
  if (typeof value === "string" && LONE_SURROGATE.test(value)) {
    throw new MsgpackError("a string with a lone surrogate is no UTF-8");
  }
  if (value === null || typeof value === "string" || typeof value === "boolean" || value instanceof Uint8Array) {
    return encoder.encode(value);
  }
  throw new MsgpackError(`cannot encode ${typeof value === "bigint" ? "a bigint" : kindOf(value)}`);
}

function parts(value: unknown, out: Uint8Array[], depth: number): void {
  if (depth > 64) throw new MsgpackError("too deeply nested to encode");
  if (Array.isArray(value)) {
    out.push(header(0x90, value.length, false, "array"));
    for (const item of value) parts(item, out, depth + 1);
  } else if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    const entries = Object.entries(value).filter(([, item]) => item !== undefined);
    const wide = (value as { [WIDE_MAP]?: boolean })[WIDE_MAP] === true;
    out.push(header(0x80, entries.length, wide, "map"));
    for (const [key, item] of entries) {
      out.push(scalar(key));
      parts(item, out, depth + 1);
    }
  } else {
    out.push(scalar(value));
  }
}

/** The msgpack encoding of `value`, as msgspec writes it: maps in the order of the object's
 * keys (`undefined` members left out), the smallest form of every integer, length and header
 * (but see WIDE_MAP). Throws `MsgpackError` for anything but integers, strings, booleans,
 * null, Uint8Array, arrays and plain objects. */
export function pack(value: unknown): Uint8Array {
  const out: Uint8Array[] = [];
  parts(value, out, 0);
  const bytes = new Uint8Array(out.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of out) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}

/** The one msgpack object in `bytes`; throws `MsgpackError` for malformed data or trailing
 * bytes. Maps become plain objects, bin a Uint8Array (a view of `bytes`), unknown extensions
 * `ExtData`. */
export function unpack(bytes: Uint8Array): unknown {
  return unpackWith(bytes, (value) => value);
}

/** `read` applied to the msgpack object in `bytes`. As msgspec does, trailing bytes are
 * refused only once the object itself has been read without error. */
export function unpackWith<T>(bytes: Uint8Array, read: (value: unknown) => T): T {
  let value: unknown;
  let trailing: string | null = null;
  try {
    value = decoder.decode(bytes);
  } catch (error) {
    const extra = error instanceof RangeError ? EXTRA.exec(error.message) : null;
    if (!extra) throw new MsgpackError(malformed(error));
    trailing = `MessagePack data is malformed: trailing characters (byte ${extra[1]})`;
    try {
      value = decoder.decode(bytes.subarray(0, Number(extra[1])));
    } catch (again) {
      throw new MsgpackError(malformed(again));
    }
  }
  const result = read(value);
  if (trailing !== null) throw new MsgpackError(trailing);
  return result;
}

const EXTRA = /^Extra \d+ of \d+ byte\(s\) found at buffer\[(\d+)\]$/;

// msgspec's words for the same causes. The position of a bad type byte is where the decoder
// stopped (it keeps it in a field its types call private).
function malformed(error: unknown): string {
  if (error instanceof RangeError) return "Input data was truncated";
  const reason = error instanceof Error ? error.message : String(error);
  const opcode = /^Unrecognized type byte: 0x([0-9a-f]{2})$/.exec(reason);
  const position = (decoder as unknown as { pos?: unknown }).pos;
  if (opcode && typeof position === "number") {
    return `MessagePack data is malformed: invalid opcode '\\x${opcode[1]}' (byte ${position - 1})`;
  }
  return `MessagePack data is malformed: ${reason}`;
}

/** msgspec's name for the type of a decoded value, as it writes it in its errors. */
export function kindOf(value: unknown): string {
  if (value === null || value === undefined) return "None";
  if (typeof value === "boolean") return "bool";
  if (typeof value === "number") return Number.isInteger(value) ? "int" : "float";
  if (typeof value === "bigint") return "int";
  if (typeof value === "string") return "str";
  if (value instanceof Uint8Array) return "bytes";
  if (Array.isArray(value)) return "array";
  if (value instanceof ExtData) return "ext";
  if (value instanceof Date) return "datetime";
  return "object";
}
