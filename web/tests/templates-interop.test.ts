// Templates against the Python reference: templates approved and signed by the relay's code
// (tests/interop/wire_peer.py) verify here with the operator key pinned, tampered ones do not,
// and a template renders, or is refused, exactly as the Python client renders or refuses it.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OperatorKeyRing, UnknownOperatorKey } from "../src/crypto/operator";
import { fromBase64, toBase64 } from "../src/wire/base64";
import { encodePayload, type Template } from "../src/wire/payloads";
import {
  checkAgainstTemplate,
  ForgedTemplate,
  ParameterMismatch,
  render,
  type RenderParameters,
  RetiredTemplateKey,
  type SignedTemplateBody,
  signedTemplateFromJson,
  TemplateMismatch,
  verifySignedTemplate,
} from "../src/wire/templates";
import { BLOB_ID, pattern } from "./support/examples";
import { ANY_HOST, BOARDING, GOOD, LOGIN, NAMED, ORDER, PROMO, renderedJson } from "./support/templates";
import { WirePeer } from "./support/wire-peer";

const BUSINESS = "b".repeat(32);
const NOW = 1_767_225_600_000;

let peer: WirePeer;
let operator: { public_key: string; key_id: string };
let ring: OperatorKeyRing;

beforeAll(async () => {
  peer = new WirePeer();
  operator = await peer.call("operator_key", { name: "operator" });
  ring = await OperatorKeyRing.pin(operator.public_key);
});
afterAll(() => peer?.close());

async function signed(template: object, templateId = 7, key = "operator"): Promise<Record<string, string>> {
  return peer.call("sign_template", {
    key,
    template,
    template_id: templateId,
    business_account: BUSINESS,
    approved_ms: NOW,
  });
}

async function verified(template: object, templateId = 7): Promise<SignedTemplateBody> {
  return verifySignedTemplate(signedTemplateFromJson(await signed(template, templateId)), ring, templateId, NOW);
}

function browserRenders(body: SignedTemplateBody, parameters: RenderParameters): unknown {
  try {
    return { rendered: renderedJson(render(body, parameters)) };
  } catch (error) {
    if (error instanceof ParameterMismatch) return { problems: error.problems.map((p) => [p.field, p.problem]) };
    throw error;
  }
}

// The parameter cases of tests/client/test_templates.py, and more.
const ORDER_CASES: [string, Record<string, unknown>][] = [
  ["every component", GOOD],
  ["a value that looks like a placeholder", { ...GOOD, body: ["{{2}}", "Monday"] }],
  ["one body parameter short", { ...GOOD, body: ["Anna"] }],
  ["one too many", { ...GOOD, body: ["Anna", "Monday", "x"] }],
  ["no header parameter", { body: GOOD.body, "button:1": GOOD["button:1"] }],
  ["no URL parameter", { header: GOOD.header, body: GOOD.body }],
  ["a parameter for the footer", { ...GOOD, footer: ["x"] }],
  ["a quick-reply payload", { ...GOOD, "button:0": ["track-4711"] }],
  ["two payloads for a quick reply", { ...GOOD, "button:0": ["x", "y"] }],
  ["a quick-reply payload too long", { ...GOOD, "button:0": ["x".repeat(257)] }],
  ["an empty quick-reply payload", { ...GOOD, "button:0": [""] }],
  ["an unknown component", { ...GOOD, "button:7": ["x"] }],
  ["names for positional placeholders", { ...GOOD, body: { "1": "Anna" } }],
  ["text for a list", { ...GOOD, body: "Anna" }],
  ["a new line", { ...GOOD, body: ["Anna\nBUY NOW", "Monday"] }],
  ["a tab", { ...GOOD, body: ["Anna\tx", "Monday"] }],
  ["five spaces in a row", { ...GOOD, body: ["Anna     x", "Monday"] }],
  ["four spaces in a row", { ...GOOD, body: ["Anna    x", "Monday"] }],
  ["an empty value", { ...GOOD, body: ["", "Monday"] }],
  ["a blank value of Python white space", { ...GOOD, body: ["\u0085\u3000\u001f", "Monday"] }],
  ["a zero-width no-break space", { ...GOOD, body: ["\ufeff", "Monday"] }],
  ["a value too long", { ...GOOD, body: ["x".repeat(1025), "Monday"] }],
  ["1024 characters of four bytes", { ...GOOD, body: ["😀".repeat(1024), "Monday"] }],
  ["a body over 4096 characters", { ...GOOD, body: ["x".repeat(1024), "y".repeat(1024)] }],
  ["a header of 60 characters", { ...GOOD, header: ["x".repeat(54)] }],
  ["a header over 60 characters", { ...GOOD, header: ["x".repeat(60)] }],
  ["a header of 60 characters of four bytes", { ...GOOD, header: ["😀".repeat(54)] }],
  ["a URL parameter with spaces", { ...GOOD, "button:1": ["47 11"] }],
  ["a URL parameter with a no-break space", { ...GOOD, "button:1": ["47\u00a011"] }],
  ["a URL over 2000 characters", { ...GOOD, "button:1": ["x".repeat(1990)] }],
  ["a parameter that is no text", { ...GOOD, body: ["Anna", 7] }],
  ["everything wrong at once", { header: [], body: ["", "x\n"], footer: [], "button:1": ["a b"], "button:9": [] }],
];

const OTHER_CASES: [string, object, Record<string, unknown>][] = [
  ["named parameters", NAMED, { body: { order_id: "4711", first_name: "Anna" } }],
  ["a missing name", NAMED, { body: { first_name: "Anna" } }],
  ["an unknown name", NAMED, { body: { first_name: "A", order_id: "1", coupon: "x", ZZ: "y", ä: "z" } }],
  ["a list for names", NAMED, { body: ["Anna", "4711"] }],
  ["a code", LOGIN, { body: ["493021"] }],
  ["a code with spaces", LOGIN, { body: ["49 30 21"] }],
  ["a code of 16", LOGIN, { body: ["1".repeat(16)] }],
  ["no code", LOGIN, {}],
  ["a parameter for the OTP button", LOGIN, { body: ["1"], "button:0": ["1"] }],
  ["a media link and a coupon", PROMO, { header: ["https://cdn.example/sale.jpg"], "button:0": ["SUMMER25"] }],
  ["no media link", PROMO, { "button:0": ["SUMMER25"] }],
  ["a coupon with spaces", PROMO, { header: ["x"], "button:0": ["A CODE WITH SPACES"] }],
  ["a media link with a space", PROMO, { header: ["https://cdn.example/a b.jpg"], "button:0": ["S"] }],
  ["a document header", BOARDING, { header: ["4127785590014437"], body: ["Anna", "Monday"] }],
  ["a host", ANY_HOST, { "button:0": ["shop.example/o/1"] }],
  ["an IPv6 host", ANY_HOST, { "button:0": ["[2001:db8::1]/x"] }],
  ["a host that is not one", ANY_HOST, { "button:0": ["/x"] }],
  ["a host that NFKC keeps", ANY_HOST, { "button:0": ["bücher.example"] }],
];

describe("templates against the Python reference", () => {
  it("render, or refuse, with the same texts and the same problems", async () => {
    const order = await signed(ORDER);
    const body = await verified(ORDER);
    for (const [name, parameters] of ORDER_CASES) {
      const theirs = await peer.call("render", { signed: order, parameters });
      expect(browserRenders(body, parameters as RenderParameters), name).toEqual(theirs);
    }
    for (const [name, template, parameters] of OTHER_CASES) {
      const theirs = await peer.call("render", { signed: await signed(template), parameters });
      expect(browserRenders(await verified(template), parameters as RenderParameters), name).toEqual(theirs);
    }
  });

  it("refuse a URL whose host cannot be parsed, as the Python client does", async () => {
    const template = await verified(ANY_HOST);
    const refused = { problems: [["button:0", "the filled-in URL is not an http(s) URL"]] };
    expect(await peer.call("render", { signed: await signed(ANY_HOST), parameters: { "button:0": ["[x"] } })).toEqual(refused);
    expect(browserRenders(template, { "button:0": ["[x"] })).toEqual(refused);
  });

  it("verify the operator's signature and refuse what it does not cover", async () => {
    const good = signedTemplateFromJson(await signed(ORDER));
    expect((await verifySignedTemplate(good, ring, "7", NOW)).business_account).toBe(BUSINESS);

    const tampered = { ...good, body: good.body.slice() };
    tampered.body[tampered.body.length - 3]! ^= 1;
    await expect(verifySignedTemplate(tampered, ring, 7, NOW)).rejects.toThrow(ForgedTemplate);
    await expect(verifySignedTemplate(good, ring, 8, NOW)).rejects.toThrow("asked for template 8, got 7");
    const renamed = signedTemplateFromJson({ ...(await signed(ORDER)), id: "8" });
    await expect(verifySignedTemplate(renamed, ring, 8, NOW)).rejects.toThrow("the signed template is 7, not 8");

    const foreign = signedTemplateFromJson(await signed(ORDER, 7, "impostor"));
    await expect(verifySignedTemplate(foreign, ring, 7, NOW)).rejects.toThrow(UnknownOperatorKey);

    // A certificate's signature over the same bytes is no template signature.
    const prefix = new TextEncoder().encode("tresen-cert-v1\0");
    const message = new Uint8Array([...prefix, ...good.body]);
    const { signature } = await peer.call("sign_raw", { key: "operator", message: toBase64(message) });
    await expect(verifySignedTemplate({ ...good, signature }, ring, 7, NOW)).rejects.toThrow(ForgedTemplate);
  });

  it("stop trusting a retired key, and follow the rotation to the next", async () => {
    const next = await peer.call("operator_key", { name: "next" });
    const { endorsement } = await peer.call("endorse", { name: "next", by: "operator", signs_from_ms: NOW });
    const rotated = await OperatorKeyRing.pin(operator.public_key);
    await rotated.update([
      { key_id: operator.key_id, public_key: operator.public_key, endorsement: null, signs_from_ms: 0, retires_ms: NOW + 1000 },
      { key_id: next["key_id"], public_key: next["public_key"], endorsement, signs_from_ms: NOW, retires_ms: null },
    ]);
    const old = signedTemplateFromJson(await signed(ORDER));
    expect((await verifySignedTemplate(old, rotated, 7, NOW + 999)).id).toBe(7);
    await expect(verifySignedTemplate(old, rotated, 7, NOW + 1000)).rejects.toThrow(RetiredTemplateKey);
    const again = signedTemplateFromJson(await signed(ORDER, 7, "next"));
    expect((await verifySignedTemplate(again, rotated, 7, NOW + 1000)).id).toBe(7);
  });

  it("hold a message against its template as the Python client does", async () => {
    const simple = {
      ...ORDER,
      components: [{ type: "BODY", text: "Hi {{1}}, your order ships on {{2}}.", example: { body_text: [["Anna", "Monday"]] } }],
    };
    const file = (kind: "document" | "image") => ({
      t: "media" as const,
      kind,
      blob_id: BLOB_ID,
      key: pattern(32, 1),
      sha256: pattern(32, 2),
      size: 100,
      plain_size: 76,
      mime_type: kind === "document" ? "application/pdf" : "image/png",
      filename: "pass.pdf",
    });
    const message = (changes: Partial<Template>): Template => ({
      t: "template",
      template_id: "7",
      name: "order_shipped",
      language: "en_US",
      parameters: { body: ["Anna", "Monday"] },
      ...changes,
    });
    const cases: [string, object, Template, string, string | null][] = [
      ["a message that fits", simple, message({}), BUSINESS, "7"],
      ["another business", simple, message({}), "c".repeat(32), "7"],
      ["another template told to the relay", simple, message({}), BUSINESS, "3"],
      ["another name", simple, message({ name: "order_delayed" }), BUSINESS, "7"],
      ["a name with quotes", simple, message({ name: "it's \"x\"\n" }), BUSINESS, "7"],
      ["another language", simple, message({ language: "de" }), BUSINESS, "7"],
      ["parameters that do not fit", simple, message({ parameters: { body: ["secret\nline", "Monday"] } }), BUSINESS, null],
      ["a payload for a body", simple, message({ button_payloads: { "button:0": "x" } }), BUSINESS, "7"],
      ["a payload for a quick reply", ORDER, message({ parameters: GOOD, button_payloads: { "button:0": "track" } }), BUSINESS, "7"],
      [
        "a payload given twice",
        ORDER,
        message({ parameters: { ...GOOD, "button:0": ["a"] }, button_payloads: { "button:0": "b" } }),
        BUSINESS,
        "7",
      ],
      ["a payload for a URL button", ORDER, message({ parameters: GOOD, button_payloads: { "button:1": "x" } }), BUSINESS, "7"],
      [
        "the header's document",
        { ...BOARDING, name: "order_shipped" },
        message({ parameters: { header: ["4127"], body: ["Anna", "Monday"] }, header_media: file("document") }),
        BUSINESS,
        "7",
      ],
      [
        "an image for a document header",
        { ...BOARDING, name: "order_shipped" },
        message({ parameters: { header: ["4127"], body: ["Anna", "Monday"] }, header_media: file("image") }),
        BUSINESS,
        "7",
      ],
      ["a document without a file header", simple, message({ header_media: file("document") }), BUSINESS, "7"],
    ];
    for (const [name, template, payload, sender, templateRef] of cases) {
      const signedJson = await signed(template);
      const theirs = await peer.call("check_template", {
        signed: signedJson,
        pinned: operator.public_key,
        published: [],
        now_ms: NOW,
        payload: toBase64(encodePayload(payload)),
        sender,
        template_ref: templateRef,
      });
      const body = await verifySignedTemplate(signedTemplateFromJson(signedJson), ring, 7, NOW);
      let mine: unknown;
      try {
        mine = { rendered: renderedJson(checkAgainstTemplate(body, payload, { sender, templateRef })) };
      } catch (error) {
        if (!(error instanceof TemplateMismatch)) throw error;
        mine = { rejected: error.kind, reason: error.reason };
      }
      expect(mine, name).toEqual(theirs);
      if (name === "parameters that do not fit") expect(JSON.stringify(mine)).not.toContain("secret");
    }
  });

  it("read the signed form as the relay serves it", async () => {
    const json = await signed(PROMO, 12);
    const parsed = signedTemplateFromJson(json);
    expect(parsed.template_id).toBe("12");
    expect(toBase64(parsed.body)).toBe(toBase64(fromBase64(json["body"]!)));
    expect(() => signedTemplateFromJson({ ...json, id: 12 })).toThrow("needs id, body and signature as strings");
    expect(() => signedTemplateFromJson({ ...json, body: "not base64!" })).toThrow("not base64");
  });
});
