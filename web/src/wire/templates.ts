// Template messages as the recipient's client checks and shows them (docs/protocol.md §10.3,
// §10.5): the operator-signed template, its verification against the device's operator key
// ring, the checks a received template message must pass, and its rendering. Ports of the
// Python SDK's wire/templates.py (decoding, `render`) and client/templates.py (the checks),
// with the same limits and the same reasons.
//
// The relay prices and lets through a send that claims to be template T without seeing its
// content, so the recipient shows only T, as the operator signed it, filled in with the
// message's parameters; anything else is refused (and reported as a template mismatch).

import {
  CertificateError,
  type OperatorKeyRing,
  UnknownOperatorKey,
} from "../crypto/operator";
import { verifyEd25519 } from "../crypto/ed25519";
import { concat } from "../crypto/olm";
import { Base64Error, fromBase64, toBase64 } from "./base64";
import { MsgpackError, unpackWith } from "./msgpack";
import type { Media, Payload, Template } from "./payloads";
import { codePoints, hasPySpace, isPyBlank, isPySpace, pyRepr } from "./pytext";
import {
  array,
  bool,
  decodeWith,
  type Field,
  int,
  isPlainMap,
  oneOf,
  required,
  type Schema,
  SchemaError,
  str,
  struct,
  tagged,
  unset,
} from "./schema";

export const TEMPLATE_VERSION = 1;
export const TEMPLATE_PREFIX = new TextEncoder().encode("tresen-template-v1\0");

export const NAME_MAX = 512;
export const HEADER_TEXT_MAX = 60;
export const BODY_MAX = 1024;
export const FOOTER_MAX = 60;
export const BUTTON_TEXT_MAX = 25;
export const MAX_BUTTONS = 10;
export const PARAMETER_MAX = 1024;
export const RENDERED_BODY_MAX = 4096;
export const CODE_MAX = 15;
export const MEDIA_REF_MAX = 2048;
export const URL_MAX = 2000;
export const QUICK_REPLY_PAYLOAD_MAX = 256;
/** The Cloud API's error code for parameters that do not fit. */
export const TEMPLATE_PARAMS_MISMATCH = 132000;
/** What a report of a refused template message names as its reason. */
export const REPORT_REASON = "template_mismatch";

/** The fixed texts of authentication templates (the Cloud API writes them for the business). */
export const AUTH_SECURITY = "For your security, do not share this code.";
const authBody = (code: string) => `${code} is your verification code.`;
const authFooter = (minutes: number) => `This code expires in ${minutes} minutes.`;

export type TemplateCategory = "MARKETING" | "UTILITY" | "AUTHENTICATION";
export type ParameterFormat = "POSITIONAL" | "NAMED";
export type HeaderFormat = "TEXT" | "IMAGE" | "VIDEO" | "DOCUMENT" | "LOCATION" | "GIF";
export type OtpType = "COPY_CODE" | "ONE_TAP" | "ZERO_TAP";

// --- components (the Cloud API shape, as the operator signed them) ---------------------------

export interface NamedExample {
  param_name: string;
  example: string;
}
export interface HeaderExample {
  header_text?: string[];
  header_text_named_params?: NamedExample[];
  header_handle?: string[];
}
export interface BodyExample {
  body_text?: string[][];
  body_text_named_params?: NamedExample[];
}
export interface QuickReplyButton {
  type: "QUICK_REPLY";
  text: string;
}
export interface UrlButton {
  type: "URL";
  text: string;
  url: string;
  example?: string[];
}
export interface PhoneNumberButton {
  type: "PHONE_NUMBER";
  text: string;
  phone_number: string;
}
/** A coupon code the customer can copy; `example` is a sample code. */
export interface CopyCodeButton {
  type: "COPY_CODE";
  example: string;
}
/** The one-time-code button of an authentication template. */
export interface OtpButton {
  type: "OTP";
  otp_type: OtpType;
  text?: string;
  autofill_text?: string;
  package_name?: string;
  signature_hash?: string;
}
export type TemplateButton = QuickReplyButton | UrlButton | PhoneNumberButton | CopyCodeButton | OtpButton;

export interface HeaderComponent {
  type: "HEADER";
  format: HeaderFormat;
  text?: string;
  example?: HeaderExample;
}
/** `text` for marketing and utility templates; authentication ones have the fixed text. */
export interface BodyComponent {
  type: "BODY";
  text?: string;
  add_security_recommendation?: boolean;
  example?: BodyExample;
}
export interface FooterComponent {
  type: "FOOTER";
  text?: string;
  code_expiration_minutes?: number;
}
export interface ButtonsComponent {
  type: "BUTTONS";
  buttons: TemplateButton[];
}
export type TemplateComponent = HeaderComponent | BodyComponent | FooterComponent | ButtonsComponent;

/** What the operator vouches for: this business may send exactly this template. */
export interface SignedTemplateBody {
  v: number;
  key_id: string;
  id: number;
  business_account: string;
  name: string;
  language: string;
  category: TemplateCategory;
  parameter_format: ParameterFormat;
  components: TemplateComponent[];
  approved_ms: number;
}

function shape<T>(fields: readonly Field[], tag?: { field: string; value: string }): Schema<T> {
  return struct<T>({ fields, forbidUnknown: true, ...(tag ? { tag } : {}) });
}

const namedExample = shape<NamedExample>([required("param_name", str()), required("example", str())]);
const headerExample = shape<HeaderExample>([
  unset("header_text", array(str())),
  unset("header_text_named_params", array(namedExample)),
  unset("header_handle", array(str())),
]);
const bodyExample = shape<BodyExample>([
  unset("body_text", array(array(str()))),
  unset("body_text_named_params", array(namedExample)),
]);

const buttonTag = (value: string) => ({ field: "type", value });
const templateButton = tagged<TemplateButton>("type", {
  QUICK_REPLY: shape([required("text", str())], buttonTag("QUICK_REPLY")),
  URL: shape(
    [required("text", str()), required("url", str()), unset("example", array(str()))],
    buttonTag("URL"),
  ),
  PHONE_NUMBER: shape([required("text", str()), required("phone_number", str())], buttonTag("PHONE_NUMBER")),
  COPY_CODE: shape([required("example", str())], buttonTag("COPY_CODE")),
  OTP: shape(
    [
      required("otp_type", oneOf<OtpType>(["COPY_CODE", "ONE_TAP", "ZERO_TAP"])),
      unset("text", str()),
      unset("autofill_text", str()),
      unset("package_name", str()),
      unset("signature_hash", str()),
    ],
    buttonTag("OTP"),
  ),
});

const component = tagged<TemplateComponent>("type", {
  HEADER: shape(
    [
      required("format", oneOf<HeaderFormat>(["TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION", "GIF"])),
      unset("text", str()),
      unset("example", headerExample),
    ],
    buttonTag("HEADER"),
  ),
  BODY: shape(
    [unset("text", str()), unset("add_security_recommendation", bool), unset("example", bodyExample)],
    buttonTag("BODY"),
  ),
  FOOTER: shape([unset("text", str()), unset("code_expiration_minutes", int())], buttonTag("FOOTER")),
  BUTTONS: shape([required("buttons", array(templateButton))], buttonTag("BUTTONS")),
});

const signedBody = struct<SignedTemplateBody>({
  forbidUnknown: true,
  fields: [
    { name: "v", schema: int(), default: () => TEMPLATE_VERSION, alwaysWritten: true },
    required("key_id", str()),
    required("id", int()),
    required("business_account", str()),
    required("name", str()),
    required("language", str()),
    required("category", oneOf<TemplateCategory>(["MARKETING", "UTILITY", "AUTHENTICATION"])),
    required("parameter_format", oneOf<ParameterFormat>(["POSITIONAL", "NAMED"])),
    required("components", array(component)),
    required("approved_ms", int()),
  ],
});

/** Bytes that are not a template, or a signed template's JSON that is malformed. */
export class TemplateFormatError extends Error {
  override name = "TemplateFormatError";
}

/** The template in `body`, decoded strictly (no signature check). */
export function decodeSignedBody(body: Uint8Array): SignedTemplateBody {
  let decoded: SignedTemplateBody;
  try {
    decoded = unpackWith(body, (value) => decodeWith(signedBody, value));
  } catch (error) {
    if (error instanceof SchemaError || error instanceof MsgpackError) {
      throw new TemplateFormatError(`not a signed template: ${error.message}`);
    }
    throw error;
  }
  if (decoded.v !== TEMPLATE_VERSION) throw new TemplateFormatError(`unsupported template version ${decoded.v}`);
  return decoded;
}

/** A template's exact signed bytes and the operator's signature over them. `template_id` is
 * the decimal id, canonical (no leading zeros). */
export interface SignedTemplate {
  template_id: string;
  body: Uint8Array;
  signature: string;
}

function canonicalId(id: string | number): string {
  return typeof id === "number" ? String(id) : BigInt(id.trim()).toString();
}

/** `{"id", "body", "signature"}` as `GET /v1/templates/{id}` serves it; throws
 * `TemplateFormatError` for anything else. */
export function signedTemplateFromJson(data: unknown): SignedTemplate {
  if (!isPlainMap(data)) throw new TemplateFormatError("a signed template is an object with id, body and signature");
  const { id, body, signature } = data;
  if (typeof id !== "string" || !/^[0-9]+$/.test(id) || typeof body !== "string" || typeof signature !== "string") {
    throw new TemplateFormatError("a signed template needs id, body and signature as strings");
  }
  try {
    return { template_id: canonicalId(id), body: fromBase64(body), signature };
  } catch (error) {
    if (error instanceof Base64Error) throw new TemplateFormatError("the body of a signed template is not base64");
    throw error;
  }
}

export function signedTemplateToJson(signed: SignedTemplate): { id: string; body: string; signature: string } {
  return { id: signed.template_id, body: toBase64(signed.body), signature: signed.signature };
}

// --- verification ----------------------------------------------------------------------------

/** The signature does not verify, or the signed bytes are not the template asked for. */
export class ForgedTemplate extends CertificateError {
  override name = "ForgedTemplate";
}
/** Signed by an operator key that has retired (the relay signs it again with the new one). */
export class RetiredTemplateKey extends CertificateError {
  override name = "RetiredTemplateKey";
}

/** The template, if the operator signed exactly these bytes with a key of `ring` that has not
 * retired, and it is template `expectedId`. Throws UnknownOperatorKey (refresh the ring and
 * try again), ForgedTemplate or RetiredTemplateKey. */
export async function verifySignedTemplate(
  signed: SignedTemplate,
  ring: OperatorKeyRing,
  expectedId: string | number,
  nowMs: number,
): Promise<SignedTemplateBody> {
  const id = signed.template_id;
  if (canonicalId(expectedId) !== id) throw new ForgedTemplate(`asked for template ${canonicalId(expectedId)}, got ${id}`);
  let body: SignedTemplateBody;
  try {
    body = decodeSignedBody(signed.body);
  } catch (error) {
    if (error instanceof TemplateFormatError) throw new ForgedTemplate(error.message);
    throw error;
  }
  if (!ring.has(body.key_id)) {
    throw new UnknownOperatorKey(
      `template ${id} is signed by operator key ${body.key_id}, which this client does not trust`,
    );
  }
  if (!(await verifyEd25519(ring.publicKey(body.key_id), concat(TEMPLATE_PREFIX, signed.body), signed.signature))) {
    throw new ForgedTemplate(`the operator's signature on template ${id} does not verify`);
  }
  const retires = ring.retiresMs(body.key_id);
  if (retires !== null && nowMs >= retires) {
    throw new RetiredTemplateKey(`template ${id} is signed by operator key ${body.key_id}, which retired`);
  }
  if (String(body.id) !== id) throw new ForgedTemplate(`the signed template is ${body.id}, not ${id}`);
  return body;
}

/** A template message the client does not show; `reason` says why. */
export class TemplateRejected extends Error {
  override name = "TemplateRejected";
  readonly report: boolean = false;
  readonly kind: string = "template_rejected";
  constructor(readonly reason: string) {
    super(reason);
  }
}
/** Not what the template it claims allows: refused and reported (`template_mismatch`). */
export class TemplateMismatch extends TemplateRejected {
  override name = "TemplateMismatch";
  override readonly report = true;
  override readonly kind = REPORT_REASON;
}
/** The template could not be fetched or checked now (network, no pinned operator key):
 * refused, but nobody is reported for it. */
export class TemplateUnavailable extends TemplateRejected {
  override name = "TemplateUnavailable";
  override readonly kind = "template_unavailable";
}

/** §10.5 step 2, as the Python client does it: verify `signed` with `ring`; when it names a
 * key the ring does not know, `refreshKeys` (which updates `ring`) once and verify again.
 * Throws TemplateUnavailable (no ring, keys not reachable) or TemplateMismatch. */
export async function verifyTemplateOrReject(
  signed: SignedTemplate,
  ring: OperatorKeyRing | null,
  expectedId: string | number,
  nowMs: number,
  refreshKeys: () => Promise<unknown>,
): Promise<SignedTemplateBody> {
  if (!ring) throw new TemplateUnavailable("no operator key is pinned to check templates with");
  try {
    try {
      return await verifySignedTemplate(signed, ring, expectedId, nowMs);
    } catch (error) {
      if (!(error instanceof UnknownOperatorKey)) throw error;
      try {
        await refreshKeys();
      } catch (failure) {
        throw new TemplateUnavailable(`operator keys unavailable: ${failure instanceof Error ? failure.message : String(failure)}`);
      }
      return await verifySignedTemplate(signed, ring, expectedId, nowMs);
    }
  } catch (error) {
    if (error instanceof CertificateError) throw new TemplateMismatch(error.message);
    throw error;
  }
}

// --- placeholders and rendering --------------------------------------------------------------

const PLACEHOLDER = /\{\{([^{}]*)\}\}/g;

/** What stands between `{{` and `}}` in `text`, in order (repeats included). */
export function placeholders(text: string): string[] {
  return [...text.matchAll(PLACEHOLDER)].map((m) => m[1]!);
}

// One pass: a value that itself looks like "{{2}}" is never substituted again.
function fill(text: string, values: ReadonlyMap<string, string>): string {
  return text.replace(PLACEHOLDER, (whole: string, name: string) => values.get(name) ?? whole);
}

/** The distinct placeholder names of `text`: "1", "2", ... (numerically) or the names in order. */
function specOf(text: string, format: ParameterFormat): string[] {
  const seen: string[] = [];
  for (const name of placeholders(text)) if (!seen.includes(name)) seen.push(name);
  if (format === "POSITIONAL") seen.sort((a, b) => Number(a) - Number(b));
  return seen;
}

function compareCodePoints(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/** One broken rule: the component (`body`, `button:0`) and what is wrong, never a value. */
export interface Problem {
  field: string;
  problem: string;
}

/** The parameters do not fit the template (Cloud API 132000). */
export class ParameterMismatch extends Error {
  override name = "ParameterMismatch";
  readonly code = TEMPLATE_PARAMS_MISMATCH;
  constructor(readonly problems: Problem[]) {
    super(problems.map((p) => `${p.field}: ${p.problem}`).join("; "));
  }
}

export interface RenderedHeader {
  format: HeaderFormat;
  text?: string;
  /** For media headers: the link or media id the sender gave. */
  media?: string;
}

export interface RenderedButton {
  type: "QUICK_REPLY" | "URL" | "PHONE_NUMBER" | "COPY_CODE" | "OTP";
  text: string;
  url?: string;
  phone_number?: string;
  code?: string;
  /** For QUICK_REPLY buttons: the payload the business set, returned when tapped. */
  payload?: string;
}

/** A template message as the recipient sees it: the signed template, filled in. */
export interface RenderedTemplate {
  template_id: number;
  name: string;
  language: string;
  category: TemplateCategory;
  body: string;
  header?: RenderedHeader;
  footer?: string;
  buttons: RenderedButton[];
}

/** Header, body, footer and buttons as plain text lines, for simple displays. */
export function renderedText(shown: RenderedTemplate): string {
  const lines: string[] = [];
  if (shown.header) {
    if (shown.header.text !== undefined) lines.push(shown.header.text);
    else lines.push(pyRstrip(`[${shown.header.format.toLowerCase()}] ${shown.header.media ?? ""}`));
  }
  lines.push(shown.body);
  if (shown.footer) lines.push(shown.footer);
  for (const b of shown.buttons) {
    const target = b.url || b.phone_number || b.code;
    lines.push(`[${b.text}]${target ? ` ${target}` : ""}`);
  }
  return lines.join("\n");
}

function pyRstrip(text: string): string {
  const chars = Array.from(text);
  while (chars.length > 0 && isPySpace(chars[chars.length - 1]!)) chars.pop();
  return chars.join("");
}

/** Parameters per component: a list for positional placeholders, a map for named ones. Values
 * of other types are refused as Python refuses them ("parameters are text"). */
export type RenderParameters = Readonly<Record<string, readonly unknown[] | Readonly<Record<string, unknown>> | string>>;
type Given = RenderParameters[string] | undefined;

type Keyed = [string, TemplateComponent | TemplateButton];

/** `["header", ...]`, `["body", ...]`, `["footer", ...]`, `["button:N", button]`. */
export function componentKeys(components: readonly TemplateComponent[]): Keyed[] {
  const out: Keyed[] = [];
  for (const c of components) {
    if (c.type === "BUTTONS") c.buttons.forEach((button, i) => out.push([`button:${i}`, button]));
    else if (c.type === "HEADER") out.push(["header", c]);
    else if (c.type === "BODY") out.push(["body", c]);
    else out.push(["footer", c]);
  }
  return out;
}

const FILE_HEADERS: readonly HeaderFormat[] = ["IMAGE", "VIDEO", "DOCUMENT"];

/** Whether the template's header is a file of `kind` (`image`, `video`, `document`): what a
 * template message's `header_media` must be. */
export function headerTakesFile(template: SignedTemplateBody, kind: string): boolean {
  for (const c of template.components) {
    if (c.type === "HEADER") return c.format.toLowerCase() === kind && FILE_HEADERS.includes(c.format);
  }
  return false;
}

const isMap = (given: Given): given is Readonly<Record<string, unknown>> =>
  given !== undefined && typeof given === "object" && !Array.isArray(given);

function get(parameters: RenderParameters, key: string): Given {
  return Object.hasOwn(parameters, key) ? parameters[key] : undefined;
}

class Renderer {
  readonly problems: Problem[] = [];

  constructor(readonly parameters: RenderParameters) {}

  add(field: string, problem: string): void {
    this.problems.push({ field, problem });
  }

  textValue(key: string, value: string, limit: number): void {
    if (isPyBlank(value)) this.add(key, "a parameter must not be empty");
    else if (codePoints(value) > limit) this.add(key, `a parameter has at most ${limit} characters`);
    else if (/[\n\t\r]/.test(value)) this.add(key, "a parameter must not contain new lines or tabs");
    else if (/ {5,}/.test(value)) this.add(key, "a parameter must not contain more than 4 spaces in a row");
  }

  tokenValue(key: string, value: string, limit: number, what: string): void {
    if (!value || codePoints(value) > limit || hasPySpace(value)) {
      this.add(key, `${what} is 1 to ${limit} characters without spaces`);
    }
  }

  /** The values for the placeholder `names` of one component, or null (problems). */
  values(key: string, given: Given, names: string[], format: ParameterFormat): Map<string, string> | null {
    if (given === undefined) {
      this.add(key, `expects ${names.length} parameter(s), got none`);
      return null;
    }
    const values = new Map<string, unknown>();
    if (format === "NAMED") {
      if (!isMap(given)) {
        this.add(key, "named parameters are given as a map of name to value");
        return null;
      }
      const missing = names.filter((n) => !Object.hasOwn(given, n));
      const extra = Object.keys(given)
        .filter((n) => !names.includes(n))
        .sort(compareCodePoints);
      if (missing.length > 0 || extra.length > 0) {
        const parts: string[] = [];
        if (missing.length > 0) parts.push(`missing ${missing.join(", ")}`);
        if (extra.length > 0) parts.push(`unknown ${extra.join(", ")}`);
        this.add(key, `named parameters do not match: ${parts.join("; ")}`);
        return null;
      }
      for (const n of names) values.set(n, given[n]);
    } else {
      if (isMap(given) || typeof given === "string") {
        this.add(key, "positional parameters are given as a list");
        return null;
      }
      if (given.length !== names.length) {
        this.add(key, `expects ${names.length} parameter(s), got ${given.length}`);
        return null;
      }
      for (const n of names) values.set(n, given[Number(n) - 1]);
    }
    if (![...values.values()].every((v) => typeof v === "string")) {
      this.add(key, "parameters are text");
      return null;
    }
    return values as Map<string, string>;
  }

  single(key: string, given: Given): string | null {
    if (given === undefined || isMap(given) || typeof given === "string" || given.length !== 1) {
      this.add(key, "expects exactly 1 parameter");
      return null;
    }
    const value = given[0];
    if (typeof value !== "string") {
      this.add(key, "parameters are text");
      return null;
    }
    return value;
  }

  noParameters(key: string): void {
    if (Object.hasOwn(this.parameters, key)) this.add(key, "this component takes no parameters");
  }

  filled(key: string, source: string, format: ParameterFormat, limit: number): string {
    const names = specOf(source, format);
    if (names.length === 0) {
      this.noParameters(key);
      return source;
    }
    const values = this.values(key, get(this.parameters, key), names, format);
    if (!values) return source;
    for (const value of values.values()) this.textValue(key, value, Math.min(limit, PARAMETER_MAX));
    return fill(source, values);
  }
}

/** The template filled in with `parameters`; throws ParameterMismatch.
 *
 * Every component that has placeholders (or a media header, a COPY_CODE button, the code of
 * an authentication template) needs its parameters, with exactly the count or names the
 * template has; components without any take none, except a QUICK_REPLY button, which may take
 * one: the payload its tap returns (1-256 characters). */
export function render(template: SignedTemplateBody, parameters: RenderParameters): RenderedTemplate {
  const r = new Renderer(parameters);
  const format = template.parameter_format;
  const keyed = componentKeys(template.components);
  const known = new Set(keyed.map(([key]) => key));
  for (const key of Object.keys(parameters)) if (!known.has(key)) r.add(key, "this template has no such component");
  const auth = template.category === "AUTHENTICATION";
  // An authentication template's code is its body parameter; its OTP button copies it.
  const code = auth ? r.single("body", get(parameters, "body")) : null;
  if (code !== null) r.tokenValue("body", code, CODE_MAX, "the code");

  let header: RenderedHeader | undefined;
  let body = "";
  let footer: string | undefined;
  const buttons: RenderedButton[] = [];
  for (const [key, c] of keyed) {
    switch (c.type) {
      case "BODY":
        if (auth) {
          body = authBody(code ?? "");
          if (c.add_security_recommendation) body += ` ${AUTH_SECURITY}`;
          break;
        }
        body = r.filled(key, c.text ?? "", format, RENDERED_BODY_MAX);
        if (codePoints(body) > RENDERED_BODY_MAX) {
          r.add(key, `the filled-in body exceeds ${RENDERED_BODY_MAX} characters`);
        }
        break;
      case "HEADER": {
        if (c.format === "TEXT") {
          const text = r.filled(key, c.text ?? "", format, HEADER_TEXT_MAX);
          if (codePoints(text) > HEADER_TEXT_MAX) {
            r.add(key, `the filled-in header exceeds ${HEADER_TEXT_MAX} characters`);
          }
          header = { format: "TEXT", text };
          break;
        }
        const media = r.single(key, get(parameters, key));
        if (media !== null) r.tokenValue(key, media, MEDIA_REF_MAX, "a media link or id");
        header = media === null ? { format: c.format } : { format: c.format, media };
        break;
      }
      case "FOOTER":
        r.noParameters(key);
        if (c.code_expiration_minutes !== undefined) footer = authFooter(c.code_expiration_minutes);
        else footer = c.text;
        break;
      case "URL": {
        let url = c.url;
        if (specOf(url, "POSITIONAL").length > 0) {
          const suffix = r.single(key, get(parameters, key));
          if (suffix !== null) {
            r.tokenValue(key, suffix, URL_MAX, "a URL parameter");
            url = fill(url, new Map([["1", suffix]]));
            const parts = urlSplit(url);
            if (!parts || (parts.scheme !== "http" && parts.scheme !== "https") || !parts.netloc) {
              r.add(key, "the filled-in URL is not an http(s) URL");
            } else if (codePoints(url) > URL_MAX) {
              r.add(key, `the filled-in URL exceeds ${URL_MAX}`);
            }
          }
        } else {
          r.noParameters(key);
        }
        buttons.push({ type: "URL", text: c.text, url });
        break;
      }
      case "COPY_CODE": {
        const coupon = r.single(key, get(parameters, key));
        if (coupon !== null) r.tokenValue(key, coupon, CODE_MAX, "a coupon code");
        buttons.push(coupon === null ? { type: "COPY_CODE", text: "Copy offer code" } : { type: "COPY_CODE", text: "Copy offer code", code: coupon });
        break;
      }
      case "OTP":
        r.noParameters(key);
        buttons.push(code === null ? { type: "OTP", text: c.text ?? "Copy code" } : { type: "OTP", text: c.text ?? "Copy code", code });
        break;
      case "PHONE_NUMBER":
        r.noParameters(key);
        buttons.push({ type: "PHONE_NUMBER", text: c.text, phone_number: c.phone_number });
        break;
      case "QUICK_REPLY": {
        // Its one optional parameter is the payload the tap returns (Cloud API).
        let payload: string | null = null;
        if (Object.hasOwn(parameters, key)) {
          payload = r.single(key, get(parameters, key));
          const length = payload === null ? 0 : codePoints(payload);
          if (payload !== null && !(length >= 1 && length <= QUICK_REPLY_PAYLOAD_MAX)) {
            r.add(key, `a payload is 1 to ${QUICK_REPLY_PAYLOAD_MAX} characters`);
          }
        }
        buttons.push(payload === null ? { type: "QUICK_REPLY", text: c.text } : { type: "QUICK_REPLY", text: c.text, payload });
        break;
      }
    }
  }
  if (r.problems.length > 0) throw new ParameterMismatch(r.problems);
  const shown: RenderedTemplate = {
    template_id: template.id,
    name: template.name,
    language: template.language,
    category: template.category,
    body,
    buttons,
  };
  if (header) shown.header = header;
  if (footer !== undefined) shown.footer = footer;
  return shown;
}

/** The scheme and network location of `url` as Python's `urllib.parse.urlsplit` finds them;
 * null where urlsplit raises (a broken IPv6 literal, a host that NFKC turns into a
 * delimiter). */
export function urlSplit(url: string): { scheme: string; netloc: string } | null {
  let rest = url.replace(/^[\x00-\x20]+/, "").replace(/[\t\r\n]/g, "");
  let scheme = "";
  const colon = rest.indexOf(":");
  if (colon > 0 && /^[A-Za-z][A-Za-z0-9+\-.]*$/.test(rest.slice(0, colon))) {
    scheme = rest.slice(0, colon).toLowerCase();
    rest = rest.slice(colon + 1);
  }
  let netloc = "";
  if (rest.startsWith("//")) {
    let end = rest.length;
    for (const delimiter of "/?#") {
      const at = rest.indexOf(delimiter, 2);
      if (at >= 0) end = Math.min(end, at);
    }
    netloc = rest.slice(2, end);
    const open = netloc.includes("[");
    const close = netloc.includes("]");
    if (open !== close) return null;
    if (open && !bracketedHostIsValid(netloc.slice(netloc.indexOf("[") + 1).split("]")[0]!)) return null;
  }
  if (netloc && !/^[\x00-\x7f]*$/.test(netloc)) {
    const n = netloc.replace(/[@:#?]/g, "");
    const normalized = n.normalize("NFKC");
    if (n !== normalized && /[/?#@:]/.test(normalized)) return null;
  }
  return { scheme, netloc };
}

function bracketedHostIsValid(host: string): boolean {
  // Python's `\Av[a-fA-F0-9]+\..+\Z`: its `.` is anything but a new line.
  if (host.startsWith("v")) return /^v[a-fA-F0-9]+\.[^\n]+$/.test(host);
  if (/^[0-9.]+$/.test(host)) return false; // an IPv4 address cannot be in brackets
  try {
    new URL(`http://[${host}]/`);
    return true;
  } catch {
    return false;
  }
}

// --- received template messages (§10.5) -----------------------------------------------------

/** Steps 3 to 5 for a verified `template`: the message must come from the template's
 * business, name the template the relay was told (`templateRef`, when known) with its name
 * and language, attach a file only where the header is one, give payloads only to quick
 * replies, and have parameters that fit. Reasons never repeat a parameter's value (they go
 * to the operator in a report). Throws TemplateMismatch. */
export function checkAgainstTemplate(
  template: SignedTemplateBody,
  payload: Template,
  message: { sender: string; templateRef: string | null },
): RenderedTemplate {
  if (template.business_account !== message.sender) {
    throw new TemplateMismatch(`template ${template.id} belongs to another business than the sender`);
  }
  if (message.templateRef !== null && message.templateRef !== payload.template_id) {
    throw new TemplateMismatch(
      `the message names template ${payload.template_id}, the relay was told ${message.templateRef}`,
    );
  }
  if (payload.name !== template.name || payload.language !== template.language) {
    throw new TemplateMismatch(
      `template ${template.id} is ${pyRepr(template.name)} in ${template.language}, the message ` +
        `names ${pyRepr(payload.name)} in ${payload.language}`,
    );
  }
  const attached: Media | undefined = payload.header_media;
  if (attached && !headerTakesFile(template, attached.kind)) {
    throw new TemplateMismatch(`the message attaches a ${attached.kind}; the header is not one`);
  }
  const parameters: Record<string, readonly unknown[] | Readonly<Record<string, unknown>>> = {
    ...(payload.parameters ?? {}),
  };
  const quick = new Set(componentKeys(template.components).filter(([, c]) => c.type === "QUICK_REPLY").map(([k]) => k));
  for (const [key, value] of Object.entries(payload.button_payloads ?? {})) {
    if (!quick.has(key)) throw new TemplateMismatch(`${key}: a payload for a button that is not a quick reply`);
    if (Object.hasOwn(parameters, key)) throw new TemplateMismatch(`${key}: the payload is given twice`);
    parameters[key] = [value];
  }
  try {
    return render(template, parameters);
  } catch (error) {
    if (error instanceof ParameterMismatch) {
      const problems = error.problems.map((p) => `${p.field}: ${p.problem}`).join("; ");
      throw new TemplateMismatch(`the parameters do not fit (132000): ${problems}`);
    }
    throw error;
  }
}

/** §10.5 steps 1 to 5 for a message from another account that has class template or carries
 * a template payload: its rendering, the only form in which it may be shown.
 *
 * `verifiedTemplate(id)` gives the verified signed template (step 2: from the device's
 * store or `GET /v1/templates/{id}`, checked with `verifyTemplateOrReject`); it throws
 * TemplateMismatch or TemplateUnavailable itself. `templateClass`: the send had class
 * template, so `templateRef` (the template the relay accepted and bills it as) must be the
 * payload's template. Throws TemplateMismatch (report it) or TemplateUnavailable (don't). */
export async function checkTemplateMessage(
  payload: Payload,
  message: { sender: string; templateClass: boolean; templateRef: string | null },
  verifiedTemplate: (templateId: string) => Promise<SignedTemplateBody>,
): Promise<RenderedTemplate> {
  if (payload.t === "unsupported") {
    if (payload.tag === "template") {
      // A newer sender's template payload: not the sender's fault, nothing to show.
      throw new TemplateUnavailable(`a template payload of version ${payload.v}`);
    }
    throw new TemplateMismatch(`a template message carries a ${payload.tag} payload`);
  }
  if (payload.t !== "template") {
    throw new TemplateMismatch(`a template message carries a ${payload.t} payload, not a template`);
  }
  const template = await verifiedTemplate(canonicalId(payload.template_id));
  return checkAgainstTemplate(template, payload, {
    sender: message.sender,
    templateRef: message.templateClass ? message.templateRef : null,
  });
}
