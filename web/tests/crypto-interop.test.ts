// Consent statements, attachments and safety numbers against the Python reference: the same
// statement is the same bytes in both languages and each verifies the other's signature, a
// file sealed on one side opens on the other (and damage is refused with the same code), and
// both compute the same safety number.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlob, sealFile } from "../src/crypto/attachments";
import {
  CONSENT_PREFIX,
  newStatement,
  signStatement,
  type StatementFields,
  statementBytes,
  verifyStatement,
} from "../src/crypto/consent";
import { ed25519KeyBytes, isEd25519Point } from "../src/crypto/keys";
import { DeviceIdentity, initOlm } from "../src/crypto/olm";
import { fingerprint, safetyNumber } from "../src/crypto/safety";
import { fromBase64, toBase64 } from "../src/wire/base64";
import { pack } from "../src/wire/msgpack";
import { pattern } from "./support/examples";
import { WirePeer } from "./support/wire-peer";

const NOW = 1_767_225_600_000;

let peer: WirePeer;
beforeAll(async () => {
  await initOlm();
  peer = new WirePeer();
});
afterAll(() => peer?.close());

function fields(changes: Partial<StatementFields> = {}): StatementFields {
  return {
    business_account: "b".repeat(32),
    customer_account: "c".repeat(32),
    customer_phone: "+4915112345678",
    scope: "marketing",
    state: "opted_in",
    at_ms: NOW,
    device_id: 1,
    nonce: pattern(16, 1),
    ...changes,
  };
}

function pythonFields(f: StatementFields): Record<string, unknown> {
  return { ...f, nonce: toBase64(f.nonce!) };
}

async function refusal(promise: Promise<unknown>): Promise<unknown> {
  try {
    return { statement: await promise };
  } catch (error) {
    return { refused: (error as Error).name, reason: (error as Error).message };
  }
}

describe("consent statements against the Python reference", () => {
  it("are the same bytes, whatever the fields hold", async () => {
    const cases = [
      fields(),
      fields({ scope: "utility", state: "opted_out", device_id: 2 ** 40, at_ms: 0 }),
      fields({ business_account: "ü".repeat(16), customer_account: "x".repeat(31), customer_phone: "y".repeat(32) }),
      fields({ business_account: "z".repeat(255), customer_account: "z".repeat(256), customer_phone: "😀".repeat(70_000) }),
      fields({ at_ms: 2 ** 53, device_id: 127 }),
      fields({ at_ms: -1, device_id: 128 }),
    ];
    const key = DeviceIdentity.create().ed25519;
    for (const f of cases) {
      const theirs = await peer.call("consent_body", { ...pythonFields(f), device_ed25519: key });
      expect(toBase64(statementBytes(newStatement(f, key)))).toBe(theirs["body"]);
    }
  });

  it("signed in the browser verify in Python, and the reverse", async () => {
    const device = DeviceIdentity.create();
    const signed = signStatement(device, fields());
    const theirs = await peer.call("consent_verify", { signed, ed25519: device.ed25519 });
    expect(theirs["statement"]).toEqual({ ...pythonFields(fields()), v: 1, device_ed25519: device.ed25519 });

    const python = await peer.call("consent_sign", { device: "d1", ...pythonFields(fields({ state: "opted_out" })) });
    const statement = await verifyStatement({ statement: python["statement"], signature: python["signature"] }, python["ed25519"]);
    expect(statement).toEqual({ ...fields({ state: "opted_out" }), v: 1, device_ed25519: python["ed25519"] });
  });

  it("are refused by both for the same reasons", async () => {
    const device = DeviceIdentity.create();
    const other = DeviceIdentity.create();
    const statement = newStatement(fields(), device.ed25519);
    const map = { ...statement } as Record<string, unknown>;
    const sign = (body: Uint8Array, by = device, prefix = CONSENT_PREFIX) => ({
      statement: toBase64(body),
      signature: by.sign(new Uint8Array([...prefix, ...body])),
    });
    const reordered = Object.fromEntries(Object.entries(map).reverse());
    const cases: [string, unknown, string][] = [
      ["signed by another device", signStatement(other, fields()), device.ed25519],
      ["naming another key", sign(statementBytes(statement), other), other.ed25519],
      ["reordered", sign(pack(reordered)), device.ed25519],
      ["an extra field", sign(pack({ ...map, extra: 1 })), device.ed25519],
      ["version 2", sign(pack({ ...map, v: 2 })), device.ed25519],
      ["another scope", sign(pack({ ...map, scope: "everything" })), device.ed25519],
      ["a short nonce", sign(pack({ ...map, nonce: new Uint8Array(1) })), device.ed25519],
      ["no msgpack", sign(Uint8Array.of(0xc1)), device.ed25519],
      ["trailing bytes", sign(new Uint8Array([...statementBytes(statement), 0])), device.ed25519],
      ["a certificate's prefix", sign(statementBytes(statement), device, new TextEncoder().encode("tresen-cert-v1\0")), device.ed25519],
      ["a forged signature", { statement: toBase64(statementBytes(statement)), signature: toBase64(new Uint8Array(64).fill(1), false) }, device.ed25519],
      ["a signature that is no base64", { statement: toBase64(statementBytes(statement)), signature: "not base64!" }, device.ed25519],
      ["a padded key", signStatement(device, fields()), `${device.ed25519}=`],
      ["no statement", { signature: "x" }, device.ed25519],
      ["a statement that is no base64", { statement: "%%", signature: "x" }, device.ed25519],
    ];
    for (const [name, signed, key] of cases) {
      const theirs = await peer.call("consent_verify", { signed, ed25519: key });
      expect(theirs, name).toHaveProperty("refused");
      expect(await refusal(verifyStatement(signed, key)), name).toEqual(theirs);
    }
  });
});

describe("attachments against the Python reference", () => {
  const SIZES = [0, 1, 1000, 65_535, 65_536, 65_537, 131_072, 200_000];

  it("sealed in Python open in the browser, and the reverse", async () => {
    for (const size of SIZES) {
      const file = pattern(size, size % 251);
      const theirs = await peer.call("seal", { plaintext: toBase64(file) });
      expect(theirs["size"], `${size}`).toBe(fromBase64(theirs["blob"]).length);
      const opened = await openBlob(fromBase64(theirs["blob"]), fromBase64(theirs["key"]), fromBase64(theirs["sha256"]));
      expect(toBase64(opened), `${size}`).toBe(toBase64(file));

      const mine = await sealFile(file);
      expect(mine.size).toBe(theirs["size"]);
      expect(mine.plain_size).toBe(theirs["plain_size"]);
      const back = await peer.call("open", { blob: toBase64(mine.blob), key: toBase64(mine.key), sha256: toBase64(mine.sha256) });
      expect(back["plaintext"], `${size}`).toBe(toBase64(file));
    }
  });

  it("refuse damaged blobs with the same code and reason", async () => {
    const sealed = await sealFile(pattern(140_000, 9));
    const digest = async (blob: Uint8Array) => new Uint8Array(await crypto.subtle.digest("SHA-256", blob as BufferSource));
    const flipped = (at: number) => {
      const blob = sealed.blob.slice();
      blob[at]! ^= 1;
      return blob;
    };
    const chunk = 65_536 + 16;
    const damaged: [string, Uint8Array, Uint8Array][] = [
      ["a changed byte, the sender's digest", flipped(100), sealed.key],
      ["the version", flipped(0), sealed.key],
      ["a changed byte", flipped(8 + chunk + 5), sealed.key],
      ["cut at a chunk boundary", sealed.blob.slice(0, 8 + chunk), sealed.key],
      ["cut inside a tag", sealed.blob.slice(0, 8 + 2 * chunk + 3), sealed.key],
      ["only the header", sealed.blob.slice(0, 8), sealed.key],
      ["shorter than the header", sealed.blob.slice(0, 5), sealed.key],
      ["two chunks swapped", new Uint8Array([...sealed.blob.subarray(0, 8), ...sealed.blob.subarray(8 + chunk, 8 + 2 * chunk), ...sealed.blob.subarray(8, 8 + chunk), ...sealed.blob.subarray(8 + 2 * chunk)]), sealed.key],
      ["the wrong key", sealed.blob, pattern(32, 3)],
      ["a short key", sealed.blob, pattern(16, 3)],
    ];
    for (const [name, blob, key] of damaged) {
      // The sender's digest for the first case; the blob's own digest for the others, so that
      // decryption itself is what refuses them.
      const sha256 = name.endsWith("the sender's digest") ? sealed.sha256 : await digest(blob);
      const theirs = await peer.call("open", { blob: toBase64(blob), key: toBase64(key), sha256: toBase64(sha256) });
      let mine: unknown;
      try {
        mine = { plaintext: toBase64(await openBlob(blob, key, sha256)) };
      } catch (error) {
        mine = { code: (error as { code?: string }).code, reason: (error as Error).message };
      }
      expect(mine, name).toEqual(theirs);
    }
  });
});

describe("safety numbers against the Python reference", () => {
  it("are the same digits", async () => {
    const keys = await peer.call<string[]>("identity_keys", { count: 6 });
    const parties = [
      [{ phone: "+4915112345678", keys: [keys[0]!] }, { phone: "+14155550123", keys: [keys[1]!, keys[2]!] }],
      [{ phone: "+4930123456", keys: [keys[3]!, keys[4]!, keys[5]!, keys[3]!] }, { phone: "+4915112345678", keys: [keys[0]!] }],
    ];
    for (const [mine, theirs] of parties) {
      const python = await peer.call("safety", { mine, theirs });
      expect(await safetyNumber({ phone: mine!.phone, identityKeys: mine!.keys }, { phone: theirs!.phone, identityKeys: theirs!.keys })).toBe(
        python["number"],
      );
      expect(await fingerprint({ phone: mine!.phone, identityKeys: mine!.keys })).toBe(python["mine"]);
    }
  });

  it("refuse the same phone numbers and keys", async () => {
    const [key] = await peer.call<string[]>("identity_keys", { count: 1 });
    const cases: { phone: string; keys: string[] }[] = [
      { phone: "", keys: [key!] },
      { phone: "4915112345678", keys: [key!] },
      { phone: "+0123", keys: [key!] },
      { phone: "+49 151 1234", keys: [key!] },
      { phone: "+1234567890123456", keys: [key!] },
      { phone: "+4915112345678\n", keys: [key!] },
      { phone: "+4915112345678", keys: [] },
      { phone: "+4915112345678", keys: [`${key}=`] },
      { phone: "+4915112345678", keys: ["AAAA"] },
      { phone: "+4915112345678", keys: ["not a key"] },
    ];
    for (const party of cases) {
      const theirs = await peer.call("safety", { mine: party, theirs: party });
      let mine: unknown;
      try {
        mine = { number: await fingerprint({ phone: party.phone, identityKeys: party.keys }) };
      } catch (error) {
        mine = { refused: (error as Error).name, reason: (error as Error).message };
      }
      expect(mine, JSON.stringify(party)).toEqual({
        refused: theirs["refused"] === "ValueError" ? "Error" : theirs["refused"],
        reason: theirs["reason"],
      });
    }
  });

  it("take as a key exactly what vodozemac takes", async () => {
    const p = 2n ** 255n - 19n;
    const little = (n: bigint) => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));
    const raws = [
      ...Array.from({ length: 300 }, (_, i) => crypto.getRandomValues(new Uint8Array(32)).map((b, j) => (j === 31 && i % 2 ? b | 0x80 : b))),
      little(0n),
      little(1n),
      little(p - 1n),
      little(p),
      little(p + 1n),
      little(2n ** 255n - 1n),
      little(2n ** 256n - 1n),
    ];
    const texts = raws.map((raw) => toBase64(raw, false));
    const theirs = await peer.call<boolean[]>("ed25519_valid", { keys: texts });
    expect(texts.map((t) => isEd25519Point(ed25519KeyBytes(t)!))).toEqual(theirs);
    expect(theirs.filter(Boolean).length).toBeGreaterThan(50);
    expect(theirs.filter((v) => !v).length).toBeGreaterThan(50);
  });
});
