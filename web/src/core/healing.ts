// Sessions that heal (docs/protocol.md §8.6), as the Python SDK does it: a message this
// browser could not decrypt is asked for again over a new session, and a message a peer's
// device could not decrypt is encrypted again and resent to that device alone.

import { encodePayload, type RetryRefused, type RetryRequest } from "../wire/payloads";
import { Offline, RelayError } from "./api";
import type { Client, Message, MessageFrame } from "./client";
import { NotConnected } from "./connection";

export const MAX_ATTEMPTS = 3;
const RENEW_EVERY_MS = 30_000;
const MAX_KEPT = 1000;

export const GAVE_UP = "could not be decrypted, and asking the sender again did not help";
export const NOT_RESENT = "could not be decrypted, and the sender's device cannot send it again";
export const RECIPIENT_GAVE_UP = "the recipient's device could not decrypt it, even when sent again";

interface Attempts {
  message_id: string;
  peer: string;
  device: number;
  count: number;
  requested: boolean;
}

function keyOf(messageId: string, peer: string, device: number): string {
  return `${messageId}/${peer}/${device}`;
}

export class Healing {
  private attempts: Record<string, Attempts> = {};
  private readonly renewed = new Map<string, number>();
  private loaded = false;

  constructor(private readonly client: Client) {}

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.attempts = (await this.client.store.get<Record<string, Attempts>>("meta", "retries")) ?? {};
    this.loaded = true;
  }

  private async save(): Promise<void> {
    const entries = Object.entries(this.attempts);
    if (entries.length > MAX_KEPT) this.attempts = Object.fromEntries(entries.slice(-MAX_KEPT));
    await this.client.store.put("meta", "retries", this.attempts);
  }

  private async count(messageId: string, peer: string, device: number): Promise<Attempts> {
    await this.load();
    const key = keyOf(messageId, peer, device);
    const entry = (this.attempts[key] ??= { message_id: messageId, peer, device, count: 0, requested: false });
    entry.count += 1;
    entry.requested = false;
    await this.save();
    return entry;
  }

  // --- the device that could not decrypt ---------------------------------------------------

  /** Keep the message as waiting ("Waiting for this message") and ask its sender for it
   * again; once the requests are used up, as failed. */
  async unreadable(frame: MessageFrame, reason: string): Promise<void> {
    const entry = await this.count(frame.message_id, frame.sender, frame.sender_device);
    const failed = entry.count > MAX_ATTEMPTS;
    await this.client.recordIncoming(frame, failed ? "failed" : "waiting", failed ? GAVE_UP : reason);
    if (!failed) void this.request(entry);
  }

  /** A message of that device was decrypted over an existing session: it is healthy. */
  read(sender: string, device: number): void {
    this.renewed.delete(`${sender}/${device}`);
  }

  private async request(entry: Attempts): Promise<void> {
    try {
      const key = `${entry.peer}/${entry.device}`;
      const last = this.renewed.get(key);
      if (last === undefined || Date.now() - last >= RENEW_EVERY_MS) {
        await this.client.startSession(entry.peer, entry.device);
        this.renewed.set(key, Date.now());
      }
      const request: RetryRequest = {
        t: "retry",
        message_id: entry.message_id,
        sender_device: entry.device,
        attempt: entry.count,
      };
      await this.client.deliverSystem(entry.peer, encodePayload(request));
      entry.requested = true;
      await this.save();
    } catch (error) {
      // Asked again when the browser next connects (requestMissing).
      console.warn("retry request not sent", error);
    }
  }

  /** Send the requests that could not be sent before (the relay was away). */
  async requestMissing(): Promise<void> {
    await this.load();
    for (const entry of Object.values(this.attempts)) {
      if (entry.requested || entry.count > MAX_ATTEMPTS) continue;
      const message = await this.client.store.get<Message>("messages", entry.message_id);
      if (message?.status === "waiting" && !message.outgoing) await this.request(entry);
    }
  }

  /** The sender's device cannot send it again: stop waiting and show it failed. */
  async refused(sender: string, device: number, refusal: RetryRefused): Promise<void> {
    const message = await this.client.store.get<Message>("messages", refusal.message_id);
    if (!message || message.outgoing || message.status !== "waiting" || message.sender !== sender) return;
    if (message.sender_device !== device) return;
    await this.client.setStatus(message, "failed", NOT_RESENT);
  }

  // --- the device that sent it ---------------------------------------------------------------

  /** A peer's device asks for a message again: resend it if this browser sent it to them. */
  async asked(requester: string, requesterDevice: number, request: RetryRequest): Promise<void> {
    const me = this.client.me;
    if (!me || request.sender_device !== me.device_id) return; // another device of this account
    const stored = await this.client.store.get<Message>("messages", request.message_id);
    if (!stored?.outgoing || stored.sender_device !== me.device_id || stored.chat !== requester || !stored.payload) {
      const refusal: RetryRefused = { t: "retry_refused", message_id: request.message_id };
      try {
        await this.client.deliverSystem(requester, encodePayload(refusal));
      } catch (error) {
        console.warn("retry answer not sent", error);
      }
      return;
    }
    const entry = await this.count(request.message_id, requester, requesterDevice);
    if (entry.count > MAX_ATTEMPTS) {
      await this.client.setStatus(stored, "failed", RECIPIENT_GAVE_UP);
      return;
    }
    if (stored.status === "sent" || stored.status === "pending") await this.client.setStatus(stored, "waiting");
    try {
      await this.client.resend(stored, requester, requesterDevice);
    } catch (error) {
      if (error instanceof RelayError) await this.client.setStatus(stored, "failed", error.message);
      else if (!(error instanceof Offline || error instanceof NotConnected)) throw error;
      // Offline: the recipient asks again after its next failure.
    }
  }
}
