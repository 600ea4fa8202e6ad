// Payloads on their own (docs/protocol.md §8.1-8.3, §8.5): round trips, padding, forward
// compatibility and limits, as tests/wire/test_e2e.py checks them in Python.

import { encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { frame, unframe } from "../src/wire/framing";
import {
  attachedFile,
  decodePayload,
  encodePayload,
  InvalidPayload,
  type KnownPayload,
  MAX_PAYLOAD_BYTES,
  MAX_TRANSCRIPT_BYTES,
  type Media,
  paddedSize,
  type Payload,
  PayloadTooLarge,
  type SentTranscript,
  type Template,
} from "../src/wire/payloads";
import { ACCOUNT_ID, BLOB_ID, examples, MESSAGE_ID } from "./support/examples";
import { wireView } from "./support/views";

/** A raw map framed as a (possibly newer or broken) sender would frame it. */
function framed(body: unknown): Uint8Array {
  const raw = encode(body, { ignoreUndefined: true });
  const out = new Uint8Array(Math.ceil((raw.length + 2) / 64) * 64);
  out.set([raw.length >> 8, raw.length & 0xff]);
  out.set(raw, 2);
  return out;
}

const DEFAULTS: Record<string, Record<string, unknown>> = {
  text: { preview_url: false },
  template: { parameters: {}, button_payloads: {} },
  interactive: { buttons: [], sections: [] },
  retry: { attempt: 1 },
  media: { voice: false },
};

/** What decoding gives back: the payload with `v` and every default filled in. */
function filled(p: KnownPayload): Payload {
  const out = { ...DEFAULTS[p.t], ...p, v: 1 } as Record<string, unknown>;
  for (const key of ["header_media"]) {
    if (out[key]) out[key] = filled(out[key] as Media);
  }
  return out as unknown as Payload;
}

function transcript(payload: Uint8Array, changes: Partial<SentTranscript> = {}): SentTranscript {
  return { t: "sent_transcript", to: ACCOUNT_ID, message_id: MESSAGE_ID, client_msg_id: "c-0001", server_ms: 1_763_700_000_000, payload, ...changes };
}

function templateOfSize(n: number): Template {
  return { t: "template", template_id: "1", name: "big", language: "en", parameters: { body: ["x".repeat(n - 56)] } };
}

describe("payloads", () => {
  it("round trip, every kind, in whole 64-byte blocks", () => {
    for (const [name, payload] of examples()) {
      const raw = encodePayload(payload);
      expect(decodePayload(raw), name).toEqual(filled(payload));
      expect(raw.length % 64, name).toBe(0);
    }
  });

  it("carry their tag and version, and leave unset fields off the wire", () => {
    for (const [name, payload] of examples()) {
      const body = wireView(encodePayload(payload)) as Record<string, unknown>;
      expect([body["t"], body["v"]], name).toEqual([payload.t, 1]);
    }
    expect(wireView(encodePayload({ t: "text", text: "hi", preview_url: false }))).toEqual({ t: "text", text: "hi", v: 1 });
    expect(wireView(encodePayload({ t: "retry", message_id: "m", sender_device: 2, attempt: 1 }))).toEqual({
      t: "retry",
      message_id: "m",
      sender_device: 2,
      v: 1,
    });
  });

  it("carry a transcript's payload, which decodes again", () => {
    const sent: KnownPayload = { t: "text", text: "see you at 5", context: { message_id: MESSAGE_ID } };
    const copy = decodePayload(encodePayload(transcript(encodePayload(sent))));
    expect(copy.t).toBe("sent_transcript");
    expect(decodePayload((copy as SentTranscript).payload)).toEqual(filled(sent));
  });

  it("hide the exact length, and ignore the padding when read", () => {
    const short = encodePayload({ t: "text", text: "a" });
    expect(short.length).toBe(64);
    expect(encodePayload({ t: "text", text: "x".repeat(40) }).length).toBe(64);
    expect(encodePayload({ t: "typing", message_id: MESSAGE_ID }).length).toBe(64);
    const padded = new Uint8Array([...short, ...new Uint8Array(64)]);
    expect(decodePayload(padded)).toEqual(decodePayload(short));
    const dirty = short.slice();
    dirty[63] = 0xff;
    expect(decodePayload(dirty)).toEqual(filled({ t: "text", text: "a" }));
  });

  it("are padded to multiples of 64, then Padmé buckets above 1 KiB", () => {
    const table: [number, number][] = [[1, 64], [64, 64], [65, 128], [1000, 1024], [1024, 1024], [1025, 1088], [2100, 2176]];
    for (const [n, size] of table) expect(paddedSize(n), `${n}`).toBe(size);
    const buckets = new Set<number>();
    for (let n = 16 * 1024; n < 20 * 1024; n += 1) buckets.add(paddedSize(n));
    expect(buckets.size).toBeLessThanOrEqual(5);
    for (let n = 1; n < MAX_PAYLOAD_BYTES; n += 97) {
      expect(paddedSize(n)).toBeGreaterThanOrEqual(n);
      expect(paddedSize(n)).toBeLessThanOrEqual(Math.max(64, Math.floor(n * 1.12) + 64));
    }
  });

  it("of an unknown tag or a newer version are unsupported, not errors", () => {
    expect(decodePayload(framed({ t: "poll", v: 1, question: "Lunch?", options: ["yes", "no"] }))).toEqual({
      t: "unsupported",
      tag: "poll",
      v: 1,
    });
    expect(decodePayload(framed({ t: "text", v: 2, text: "hi", view_once: true }))).toEqual({ t: "unsupported", tag: "text", v: 2 });
    expect(decodePayload(framed({ t: "text", v: 1, text: "hi", mentions: [ACCOUNT_ID] }))).toEqual(filled({ t: "text", text: "hi" }));
    expect(decodePayload(framed({ t: "text", text: "hi" }))).toEqual(filled({ t: "text", text: "hi" }));
    const reply = framed({ t: "interactive_reply", v: 1, kind: "button_reply", message_id: MESSAGE_ID, id: "yes", title: "Yes", flow_token: "t" });
    expect(decodePayload(reply)).toEqual(filled({ t: "interactive_reply", kind: "button_reply", message_id: MESSAGE_ID, id: "yes", title: "Yes" }));
  });

  it("with missing, mistyped or out-of-range fields are refused, with msgspec's reason", () => {
    const media = { t: "media", v: 1, kind: "image", blob_id: BLOB_ID, key: new Uint8Array(32), sha256: new Uint8Array(32), size: 100, plain_size: 60, mime_type: "image/png" };
    const cases: [unknown, string][] = [
      [{ t: "text", v: 1, text: "" }, "Expected `str` of length >= 1 - at `$.text`"],
      [{ t: "text", v: 1, text: "x".repeat(4097) }, "Expected `str` of length <= 4096 - at `$.text`"],
      [{ t: "text", v: 1 }, "Object missing required field `text`"],
      [{ t: "text", v: 1, text: 5 }, "Expected `str`, got `int` - at `$.text`"],
      [{ t: "text", v: 0, text: "hi" }, "Expected `int` >= 1 - at `$.v`"],
      [{ t: "text", v: "1", text: "hi" }, "Expected `int`, got `str` - at `$.v`"],
      [{ t: "reaction", message_id: MESSAGE_ID, emoji: "x".repeat(17) }, "Expected `str` of length <= 16 - at `$.emoji`"],
      [{ t: "read_receipt", message_ids: [] }, "Expected `array` of length >= 1 - at `$.message_ids`"],
      [{ t: "read_receipt", message_ids: ["a", ""] }, "Expected `str` of length >= 1 - at `$.message_ids[1]`"],
      [{ ...media, kind: "hologram" }, "Invalid enum value 'hologram' - at `$.kind`"],
      [{ ...media, blob_id: "../../v1/me" }, "Expected `str` matching regex '^[A-Za-z0-9_-]{1,128}$' - at `$.blob_id`"],
      [{ ...media, key: new Uint8Array(16) }, "Expected `bytes` of length >= 32 - at `$.key`"],
      [{ ...media, size: 0 }, "Expected `int` >= 1 - at `$.size`"],
      [{ ...media, width: 10 }, "media image: width and height come together"],
      [{ ...media, kind: "document", width: 10, height: 10 }, "media document: only images, videos and stickers have dimensions"],
      [{ ...media, kind: "audio", thumbnail: Uint8Array.of(1) }, "media audio: only images, videos and stickers have a thumbnail"],
      [{ ...media, duration_ms: 1000 }, "media image: only audio and video have a duration"],
      [{ ...media, kind: "video", voice: true }, "media video: only audio is a voice note"],
      [{ ...media, blob: new Uint8Array(100) }, "media image: exactly one of blob_id and blob names the file"],
      [{ v: 1, text: "no tag" }, "Object missing required field `t`"],
      [{ t: 7, v: 1 }, "Expected `str`, got `int` - at `$.t`"],
      [{ t: "typing" }, "Object missing required field `message_id`"],
      [{ t: "template", template_id: "1", name: "n", language: "en", button_payloads: { body: "p" } }, "Expected `str` matching regex '^button:[0-9]$' - at `key` in `$.button_payloads`"],
      [{ t: "template", template_id: "1", name: "n", language: "en", header_media: { ...media, caption: "c" } }, "template: a header's file has no caption or reply of its own"],
      [{ t: "interactive", type: "button", body: "b", buttons: [{ id: "a", title: "A" }], header_media: { ...media, voice: true } }, "media image: only audio is a voice note - at `$.header_media`"],
      [{ t: "interactive", type: "button", body: "Choose" }, "interactive button: needs 1 to 3 buttons"],
      [{ t: "interactive", type: "list", body: "Choose", button: "Menu", sections: [{ title: "One", rows: [{ id: "a", title: "A" }] }, { title: " ", rows: [{ id: "b", title: "B" }] }] }, "interactive list: every section needs a title when there is more than one"],
      [{ t: "interactive_reply", kind: "button_reply", message_id: MESSAGE_ID, id: "yes", title: "Yes", description: "d" }, "a button reply has no description"],
    ];
    for (const [body, reason] of cases) {
      expect(() => decodePayload(framed(body)), reason).toThrow(new InvalidPayload(`invalid payload: ${reason}`));
    }
  });

  it("with broken framing are refused", () => {
    const text = framed({ t: "text" });
    for (const raw of [new Uint8Array(), Uint8Array.of(0), Uint8Array.of(0, 16, 1, 2), Uint8Array.of(0, 3, 0xc1, 0xc1, 0xc1), Uint8Array.of(text[0]!, text[1]!, 0x93)]) {
      expect(() => decodePayload(raw)).toThrow(InvalidPayload);
    }
    expect(() => decodePayload(new Uint8Array(MAX_TRANSCRIPT_BYTES + 1))).toThrow(`payload of ${MAX_TRANSCRIPT_BYTES + 1} bytes exceeds ${MAX_TRANSCRIPT_BYTES}`);
    expect(() => unframe(Uint8Array.of(0, 5, 1))).toThrow("length prefix says 5 bytes, only 1 follow");
  });

  it("are checked as a receiver checks them before they are encoded", () => {
    expect(() => encodePayload({ t: "text", text: "" })).toThrow(/^invalid payload/);
    expect(() => encodePayload({ t: "text", text: "hi", v: 2 })).toThrow("only payloads of version 1 can be encoded");
    const nested = transcript(encodePayload(transcript(encodePayload({ t: "text", text: "x" }))));
    expect(() => encodePayload(nested)).toThrow("a transcript must wrap a message payload of a known version");
    expect(() => encodePayload(transcript(new TextEncoder().encode("junk")))).toThrow(InvalidPayload);
    expect(() => encodePayload(transcript(encodePayload({ t: "text", text: "x" }), { server_ms: -1 }))).toThrow("Expected `int` >= 0 - at `$.server_ms`");
    expect(() => encodePayload({ t: "text", text: "\ud800" })).toThrow(InvalidPayload);
    expect(() => encodePayload({ t: "retry", message_id: "m", sender_device: 1.5 })).toThrow(InvalidPayload);
    const tooLong: KnownPayload = { t: "interactive", type: "button", body: "Choose", header: "h".repeat(61), buttons: [{ id: "a", title: "A" }] };
    expect(() => encodePayload(tooLong)).toThrow("length <= 60");
  });

  it("have a size limit, and the largest payload's transcript fits under its own", () => {
    expect(() => encodePayload(templateOfSize(MAX_PAYLOAD_BYTES + 1))).toThrow(
      new PayloadTooLarge(`a template payload of 51200 bytes once padded exceeds the limit of ${MAX_PAYLOAD_BYTES}`),
    );
    const largest = encodePayload(templateOfSize(MAX_PAYLOAD_BYTES - 40));
    expect(largest.length).toBe(MAX_PAYLOAD_BYTES);
    const copy = transcript(largest, { to: "a".repeat(32), message_id: "m".repeat(64), client_msg_id: "c".repeat(64), server_ms: 2 ** 53 });
    const sealed = encodePayload(copy);
    expect(sealed.length).toBeLessThanOrEqual(MAX_TRANSCRIPT_BYTES);
    expect(decodePayload(sealed)).toEqual(filled(copy));
    expect(() => frame(new Uint8Array(MAX_PAYLOAD_BYTES))).toThrow(PayloadTooLarge);
  });

  it("name the file a message carries", () => {
    const all = Object.fromEntries(examples());
    const document = all["document"] as Media;
    expect(attachedFile(document)).toBe(document);
    const template = all["template with a document header"] as Template;
    expect(attachedFile(template)).toBe(template.header_media);
    expect(attachedFile(all["text"]!)).toBeUndefined();
    expect(attachedFile({ t: "unsupported", tag: "poll", v: 1 })).toBeUndefined();
  });
});
