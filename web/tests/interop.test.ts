// Olm interop with the Python SDK: sessions the browser's libolm opens are read by vodozemac
// and the reverse, with pre-key and normal messages in both directions and binary plaintexts.
// The Python side is tests/interop/olm_peer.py, run with the project's virtual environment.

import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface, type Interface } from "node:readline";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeviceIdentity, initOlm, NORMAL, PRE_KEY, type SignedKey } from "../src/crypto/olm";
import { verifyEd25519 } from "../src/crypto/ed25519";
import { signedKeyMessage } from "../src/crypto/olm";
import { fromBase64, toBase64 } from "../src/wire/base64";

const root = resolve(import.meta.dirname, "../..");
const python = process.env.TRESEN_PYTHON ?? resolve(root, ".venv/bin/python");

class Peer {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: Interface;
  private readonly waiting: ((line: string) => void)[] = [];

  constructor() {
    this.child = spawn(python, [resolve(root, "tests/interop/olm_peer.py")], {
      env: { ...process.env, PYTHONPATH: resolve(root, "src") },
    });
    this.lines = createInterface({ input: this.child.stdout });
    this.lines.on("line", (line: string) => this.waiting.shift()?.(line));
  }

  async call(command: Record<string, unknown>): Promise<Record<string, any>> {
    const answer = new Promise<string>((done) => this.waiting.push(done));
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    const parsed = JSON.parse(await answer) as Record<string, any>;
    if (parsed["error"]) throw new Error(`vodozemac: ${parsed["error"]}`);
    return parsed;
  }

  close(): void {
    this.child.stdin.end();
    this.lines.close();
  }
}

function payload(label: string): Uint8Array {
  // A zero byte and bytes that are no UTF-8, as in every padded payload.
  const text = new TextEncoder().encode(label);
  const out = new Uint8Array(text.length + 70);
  out.set(text);
  out[text.length + 1] = 0xff;
  out[text.length + 2] = 0x80;
  return out;
}

let peer: Peer;

beforeAll(async () => {
  if (!existsSync(python)) {
    throw new Error(`the interop tests need the project's Python (${python}): run make venv`);
  }
  await initOlm();
  peer = new Peer();
});
afterAll(() => peer?.close());

describe("Olm interop with vodozemac", () => {
  it("a session the browser opens is read by vodozemac, and answered", async () => {
    const browser = DeviceIdentity.create();
    const theirs = await peer.call({ op: "identity" });
    const key = theirs["one_time_key"] as SignedKey;
    expect(await verifyEd25519(theirs["ed25519"], signedKeyMessage(key.key_id, key.public_key, false), key.signature)).toBe(true);

    const session = browser.createOutboundSession(theirs["curve25519"], key.public_key);
    for (const [i, expected] of [PRE_KEY, PRE_KEY].entries()) {
      const message = session.encrypt(payload(`browser-${i}`));
      expect(message.type).toBe(expected);
      const read = await peer.call({
        op: "decrypt", peer: "b1", curve25519: browser.curve25519, type: message.type, body: toBase64(message.body),
      });
      expect(fromBase64(read["plaintext"])).toEqual(payload(`browser-${i}`));
    }
    const reply = await peer.call({ op: "encrypt", peer: "b1", plaintext: toBase64(payload("vodozemac")) });
    expect(reply["type"]).toBe(NORMAL);
    expect(session.decrypt({ type: reply["type"], body: fromBase64(reply["body"]) })).toEqual(payload("vodozemac"));
    const next = session.encrypt(payload("browser-normal"));
    expect(next.type).toBe(NORMAL);
    const read = await peer.call({
      op: "decrypt", peer: "b1", curve25519: browser.curve25519, type: next.type, body: toBase64(next.body),
    });
    expect(fromBase64(read["plaintext"])).toEqual(payload("browser-normal"));
  });

  it("a session vodozemac opens is read by the browser, and answered", async () => {
    const browser = DeviceIdentity.create();
    const [key] = browser.generateOneTimeKeys(1);
    await peer.call({ op: "verify_key", ed25519: browser.ed25519, key });
    const theirs = await peer.call({ op: "identity" });
    await peer.call({ op: "outbound", peer: "b2", curve25519: browser.curve25519, one_time_key: key!.public_key });

    const first = await peer.call({ op: "encrypt", peer: "b2", plaintext: toBase64(payload("hello")) });
    expect(first["type"]).toBe(PRE_KEY);
    const { session, plaintext } = browser.createInboundSession(theirs["curve25519"], {
      type: first["type"], body: fromBase64(first["body"]),
    });
    expect(plaintext).toEqual(payload("hello"));

    const answer = session.encrypt(payload("answer"));
    expect(answer.type).toBe(NORMAL);
    const read = await peer.call({
      op: "decrypt", peer: "b2", curve25519: browser.curve25519, type: answer.type, body: toBase64(answer.body),
    });
    expect(fromBase64(read["plaintext"])).toEqual(payload("answer"));
    const second = await peer.call({ op: "encrypt", peer: "b2", plaintext: toBase64(payload("again")) });
    expect(second["type"]).toBe(NORMAL);
    expect(session.decrypt({ type: second["type"], body: fromBase64(second["body"]) })).toEqual(payload("again"));
  });

  it("a fallback key the browser signs is accepted by the Python SDK", async () => {
    const browser = DeviceIdentity.create();
    const fallback = browser.generateFallbackKey();
    await peer.call({ op: "verify_key", ed25519: browser.ed25519, key: fallback, fallback: true });
    await expect(peer.call({ op: "verify_key", ed25519: browser.ed25519, key: fallback })).rejects.toThrow(/not signed/);
  });
});
