// Template messages on their own: rendering with a message's parameters (the cases of
// tests/client/test_templates.py), the signed form's verification, and the checks of §10.5.

import { describe, expect, it } from "vitest";
import { keyIdOf, OperatorKeyRing } from "../src/crypto/operator";
import { concat } from "../src/crypto/olm";
import { toBase64 } from "../src/wire/base64";
import { pack } from "../src/wire/msgpack";
import type { Template } from "../src/wire/payloads";
import {
  checkTemplateMessage,
  decodeSignedBody,
  headerTakesFile,
  ParameterMismatch,
  placeholders,
  render,
  type RenderParameters,
  renderedText,
  type SignedTemplateBody,
  signedTemplateFromJson,
  TEMPLATE_PREFIX,
  TemplateFormatError,
  TemplateMismatch,
  TemplateUnavailable,
  verifyTemplateOrReject,
} from "../src/wire/templates";
import { testKey } from "./support/signing";
import { GOOD } from "./support/templates";

const BUSINESS = "b".repeat(32);
const NOW = 1_767_225_600_000;

function body(changes: Partial<SignedTemplateBody>): SignedTemplateBody {
  return {
    v: 1,
    key_id: "0".repeat(16),
    id: 7,
    business_account: BUSINESS,
    name: "order_shipped",
    language: "en_US",
    category: "UTILITY",
    parameter_format: "POSITIONAL",
    components: [],
    approved_ms: 1,
    ...changes,
  };
}

const ORDER = body({
  components: [
    { type: "HEADER", format: "TEXT", text: "Order {{1}}", example: { header_text: ["#1"] } },
    { type: "BODY", text: "Hi {{1}}, your order ships on {{2}}. Thanks, {{1}}!", example: { body_text: [["Anna", "Monday"]] } },
    { type: "FOOTER", text: "Reply STOP to opt out" },
    {
      type: "BUTTONS",
      buttons: [
        { type: "QUICK_REPLY", text: "Track" },
        { type: "URL", text: "View", url: "https://shop.example/o/{{1}}", example: ["1"] },
        { type: "PHONE_NUMBER", text: "Call us", phone_number: "+4930123456" },
      ],
    },
  ],
});
const NAMED = body({
  name: "order_named",
  language: "de",
  parameter_format: "NAMED",
  components: [{ type: "BODY", text: "Hallo {{first_name}}, Bestellung {{order_id}} ist unterwegs." }],
});
const LOGIN = body({
  name: "login_code",
  language: "en",
  category: "AUTHENTICATION",
  components: [
    { type: "BODY", add_security_recommendation: true },
    { type: "FOOTER", code_expiration_minutes: 10 },
    { type: "BUTTONS", buttons: [{ type: "OTP", otp_type: "COPY_CODE" }] },
  ],
});
const PROMO = body({
  name: "summer_sale",
  language: "en",
  category: "MARKETING",
  components: [
    { type: "HEADER", format: "IMAGE" },
    { type: "BODY", text: "Our summer sale is on." },
    { type: "BUTTONS", buttons: [{ type: "COPY_CODE", example: "SUMMER25" }] },
  ],
});

function problems(template: SignedTemplateBody, parameters: RenderParameters): [string, string][] {
  try {
    render(template, parameters);
  } catch (error) {
    if (!(error instanceof ParameterMismatch)) throw error;
    expect(error.code).toBe(132000);
    return error.problems.map((p) => [p.field, p.problem]);
  }
  throw new Error("rendered");
}

describe("rendering a template", () => {
  it("fills in every component of a positional template", () => {
    const shown = render(ORDER, GOOD);
    expect(shown.header).toEqual({ format: "TEXT", text: "Order #4711" });
    expect(shown.body).toBe("Hi Anna, your order ships on Monday. Thanks, Anna!");
    expect(shown.footer).toBe("Reply STOP to opt out");
    expect(shown.buttons).toEqual([
      { type: "QUICK_REPLY", text: "Track" },
      { type: "URL", text: "View", url: "https://shop.example/o/4711" },
      { type: "PHONE_NUMBER", text: "Call us", phone_number: "+4930123456" },
    ]);
    expect(renderedText(shown).split("\n")).toEqual([
      "Order #4711",
      "Hi Anna, your order ships on Monday. Thanks, Anna!",
      "Reply STOP to opt out",
      "[Track]",
      "[View] https://shop.example/o/4711",
      "[Call us] +4930123456",
    ]);
  });

  it("shows a value that looks like a placeholder as it is", () => {
    expect(render(ORDER, { ...GOOD, body: ["{{2}}", "Monday"] }).body).toBe("Hi {{2}}, your order ships on Monday. Thanks, {{2}}!");
    expect(placeholders("a {{1}} b {{x}} {{1}} {{ {{2}}")).toEqual(["1", "x", "1", "2"]);
  });

  it("refuses parameters that do not fit, naming the component and never the value", () => {
    const cases: [RenderParameters, string, string][] = [
      [{ ...GOOD, body: ["Anna"] }, "body", "expects 2 parameter(s), got 1"],
      [{ ...GOOD, body: ["Anna", "Monday", "x"] }, "body", "expects 2 parameter(s), got 3"],
      [{ body: GOOD.body, "button:1": GOOD["button:1"] }, "header", "expects 1 parameter(s), got none"],
      [{ header: GOOD.header, body: GOOD.body }, "button:1", "expects exactly 1 parameter"],
      [{ ...GOOD, footer: ["x"] }, "footer", "this component takes no parameters"],
      [{ ...GOOD, "button:0": ["x", "y"] }, "button:0", "expects exactly 1 parameter"],
      [{ ...GOOD, "button:0": ["x".repeat(257)] }, "button:0", "a payload is 1 to 256 characters"],
      [{ ...GOOD, "button:7": ["x"] }, "button:7", "this template has no such component"],
      [{ ...GOOD, body: { "1": "Anna" } }, "body", "positional parameters are given as a list"],
      [{ ...GOOD, body: ["Anna\nBUY NOW", "Monday"] }, "body", "a parameter must not contain new lines or tabs"],
      [{ ...GOOD, body: ["Anna     x", "Monday"] }, "body", "a parameter must not contain more than 4 spaces in a row"],
      [{ ...GOOD, body: ["", "Monday"] }, "body", "a parameter must not be empty"],
      [{ ...GOOD, body: ["\u0085\u3000", "Monday"] }, "body", "a parameter must not be empty"],
      [{ ...GOOD, body: ["x".repeat(1025), "Monday"] }, "body", "a parameter has at most 1024 characters"],
      [{ ...GOOD, header: ["x".repeat(60)] }, "header", "the filled-in header exceeds 60 characters"],
      [{ ...GOOD, "button:1": ["47 11"] }, "button:1", "a URL parameter is 1 to 2000 characters without spaces"],
      [{ ...GOOD, body: ["Anna", 7] as unknown as string[] }, "body", "parameters are text"],
    ];
    for (const [parameters, field, problem] of cases) {
      expect(problems(ORDER, parameters), problem).toEqual([[field, problem]]);
    }
    // A code point is a character: 60 emoji fit a 60-character header.
    expect(render(ORDER, { ...GOOD, header: ["😀".repeat(54)] }).header?.text).toBe(`Order ${"😀".repeat(54)}`);
  });

  it("takes named parameters as a map of name to value", () => {
    expect(render(NAMED, { body: { order_id: "4711", first_name: "Anna" } }).body).toBe("Hallo Anna, Bestellung 4711 ist unterwegs.");
    expect(problems(NAMED, { body: { first_name: "Anna" } })).toEqual([["body", "named parameters do not match: missing order_id"]]);
    expect(problems(NAMED, { body: { first_name: "A", order_id: "1", coupon: "x" } })).toEqual([
      ["body", "named parameters do not match: unknown coupon"],
    ]);
    expect(problems(NAMED, { body: ["Anna", "4711"] })).toEqual([["body", "named parameters are given as a map of name to value"]]);
  });

  it("shows an authentication template's platform text and its code", () => {
    const shown = render(LOGIN, { body: ["493021"] });
    expect(shown.body).toBe("493021 is your verification code. For your security, do not share this code.");
    expect(shown.footer).toBe("This code expires in 10 minutes.");
    expect(shown.buttons).toEqual([{ type: "OTP", text: "Copy code", code: "493021" }]);
    expect(problems(LOGIN, { body: ["49 30 21"] })).toEqual([["body", "the code is 1 to 15 characters without spaces"]]);
    expect(problems(LOGIN, {})).toEqual([["body", "expects exactly 1 parameter"]]);
  });

  it("takes one value for a media header and a coupon code", () => {
    const shown = render(PROMO, { header: ["https://cdn.example/sale.jpg"], "button:0": ["SUMMER25"] });
    expect(shown.header).toEqual({ format: "IMAGE", media: "https://cdn.example/sale.jpg" });
    expect(shown.buttons).toEqual([{ type: "COPY_CODE", text: "Copy offer code", code: "SUMMER25" }]);
    expect(renderedText(shown).split("\n")[0]).toBe("[image] https://cdn.example/sale.jpg");
    expect(problems(PROMO, { "button:0": ["SUMMER25"] })).toEqual([["header", "expects exactly 1 parameter"]]);
    expect(problems(PROMO, { header: ["x"], "button:0": ["A CODE WITH SPACES"] })).toEqual([
      ["button:0", "a coupon code is 1 to 15 characters without spaces"],
    ]);
    expect(headerTakesFile(PROMO, "image")).toBe(true);
    expect(headerTakesFile(PROMO, "document")).toBe(false);
    expect(headerTakesFile(ORDER, "image")).toBe(false);
  });

  it("keeps a quick reply's payload, never shown", () => {
    const shown = render(ORDER, { ...GOOD, "button:0": ["track-4711"] });
    expect(shown.buttons[0]).toEqual({ type: "QUICK_REPLY", text: "Track", payload: "track-4711" });
    expect(renderedText(shown)).not.toContain("track-4711");
    expect(render(ORDER, GOOD).buttons[0]).toEqual({ type: "QUICK_REPLY", text: "Track" });
  });
});

async function signedBy(key: { publicKey: string; sign(m: Uint8Array): Promise<string> }, changes: Partial<SignedTemplateBody> = {}) {
  const fields = { ...ORDER, key_id: await keyIdOf(key.publicKey), ...changes };
  const bytes = pack({
    v: fields.v,
    key_id: fields.key_id,
    id: fields.id,
    business_account: fields.business_account,
    name: fields.name,
    language: fields.language,
    category: fields.category,
    parameter_format: fields.parameter_format,
    components: fields.components,
    approved_ms: fields.approved_ms,
  });
  return signedTemplateFromJson({ id: String(fields.id), body: toBase64(bytes), signature: await key.sign(concat(TEMPLATE_PREFIX, bytes)) });
}

describe("a received template message", () => {
  const message: Template = { t: "template", template_id: "7", name: "order_shipped", language: "en_US", parameters: GOOD };

  it("is refused before any template is fetched when it carries no template", async () => {
    const never = () => Promise.reject(new Error("no template is fetched for this"));
    const who = { sender: BUSINESS, templateClass: true, templateRef: "7" };
    await expect(checkTemplateMessage({ t: "text", text: "WIN" }, who, never)).rejects.toThrow(
      new TemplateMismatch("a template message carries a text payload, not a template"),
    );
    await expect(checkTemplateMessage({ t: "unsupported", tag: "media", v: 1 }, who, never)).rejects.toThrow(
      new TemplateMismatch("a template message carries a media payload"),
    );
    const newer = checkTemplateMessage({ t: "unsupported", tag: "template", v: 2 }, who, never);
    await expect(newer).rejects.toThrow(TemplateUnavailable);
    await expect(newer).rejects.toMatchObject({ report: false, kind: "template_unavailable" });
  });

  it("is rendered from the verified template it names", async () => {
    const operator = await testKey();
    const ring = await OperatorKeyRing.pin(operator.publicKey);
    const signed = await signedBy(operator);
    const fetched: string[] = [];
    const verified = async (id: string) => {
      fetched.push(id);
      return verifyTemplateOrReject(signed, ring, id, NOW, () => Promise.resolve());
    };
    const shown = await checkTemplateMessage(message, { sender: BUSINESS, templateClass: true, templateRef: "7" }, verified);
    expect(shown.body).toBe("Hi Anna, your order ships on Monday. Thanks, Anna!");
    expect(fetched).toEqual(["7"]);
    // The relay's template_ref counts only for class template.
    const other = await checkTemplateMessage(message, { sender: BUSINESS, templateClass: false, templateRef: "3" }, verified);
    expect(other.template_id).toBe(7);
    await expect(checkTemplateMessage(message, { sender: BUSINESS, templateClass: true, templateRef: "3" }, verified)).rejects.toMatchObject({
      report: true,
      kind: "template_mismatch",
      reason: "the message names template 7, the relay was told 3",
    });
  });

  it("needs a pinned key, follows a rotation once, and reports a template that does not verify", async () => {
    const operator = await testKey();
    const next = await testKey();
    const ring = await OperatorKeyRing.pin(operator.publicKey);
    const signed = await signedBy(next);
    await expect(verifyTemplateOrReject(signed, null, 7, NOW, () => Promise.resolve())).rejects.toThrow(
      new TemplateUnavailable("no operator key is pinned to check templates with"),
    );
    await expect(verifyTemplateOrReject(signed, ring, 7, NOW, () => Promise.reject(new Error("offline")))).rejects.toThrow(
      new TemplateUnavailable("operator keys unavailable: offline"),
    );
    let refreshed = 0;
    const follow = async () => {
      refreshed += 1;
      const message = new TextEncoder().encode(`tresen-operator-key-v1\0${await keyIdOf(next.publicKey)}\0${next.publicKey}\0${NOW}`);
      await ring.update([
        { key_id: await keyIdOf(next.publicKey), public_key: next.publicKey, endorsement: await operator.sign(message), signs_from_ms: NOW, retires_ms: null },
      ]);
    };
    expect((await verifyTemplateOrReject(signed, ring, 7, NOW, follow)).id).toBe(7);
    expect(refreshed).toBe(1);
    const stranger = await signedBy(await testKey());
    await expect(verifyTemplateOrReject(stranger, ring, 7, NOW, () => Promise.resolve())).rejects.toThrow(TemplateMismatch);
    const tampered = { ...signed, body: signed.body.slice() };
    tampered.body[tampered.body.length - 1]! ^= 1; // approved_ms, still a template
    await expect(verifyTemplateOrReject(tampered, ring, 7, NOW, follow)).rejects.toThrow(
      new TemplateMismatch("the operator's signature on template 7 does not verify"),
    );
  });

  it("has a signed form that decodes strictly as version 1", () => {
    const fields = { v: 1, key_id: "k", id: 7, business_account: "b", name: "n", language: "en", category: "UTILITY", parameter_format: "POSITIONAL", components: [{ type: "BODY", text: "hi" }], approved_ms: 1 };
    expect(decodeSignedBody(pack(fields)).components).toEqual([{ type: "BODY", text: "hi" }]);
    const refused: [unknown, string][] = [
      [{ ...fields, extra: 1 }, "not a signed template: Object contains unknown field `extra`"],
      [{ ...fields, components: [{ text: "x" }] }, "not a signed template: Object missing required field `type` - at `$.components[0]`"],
      [{ ...fields, components: [{ type: "NOPE" }] }, "not a signed template: Invalid value 'NOPE' - at `$.components[0].type`"],
      [{ ...fields, components: [{ type: "BUTTONS", buttons: [{ type: "URL", text: "x" }] }] }, "not a signed template: Object missing required field `url` - at `$.components[0].buttons[0]`"],
      [{ ...fields, v: 2 }, "unsupported template version 2"],
      [{ ...fields, category: "X" }, "not a signed template: Invalid enum value 'X' - at `$.category`"],
    ];
    for (const [value, reason] of refused) expect(() => decodeSignedBody(pack(value))).toThrow(new TemplateFormatError(reason));
  });
});
