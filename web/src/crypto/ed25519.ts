// Ed25519 signature checks with WebCrypto: keys, the operator's certificates, templates.

import { fromBase64 } from "../wire/base64";

const keys = new Map<string, Promise<CryptoKey>>();

function publicKey(base64: string): Promise<CryptoKey> {
  let key = keys.get(base64);
  if (!key) {
    key = crypto.subtle.importKey("raw", fromBase64(base64) as BufferSource, { name: "Ed25519" }, false, [
      "verify",
    ]);
    key.catch(() => keys.delete(base64));
    keys.set(base64, key);
  }
  return key;
}

/** Whether `signature` (base64, padded or not) is `publicKey`'s Ed25519 signature of
 * `message`. A malformed key or signature is simply not a valid signature. */
export async function verifyEd25519(
  publicKeyBase64: string,
  message: Uint8Array,
  signature: string,
): Promise<boolean> {
  try {
    const raw = fromBase64(signature);
    if (raw.length !== 64) return false;
    const key = await publicKey(publicKeyBase64);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, raw as BufferSource, message as BufferSource);
  } catch {
    return false;
  }
}
