// Olm device identities and 1:1 sessions over libolm compiled to WebAssembly
// (@towns-protocol/olm), wire-compatible with the vodozemac the Python SDK uses.
//
// libolm's JavaScript API takes and returns plaintext as UTF-8 strings, and stops at the first
// zero byte when it decodes. Our plaintexts are binary (a length prefix, msgpack and zero
// padding, docs/protocol.md §8.1), so encryption and decryption call libolm's C functions
// directly: the Emscripten module object handed to `initAsync` is where the runtime puts them,
// together with its heap and allocator. Everything else uses the JavaScript API.

import Olm, { type OlmImpl } from "@towns-protocol/olm";
import { fromBase64, toBase64 } from "../wire/base64";

type OlmAccount = InstanceType<OlmImpl["Account"]>;
type OlmSession = InstanceType<OlmImpl["Session"]>;

export const PRE_KEY = 0;
export const NORMAL = 1;

export class CryptoError extends Error {
  override name = "CryptoError";
}
export class DecryptionError extends CryptoError {
  override name = "DecryptionError";
}
export class SignatureError extends CryptoError {
  override name = "SignatureError";
}

export interface Ciphertext {
  type: number;
  body: Uint8Array;
}

export interface SignedKey {
  key_id: string;
  public_key: string;
  signature: string;
}

interface Runtime {
  _malloc(size: number): number;
  _free(ptr: number): void;
  HEAPU8: Uint8Array;
  _olm_error(): number;
  _olm_session_last_error(session: number): number;
  _olm_encrypt_message_type(session: number): number;
  _olm_encrypt_random_length(session: number): number;
  _olm_encrypt_message_length(session: number, plaintextLength: number): number;
  _olm_encrypt(
    session: number,
    plaintext: number,
    plaintextLength: number,
    random: number,
    randomLength: number,
    message: number,
    messageLength: number,
  ): number;
  _olm_decrypt_max_plaintext_length(
    session: number,
    type: number,
    message: number,
    messageLength: number,
  ): number;
  _olm_decrypt(
    session: number,
    type: number,
    message: number,
    messageLength: number,
    plaintext: number,
    maxPlaintextLength: number,
  ): number;
}

interface Pointer {
  ptr: number;
}

let runtime: Runtime | null = null;
let olm: OlmImpl | null = null;
let loading: Promise<void> | null = null;

/** Load the WebAssembly module once; `wasmUrl` is where the browser finds olm.wasm. */
export function initOlm(wasmUrl?: string): Promise<void> {
  if (runtime) return Promise.resolve();
  if (!loading) {
    const module: Record<string, unknown> = {};
    if (wasmUrl) module["locateFile"] = () => wasmUrl;
    loading = Olm.initAsync(module).then((loaded) => {
      olm = loaded;
      runtime = module as unknown as Runtime;
    });
  }
  return loading;
}

function rt(): Runtime {
  if (!runtime) throw new CryptoError("Olm is not loaded: await initOlm() first");
  return runtime;
}

function lib(): OlmImpl {
  if (!olm) throw new CryptoError("Olm is not loaded: await initOlm() first");
  return olm;
}

const encoder = new TextEncoder();
const OTK_PREFIX = encoder.encode("tresen-otk-v1\0");
const FALLBACK_PREFIX = encoder.encode("tresen-fallback-v1\0");

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The bytes a one-time or fallback key's signature covers (docs/protocol.md §4). */
export function signedKeyMessage(keyId: string, publicKey: string, fallback: boolean): Uint8Array {
  return concat(
    fallback ? FALLBACK_PREFIX : OTK_PREFIX,
    encoder.encode(keyId),
    new Uint8Array([0]),
    encoder.encode(publicKey),
  );
}

/** A device's long-term Olm account: identity keys, one-time keys and a fallback key. */
export class DeviceIdentity {
  private constructor(readonly account: OlmAccount) {}

  static create(): DeviceIdentity {
    const account = new (lib().Account)();
    account.create();
    return new DeviceIdentity(account);
  }

  static fromPickle(pickle: string, key: Uint8Array): DeviceIdentity {
    const account = new (lib().Account)();
    try {
      account.unpickle(key.slice(), pickle); // libolm zeroes the key it is given
    } catch (error) {
      account.free();
      throw new CryptoError(`cannot restore the device identity: ${String(error)}`);
    }
    return new DeviceIdentity(account);
  }

  pickle(key: Uint8Array): string {
    return this.account.pickle(key.slice());
  }

  private get identityKeys(): { curve25519: string; ed25519: string } {
    return JSON.parse(this.account.identity_keys()) as { curve25519: string; ed25519: string };
  }

  get curve25519(): string {
    return this.identityKeys.curve25519;
  }

  get ed25519(): string {
    return this.identityKeys.ed25519;
  }

  get maxOneTimeKeys(): number {
    return this.account.max_number_of_one_time_keys();
  }

  /** An Ed25519 signature of `message` with the identity key (unpadded base64). */
  sign(message: Uint8Array): string {
    return this.account.sign(message);
  }

  private unpublished(): [string, string][] {
    const keys = JSON.parse(this.account.one_time_keys()) as {
      curve25519: Record<string, string>;
    };
    return Object.entries(keys.curve25519).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Generate up to `count` one-time keys (never more than 50 unpublished); return all
   * unpublished ones, signed. Call `markPublished` once the relay stored them. */
  generateOneTimeKeys(count: number): SignedKey[] {
    const room = Math.min(50, this.maxOneTimeKeys) - this.unpublished().length;
    const wanted = Math.min(count, room);
    if (wanted > 0) this.account.generate_one_time_keys(wanted);
    return this.unpublished().map(([keyId, key]) => this.signed(keyId, key, false));
  }

  /** A new fallback key, signed. The previous one keeps working for sessions already begun. */
  generateFallbackKey(): SignedKey {
    this.account.generate_fallback_key();
    const keys = JSON.parse(this.account.unpublished_fallback_key()) as {
      curve25519: Record<string, string>;
    };
    const [entry] = Object.entries(keys.curve25519);
    if (!entry) throw new CryptoError("no fallback key was generated");
    return this.signed(entry[0], entry[1], true);
  }

  markPublished(): void {
    this.account.mark_keys_as_published();
  }

  private signed(keyId: string, publicKey: string, fallback: boolean): SignedKey {
    return {
      key_id: keyId,
      public_key: publicKey,
      signature: this.sign(signedKeyMessage(keyId, publicKey, fallback)),
    };
  }

  /** A new session towards a peer device from its claimed (and verified) one-time key. */
  createOutboundSession(peerCurve25519: string, oneTimeKey: string): Session {
    const session = new (lib().Session)();
    try {
      session.create_outbound(this.account, peerCurve25519, oneTimeKey);
    } catch (error) {
      session.free();
      throw new CryptoError(`cannot start a session: ${String(error)}`);
    }
    return new Session(session);
  }

  /** The session a peer's pre-key message starts, and that message's plaintext. The one-time
   * key it used is removed, so it can never open a second session. */
  createInboundSession(
    peerCurve25519: string,
    message: Ciphertext,
  ): { session: Session; plaintext: Uint8Array } {
    if (message.type !== PRE_KEY) throw new DecryptionError("not a pre-key message");
    const olm = new (lib().Session)();
    try {
      olm.create_inbound_from(this.account, peerCurve25519, toBase64(message.body, false));
    } catch (error) {
      olm.free();
      throw new DecryptionError(`cannot open the session: ${String(error)}`);
    }
    const session = new Session(olm);
    let plaintext: Uint8Array;
    try {
      plaintext = session.decrypt(message);
    } catch (error) {
      session.free();
      throw error;
    }
    this.account.remove_one_time_keys(olm);
    return { session, plaintext };
  }

  free(): void {
    this.account.free();
  }
}

function cString(heap: Uint8Array, ptr: number): string {
  let end = ptr;
  while (heap[end] !== 0 && end - ptr < 256) end += 1;
  return new TextDecoder().decode(heap.subarray(ptr, end));
}

/** One Olm session with one peer device. */
export class Session {
  constructor(readonly olm: OlmSession) {}

  static fromPickle(pickle: string, key: Uint8Array): Session {
    const olm = new (lib().Session)();
    try {
      olm.unpickle(key.slice(), pickle);
    } catch (error) {
      olm.free();
      throw new CryptoError(`cannot restore the session: ${String(error)}`);
    }
    return new Session(olm);
  }

  pickle(key: Uint8Array): string {
    return this.olm.pickle(key.slice());
  }

  get sessionId(): string {
    return this.olm.session_id();
  }

  get hasReceivedMessage(): boolean {
    return this.olm.has_received_message();
  }

  /** Whether a pre-key message from `peerCurve25519` belongs to this session. */
  matchesInbound(peerCurve25519: string, message: Ciphertext): boolean {
    if (message.type !== PRE_KEY) return false;
    try {
      return this.olm.matches_inbound_from(peerCurve25519, toBase64(message.body, false));
    } catch {
      return false;
    }
  }

  private failure(kind: typeof CryptoError): CryptoError {
    const r = rt();
    return new kind(`OLM.${cString(r.HEAPU8, r._olm_session_last_error(this.ptr))}`);
  }

  private get ptr(): number {
    return (this.olm as unknown as Pointer).ptr;
  }

  encrypt(plaintext: Uint8Array): Ciphertext {
    const r = rt();
    const randomLength = r._olm_encrypt_random_length(this.ptr);
    const type = r._olm_encrypt_message_type(this.ptr);
    const messageLength = r._olm_encrypt_message_length(this.ptr, plaintext.length);
    const plain = r._malloc(Math.max(1, plaintext.length));
    const random = r._malloc(Math.max(1, randomLength));
    const message = r._malloc(messageLength);
    try {
      r.HEAPU8.set(plaintext, plain);
      if (randomLength > 0) {
        r.HEAPU8.set(crypto.getRandomValues(new Uint8Array(randomLength)), random);
      }
      const written = r._olm_encrypt(
        this.ptr,
        plain,
        plaintext.length,
        random,
        randomLength,
        message,
        messageLength,
      );
      if (written === r._olm_error()) throw this.failure(CryptoError);
      const text = new TextDecoder().decode(r.HEAPU8.subarray(message, message + messageLength));
      return { type, body: fromBase64(text) };
    } finally {
      r.HEAPU8.fill(0, plain, plain + plaintext.length);
      r.HEAPU8.fill(0, random, random + randomLength);
      r._free(plain);
      r._free(random);
      r._free(message);
    }
  }

  decrypt(message: Ciphertext): Uint8Array {
    const r = rt();
    const text = encoder.encode(toBase64(message.body, false));
    const buffer = r._malloc(Math.max(1, text.length));
    let plain = 0;
    let maxLength = 0;
    try {
      // libolm decodes the base64 in place, so the message is written again before decrypting.
      r.HEAPU8.set(text, buffer);
      maxLength = r._olm_decrypt_max_plaintext_length(this.ptr, message.type, buffer, text.length);
      if (maxLength === r._olm_error()) throw this.failure(DecryptionError);
      plain = r._malloc(Math.max(1, maxLength));
      r.HEAPU8.set(text, buffer);
      const length = r._olm_decrypt(this.ptr, message.type, buffer, text.length, plain, maxLength);
      if (length === r._olm_error()) throw this.failure(DecryptionError);
      return r.HEAPU8.slice(plain, plain + length);
    } finally {
      r._free(buffer);
      if (plain) {
        r.HEAPU8.fill(0, plain, plain + maxLength);
        r._free(plain);
      }
    }
  }

  free(): void {
    this.olm.free();
  }
}
