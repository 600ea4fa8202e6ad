// Businesses as the customer sees them: the public profile from the relay, and the verified
// tick decided here, in the browser, from the operator-signed certificate and revocation
// list checked against the operator key pinned at registration (never from the relay's word).

import type { BusinessPublic } from "./api";
import type { Client } from "./client";

export type TickReason = "verified" | "none" | "revoked" | "expired" | "mismatch" | "unavailable" | "not_logged";

export interface Tick {
  verified: boolean;
  reason: TickReason;
  detail?: string;
}

export interface Business {
  profile: BusinessPublic;
  tick: Tick;
  fetchedMs: number;
}

/** Decides the tick of one business from its profile (certificate) and its devices' keys. */
export type TickCheck = (client: Client, profile: BusinessPublic) => Promise<Tick>;

const MAX_AGE_MS = 5 * 60_000;

export class Businesses {
  private readonly known = new Map<string, Business>();
  private readonly loading = new Map<string, Promise<Business>>();

  constructor(
    private readonly client: Client,
    private readonly check: TickCheck,
  ) {}

  cached(accountId: string): Business | undefined {
    return this.known.get(accountId);
  }

  get(accountId: string, refresh = false): Promise<Business> {
    const known = this.known.get(accountId);
    if (known && !refresh && Date.now() - known.fetchedMs < MAX_AGE_MS) return Promise.resolve(known);
    let pending = this.loading.get(accountId);
    if (!pending) {
      pending = this.fetch(accountId).finally(() => this.loading.delete(accountId));
      this.loading.set(accountId, pending);
    }
    return pending;
  }

  private async fetch(accountId: string): Promise<Business> {
    const profile = await this.client.api.business(accountId);
    let tick: Tick;
    try {
      tick = await this.check(this.client, profile);
    } catch (error) {
      tick = { verified: false, reason: "unavailable", detail: String(error) };
    }
    const business = { profile, tick, fetchedMs: Date.now() };
    this.known.set(accountId, business);
    const peer = this.client.peer(accountId);
    if (peer.name !== profile.display_name || peer.kind !== "business") {
      peer.name = profile.display_name;
      peer.kind = "business";
      await this.client.savePeer(peer);
    }
    this.client.changed();
    return business;
  }

  private readonly pictures = new Map<string, Promise<string | null>>();

  /** The business's picture as an object URL (fetched with this device's token), or null. */
  picture(accountId: string): Promise<string | null> {
    let url = this.pictures.get(accountId);
    if (!url) {
      url = this.get(accountId)
        .then(async (business) => {
          if (!business.profile.has_picture) return null;
          const bytes = await this.client.api.picture(accountId);
          return URL.createObjectURL(new Blob([bytes as BlobPart], { type: bytes.type }));
        })
        .catch(() => null);
      this.pictures.set(accountId, url);
    }
    return url;
  }

  /** The directory, each entry with its tick decided here. */
  async find(query: string): Promise<Business[]> {
    const { businesses } = await this.client.api.findBusinesses(query, 20);
    const found = await Promise.all(
      businesses.map((b) => this.get(b.account_id).catch(() => null)),
    );
    return found.filter((b): b is Business => b !== null);
  }
}
