// Payloads of every kind (the examples of the Python tests, tests/wire/test_e2e.py), shared by
// the unit and the cross-language tests.

import { encodePayload, type KnownPayload, MAX_THUMBNAIL_BYTES } from "../../src/wire/payloads";

export const MESSAGE_ID = "a96e06c32341d70992556bac22cec2e7";
export const BLOB_ID = "q3Jx0tL7n0b0Yk2H8sVwZc1dE4fG5hI6jK7lM8nO9pQ";
export const ACCOUNT_ID = "a6a8d2daa6ff17aebf0a720206b257c4";

export function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed * 7 + 3) & 0xff);
}

export function examples(): [string, KnownPayload][] {
  return [
    ["text", { t: "text", text: "Hallo, ist meine Bestellung unterwegs?" }],
    [
      "text with a quote",
      {
        t: "text",
        text: "Ja, morgen 🚚",
        preview_url: true,
        context: { message_id: MESSAGE_ID, sender: ACCOUNT_ID },
      },
    ],
    ["text quoting without sender", { t: "text", text: "quote without sender", context: { message_id: MESSAGE_ID } }],
    ["reaction", { t: "reaction", message_id: MESSAGE_ID, emoji: "👍" }],
    ["reaction removed", { t: "reaction", message_id: MESSAGE_ID, emoji: "" }],
    ["read receipt", { t: "read_receipt", message_ids: [MESSAGE_ID, "b".repeat(32)] }],
    [
      "transcript of a text",
      {
        t: "sent_transcript",
        to: ACCOUNT_ID,
        message_id: MESSAGE_ID,
        client_msg_id: "c-0001",
        server_ms: 1_763_700_000_000,
        payload: encodePayload({ t: "text", text: "sent elsewhere" }),
      },
    ],
    [
      "transcript of a reaction",
      {
        t: "sent_transcript",
        to: ACCOUNT_ID,
        message_id: MESSAGE_ID,
        client_msg_id: "c-0002",
        server_ms: 0,
        payload: encodePayload({ t: "reaction", message_id: MESSAGE_ID, emoji: "❤️" }),
      },
    ],
    [
      "template with named and positional parameters",
      {
        t: "template",
        template_id: "4711",
        name: "order_shipped",
        language: "de",
        parameters: { body: ["Anna", "4711"], header: { order: "#1" } },
      },
    ],
    ["template without parameters", { t: "template", template_id: "1", name: "hello_world", language: "en_US" }],
    [
      "template with a quick-reply payload",
      {
        t: "template",
        template_id: "12",
        name: "order_shipped",
        language: "en_US",
        parameters: { body: ["Anna"] },
        button_payloads: { "button:1": "STOP-4711" },
      },
    ],
    [
      "template with a document header",
      {
        t: "template",
        template_id: "7",
        name: "boarding_pass",
        language: "en_US",
        header_media: {
          t: "media",
          kind: "document",
          blob_id: BLOB_ID,
          key: pattern(32, 1),
          sha256: pattern(32, 2),
          size: 100,
          plain_size: 76,
          mime_type: "application/pdf",
          filename: "boarding-pass.pdf",
        },
      },
    ],
    [
      "reply buttons",
      {
        t: "interactive",
        type: "button",
        body: "Did this answer your question?",
        buttons: [
          { id: "yes", title: "Yes" },
          { id: "no", title: "No" },
        ],
      },
    ],
    [
      "a list",
      {
        t: "interactive",
        type: "list",
        body: "Pick a delivery slot",
        button: "Slots",
        sections: [
          {
            title: "Tomorrow",
            rows: [
              { id: "am", title: "Morning", description: "8 am to noon" },
              { id: "pm", title: "Afternoon" },
            ],
          },
        ],
      },
    ],
    [
      "reply buttons with header, footer and quote",
      {
        t: "interactive",
        type: "button",
        header: "Your order #4711",
        body: "Shall we leave it with a neighbour?",
        footer: "Tresen Versand",
        buttons: [
          { id: "yes", title: "Yes" },
          { id: "no", title: "No" },
        ],
        context: { message_id: MESSAGE_ID },
      },
    ],
    [
      "reply buttons with an image header",
      {
        t: "interactive",
        type: "button",
        body: "B",
        buttons: [{ id: "a", title: "A" }],
        header_media: {
          t: "media",
          kind: "image",
          blob: pattern(40, 3),
          key: pattern(32, 4),
          sha256: pattern(32, 5),
          size: 40,
          plain_size: 16,
          mime_type: "image/png",
        },
      },
    ],
    ["button reply", { t: "interactive_reply", kind: "button_reply", message_id: MESSAGE_ID, id: "yes", title: "Yes" }],
    [
      "list reply",
      {
        t: "interactive_reply",
        kind: "list_reply",
        message_id: MESSAGE_ID,
        id: "pm",
        title: "Afternoon",
        description: "12 to 6 pm",
      },
    ],
    ["quick reply", { t: "button_reply", message_id: MESSAGE_ID, payload: "STOP-4711", text: "Stop promotions" }],
    ["typing", { t: "typing", message_id: MESSAGE_ID }],
    ["retry", { t: "retry", message_id: MESSAGE_ID, sender_device: 3 }],
    ["retry, third attempt", { t: "retry", message_id: MESSAGE_ID, sender_device: 2 ** 40, attempt: 3 }],
    ["retry refused", { t: "retry_refused", message_id: MESSAGE_ID }],
    [
      "document",
      {
        t: "media",
        kind: "document",
        blob_id: BLOB_ID,
        key: pattern(32, 6),
        sha256: pattern(32, 7),
        size: 123_456,
        plain_size: 123_400,
        mime_type: "application/pdf",
        caption: "Your invoice",
        filename: "invoice.pdf",
        context: { message_id: MESSAGE_ID },
      },
    ],
    [
      "image with a thumbnail",
      {
        t: "media",
        kind: "image",
        blob_id: BLOB_ID,
        key: pattern(32, 8),
        sha256: pattern(32, 9),
        size: 24,
        plain_size: 0,
        mime_type: "image/jpeg",
        width: 1280,
        height: 960,
        thumbnail: pattern(MAX_THUMBNAIL_BYTES, 10),
      },
    ],
    [
      "voice note",
      {
        t: "media",
        kind: "audio",
        blob_id: BLOB_ID,
        key: pattern(32, 11),
        sha256: pattern(32, 12),
        size: 9_000,
        plain_size: 8_000,
        mime_type: "audio/ogg",
        duration_ms: 4_200,
        voice: true,
      },
    ],
    [
      "sticker carried inline",
      {
        t: "media",
        kind: "sticker",
        blob: pattern(9_000, 13),
        key: pattern(32, 14),
        sha256: pattern(32, 15),
        size: 9_000,
        plain_size: 8_960,
        mime_type: "image/webp",
        width: 512,
        height: 512,
      },
    ],
  ];
}
