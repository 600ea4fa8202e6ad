// Ed25519 keys made with WebCrypto, to stand in for the operator in tests that need no Python.

import { toBase64 } from "../../src/wire/base64";

export interface TestKey {
  /** Unpadded base64 of the raw public key, as the relay publishes it. */
  publicKey: string;
  sign(message: Uint8Array): Promise<string>;
}

export async function testKey(): Promise<TestKey> {
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return {
    publicKey: toBase64(raw, false),
    async sign(message: Uint8Array) {
      const signature = await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, message as BufferSource);
      return toBase64(new Uint8Array(signature), false);
    },
  };
}
