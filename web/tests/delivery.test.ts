// Delivery receipts of template messages: the bytes a device signs (checked by the Python
// side with msgspec and vodozemac), and the receipt a browser sends, class receipt and end to
// end, once a template message passed its checks (a fake relay behind `fetch`).

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
    if (method === "POST" && url.pathname === "/v1/messages") {
      const sent = JSON.parse(String(init.body)) as Sent;
      this.sends.push(sent);
      this.serial += 1;
      return json({ client_msg_id: "x", message_id: `r-${this.serial}`, server_ms: 1, duplicate: false });
    }
    return new Response(JSON.stringify({ error: { code: 100, message: `no route ${method} ${url.pathname}` } }), { status: 404 });
  };
}

async function browser(relay: FakeRelay): Promise<{ client: ClientType; identity: DeviceIdentity }> {
  vi.stubGlobal("fetch", relay.fetch);
  const { Client } = await import("../src/core/client");
  const client = new Client("http://relay.test");
  await client.open(`delivery-${Math.random()}`);
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
  return { client, identity };
}

/** The business's first message to the browser: a template message as the relay hands it on. */
function templateFrame(relay: FakeRelay, identity: DeviceIdentity, id: string): { frame: MessageFrame; session: Session } {
  const [otk] = identity.generateOneTimeKeys(1);
  const session = relay.business.createOutboundSession(identity.curve25519, otk!.public_key);
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
    await (client as unknown as { deliveryReceipts: Promise<void> }).deliveryReceipts;
    expect(relay.sends).toEqual([]);
    client.close();
  });
});
