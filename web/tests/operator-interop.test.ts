// The operator's keys, certificates and revocation lists against the Python reference: what
// the relay's signing code signs verifies here with the pinned key, the ring follows the same
// rotations, and the tick is decided as the Python client decides it.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CERTIFICATE_PREFIX,
  certificateFromJson,
  certificateKeyId,
  judgeTick,
  keyFingerprint,
  keyIdOf,
  OperatorKeyRing,
  type PublishedKey,
  revocationsFromJson,
  verifyCertificate,
  verifyRevocations,
} from "../src/crypto/operator";
import { fromBase64, toBase64 } from "../src/wire/base64";
import { pack } from "../src/wire/msgpack";
import { WirePeer } from "./support/wire-peer";

const NOW = 1_767_225_600_000;
const DAY = 86_400_000;
const ACCOUNT = "a6a8d2daa6ff17aebf0a720206b257c4";

let peer: WirePeer;
let keys: Record<string, { public_key: string; key_id: string; fingerprint: string }>;
let deviceKeys: string[];

beforeAll(async () => {
  peer = new WirePeer();
  keys = {};
  for (const name of ["k1", "k2", "k3", "stranger"]) keys[name] = await peer.call("operator_key", { name });
  deviceKeys = (await peer.call<string[]>("identity_keys", { count: 2 })).sort();
});
afterAll(() => peer?.close());

function certificate(key: string, fields: Record<string, unknown> = {}): Promise<Record<string, string>> {
  return peer.call("sign_certificate", {
    key,
    serial: 1,
    account_id: ACCOUNT,
    phone: "+4915112345678",
    display_name: "Bäckerei Müller",
    device_keys: deviceKeys,
    issued_ms: NOW,
    expires_ms: NOW + 365 * DAY,
    ...fields,
  });
}

async function published(name: string, by: string | null, signsFrom: number, retires: number | null = null): Promise<PublishedKey> {
  const key = keys[name]!;
  const endorsement = by === null ? null : (await peer.call("endorse", { name, by, signs_from_ms: signsFrom }))["endorsement"];
  return { key_id: key.key_id, public_key: key.public_key, endorsement, signs_from_ms: signsFrom, retires_ms: retires };
}

async function bothVerify(cert: unknown, publishedKeys: PublishedKey[], nowMs: number, revoked: number[]): Promise<void> {
  const ring = await OperatorKeyRing.pin(keys["k1"]!.public_key);
  await ring.update(publishedKeys);
  let mine: unknown;
  try {
    mine = { certificate: await verifyCertificate(certificateFromJson(cert), ring, nowMs, revoked) };
  } catch (error) {
    mine = { refused: (error as Error).name, reason: (error as Error).message };
  }
  const theirs = await peer.call("verify_certificate", {
    certificate: cert,
    pinned: keys["k1"]!.public_key,
    published: publishedKeys,
    now_ms: nowMs,
    revoked,
  });
  expect(mine).toEqual(theirs);
}

describe("the operator's signatures against the Python reference", () => {
  it("name keys by the same id and fingerprint", async () => {
    for (const key of Object.values(keys)) {
      expect(await keyIdOf(key.public_key)).toBe(key.key_id);
      expect(await keyFingerprint(key.public_key)).toBe(key.fingerprint);
    }
  });

  it("verify certificates, and refuse them for the same reasons", async () => {
    const good = await certificate("k1");
    await bothVerify(good, [], NOW, []);
    await bothVerify(good, [], NOW + 365 * DAY, []);
    await bothVerify(good, [], NOW, [1]);
    await bothVerify(await certificate("stranger"), [], NOW, []);
    const body = fromBase64(good["body"]!);
    body[body.length - 20]! ^= 1;
    await bothVerify({ ...good, body: toBase64(body) }, [], NOW, []);
    await bothVerify({ ...good, signature: (await certificate("k1", { serial: 2 }))["signature"] }, [], NOW, []);
    await bothVerify({ ...good, body: "not base64!" }, [], NOW, []);
    await bothVerify({ body: good["body"] }, [], NOW, []);
    // Bodies the operator signed that are no certificate of this version.
    const fields = {
      v: 1,
      serial: 3,
      account_id: ACCOUNT,
      phone: "+4915112345678",
      display_name: "x",
      device_keys: deviceKeys,
      issued_ms: NOW,
      expires_ms: NOW + DAY,
      key_id: keys["k1"]!.key_id,
    };
    for (const odd of [{ ...fields, extra: 1 }, { ...fields, v: 2 }, { ...fields, serial: "3" }, { key_id: fields.key_id }, [1]]) {
      const oddBody = pack(odd);
      const message = toBase64(new Uint8Array([...CERTIFICATE_PREFIX, ...oddBody]));
      const { signature } = await peer.call("sign_raw", { key: "k1", message });
      await bothVerify({ body: toBase64(oddBody), signature }, [], NOW, []);
    }
  });

  it("follow the same rotations, and no key that a trusted key did not endorse", async () => {
    const rotation = [
      await published("k1", null, 0, NOW + 10 * DAY),
      await published("k2", "k1", NOW, NOW + 20 * DAY),
      await published("k3", "k2", NOW + DAY),
      await published("stranger", "stranger", NOW),
    ];
    for (const order of [rotation, [...rotation].reverse()]) {
      const ring = await OperatorKeyRing.pin(keys["k1"]!.public_key);
      const update = await ring.update(order);
      const theirs = await peer.call("ring", { pinned: keys["k1"]!.public_key, published: order });
      expect({ added: update.added, retired: update.retired, ignored: update.ignored }).toEqual({
        added: theirs["added"],
        retired: theirs["retired"],
        ignored: theirs["ignored"],
      });
      expect(ring.keyIds).toEqual(theirs["key_ids"]);
      expect(ring.toJson()).toEqual(theirs["json"]);
    }
    // A certificate of a rotated-away key is valid until the key retires.
    const old = await certificate("k1");
    await bothVerify(old, rotation, NOW + 10 * DAY - 1, []);
    await bothVerify(old, rotation, NOW + 10 * DAY, []);
    await bothVerify(await certificate("k3"), rotation, NOW + 11 * DAY, []);
    // An endorsement after the endorser's retirement does not count.
    const late = [await published("k1", null, 0, NOW), await published("k2", "k1", NOW + 1)];
    const ring = await OperatorKeyRing.pin(keys["k1"]!.public_key);
    const update = await ring.update(late);
    expect(update.ignored).toEqual((await peer.call("ring", { pinned: keys["k1"]!.public_key, published: late }))["ignored"]);
    // A retirement only moves earlier.
    const earlier = await ring.update([await published("k1", null, 0, NOW - 5)]);
    expect(earlier.retired).toEqual([keys["k1"]!.key_id]);
    expect((await ring.update([await published("k1", null, 0, NOW + 5)])).retired).toEqual([]);
    expect(ring.retiresMs(keys["k1"]!.key_id)).toBe(NOW - 5);
  });

  it("verify revocation lists, and refuse stale, foreign or retired ones", async () => {
    const rotation = [await published("k1", null, 0, NOW + DAY), await published("k2", "k1", NOW)];
    const cases: [string, unknown, number][] = [
      ["fresh", await peer.call("sign_revocations", { key: "k1", issued_ms: NOW, serials: [7, 3, 3] }), NOW + 1000],
      ["stale", await peer.call("sign_revocations", { key: "k1", issued_ms: NOW - 2 * DAY, serials: [] }), NOW],
      ["by a retired key", await peer.call("sign_revocations", { key: "k1", issued_ms: NOW + DAY, serials: [] }), NOW + DAY],
      ["by the next key", await peer.call("sign_revocations", { key: "k2", issued_ms: NOW + DAY, serials: [1] }), NOW + DAY],
      ["by a stranger", await peer.call("sign_revocations", { key: "stranger", issued_ms: NOW, serials: [] }), NOW],
      ["a certificate", await certificate("k1"), NOW],
    ];
    for (const [name, signed, nowMs] of cases) {
      const ring = await OperatorKeyRing.pin(keys["k1"]!.public_key);
      await ring.update(rotation);
      let mine: unknown;
      try {
        mine = { revocations: await verifyRevocations(revocationsFromJson(signed), ring, nowMs, DAY) };
      } catch (error) {
        mine = { refused: (error as Error).name, reason: (error as Error).message };
      }
      const theirs = await peer.call("verify_revocations", {
        revocations: signed,
        pinned: keys["k1"]!.public_key,
        published: rotation,
        now_ms: nowMs,
        max_age_ms: DAY,
      });
      expect(mine, name).toEqual(theirs);
    }
  });

  it("decide the tick as the Python client does", async () => {
    const good = await certificate("k1", { serial: 42 });
    const seen = {
      account_id: ACCOUNT,
      phone: "+4915112345678",
      display_name: "Bäckerei Müller",
      device_keys: [...deviceKeys].reverse(),
      identity_changed: false,
    };
    const cases: [string, Record<string, unknown>][] = [
      ["verified", { certificate: good, revoked: [] }],
      ["no certificate", { certificate: null, revoked: [] }],
      ["no operator key", { certificate: good, pinned: null, revoked: [] }],
      ["no revocation list", { certificate: good, revoked: null }],
      ["revoked", { certificate: good, revoked: [42] }],
      ["expired", { certificate: good, revoked: [], now_ms: NOW + 366 * DAY }],
      ["signed by a stranger", { certificate: await certificate("stranger"), revoked: [] }],
      ["forged", { certificate: { ...good, signature: (await certificate("k1", { serial: 2 }))["signature"] }, revoked: [] }],
      ["garbage", { certificate: "x", revoked: [] }],
      ["renamed", { certificate: good, revoked: [], display_name: "Baeckerei Mueller" }],
      ["another number", { certificate: good, revoked: [], phone: "+4915100000000" }],
      ["a device more", { certificate: good, revoked: [], device_keys: [...deviceKeys, keys["k3"]!.public_key] }],
      ["a device twice", { certificate: good, revoked: [], device_keys: [...deviceKeys, deviceKeys[0]] }],
      ["identity changed", { certificate: good, revoked: [], identity_changed: true }],
    ];
    for (const [name, changes] of cases) {
      const args = { ...seen, pinned: keys["k1"]!.public_key, published: [], now_ms: NOW, ...changes } as Record<string, any>;
      const theirs = await peer.call("judge", args);
      const ring = args["pinned"] === null ? null : await OperatorKeyRing.pin(args["pinned"]);
      const tick = await judgeTick(args["certificate"], ring, args["now_ms"], {
        accountId: args["account_id"],
        phone: args["phone"],
        displayName: args["display_name"],
        deviceKeys: args["device_keys"],
        revoked: args["revoked"],
        identityChanged: args["identity_changed"],
      });
      expect({ state: tick.state, detail: tick.detail, serial: tick.serial, expires_ms: tick.expires_ms, reason: tick.reason }, name).toEqual(
        theirs,
      );
      expect(tick.verified, name).toBe(theirs["state"] === "verified");
    }
    expect(certificateKeyId(good)).toBe(keys["k1"]!.key_id);
    expect(certificateKeyId({ body: "AA", signature: "" })).toBeNull();
  });
});
