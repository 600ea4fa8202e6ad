// The key log against the Python reference: a log and map published by the Python side with
// the relay's own structures (tests/interop/wire_peer.py, `kt_*`), checked here as the web
// app checks every peer's keys and every business certificate before its tick. Honest proofs
// verify; a swapped key, a removed entry, a bad signature, a rewritten history, a second head
// for one epoch and a certificate the log does not hold are refused.

import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RelayError } from "../src/core/api";
import { KeyLog, KeyLogFailure, type KeyLogSource } from "../src/core/keylog";
import { Store } from "../src/core/store";
import { OperatorKeyRing } from "../src/crypto/operator";
import {
  accountKey,
  certificateDigest,
  encodeCertificateLeaf,
  encodeDevicesLeaf,
  headHash,
  logLeafHash,
  verifyConsistency,
  verifyEpoch,
  type DeviceEntry,
} from "../src/crypto/transparency";
import { fromBase64, toBase64 } from "../src/wire/base64";
import { WirePeer } from "./support/wire-peer";

const ALICE = "a6a8d2daa6ff17aebf0a720206b257c4";
const BOB = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";
const CAROL = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";
const MS = 1_767_225_600_000;

let peer: WirePeer;
let operator: { public_key: string; key_id: string };
let keys: string[];

type Lookup = Record<string, unknown> & { devices: DeviceEntry[]; epoch: Record<string, unknown> };

beforeAll(async () => {
  peer = new WirePeer();
  operator = await peer.call("operator_key", { name: "k1" });
  await peer.call("operator_key", { name: "stranger" });
  keys = await peer.call<string[]>("identity_keys", { count: 8 });
});
afterAll(() => peer?.close());

function device(id: number, n: number): [number, string, string] {
  return [id, keys[n]!.slice(0, 42) + "E", keys[n]!];
}

function entries(devices: [number, string, string][]): DeviceEntry[] {
  return devices.map(([device_id, curve25519, ed25519]) => ({ device_id, curve25519, ed25519 }));
}

let ms = MS;
function publish(changes: Record<string, [number, string, string][]>): Promise<Record<string, unknown>> {
  ms += 1000;
  return peer.call("kt_publish", { changes, ms });
}

function lookup(account: string, since: number | null = null): Promise<Lookup> {
  return peer.call<Lookup>("kt_lookup", { account_id: account, since });
}

/** What the relay answers for a certificate, as a lying relay may change it. */
type CertificateAnswer = (serial: number, honest: Record<string, unknown>) => unknown;

/** A key log on a fresh store, trusting operator key k1, fetching consistency proofs and
 * certificates' proofs from the Python log (`fetched`: the consistency proofs asked for,
 * `certificates`: the serials asked for); `answer` may change what the relay says. */
async function keyLog(
  store?: Store,
  answer: CertificateAnswer = (_serial, honest) => honest,
): Promise<{ log: KeyLog; store: Store; fetched: number[][]; certificates: number[] }> {
  const opened = store ?? (await Store.open(`kt-${Math.random()}`, new IDBFactory()));
  const ring = await OperatorKeyRing.pin(operator.public_key);
  const fetched: number[][] = [];
  const certificates: number[] = [];
  const source: KeyLogSource = {
    ring: async () => ring,
    refreshRing: async () => undefined,
    consistency: async (first, second) => {
      fetched.push([first, second]);
      return peer.call("kt_consistency", { first, second });
    },
    certificate: async (serial) => {
      certificates.push(serial);
      const honest = await peer.call("kt_certificate", { serial });
      if (honest["not_logged"]) throw new RelayError(150082, "that certificate is not logged", { serial }, 404);
      return answer(serial, honest);
    },
  };
  return { log: await KeyLog.load(opened, source), store: opened, fetched, certificates };
}

async function refusal(work: Promise<unknown>): Promise<KeyLogFailure> {
  try {
    await work;
  } catch (error) {
    if (error instanceof KeyLogFailure) return error;
    throw error;
  }
  throw new Error("the key log accepted it");
}

const bobOne = (): [number, string, string][] => [device(1, 1)];
const bobTwo = (): [number, string, string][] => [device(1, 1), device(2, 2)];

beforeEach(async () => {
  await peer.call("kt_new", { key: "k1" });
  await publish({ [ALICE]: [device(1, 0)], [BOB]: bobOne() });
});

describe("the key log's bytes against the Python reference", () => {
  it("builds the same device leaf, leaf hash and map key", async () => {
    const devices = [device(3, 3), device(1, 1)];
    const theirs = await peer.call("kt_leaf", { account_id: BOB, epoch: 7, devices });
    const leaf = encodeDevicesLeaf(BOB, 7, entries(devices));
    expect(toBase64(leaf)).toBe(theirs["leaf"]);
    expect(toBase64(await logLeafHash(leaf))).toBe(theirs["hash"]);
    expect(toBase64(await accountKey(BOB))).toBe(theirs["key"]);
  });

  it("verifies the operator's signature on a head and hashes it alike", async () => {
    const epoch = await publish({});
    const ring = await OperatorKeyRing.pin(operator.public_key);
    const body = fromBase64(String(epoch["body"]));
    const head = await verifyEpoch({ body, signature: String(epoch["signature"]) }, ring);
    expect([head.epoch, head.tree_size]).toEqual([1, 2]);
    expect(toBase64(await headHash(body))).toBe(epoch["head"]);
    const other = await OperatorKeyRing.pin((await peer.call("operator_key", { name: "stranger" }))["public_key"]);
    await expect(verifyEpoch({ body, signature: String(epoch["signature"]) }, other)).rejects.toThrow(/does not trust/);
  });

  it("verifies every inclusion and consistency proof of a growing log", async () => {
    const { log } = await keyLog();
    const accounts = [ALICE, BOB];
    const roots = new Map<number, Uint8Array>();
    for (let n = 0; n < 13; n += 1) {
      const account = `acc${n.toString().padStart(29, "0")}`;
      accounts.push(account);
      const epoch = await publish({ [account]: [device(1, n % 8)] });
      roots.set(Number(epoch["tree_size"]), fromBase64(String(epoch["log_root"])));
      // Every account's current set is proven against the newest head.
      for (const who of accounts) {
        const found = await lookup(who, log.since);
        await log.check(who, found.devices, found);
      }
    }
    for (const [first, firstRoot] of roots) {
      for (const [second, secondRoot] of roots) {
        if (first > second) continue;
        const proof = (await peer.call<string[]>("kt_consistency", { first, second })).map(fromBase64);
        expect(await verifyConsistency(first, second, proof, firstRoot, secondRoot)).toBe(true);
        if (first < second) expect(await verifyConsistency(first, second, proof, secondRoot, secondRoot)).toBe(false);
      }
    }
    expect(log.seen().map((r) => r.epoch)).toEqual([...Array(13).keys()].map((n) => n + 1));
  });
});

describe("a browser checking its peers' keys", () => {
  it("accepts an honest log as it grows, and keeps the heads it saw", async () => {
    const { log, store, fetched } = await keyLog();
    const first = await lookup(BOB);
    await log.check(BOB, entries(bobOne()), first);
    expect(log.since).toBe(2);
    // Bob adds a device: the next head comes with a consistency proof from size 2.
    await publish({ [BOB]: bobTwo(), [CAROL]: [device(1, 4)] });
    const second = await lookup(BOB, log.since);
    await log.check(BOB, entries(bobTwo()), second);
    // Without a proof in the answer, the browser asks the relay for one.
    await publish({ [CAROL]: [device(1, 5)] });
    await log.check(CAROL, entries([device(1, 5)]), await lookup(CAROL));
    expect(fetched).toEqual([[4, 5]]);
    // An account without devices is proven absent.
    await log.check("ffff", [], await lookup("ffff"));

    // The heads seen survive a reload.
    const again = await keyLog(store);
    expect(again.log.seen().map((r) => r.epoch)).toEqual([0, 1, 2]);
    expect(again.log.since).toBe(5);
  });

  it("refuses a key swapped for this browser only", async () => {
    const { log } = await keyLog();
    const swapped = entries([device(1, 6)]);
    swapped[0]!.ed25519 = keys[1]!; // only the Curve25519 key differs from the logged one
    const failure = await refusal(log.check(BOB, swapped, await lookup(BOB)));
    expect(failure.forked).toBe(false);
    expect(failure.message).toContain("not the ones the key log holds");
    // An extra device the log does not hold is refused as well.
    await expect(log.check(BOB, entries(bobTwo()), await lookup(BOB))).rejects.toThrow(KeyLogFailure);
  });

  it("refuses keys of an account removed from the map", async () => {
    const { log } = await keyLog();
    await log.check(BOB, entries(bobOne()), await lookup(BOB));
    await peer.call("kt_remove", { account_id: BOB, ms: (ms += 1000) });
    const failure = await refusal(log.check(BOB, entries(bobOne()), await lookup(BOB, log.since)));
    expect(failure.message).toContain("no devices");
    expect(failure.forked).toBe(false);
  });

  it("refuses a head with a bad or unknown signature", async () => {
    const { log } = await keyLog();
    const found = await lookup(BOB);
    const signature = fromBase64(String(found.epoch["signature"]));
    signature[0] = signature[0]! ^ 1;
    const forged = { ...found, epoch: { ...found.epoch, signature: toBase64(signature, false) } };
    expect((await refusal(log.check(BOB, entries(bobOne()), forged))).message).toContain("signature");

    await peer.call("kt_new", { key: "stranger" });
    await publish({ [BOB]: bobOne() });
    expect((await refusal(log.check(BOB, entries(bobOne()), await lookup(BOB)))).message).toContain("does not trust");
    expect(log.seen()).toEqual([]); // nothing unproven was kept
  });

  it("refuses a rewritten history, for every account", async () => {
    const { log } = await keyLog();
    await log.check(BOB, entries(bobOne()), await lookup(BOB));
    await peer.call("kt_rewrite", { account_id: BOB, curve25519: device(1, 7)[1], ms: (ms += 1000) });
    // Alice's own entry is unchanged, but the log it is proven in no longer extends the old.
    const failure = await refusal(log.check(ALICE, entries([device(1, 0)]), await lookup(ALICE, log.since)));
    expect(failure.forked).toBe(true);
    expect(failure.message).toContain("does not extend");
    // Still refused when asked again: the heads seen cannot be extended by the new log.
    const again = await refusal(log.check(ALICE, entries([device(1, 0)]), await lookup(ALICE, log.since)));
    expect(again.forked).toBe(true);
  });

  it("refuses a second head for an epoch it saw, and a log that went back", async () => {
    const { log } = await keyLog();
    await log.check(BOB, entries(bobOne()), await lookup(BOB));
    // The relay signs an epoch with another key for Bob, shown to this browser only...
    await peer.call("kt_save", { name: "honest" });
    await publish({ [BOB]: [device(1, 6)] });
    await log.check(BOB, entries([device(1, 6)]), await lookup(BOB, log.since));
    // ...then returns to the honest history, whose epoch 1 is another head.
    await peer.call("kt_restore", { name: "honest" });
    await publish({ [CAROL]: [device(1, 4)] });
    const failure = await refusal(log.check(CAROL, entries([device(1, 4)]), await lookup(CAROL, log.since)));
    expect(failure.forked).toBe(true);
    expect(failure.message).toContain("two different signed heads for epoch 1");

    // An answer from an epoch older than one seen, or with no proof at all, fails too.
    const { log: other } = await keyLog();
    await peer.call("kt_restore", { name: "honest" });
    const old = await lookup(BOB);
    await publish({});
    await other.check(BOB, entries(bobOne()), await lookup(BOB));
    expect((await refusal(other.check(BOB, entries(bobOne()), old))).forked).toBe(true);
    await expect(other.check(BOB, entries(bobOne()), null)).rejects.toThrow(/no key-log proof/);
  });

  it("accepts an answer from the epoch it knew when it asked, though a newer one came first", async () => {
    const { log } = await keyLog();
    await log.check(BOB, entries(bobOne()), await lookup(BOB));
    // Two look-ups side by side: the first is answered from epoch n...
    const askedAt = log.epoch;
    const first = await lookup(BOB, log.since);
    // ...the second, after a publication, from epoch n + 1, and checked first.
    await publish({ [CAROL]: [device(1, 4)] });
    await log.check(CAROL, entries([device(1, 4)]), await lookup(CAROL, log.since));
    expect(log.epoch).toBeGreaterThan(askedAt!);
    await log.check(BOB, entries(bobOne()), first, null, askedAt);
    // The same answer to a look-up asked after epoch n + 1 was seen: the history went back.
    const failure = await refusal(log.check(BOB, entries(bobOne()), first, null, log.epoch));
    expect(failure.forked).toBe(true);
    expect(failure.message).toContain("went back");
  });

  it("requires its own account to list this device with its own keys", async () => {
    const { log } = await keyLog();
    const mine = entries([device(1, 0)])[0]!;
    await log.check(ALICE, entries([device(1, 0)]), await lookup(ALICE), mine);
    const impostor = { ...mine, device_id: 2 };
    const failure = await refusal(log.check(ALICE, entries([device(1, 0)]), await lookup(ALICE), impostor));
    expect(failure.message).toContain("this device");
  });
});

describe("a business certificate in the key log", () => {
  const body = new TextEncoder().encode("the signed body of certificate 77");

  function publishCertificate(serial: number, account: string, signed: Uint8Array): Promise<Record<string, unknown>> {
    ms += 1000;
    return peer.call("kt_publish", { changes: {}, ms, certificates: [[serial, account, toBase64(signed)]] });
  }

  it("is the leaf the Python side builds", async () => {
    const theirs = await peer.call("kt_certificate_leaf", { account_id: BOB, epoch: 4, serial: 77, body: toBase64(body) });
    const leaf = encodeCertificateLeaf(BOB, 4, 77, await certificateDigest(body));
    expect(toBase64(leaf)).toBe(theirs["leaf"]);
    expect(toBase64(await logLeafHash(leaf))).toBe(theirs["hash"]);
  });

  it("is found with an honest proof, and found for good", async () => {
    const { log, certificates } = await keyLog();
    await log.check(BOB, entries(bobOne()), await lookup(BOB));
    await publishCertificate(77, BOB, body);
    await publish({ [CAROL]: [device(1, 4)] }); // logged in an epoch before the newest
    await log.checkCertificate(BOB, 77, body);
    expect(log.seen().map((r) => r.epoch)).toEqual([0, 2]);
    // The log only grows: the relay is not asked again for the same certificate.
    await log.checkCertificate(BOB, 77, body);
    expect(certificates).toEqual([77]);
    // Another body under the same serial is another certificate, checked (and refused).
    await expect(log.checkCertificate(BOB, 77, new TextEncoder().encode("another body"))).rejects.toThrow(KeyLogFailure);
    expect(certificates).toEqual([77, 77]);
  });

  it("is refused when the log does not hold it, or holds it for someone else", async () => {
    const { log } = await keyLog();
    await publishCertificate(77, BOB, body);
    const missing = await refusal(log.checkCertificate(BOB, 78, body));
    expect(missing.message).toBe("certificate 78 is not in the key log");
    expect(missing.forked).toBe(false);
    // The relay's proof of serial 77 for another account, or for other bytes, does not hold.
    expect((await refusal(log.checkCertificate(CAROL, 77, body))).message).toContain("not in the signed log");
    const other = new TextEncoder().encode("the signed body of certificate 77, shown to one browser");
    expect((await refusal(log.checkCertificate(BOB, 77, other))).message).toContain("not in the signed log");
  });

  it("is refused when the proof fails", async () => {
    const tampered: Record<string, (honest: Record<string, unknown>) => unknown> = {
      "a hash of the inclusion proof": (honest) => {
        const inclusion = [...(honest["inclusion"] as string[])];
        const first = fromBase64(inclusion[0]!);
        first[0] = first[0]! ^ 1;
        inclusion[0] = toBase64(first);
        return { ...honest, inclusion };
      },
      "another leaf index": (honest) => ({ ...honest, leaf_index: Number(honest["leaf_index"]) + 1 }),
      "another epoch for the leaf": (honest) => ({ ...honest, leaf_epoch: 0 }),
      "a leaf epoch after the head": (honest) => ({ ...honest, leaf_epoch: 9 }),
      "no inclusion proof": (honest) => ({ ...honest, inclusion: [] }),
      "an unsigned head": (honest) => ({ ...honest, epoch: { ...(honest["epoch"] as object), signature: toBase64(new Uint8Array(64)) } }),
    };
    await publish({ [CAROL]: [device(1, 4)] });
    await publishCertificate(77, BOB, body);
    for (const [what, change] of Object.entries(tampered)) {
      const { log } = await keyLog(undefined, (_serial, honest) => change(honest));
      const failure = await refusal(log.checkCertificate(BOB, 77, body));
      expect(failure.message, what).toContain("certificate 77");
    }
    // The honest answer holds.
    const { log } = await keyLog();
    await log.checkCertificate(BOB, 77, body);
  });

  it("needs a proof from a relay whose log this browser has seen", async () => {
    const { log, certificates } = await keyLog(undefined, () => null);
    await publishCertificate(77, BOB, body);
    // A relay that never showed a log keeps none: nothing to hold against it...
    await log.checkCertificate(BOB, 77, body);
    // ...but one that did cannot stop proving its certificates.
    await log.check(BOB, entries(bobOne()), await lookup(BOB));
    const failure = await refusal(log.checkCertificate(BOB, 77, body));
    expect(failure.message).toContain("no key-log proof for certificate 77");
    expect(certificates).toEqual([77, 77]);
  });
});
