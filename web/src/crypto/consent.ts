// Consent statements (docs/protocol.md §11.1): a customer's device signs that it agrees, or no
// longer agrees, to hear from a business in one scope. A port of the Python SDK's
// crypto/consent.py.
//
// The statement is the msgpack map of ConsentStatement, fields in declaration order, exactly
// as msgspec writes it (the relay accepts only this canonical encoding, so a statement has one
// spelling in bytes), signed with the device's Ed25519 identity key as
// `tresen-consent-v1\0` + statement. Anyone with the statement, its signature and the
// device's key can check it offline.

import { Base64Error, fromBase64, toBase64 } from "../wire/base64";
import { MsgpackError, pack, unpackWith } from "../wire/msgpack";
import { pyRepr } from "../wire/pytext";
import { bytes, decodeWith, int, oneOf, required, SchemaError, str, struct, writeWith } from "../wire/schema";
import { verifyEd25519 } from "./ed25519";
import { ed25519KeyBytes } from "./keys";
import { concat, CryptoError, type DeviceIdentity } from "./olm";

export const CONSENT_VERSION = 1;
export const CONSENT_PREFIX = new TextEncoder().encode("tresen-consent-v1\0");
export const NONCE_BYTES = 16;

/** `utility` covers utility and authentication templates, `marketing` marketing ones. */
export type ConsentScope = "utility" | "marketing";
export type ConsentState = "opted_in" | "opted_out";
export const ALL_SCOPES: readonly ConsentScope[] = ["utility", "marketing"];

/** A statement whose signature does not verify, or whose bytes are not a statement. */
export class ForgedConsent extends CryptoError {
  override name = "ForgedConsent";
}

/** What a customer's device signs (msgpack map in this field order). */
export interface ConsentStatement {
  v: number;
  business_account: string;
  customer_account: string;
  /** E.164, as the relay has it for the customer's account. */
  customer_phone: string;
  scope: ConsentScope;
  state: ConsentState;
  /** When the customer decided, by the device's clock (Unix milliseconds). */
  at_ms: number;
  device_id: number;
  /** The signing device's Ed25519 identity key, unpadded base64. */
  device_ed25519: string;
  /** 16 random bytes: no two statements are alike, even with equal fields. */
  nonce: Uint8Array;
}

/** A statement's exact bytes (standard base64) and the device's signature over the prefixed
 * bytes (unpadded base64): what `POST /v1/consents` takes and an auditor keeps. */
export interface SignedConsent {
  statement: string;
  signature: string;
}

const statementSchema = struct<ConsentStatement>({
  forbidUnknown: true,
  fields: [
    { name: "v", schema: int(), default: () => CONSENT_VERSION, alwaysWritten: true },
    required("business_account", str()),
    required("customer_account", str()),
    required("customer_phone", str()),
    required("scope", oneOf<ConsentScope>(ALL_SCOPES)),
    required("state", oneOf<ConsentState>(["opted_in", "opted_out"])),
    required("at_ms", int()),
    required("device_id", int()),
    required("device_ed25519", str()),
    required("nonce", bytes()),
  ],
});

/** The canonical bytes of `statement`. */
export function statementBytes(statement: ConsentStatement): Uint8Array {
  return pack(writeWith(statementSchema, statement));
}

/** The bytes a device signs for a statement `body`. */
export function consentMessage(body: Uint8Array): Uint8Array {
  return concat(CONSENT_PREFIX, body);
}

export type StatementFields = Omit<ConsentStatement, "v" | "device_ed25519" | "nonce"> & {
  /** Fresh random bytes when left out. */
  nonce?: Uint8Array;
};

/** A statement of `fields` for the device whose Ed25519 key is `deviceEd25519`. */
export function newStatement(fields: StatementFields, deviceEd25519: string): ConsentStatement {
  return {
    v: CONSENT_VERSION,
    business_account: fields.business_account,
    customer_account: fields.customer_account,
    customer_phone: fields.customer_phone,
    scope: fields.scope,
    state: fields.state,
    at_ms: fields.at_ms,
    device_id: fields.device_id,
    device_ed25519: deviceEd25519,
    nonce: fields.nonce ?? crypto.getRandomValues(new Uint8Array(NONCE_BYTES)),
  };
}

/** The statement of `fields`, signed with the device's identity key, which it names. */
export function signStatement(identity: DeviceIdentity, fields: StatementFields): SignedConsent {
  const body = statementBytes(newStatement(fields, identity.ed25519));
  return { statement: toBase64(body), signature: identity.sign(consentMessage(body)) };
}

/** The statement in `body`, decoded strictly; no signature check. Only the canonical
 * encoding is accepted. Throws ForgedConsent. */
export function decodeStatement(body: Uint8Array): ConsentStatement {
  let statement: ConsentStatement;
  try {
    statement = unpackWith(body, (value) => decodeWith(statementSchema, value));
  } catch (error) {
    if (error instanceof SchemaError || error instanceof MsgpackError) {
      throw new ForgedConsent(`not a consent statement: ${error.message}`);
    }
    throw error;
  }
  if (statement.v !== CONSENT_VERSION) throw new ForgedConsent(`unsupported consent statement version ${statement.v}`);
  if (statement.nonce.length !== NONCE_BYTES) throw new ForgedConsent(`the nonce must be ${NONCE_BYTES} bytes`);
  let again: Uint8Array;
  try {
    again = statementBytes(statement);
  } catch (error) {
    if (error instanceof MsgpackError) throw new ForgedConsent("not the canonical encoding of a consent statement");
    throw error;
  }
  if (again.length !== body.length || again.some((b, i) => b !== body[i])) {
    throw new ForgedConsent("not the canonical encoding of a consent statement");
  }
  return statement;
}

/** Check `signed` with the device key `ed25519` (unpadded base64) and return the statement.
 * The signature is checked before the body is decoded; the statement must name the same key.
 * Throws ForgedConsent. */
export async function verifyStatement(signed: unknown, ed25519: string): Promise<ConsentStatement> {
  if (signed === null || typeof signed !== "object" || Array.isArray(signed)) {
    throw new ForgedConsent("a signed consent is an object with statement and signature");
  }
  const { statement, signature } = signed as Record<string, unknown>;
  if (typeof statement !== "string" || typeof signature !== "string") {
    throw new ForgedConsent("a signed consent needs statement and signature as strings");
  }
  let body: Uint8Array;
  try {
    body = fromBase64(statement);
  } catch (error) {
    if (error instanceof Base64Error) throw new ForgedConsent("the statement is not base64");
    throw error;
  }
  if (!ed25519KeyBytes(ed25519)) throw new ForgedConsent(`not an Ed25519 key in unpadded base64: ${pyRepr(ed25519)}`);
  if (!(await verifyEd25519(ed25519, consentMessage(body), signature))) {
    throw new ForgedConsent("the consent statement is not signed by this key");
  }
  const decoded = decodeStatement(body);
  if (decoded.device_ed25519 !== ed25519) throw new ForgedConsent("the consent statement names another signing key");
  return decoded;
}
