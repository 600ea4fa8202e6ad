// Payloads against the Python reference (src/tresen/wire/e2e.py): the same payload encodes to
// the same bytes in both languages, each reads the other's, padding buckets agree, and a body
// that one side refuses the other refuses too, for the same reason.

import { encode } from "@msgpack/msgpack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBase64, toBase64 } from "../src/wire/base64";
import {
  decodePayload,
  encodePayload,
  InvalidPayload,
  type KnownPayload,
  MAX_PAYLOAD_BYTES,
  type Payload,
  paddedSize,
  PayloadTooLarge,
} from "../src/wire/payloads";
import { ACCOUNT_ID, BLOB_ID, examples, MESSAGE_ID } from "./support/examples";
import { jsonView, wireView } from "./support/views";
import { WirePeer } from "./support/wire-peer";

let peer: WirePeer;
beforeAll(() => {
  peer = new WirePeer();
});
afterAll(() => peer?.close());

type Decoded = { payload?: unknown; unsupported?: { tag: string; v: number }; invalid?: string };

async function pythonDecodes(raw: Uint8Array): Promise<Decoded> {
  return peer.call<Decoded>("decode_payload", { raw: toBase64(raw) });
}

function browserDecodes(raw: Uint8Array): Decoded {
  let payload: Payload;
  try {
    payload = decodePayload(raw);
  } catch (error) {
    if (error instanceof InvalidPayload) return { invalid: error.message };
    throw error;
  }
  if (payload.t === "unsupported") return { unsupported: { tag: payload.tag, v: payload.v } };
  return { payload: wireView(encodePayload(payload)) };
}

/** A body framed as a (possibly broken or newer) sender would frame it. */
function framed(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil((body.length + 2) / 64) * 64);
  out[0] = body.length >> 8;
  out[1] = body.length & 0xff;
  out.set(body, 2);
  return out;
}

const bytes32 = new Uint8Array(32);
const MEDIA = {
  t: "media",
  v: 1,
  kind: "image",
  blob_id: BLOB_ID,
  key: bytes32,
  sha256: bytes32,
  size: 100,
  plain_size: 60,
  mime_type: "image/png",
};
const BUTTONS = { t: "interactive", v: 1, type: "button", body: "b", buttons: [{ id: "a", title: "A" }] };
const TEMPLATE = { t: "template", template_id: "7", name: "n", language: "en" };
const rows = (n: number, prefix = "r") => Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, title: `Row ${i}` }));

// Bodies of every way to be wrong (and a few ways to be right that look wrong).
const BODIES: [string, unknown][] = [
  ["no text", { t: "text" }],
  ["an empty text", { t: "text", text: "" }],
  ["a text that is a number", { t: "text", text: 5 }],
  ["a text over 4096 characters", { t: "text", text: "a".repeat(4097) }],
  ["4096 characters of four bytes", { t: "text", text: "😀".repeat(4096) }],
  ["4097 characters of four bytes", { t: "text", text: "😀".repeat(4097) }],
  ["version 0", { t: "text", text: "a", v: 0 }],
  ["a negative version", { t: "text", text: "a", v: -5 }],
  ["a version as text", { t: "text", text: "a", v: "1" }],
  ["a nil version", { t: "text", text: "a", v: null }],
  ["a fractional version", { t: "text", text: "a", v: 1.5 }],
  ["a newer version", { t: "text", v: 2, text: "hi", view_once: true }],
  ["a huge version", { t: "text", text: "a", v: 2 ** 40 }],
  ["no version", { t: "text", text: "hi" }],
  ["an unknown tag", { t: "poll", v: 1, question: "Lunch?", options: ["yes", "no"] }],
  ["an unknown tag without version", { t: "poll" }],
  ["an unknown field", { t: "text", v: 1, text: "hi", mentions: [ACCOUNT_ID] }],
  ["an unknown field of any type", { t: "typing", message_id: "m", extra: [1, { a: 2.5 }, new Uint8Array(3)] }],
  ["preview_url as a number", { t: "text", text: "a", preview_url: 1 }],
  ["preview_url nil", { t: "text", text: "a", preview_url: null }],
  ["a nil context", { t: "text", text: "a", context: null }],
  ["an empty context", { t: "text", text: "a", context: {} }],
  ["a long sender", { t: "text", text: "a", context: { message_id: "x", sender: "y".repeat(33) } }],
  ["a context that is a list", { t: "text", text: "a", context: [1] }],
  ["a tag that is a number", { t: 5 }],
  ["no tag", { v: 1, text: "no tag" }],
  ["a list", [1, 2]],
  ["a number", 7],
  ["an emoji of 17", { t: "reaction", message_id: "m", emoji: "x".repeat(17) }],
  ["an empty message id", { t: "reaction", v: 1, message_id: "", emoji: "👍" }],
  ["no receipts", { t: "read_receipt", message_ids: [] }],
  ["257 receipts", { t: "read_receipt", message_ids: Array(257).fill("a") }],
  ["an empty receipt", { t: "read_receipt", message_ids: ["a", ""] }],
  ["receipts as text", { t: "read_receipt", message_ids: "a" }],
  [
    "a negative server time",
    { t: "sent_transcript", to: "a", message_id: "m", client_msg_id: "c", server_ms: -1, payload: new Uint8Array() },
  ],
  [
    "a transcript of text",
    { t: "sent_transcript", to: "a", message_id: "m", client_msg_id: "c", server_ms: 1, payload: "x" },
  ],
  ["a template id with a zero", { ...TEMPLATE, template_id: "07" }],
  ["a template id with a new line", { ...TEMPLATE, template_id: "7\n" }],
  ["a template id as a number", { ...TEMPLATE, template_id: 7 }],
  ["parameters that are a number", { ...TEMPLATE, parameters: { body: 5 } }],
  ["a parameter that is a number", { ...TEMPLATE, parameters: { body: ["a", 1] } }],
  ["a named parameter that is a number", { ...TEMPLATE, parameters: { body: { a: 1 } } }],
  ["nil parameters", { ...TEMPLATE, parameters: null }],
  ["a payload for button 10", { ...TEMPLATE, button_payloads: { "button:10": "x" } }],
  ["a payload for the body", { ...TEMPLATE, button_payloads: { body: "p" } }],
  ["an empty payload", { ...TEMPLATE, button_payloads: { "button:1": "" } }],
  [
    "eleven payloads",
    { ...TEMPLATE, button_payloads: Object.fromEntries([...Array(10).keys(), "0\n"].map((i) => [`button:${i}`, "x"])) },
  ],
  ["a payload key with a new line", { ...TEMPLATE, button_payloads: { "button:0\n": "x" } }],
  ["an audio header", { ...TEMPLATE, header_media: { ...MEDIA, kind: "audio" } }],
  ["a header with a caption", { ...TEMPLATE, header_media: { ...MEDIA, caption: "c" } }],
  ["a header that is a voice note", { ...TEMPLATE, header_media: { ...MEDIA, voice: true } }],
  ["an audio voice header", { ...TEMPLATE, header_media: { ...MEDIA, voice: true, kind: "audio" } }],
  ["an interactive of another type", { t: "interactive", type: "x", body: "b" }],
  ["no buttons", { t: "interactive", type: "button", body: "b" }],
  [
    "four buttons",
    { ...BUTTONS, buttons: ["A", "B", "C", "D"].map((t) => ({ id: t.toLowerCase(), title: t })) },
  ],
  ["repeated button ids", { ...BUTTONS, buttons: [{ id: "a", title: "A" }, { id: "a", title: "B" }] }],
  ["repeated button titles", { ...BUTTONS, buttons: [{ id: "a", title: "Ja" }, { id: "b", title: "Ja" }] }],
  ["buttons and sections", { ...BUTTONS, sections: [{ rows: rows(1) }] }],
  ["buttons and a menu", { ...BUTTONS, button: "Menu" }],
  ["a list without menu", { t: "interactive", type: "list", body: "b", sections: [{ rows: rows(1) }] }],
  ["a list without sections", { t: "interactive", type: "list", body: "b", button: "Menu" }],
  [
    "a list with buttons",
    { t: "interactive", type: "list", body: "b", button: "Menu", sections: [{ rows: rows(1) }], buttons: [{ id: "a", title: "A" }] },
  ],
  [
    "eleven rows",
    {
      t: "interactive",
      type: "list",
      body: "b",
      button: "Menu",
      sections: [{ title: "One", rows: rows(6, "a") }, { title: "Two", rows: rows(5, "b") }],
    },
  ],
  [
    "repeated row ids",
    { t: "interactive", type: "list", body: "b", button: "Menu", sections: [{ title: "One", rows: rows(2) }, { title: "Two", rows: rows(1) }] },
  ],
  [
    "an untitled second section",
    { t: "interactive", type: "list", body: "b", button: "Menu", sections: [{ title: "One", rows: rows(1, "a") }, { rows: rows(1, "b") }] },
  ],
  [
    "a blank section title",
    {
      t: "interactive",
      type: "list",
      body: "b",
      button: "Menu",
      sections: [{ title: "One", rows: rows(1, "a") }, { title: "\u3000\u0085", rows: rows(1, "b") }],
    },
  ],
  [
    "a section title of a zero-width no-break space",
    {
      t: "interactive",
      type: "list",
      body: "b",
      button: "Menu",
      sections: [{ title: "One", rows: rows(1, "a") }, { title: "\ufeff", rows: rows(1, "b") }],
    },
  ],
  [
    "a section title that is a number",
    { t: "interactive", type: "list", body: "b", button: "B", sections: [{ title: 5, rows: rows(1) }] },
  ],
  [
    "a long row description",
    { t: "interactive", type: "list", body: "b", button: "B", sections: [{ rows: [{ id: "a", title: "A", description: "d".repeat(73) }] }] },
  ],
  ["a section without rows", { t: "interactive", type: "list", body: "b", button: "B", sections: [{ rows: [] }] }],
  ["a header of 61", { ...BUTTONS, header: "h".repeat(61) }],
  ["an empty header", { ...BUTTONS, header: "" }],
  ["a header that is a number", { ...BUTTONS, header: 5 }],
  ["a header that is true", { ...BUTTONS, header: true }],
  ["a header that is a fraction", { ...BUTTONS, header: 1.5 }],
  ["a header that is a list", { ...BUTTONS, header: [1] }],
  ["a header that is a map", { ...BUTTONS, header: {} }],
  ["a header that is bytes", { ...BUTTONS, header: new Uint8Array([120]) }],
  ["a button that is a number", { ...BUTTONS, buttons: [5] }],
  ["a button without title", { ...BUTTONS, buttons: [{ id: "a" }] }],
  ["nil buttons", { ...BUTTONS, buttons: null }],
  ["a button title of 21", { ...BUTTONS, buttons: [{ id: "a", title: "t".repeat(21) }] }],
  ["an image header with a text header", { ...BUTTONS, header: "H", header_media: MEDIA }],
  ["a sticker header", { ...BUTTONS, header_media: { ...MEDIA, kind: "sticker" } }],
  ["a header file without tag", { ...BUTTONS, header_media: { ...MEDIA, t: undefined } }],
  ["a header file tagged text", { ...BUTTONS, header_media: { ...MEDIA, t: "text" } }],
  ["a header file tagged 5", { ...BUTTONS, header_media: { ...MEDIA, t: 5 } }],
  ["a header file of version 7", { ...BUTTONS, header_media: { ...MEDIA, v: 7 } }],
  ["a header file that is a number", { ...BUTTONS, header_media: 5 }],
  ["a header file that is a voice note", { ...BUTTONS, header_media: { ...MEDIA, voice: true } }],
  [
    "a list with a file header",
    { t: "interactive", type: "list", body: "b", button: "B", sections: [{ rows: rows(1) }], header_media: MEDIA },
  ],
  [
    "a button reply with a description",
    { t: "interactive_reply", kind: "button_reply", message_id: MESSAGE_ID, id: "yes", title: "Yes", description: "d" },
  ],
  ["a reply of another kind", { t: "interactive_reply", kind: "nfm_reply", message_id: MESSAGE_ID, id: "yes", title: "Yes" }],
  ["a reply kind with a quote", { t: "interactive_reply", kind: "list_reply'", message_id: "m", id: "i", title: "t" }],
  ["a reply kind that is a number", { t: "interactive_reply", kind: 5, message_id: "m", id: "i", title: "t" }],
  ["a reply title of 25", { t: "interactive_reply", kind: "list_reply", message_id: MESSAGE_ID, id: "r", title: "t".repeat(25) }],
  ["a quick-reply payload of 257", { t: "button_reply", message_id: MESSAGE_ID, payload: "p".repeat(257), text: "Stop" }],
  ["an empty quick-reply payload", { t: "button_reply", message_id: MESSAGE_ID, payload: "", text: "Stop" }],
  ["a quick-reply text of 26", { t: "button_reply", message_id: MESSAGE_ID, payload: "p", text: "t".repeat(26) }],
  ["typing without message", { t: "typing" }],
  ["typing a long message id", { t: "typing", message_id: "m".repeat(65) }],
  ["a retry for device 0", { t: "retry", message_id: "m", sender_device: 0 }],
  ["a 101st retry", { t: "retry", message_id: "m", sender_device: 1, attempt: 101 }],
  ["a hologram", { ...MEDIA, kind: "hologram" }],
  ["a media kind that is a number", { ...MEDIA, kind: 5 }],
  ["a blob id with a path", { ...MEDIA, blob_id: "../../v1/me" }],
  ["a blob id with a space", { ...MEDIA, blob_id: "x y" }],
  ["a blob id with a final new line", { ...MEDIA, blob_id: "abc\n" }],
  ["a short key", { ...MEDIA, key: new Uint8Array(16) }],
  ["a key as text", { ...MEDIA, key: "k" }],
  ["size 0", { ...MEDIA, size: 0 }],
  ["a fractional size", { ...MEDIA, size: 5.5 }],
  ["a size that is true", { ...MEDIA, size: true }],
  ["a size as text", { ...MEDIA, size: "5" }],
  ["a duration as text", { ...MEDIA, duration_ms: "5" }],
  ["a thumbnail as text", { ...MEDIA, thumbnail: "5" }],
  ["an empty thumbnail", { ...MEDIA, thumbnail: new Uint8Array() }],
  ["a thumbnail over 12 KiB", { ...MEDIA, thumbnail: new Uint8Array(12 * 1024 + 1) }],
  ["a long file name", { ...MEDIA, filename: "x".repeat(256) }],
  ["a long caption", { ...MEDIA, caption: "x".repeat(1025) }],
  ["no plain size", { ...MEDIA, plain_size: undefined }],
  ["both blob and blob id", { ...MEDIA, blob: new Uint8Array(100) }],
  ["neither blob nor blob id", { ...MEDIA, blob_id: undefined }],
  ["an inline blob of another size", { ...MEDIA, blob_id: null, blob: new Uint8Array([1, 2]) }],
  ["nil width and blob", { ...MEDIA, width: null, blob: null }],
  ["width alone", { ...MEDIA, width: 10 }],
  ["width 0", { ...MEDIA, width: 0, height: 1 }],
  ["a document with dimensions", { ...MEDIA, kind: "document", width: 10, height: 10 }],
  ["an audio thumbnail", { ...MEDIA, kind: "audio", thumbnail: new Uint8Array([1]) }],
  ["an image with a duration", { ...MEDIA, duration_ms: 1000 }],
  ["a video voice note", { ...MEDIA, kind: "video", voice: true }],
  ["a media payload with every field", {
    ...MEDIA,
    size: 2 ** 40,
    plain_size: 2 ** 40,
    mime_type: "m".repeat(255),
    filename: "f".repeat(255),
    caption: "ü".repeat(1024),
    width: 65_535,
    height: 65_535,
    thumbnail: new Uint8Array(12 * 1024),
    context: { message_id: MESSAGE_ID, sender: "a".repeat(32) },
  }],
];

// Hand-written msgpack for what @msgpack/msgpack does not write from JavaScript values.
const RAW: [string, Uint8Array][] = [
  ["an integer key at the top", Uint8Array.from([0x83, 0xa1, 0x74, 0xa6, ...new TextEncoder().encode("typing"), 0xaa, ...new TextEncoder().encode("message_id"), 0xa1, 0x6d, 0x05, 0x01])],
  ["malformed msgpack", Uint8Array.from([0xc1])],
  ["a bad type byte inside", Uint8Array.from([0x82, 0xa1, 0x74, 0xa4, 0x74, 0x65, 0x78, 0x74, 0xa4, 0x74, 0x65, 0x78, 0x74, 0xc1])],
  ["an empty map", Uint8Array.from([0x80])],
  ["a map with a missing value", Uint8Array.from([0x81, 0xa1, 0x74])],
  ["trailing bytes", Uint8Array.from([0x80, 0x00])],
  [
    "a size beyond 2^53",
    Uint8Array.from([...encode({ ...MEDIA, size: undefined }, { ignoreUndefined: true }).map((b, i) => (i === 0 ? b - 1 : b)), 0xa4, ...new TextEncoder().encode("size"), 0xcf, 0, 0x20, 0, 0, 0, 0, 0, 2]),
  ],
  ["a version of 2^64 - 1", Uint8Array.from([0x82, 0xa1, 0x74, 0xa4, 0x74, 0x65, 0x78, 0x74, 0xa1, 0x76, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
];

const FRAMES: [string, Uint8Array][] = [
  ["nothing", new Uint8Array()],
  ["half a length prefix", Uint8Array.from([0])],
  ["a prefix beyond the input", Uint8Array.from([0, 16, ...new TextEncoder().encode("short")])],
  ["a body cut short", Uint8Array.from([0, 3, 0xc1, 0xc1, 0xc1])],
  ["over 51 200 bytes", new Uint8Array(51_201)],
];

describe("payloads against the Python reference", () => {
  it("encode to the same bytes, and each side reads the other's", async () => {
    for (const [name, payload] of examples()) {
      const mine = encodePayload(payload);
      const theirs = await peer.call("encode_payload", { payload: jsonView(payload) });
      expect(theirs, name).toHaveProperty("raw");
      expect(toBase64(mine), name).toBe(theirs["raw"]);
      expect(await pythonDecodes(mine), name).toEqual({ payload: wireView(mine) });
      expect(browserDecodes(fromBase64(theirs["raw"])), name).toEqual({ payload: wireView(mine) });
    }
  });

  it("pad to the same buckets, Padmé sizes included", async () => {
    const sizes = [1, 2, 63, 64, 65, 128, 1000, 1023, 1024, 1025, 1088, 1089, 2100, 2176, 2177, 4095, 4096, 4097];
    for (let n = 1; n <= 60_000; n += 37) sizes.push(n);
    for (let e = 10; e <= 17; e += 1) sizes.push(2 ** e - 1, 2 ** e, 2 ** e + 1);
    expect(sizes.map(paddedSize)).toEqual(await peer.call("padded_size", { sizes }));
  });

  it("frame payloads of every size alike, up to the limit and its transcript", async () => {
    for (const n of [1, 40, 62, 63, 900, 1100, 5000, 20_000, MAX_PAYLOAD_BYTES - 60, MAX_PAYLOAD_BYTES - 50, MAX_PAYLOAD_BYTES]) {
      const template: KnownPayload = { t: "template", template_id: "1", name: "big", language: "en", parameters: { body: ["x".repeat(n)] } };
      const theirs = await peer.call("encode_payload", { payload: jsonView(template) });
      let mine: Record<string, string>;
      try {
        mine = { raw: toBase64(encodePayload(template)) };
      } catch (error) {
        if (!(error instanceof PayloadTooLarge)) throw error;
        mine = { too_large: error.message };
      }
      expect(mine, `${n}`).toEqual(theirs);
      if (mine["raw"]) {
        const transcript: KnownPayload = {
          t: "sent_transcript",
          to: "a".repeat(32),
          message_id: "m".repeat(64),
          client_msg_id: "c".repeat(64),
          server_ms: 2 ** 53,
          payload: fromBase64(mine["raw"]),
        };
        const sealed = await peer.call("encode_payload", { payload: jsonView(transcript) });
        expect(toBase64(encodePayload(transcript)), `transcript of ${n}`).toBe(sealed["raw"]);
      }
    }
  });

  it("refuse, skip and accept the same bodies, for the same reasons", async () => {
    const cases: [string, Uint8Array][] = [
      ...BODIES.map(([name, body]): [string, Uint8Array] => [name, framed(encode(body, { ignoreUndefined: true }))]),
      ...RAW.map(([name, body]): [string, Uint8Array] => [name, framed(body)]),
      ...FRAMES,
    ];
    for (const [name, raw] of cases) {
      expect(browserDecodes(raw), name).toEqual(await pythonDecodes(raw));
    }
  });

  it("refuse the same payloads when encoding", async () => {
    const refused: KnownPayload[] = [
      { t: "text", text: "" },
      { t: "text", text: "hi", v: 2 },
      { t: "interactive", type: "button", body: "Choose", header: "h".repeat(61), buttons: [{ id: "a", title: "A" }] },
      { t: "interactive", type: "button", body: "Choose", buttons: [{ id: "a", title: "Same" }, { id: "b", title: "Same" }] },
      {
        t: "sent_transcript",
        to: ACCOUNT_ID,
        message_id: MESSAGE_ID,
        client_msg_id: "c",
        server_ms: 1,
        payload: encodePayload({
          t: "sent_transcript",
          to: ACCOUNT_ID,
          message_id: MESSAGE_ID,
          client_msg_id: "c",
          server_ms: 1,
          payload: encodePayload({ t: "text", text: "x" }),
        }),
      },
      { t: "sent_transcript", to: ACCOUNT_ID, message_id: MESSAGE_ID, client_msg_id: "c", server_ms: 1, payload: new TextEncoder().encode("junk") },
      { t: "sent_transcript", to: ACCOUNT_ID, message_id: MESSAGE_ID, client_msg_id: "c", server_ms: 1, payload: new Uint8Array(MAX_PAYLOAD_BYTES + 1) },
    ];
    for (const payload of refused) {
      const theirs = await peer.call("encode_payload", { payload: jsonView(payload) });
      expect(theirs, JSON.stringify(jsonView(payload)).slice(0, 80)).not.toHaveProperty("raw");
      const kind = Object.keys(theirs)[0] === "too_large" ? PayloadTooLarge : InvalidPayload;
      expect(() => encodePayload(payload)).toThrow(kind);
    }
  });
});
