// Consent statements on their own (tests/crypto/test_consent.py): signed by a device, checked
// by anyone with its key, and only in their one canonical spelling.

import { beforeAll, describe, expect, it } from "vitest";
import {
  CONSENT_PREFIX,
  decodeStatement,
  ForgedConsent,
  newStatement,
  signStatement,
  type StatementFields,
  statementBytes,
  verifyStatement,
} from "../src/crypto/consent";
import { DeviceIdentity, initOlm } from "../src/crypto/olm";
import { fromBase64, toBase64 } from "../src/wire/base64";
import { pack, unpack } from "../src/wire/msgpack";
import { testKey } from "./support/signing";

const NOW = 1_767_225_600_000;

beforeAll(async () => {
  await initOlm();
});

function fields(changes: Partial<StatementFields> = {}): StatementFields {
  return {
    business_account: "b".repeat(32),
    customer_account: "c".repeat(32),
    customer_phone: "+4915112345678",
    scope: "marketing",
    state: "opted_in",
    at_ms: NOW,
    device_id: 1,
    ...changes,
  };
}

describe("consent statements", () => {
  it("verify with the device key alone", async () => {
    const device = DeviceIdentity.create();
    const signed = signStatement(device, fields());
    const record = JSON.parse(JSON.stringify(signed)) as unknown;
    const checked = await verifyStatement(record, device.ed25519);
    expect(checked).toMatchObject({ ...fields(), v: 1, device_ed25519: device.ed25519 });
    expect(checked.nonce).toHaveLength(16);
    expect((await verifyStatement(signStatement(device, fields({ state: "opted_out" })), device.ed25519)).state).toBe("opted_out");
  });

  it("are msgpack maps of the fields in their order, each with a fresh nonce", () => {
    const device = DeviceIdentity.create();
    const a = signStatement(device, fields());
    const b = signStatement(device, fields());
    expect(a.statement).not.toBe(b.statement);
    expect(Object.keys(unpack(fromBase64(a.statement)) as object)).toEqual([
      "v",
      "business_account",
      "customer_account",
      "customer_phone",
      "scope",
      "state",
      "at_ms",
      "device_id",
      "device_ed25519",
      "nonce",
    ]);
  });

  it("are plain Ed25519 over the prefix and the statement", async () => {
    const key = await testKey();
    const body = statementBytes(newStatement(fields({ scope: "utility", device_id: 2 }), key.publicKey));
    const signature = await key.sign(new Uint8Array([...CONSENT_PREFIX, ...body]));
    expect((await verifyStatement({ statement: toBase64(body), signature }, key.publicKey)).device_id).toBe(2);
  });

  it("are refused when signed by another key, altered, or not canonical", async () => {
    const device = DeviceIdentity.create();
    const other = DeviceIdentity.create();
    await expect(verifyStatement(signStatement(device, fields()), other.ed25519)).rejects.toThrow(
      new ForgedConsent("the consent statement is not signed by this key"),
    );
    const claimed = statementBytes(newStatement(fields(), device.ed25519));
    const byOther = { statement: toBase64(claimed), signature: other.sign(new Uint8Array([...CONSENT_PREFIX, ...claimed])) };
    await expect(verifyStatement(byOther, other.ed25519)).rejects.toThrow(new ForgedConsent("the consent statement names another signing key"));
    await expect(verifyStatement(byOther, device.ed25519)).rejects.toThrow(ForgedConsent);

    const signed = signStatement(device, fields({ state: "opted_out" }));
    const flipped = statementBytes({ ...decodeStatement(fromBase64(signed.statement)), state: "opted_in" });
    await expect(verifyStatement({ ...signed, statement: toBase64(flipped) }, device.ed25519)).rejects.toThrow(ForgedConsent);

    const map = unpack(claimed) as Record<string, unknown>;
    const bodies = [
      pack(Object.fromEntries(Object.entries(map).reverse())),
      pack({ ...map, extra: 1 }),
      pack({ ...map, v: 2 }),
      pack({ ...map, scope: "everything" }),
      pack({ ...map, nonce: Uint8Array.of(1) }),
      Uint8Array.of(0xc1),
    ];
    for (const body of bodies) {
      const forged = { statement: toBase64(body), signature: device.sign(new Uint8Array([...CONSENT_PREFIX, ...body])) };
      await expect(verifyStatement(forged, device.ed25519)).rejects.toThrow(ForgedConsent);
    }
    await expect(verifyStatement({ ...signed, signature: "not base64!" }, device.ed25519)).rejects.toThrow(ForgedConsent);
    await expect(verifyStatement("junk", device.ed25519)).rejects.toThrow("a signed consent is an object with statement and signature");
  });
});
