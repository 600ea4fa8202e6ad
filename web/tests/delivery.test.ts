// Delivery receipts of template messages: the bytes a device signs (checked by the Python
// side with msgspec and vodozemac), and the receipt a browser sends, class receipt and end to
// end, once a template message passed its checks (a fake relay behind `fetch`). Bills are
// reconciled against receipts, so none is lost while the relay is away, nor after a reload.

import "fake-indexeddb/auto";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { RECEIPT, Refused, TEMPLATE, type Client as ClientType, type MessageFrame } from "../src/core/client";
import { deliverySigned, signDelivery, verifyDelivery, type DeliveryStatement } from "../src/crypto/delivery";
import { DeviceIdentity, initOlm, type Session } from "../src/crypto/olm";
import { fromBase64, toBase64 } from "../src/wire/base64";
import { decodePayload, encodePayload, type DeliveryReceipt, type Template } from "../src/wire/payloads";
import { WirePeer } from "./support/wire-peer";

const CUSTOMER = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";
const BUSINESS = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

let peer: WirePeer;

beforeAll(async () => {
  await initOlm();
  peer = new WirePeer();
});
afterAll(() => peer?.close());
afterEach(() => vi.unstubAllGlobals());

const STATEMENT: DeliveryStatement = {
  message_id: "m-0001",
  business: BUSINESS,
  customer: CUSTOMER,
  device_id: 3,
  template_id: "42",
  delivered_ms: 1_767_225_600_123,
};

describe("the signed delivery statement", () => {
  it("is the prefix and the msgpack map the Python side builds, signed by the device", async () => {
    const device = DeviceIdentity.create();
    const signature = signDelivery(device, STATEMENT);
    expect(signature.length).toBe(64);
    expect(await verifyDelivery(device.ed25519, STATEMENT, signature)).toBe(true);
    const theirs = await peer.call("delivery_verify", {
      statement: STATEMENT,
      signature: toBase64(signature, false),
      ed25519: device.ed25519,
    });
    expect(theirs["valid"]).toBe(true);
    expect(deliverySigned(STATEMENT).subarray(19)).toEqual(fromBase64(String(theirs["body"])));
    expect(new TextDecoder().decode(deliverySigned(STATEMENT).subarray(0, 19))).toBe("tresen-delivery-v1\0");
    // Any other field value, or another device's key, does not verify.
    for (const changed of [{ delivered_ms: STATEMENT.delivered_ms + 1 }, { customer: BUSINESS }, { device_id: 4 }, { template_id: "43" }]) {
      expect(await verifyDelivery(device.ed25519, { ...STATEMENT, ...changed }, signature)).toBe(false);
    }
    expect(await verifyDelivery(DeviceIdentity.create().ed25519, STATEMENT, signature)).toBe(false);
  });
});

// --- a browser and a business device behind a fake relay ------------------------------------

interface Sent {
  to: string;
  class: string;
  per_device: { device_id: number; type: number; body: string }[];
}

class FakeRelay {
  readonly sends: Sent[] = [];
  readonly business = DeviceIdentity.create();
  /** "down": sends are answered 503; "offline": the network fails. */
  state: "up" | "down" | "offline" = "up";
  /** Sends tried while the relay was away. */
  refused = 0;
  private serial = 0;

  readonly fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(String(input), "http://relay.test");
    const method = init.method ?? "GET";
    const json = (body: unknown): Response => new Response(JSON.stringify(body), { status: 200 });
    if (method === "GET" && url.pathname === `/v1/accounts/${BUSINESS}`) {
      return json({ account_id: BUSINESS, phone: "+4930555010000", kind: "business" });
    }
    if (method === "GET" && url.pathname === `/v1/keys/${BUSINESS}`) {
      // A relay without a key log: no proofs, accepted while no head was ever seen.
      const keys = { curve25519: this.business.curve25519, ed25519: this.business.ed25519 };
      return json({ account_id: BUSINESS, devices: [{ device_id: 1, registration_id: 7, identity_keys: keys }] });
    }
    if (method === "POST" && url.pathname === "/v1/messages" && this.state !== "up") {
      this.refused += 1;
      if (this.state === "offline") throw new TypeError("Failed to fetch");
      return new Response("", { status: 503 });
    }
    if (method === "POST" && url.pathname === "/v1/messages") {
      const sent = JSON.parse(String(init.body)) as Sent;
      this.sends.push(sent);
      this.serial += 1;
      return json({ client_msg_id: "x", message_id: `r-${this.serial}`, server_ms: 1, duplicate: false });
    }
    return new Response(JSON.stringify({ error: { code: 100, message: `no route ${method} ${url.pathname}` } }), { status: 404 });
  };
}

async function browser(
  relay: FakeRelay,
  again?: { db: string; identity: DeviceIdentity },
): Promise<{ client: ClientType; identity: DeviceIdentity; db: string }> {
  vi.stubGlobal("fetch", relay.fetch);
  const { Client } = await import("../src/core/client");
  const client = new Client("http://relay.test");
  const db = again?.db ?? `delivery-${Math.random()}`;
  await client.open(db);
  if (again) return { client, identity: again.identity, db }; // registered: what it kept
  const identity = DeviceIdentity.create();
  client.identity = identity;
  client.me = {
    account_id: CUSTOMER,
    device_id: 3,
    phone: "+4915112345678",
    token: "t",
    pickle_key: new Uint8Array(32),
    identity: "",
  };
  return { client, identity, db };
}

/** The business's first message to the browser: a template message as the relay hands it on
 * (over `over`, the business's session with the browser, when it wrote before). */
function templateFrame(
  relay: FakeRelay,
  identity: DeviceIdentity,
  id: string,
  over?: Session,
): { frame: MessageFrame; session: Session } {
  let session = over;
  if (!session) {
    const [otk] = identity.generateOneTimeKeys(1);
    session = relay.business.createOutboundSession(identity.curve25519, otk!.public_key);
  }
  const payload: Template = { t: "template", template_id: "42", name: "boarding_pass", language: "en" };
  const ciphertext = session.encrypt(encodePayload(payload));
  const frame: MessageFrame = {
    id: 1,
    message_id: id,
    sender: BUSINESS,
    sender_device: 1,
    klass: TEMPLATE,
    type: ciphertext.type,
    body: ciphertext.body,
    server_ms: 1_767_225_600_000,
    template_ref: "42",
  };
  return { frame, session };
}

function receive(client: ClientType, frame: MessageFrame): Promise<void> {
  return (client as unknown as { onMessage(f: MessageFrame): Promise<void> }).onMessage(frame);
}

describe("a template message the browser accepts", () => {
  it("is answered with a signed delivery receipt of class receipt to the business", async () => {
    const relay = new FakeRelay();
    const { client, identity } = await browser(relay);
    client.checks.template = async () => ({ body: "Your boarding pass" });
    const { frame, session } = templateFrame(relay, identity, "m-0001");
    const before = Date.now();
    await receive(client, frame);

    await vi.waitFor(() => expect(relay.sends).toHaveLength(1));
    const [sent] = relay.sends;
    expect(sent!.to).toBe(BUSINESS);
    expect(sent!.class).toBe("receipt");
    expect(RECEIPT).toBe(2);
    const [copy] = sent!.per_device;
    expect(copy!.device_id).toBe(1);
    const receipt = decodePayload(session.decrypt({ type: copy!.type, body: fromBase64(copy!.body) })) as DeliveryReceipt;
    expect(receipt.t).toBe("delivery_receipt");
    expect([receipt.message_id, receipt.template_id]).toEqual(["m-0001", "42"]);
    expect(receipt.delivered_ms).toBeGreaterThanOrEqual(before);
    expect(receipt.delivered_ms).toBeLessThanOrEqual(Date.now());
    const statement: DeliveryStatement = {
      message_id: "m-0001",
      business: BUSINESS,
      customer: CUSTOMER,
      device_id: 3,
      template_id: "42",
      delivered_ms: receipt.delivered_ms,
    };
    expect(await verifyDelivery(identity.ed25519, statement, receipt.signature)).toBe(true);
    // The template message itself is shown.
    expect((await client.load(BUSINESS)).map((m) => m.id)).toEqual(["m-0001"]);
    client.close();
  });

  it("is not answered when the template check refuses the message", async () => {
    const relay = new FakeRelay();
    const { client, identity } = await browser(relay);
    client.checks.template = async () => {
      throw new Refused("template_mismatch", "the text is not the approved template's", null);
    };
    const { frame } = templateFrame(relay, identity, "m-0002");
    await receive(client, frame);
    const [shown] = await client.load(BUSINESS);
    expect(shown!.status).toBe("failed");
    await client.flushReceipts();
    expect(relay.sends).toEqual([]);
    client.close();
  });
});

// --- receipts while the relay is away -----------------------------------------------------------

/** The browser (re)connects: the relay's hello, as the WebSocket delivers it; returns once
 * the receipts the hello sends again went out (or stayed). */
async function reconnect(client: ClientType): Promise<void> {
  const flushed = vi.spyOn(client, "flushReceipts");
  (client as unknown as { onFrame(f: Record<string, unknown>): void }).onFrame({ t: "hello", server_ms: Date.now(), one_time_keys: 50 });
  await vi.waitFor(() => expect(flushed).toHaveBeenCalled());
  await flushed.mock.results[0]!.value;
  flushed.mockRestore();
}

/** The receipts the business received, decrypted with its session. */
function receivedBy(relay: FakeRelay, session: Session): DeliveryReceipt[] {
  return relay.sends.map((sent) => {
    expect(sent.class).toBe("receipt");
    const [copy] = sent.per_device;
    return decodePayload(session.decrypt({ type: copy!.type, body: fromBase64(copy!.body) })) as DeliveryReceipt;
  });
}

function receiptsFor(relay: FakeRelay, session: Session): string[] {
  return receivedBy(relay, session).map((r) => r.message_id);
}

/** A WebSocket that never connects. */
class NeverOpens {
  binaryType = "";
  onopen: unknown = null;
  onmessage: unknown = null;
  onclose: unknown = null;
  close(): void {}
}

describe("a delivery receipt the relay cannot take now", () => {
  for (const state of ["down", "offline"] as const) {
    it(`is kept while the relay is ${state}, and sent once after the browser reconnects`, async () => {
      const relay = new FakeRelay();
      const { client, identity } = await browser(relay);
      client.checks.template = async () => ({ body: "Your boarding pass" });
      relay.state = state;
      const { frame, session } = templateFrame(relay, identity, "m-0101");
      await receive(client, frame);
      await client.flushReceipts();
      expect(relay.refused).toBeGreaterThan(0);
      expect(relay.sends).toEqual([]);

      // Another try while the relay is still away keeps it too.
      await reconnect(client);
      expect(relay.sends).toEqual([]);

      relay.state = "up";
      await reconnect(client);
      expect(receiptsFor(relay, session)).toEqual(["m-0101"]);
      // Sent is sent: the next connection sends nothing again.
      await reconnect(client);
      expect(relay.sends).toHaveLength(1);
      client.close();
    });
  }

  it("survives a reload and is sent, once, by the app opened again", async () => {
    const relay = new FakeRelay();
    const first = await browser(relay);
    first.client.checks.template = async () => ({ body: "Your boarding pass" });
    relay.state = "down";
    const { frame, session } = templateFrame(relay, first.identity, "m-0201");
    await receive(first.client, frame);
    await first.client.flushReceipts();
    first.client.close();

    // The app opened again, before its WebSocket connects (a socket that never opens here).
    relay.state = "up";
    vi.stubGlobal("location", { protocol: "http:", host: "relay.test" });
    vi.stubGlobal("WebSocket", NeverOpens);
    const { client } = await browser(relay, first);
    expect(client.me?.account_id).toBe(CUSTOMER);
    await client.flushReceipts();
    const [receipt] = receivedBy(relay, session);
    expect(receipt!.message_id).toBe("m-0201");
    // Signed by the device when the message arrived, before the reload.
    const statement: DeliveryStatement = {
      message_id: "m-0201",
      business: BUSINESS,
      customer: CUSTOMER,
      device_id: 3,
      template_id: "42",
      delivered_ms: receipt!.delivered_ms,
    };
    expect(await verifyDelivery(first.identity.ed25519, statement, receipt!.signature)).toBe(true);
    await reconnect(client);
    expect(relay.sends).toHaveLength(1);
    client.close();
  });

  it("is kept once per message, and the oldest go when too many wait", async () => {
    const relay = new FakeRelay();
    const { client, identity } = await browser(relay);
    client.checks.template = async () => ({ body: "Your boarding pass" });
    client.maxPendingReceipts = 2;
    relay.state = "offline";
    const { frame: first, session } = templateFrame(relay, identity, "m-0301");
    await receive(client, first);
    // The relay hands the same message on again (its ack was lost): no second receipt.
    await receive(client, { ...first, id: 2 });
    expect(await client.store.count("receipts")).toBe(1);
    for (const id of ["m-0302", "m-0303"]) {
      await receive(client, { ...templateFrame(relay, identity, id, session).frame, server_ms: first.server_ms + 1 });
    }
    expect(await client.store.count("receipts")).toBe(2);
    expect(client.receiptsDropped).toBe(1);
    await client.flushReceipts(); // the tries each message started are over

    relay.state = "up";
    await reconnect(client);
    expect(receiptsFor(relay, session)).toEqual(["m-0302", "m-0303"]);
    client.close();
  });
});
