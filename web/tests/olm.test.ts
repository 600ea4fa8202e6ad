import { beforeAll, describe, expect, it } from "vitest";
import { DeviceIdentity, initOlm, NORMAL, PRE_KEY, signedKeyMessage } from "../src/crypto/olm";
import { verifyEd25519 } from "../src/crypto/ed25519";

beforeAll(async () => {
  await initOlm();
});

function binary(size: number): Uint8Array {
  // Zeros and bytes above 0x7f: what libolm's string API cannot carry.
  return Uint8Array.from({ length: size }, (_, i) => (i * 131) % 256);
}

describe("Olm sessions with binary plaintexts", () => {
  it("carry zero bytes and non-UTF-8 bytes both ways, pre-key then normal", () => {
    const alice = DeviceIdentity.create();
    const bob = DeviceIdentity.create();
    const [otk] = bob.generateOneTimeKeys(1);
    const outbound = alice.createOutboundSession(bob.curve25519, otk!.public_key);
    const first = outbound.encrypt(binary(64));
    expect(first.type).toBe(PRE_KEY);
    const { session: inbound, plaintext } = bob.createInboundSession(alice.curve25519, first);
    expect(plaintext).toEqual(binary(64));
    const reply = inbound.encrypt(binary(1024));
    expect(reply.type).toBe(NORMAL);
    expect(outbound.decrypt(reply)).toEqual(binary(1024));
    // The one-time key is gone: the same pre-key message cannot open a second session.
    expect(() => bob.createInboundSession(alice.curve25519, first)).toThrow();
  });

  it("survive pickling", () => {
    const alice = DeviceIdentity.create();
    const bob = DeviceIdentity.create();
    const [otk] = bob.generateOneTimeKeys(1);
    const key = new Uint8Array(32).fill(7);
    const outbound = alice.createOutboundSession(bob.curve25519, otk!.public_key);
    const restored = DeviceIdentity.fromPickle(bob.pickle(key), key);
    const { plaintext } = restored.createInboundSession(alice.curve25519, outbound.encrypt(binary(10)));
    expect(plaintext).toEqual(binary(10));
  });

  it("sign one-time keys as the relay checks them", async () => {
    const device = DeviceIdentity.create();
    const keys = device.generateOneTimeKeys(3);
    expect(keys).toHaveLength(3);
    for (const key of keys) {
      const message = signedKeyMessage(key.key_id, key.public_key, false);
      expect(await verifyEd25519(device.ed25519, message, key.signature)).toBe(true);
      const asFallback = signedKeyMessage(key.key_id, key.public_key, true);
      expect(await verifyEd25519(device.ed25519, asFallback, key.signature)).toBe(false);
    }
  });

  it("reject a tampered message", () => {
    const alice = DeviceIdentity.create();
    const bob = DeviceIdentity.create();
    const [otk] = bob.generateOneTimeKeys(1);
    const outbound = alice.createOutboundSession(bob.curve25519, otk!.public_key);
    const message = outbound.encrypt(binary(64));
    const body = message.body.slice();
    body[body.length - 3]! ^= 1;
    expect(() => bob.createInboundSession(alice.curve25519, { type: message.type, body })).toThrow();
  });
});
