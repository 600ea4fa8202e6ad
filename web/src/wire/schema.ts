// Strict reading of decoded msgpack against a schema, with msgspec's rules and its error
// texts ("Expected `str` of length <= 4096 - at `$.text`"), so that the browser refuses exactly
// what the Python SDK refuses, for the same reason.
//
// Structs are read key by key in the order of the map, as msgspec reads them: the first bad
// field is the one reported; then missing required fields; then the struct's own rule (its
// `__post_init__`). Unknown fields are skipped unless the struct forbids them.

import { FOREIGN_KEY, kindOf, WIDE_MAP } from "./msgpack";
import { codePoints, pyRepr } from "./pytext";

export class SchemaError extends Error {
  override name = "SchemaError";
}

export interface Schema<T> {
  /** msgspec's name of the expected type: "str", "int | null", "object | array". */
  readonly expected: string;
  accepts(value: unknown): boolean;
  /** The value checked against the constraints; `value` is of an accepted type. */
  read(value: unknown, path: string, asKey?: boolean): T;
  /** `value` as msgspec writes it: struct fields in declaration order, defaults left out.
   * Unchecked: encoders read the result back with `read` to validate it. */
  write?(value: unknown): unknown;
}

/** `value` laid out for msgpack by `schema` (see `Schema.write`). */
export function writeWith(schema: Schema<unknown>, value: unknown): unknown {
  return schema.write ? schema.write(value) : value;
}

export function fail(problem: string, path: string, asKey = false): never {
  if (asKey) throw new SchemaError(`${problem} - at \`key\` in \`${path}\``);
  throw new SchemaError(path === "$" ? problem : `${problem} - at \`${path}\``);
}

/** `value` read with `schema`; throws `SchemaError`. */
export function decodeWith<T>(schema: Schema<T>, value: unknown, path = "$", asKey = false): T {
  if (!schema.accepts(value)) {
    fail(`Expected \`${schema.expected}\`, got \`${kindOf(value)}\``, path, asKey);
  }
  return schema.read(value, path, asKey);
}

export function isPlainMap(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object") return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isForeignKey(key: string): boolean {
  return key.startsWith(FOREIGN_KEY);
}

function foreignKind(key: string): string {
  return key.slice(1, key.indexOf(":"));
}

interface Lengths {
  min?: number;
  max?: number;
}

function checkLength(what: string, n: number, limits: Lengths, path: string, asKey: boolean): void {
  if (limits.min !== undefined && n < limits.min) {
    fail(`Expected \`${what}\` of length >= ${limits.min}`, path, asKey);
  }
  if (limits.max !== undefined && n > limits.max) {
    fail(`Expected \`${what}\` of length <= ${limits.max}`, path, asKey);
  }
}

/** A Python regular expression as msgspec applies it (`re.search`; `$` also matches before a
 * final new line). Only patterns that end in `$` or have no end anchor are supported. */
export function pyPattern(source: string): RegExp {
  const js = source.endsWith("$") ? `${source.slice(0, -1)}(?=\\n?$)` : source;
  return new RegExp(js);
}

export function str(options: Lengths & { pattern?: string } = {}): Schema<string> {
  const pattern = options.pattern === undefined ? undefined : pyPattern(options.pattern);
  return {
    expected: "str",
    accepts: (value) => typeof value === "string",
    read(value, path, asKey = false) {
      const text = value as string;
      checkLength("str", codePoints(text), options, path, asKey);
      if (pattern && !pattern.test(text)) {
        fail(`Expected \`str\` matching regex ${pyRepr(options.pattern!)}`, path, asKey);
      }
      return text;
    },
  };
}

/** An integer; `le` may be a bigint for bounds beyond 2^53 (2^63 - 1). */
export function int(options: { ge?: number; le?: number | bigint } = {}): Schema<number> {
  return {
    expected: "int",
    accepts: (value) => typeof value === "number" && Number.isInteger(value),
    read(value, path, asKey = false) {
      const n = value as number;
      if (options.ge !== undefined && n < options.ge) fail(`Expected \`int\` >= ${options.ge}`, path, asKey);
      if (options.le !== undefined && n > options.le) fail(`Expected \`int\` <= ${options.le}`, path, asKey);
      return n;
    },
  };
}

export const bool: Schema<boolean> = {
  expected: "bool",
  accepts: (value) => typeof value === "boolean",
  read: (value) => value as boolean,
};

export function bytes(options: Lengths = {}): Schema<Uint8Array> {
  return {
    expected: "bytes",
    accepts: (value) => value instanceof Uint8Array,
    read(value, path, asKey = false) {
      const raw = value as Uint8Array;
      checkLength("bytes", raw.length, options, path, asKey);
      return raw.slice();
    },
  };
}

/** A string enum: msgspec says "Invalid enum value 'x'" for a string outside it. */
export function oneOf<T extends string>(values: readonly T[]): Schema<T> {
  return {
    expected: "str",
    accepts: (value) => typeof value === "string",
    read(value, path, asKey = false) {
      if (!(values as readonly string[]).includes(value as string)) {
        fail(`Invalid enum value ${pyRepr(value as string)}`, path, asKey);
      }
      return value as T;
    },
  };
}

/** `T | None`: nil reads as `undefined` (the field is unset). */
export function optional<T>(inner: Schema<T>): Schema<T | undefined> {
  return {
    expected: `${inner.expected} | null`,
    accepts: (value) => value === null || inner.accepts(value),
    read: (value, path, asKey) => (value === null ? undefined : inner.read(value, path, asKey)),
    write: (value) => (value === null || value === undefined ? value : writeWith(inner, value)),
  };
}

export function array<T>(item: Schema<T>, options: Lengths = {}): Schema<T[]> {
  return {
    expected: "array",
    accepts: (value) => Array.isArray(value),
    read(value, path, asKey = false) {
      const items = value as unknown[];
      checkLength("array", items.length, options, path, asKey);
      return items.map((entry, i) => decodeWith(item, entry, `${path}[${i}]`));
    },
    write: (value) => (Array.isArray(value) ? value.map((entry) => writeWith(item, entry)) : value),
  };
}

/** `dict[K, V]`: keys read with `key` (a non-string key is an error), values with `value`. */
export function dict<T>(key: Schema<string>, value: Schema<T>, options: Lengths = {}): Schema<Record<string, T>> {
  return {
    expected: "object",
    accepts: isPlainMap,
    read(map, path, asKey = false) {
      const entries = Object.entries(map as Record<string, unknown>);
      checkLength("object", entries.length, options, path, asKey);
      const out: Record<string, T> = {};
      for (const [name, entry] of entries) {
        if (isForeignKey(name)) fail(`Expected \`str\`, got \`${foreignKind(name)}\``, path, true);
        const checked = decodeWith(key, name, path, true);
        Object.defineProperty(out, checked, {
          value: decodeWith(value, entry, `${path}[...]`),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    },
    write(map) {
      if (!isPlainMap(map)) return map;
      return Object.fromEntries(Object.entries(map).map(([name, entry]) => [name, writeWith(value, entry)]));
    },
  };
}

/** `list[A] | dict[str, B]`, as msgspec names it: "object | array". */
export function listOrMap<A, B>(list: Schema<A[]>, map: Schema<Record<string, B>>): Schema<A[] | Record<string, B>> {
  return {
    expected: "object | array",
    accepts: (value) => list.accepts(value) || map.accepts(value),
    read: (value, path, asKey) => (Array.isArray(value) ? list.read(value, path, asKey) : map.read(value, path, asKey)),
    write: (value) => (Array.isArray(value) ? writeWith(list, value) : writeWith(map, value)),
  };
}

export interface Field {
  readonly name: string;
  readonly schema: Schema<unknown>;
  /** Absent: the field is required. `null`: optional, left unset. Else its default. */
  readonly default?: (() => unknown) | null;
  /** Written even when it has its default (msgspec's `default_factory`, like `v`). */
  readonly alwaysWritten?: boolean;
}

export interface StructSpec {
  readonly fields: readonly Field[];
  /** The tag field and this struct's tag value (`t: "text"`, `type: "BODY"`). */
  readonly tag?: { readonly field: string; readonly value: string };
  readonly forbidUnknown?: boolean;
  /** The struct's own rule across fields: a problem, or null. */
  readonly check?: (decoded: Record<string, unknown>) => string | null;
}

export function required(name: string, schema: Schema<unknown>): Field {
  return { name, schema };
}

export function unset(name: string, schema: Schema<unknown>): Field {
  return { name, schema: optional(schema), default: null };
}

export function withDefault(name: string, schema: Schema<unknown>, value: () => unknown): Field {
  return { name, schema, default: value };
}

function isDefault(value: unknown, fallback: unknown): boolean {
  if (Array.isArray(fallback)) return Array.isArray(value) && value.length === 0 && fallback.length === 0;
  if (isPlainMap(fallback)) {
    return isPlainMap(value) && Object.keys(value).length === 0 && Object.keys(fallback).length === 0;
  }
  return value === fallback;
}

/** A msgspec Struct read from a map; the result has the tag first, then the fields in
 * declaration order, defaults filled in and unset optional fields left out. */
export function struct<T>(spec: StructSpec): Schema<T> {
  const byName = new Map(spec.fields.map((field) => [field.name, field]));
  const wide = spec.fields.length + (spec.tag ? 1 : 0) >= 16;
  return {
    expected: "object",
    accepts: isPlainMap,
    read(value, path) {
      const seen = new Map<string, unknown>();
      for (const [name, entry] of Object.entries(value as Record<string, unknown>)) {
        if (isForeignKey(name)) fail(`Expected \`str\`, got \`${foreignKind(name)}\``, path, true);
        if (spec.tag && name === spec.tag.field) {
          const tag = decodeWith(str(), entry, `${path}.${name}`);
          if (tag !== spec.tag.value) fail(`Invalid value ${pyRepr(tag)}`, `${path}.${name}`);
          continue;
        }
        const field = byName.get(name);
        if (!field) {
          if (spec.forbidUnknown) fail(`Object contains unknown field \`${name}\``, path);
          continue;
        }
        seen.set(name, decodeWith(field.schema, entry, `${path}.${name}`));
      }
      const out: Record<string, unknown> = {};
      if (spec.tag) out[spec.tag.field] = spec.tag.value;
      for (const field of spec.fields) {
        let decoded = seen.get(field.name);
        if (!seen.has(field.name)) {
          if (field.default === undefined) fail(`Object missing required field \`${field.name}\``, path);
          decoded = field.default === null ? undefined : field.default();
        }
        if (decoded !== undefined) out[field.name] = decoded;
      }
      const problem = spec.check?.(out);
      if (problem) fail(problem, path);
      return out as T;
    },
    write(value) {
      if (!isPlainMap(value)) return value;
      const out: Record<string, unknown> = {};
      if (wide) Object.defineProperty(out, WIDE_MAP, { value: true });
      if (spec.tag) out[spec.tag.field] = spec.tag.value;
      for (const field of spec.fields) {
        const given = Object.hasOwn(value, field.name) ? value[field.name] : undefined;
        if (given === undefined || given === null) {
          if (field.alwaysWritten && typeof field.default === "function") out[field.name] = field.default();
          continue;
        }
        if (!field.alwaysWritten && typeof field.default === "function" && isDefault(given, field.default())) continue;
        out[field.name] = writeWith(field.schema, given);
      }
      return out;
    },
  };
}

/** A union of tagged structs (msgspec's `A | B` with a `tag_field`): the tag picks one. */
export function tagged<T>(field: string, variants: Record<string, Schema<unknown>>): Schema<T> {
  return {
    expected: "object",
    accepts: isPlainMap,
    read(value, path) {
      const map = value as Record<string, unknown>;
      if (!Object.hasOwn(map, field)) fail(`Object missing required field \`${field}\``, path);
      const tag = decodeWith(str(), map[field], `${path}.${field}`);
      const variant = Object.hasOwn(variants, tag) ? variants[tag] : undefined;
      if (!variant) fail(`Invalid value ${pyRepr(tag)}`, `${path}.${field}`);
      return variant.read(value, path) as T;
    },
    write(value) {
      const tag = isPlainMap(value) ? value[field] : undefined;
      const variant = typeof tag === "string" && Object.hasOwn(variants, tag) ? variants[tag] : undefined;
      return variant ? writeWith(variant, value) : value;
    },
  };
}
