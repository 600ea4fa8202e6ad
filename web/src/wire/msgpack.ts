// MessagePack as the Python side writes and reads it with msgspec: integers as integers in
// their smallest form, bin as Uint8Array, maps with string keys.
//
// Every structure we sign or encrypt holds only integers, strings, booleans, bytes, arrays and
// maps, so `pack` refuses what msgspec could not have written (a number that is not a safe
// integer would become a float, a lone surrogate is no UTF-8). `unpack` keeps a non-string map
// key visible (msgspec names it in its error) instead of refusing the whole document, because
// inside a field a reader skips, such a key is no error.

import { Decoder, Encoder, ExtData } from "@msgpack/msgpack";

export class MsgpackError extends Error {
  override name = "MsgpackError";
}

/** Marks a map key that was not a string: `"\0int:5"`. Schemas report it as msgspec does. */
export const FOREIGN_KEY = "\u0000";

const encoder = new Encoder({ useBigInt64: false, ignoreUndefined: true });
const decoder = new Decoder({
  useBigInt64: false,
  mapKeyConverter: (key: unknown): string | number =>
    typeof key === "string" ? key : `${FOREIGN_KEY}${kindOf(key)}:${String(key)}`,
});

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkPackable(value: unknown, depth: number): void {
  if (depth > 64) throw new MsgpackError("too deeply nested to encode");
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new MsgpackError(`not an integer within 2^53: ${value}`);
  } else if (typeof value === "string") {
    if (LONE_SURROGATE.test(value)) throw new MsgpackError("a string with a lone surrogate is no UTF-8");
  } else if (Array.isArray(value)) {
    for (const item of value) checkPackable(item, depth + 1);
  } else if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    for (const [key, item] of Object.entries(value)) {
      checkPackable(key, depth + 1);
      checkPackable(item, depth + 1);
    }
  }
}

/** The msgpack encoding of `value` (maps in the order of the object's keys; `undefined`
 * members left out). Throws `MsgpackError` for anything but integers, strings, booleans,
 * null, Uint8Array, arrays and plain objects. */
export function pack(value: unknown): Uint8Array {
  checkPackable(value, 0);
  return encoder.encode(value);
}

/** The one msgpack object in `bytes`; throws `MsgpackError` for malformed data or trailing
 * bytes. Maps become plain objects, bin a Uint8Array (a view of `bytes`), unknown extensions `ExtData`. */
export function unpack(bytes: Uint8Array): unknown {
  try {
    return decoder.decode(bytes);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new MsgpackError(`MessagePack data is malformed: ${reason}`);
  }
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
