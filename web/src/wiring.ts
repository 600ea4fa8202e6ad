// Connects the client to the checks that live in their own modules: the verified tick,
// template messages, consent statements and safety numbers — all decided in the browser from
// what the operator signed, with the operator key pinned at registration.

import { Businesses, type Tick, type TickReason } from "./core/businesses";
import { Refused, type Client, type MessageFrame } from "./core/client";
import { KeyLogFailure } from "./core/keylog";
import { RelayError, type BusinessPublic } from "./core/api";
import { ALL_SCOPES, signStatement, type ConsentScope, type ConsentState } from "./crypto/consent";
import {
  certificateFromJson,
  judgeTick,
  notLogged,
  OperatorKeyRing,
  REVOCATIONS_MAX_AGE_S,
  revocationsFromJson,
  verifyRevocations,
  type Tick as OperatorTick,
  type TickState,
} from "./crypto/operator";
import { safetyNumber } from "./crypto/safety";
import type { Payload } from "./wire/payloads";
import {
  checkTemplateMessage,
  signedTemplateFromJson,
  TemplateMismatch,
  TemplateRejected,
  TemplateUnavailable,
  verifyTemplateOrReject,
  type SignedTemplateBody,
} from "./wire/templates";
import type { Services } from "./ui/app";
import { tIn, type Key } from "./ui/i18n";

function translate(german: boolean, key: Key, vars: Record<string, string>): string {
  return tIn(german ? "de" : "en", key, vars);
}

const REVOCATIONS_REFRESH_MS = 10 * 60_000;

const REASONS: Record<TickState, TickReason> = {
  verified: "verified",
  not_verified: "none",
  no_operator_key: "unavailable",
  unknown_operator_key: "mismatch",
  forged: "mismatch",
  expired: "expired",
  revoked: "revoked",
  no_revocation_list: "unavailable",
  changed: "mismatch",
  identity_changed: "mismatch",
  not_logged: "not_logged",
};

function asShown(judged: OperatorTick): Tick {
  return { verified: judged.verified, reason: REASONS[judged.state], detail: judged.reason };
}

class OperatorTrust {
  private ring: Promise<OperatorKeyRing | null> | null = null;
  private revoked: { serials: number[]; fetchedMs: number } | null = null;

  constructor(private readonly client: Client) {}

  keys(): Promise<OperatorKeyRing | null> {
    if (!this.ring) {
      const pinned = this.client.me?.operator_key;
      this.ring = pinned ? OperatorKeyRing.pin(pinned).then(async (ring) => {
        await this.follow(ring);
        return ring;
      }) : Promise.resolve(null);
    }
    return this.ring;
  }

  async follow(ring: OperatorKeyRing): Promise<void> {
    try {
      await ring.follow(await this.client.api.operatorKeys());
    } catch {
      // The pinned key stays; a certificate of a newer key waits for the next try.
    }
  }

  /** The serials of a fresh signed revocation list, or null when none could be had. */
  async revocations(ring: OperatorKeyRing): Promise<number[] | null> {
    const now = Date.now();
    if (this.revoked && now - this.revoked.fetchedMs < REVOCATIONS_REFRESH_MS) return this.revoked.serials;
    try {
      const listing = await verifyRevocations(
        revocationsFromJson(await this.client.api.revocations()),
        ring,
        now,
        REVOCATIONS_MAX_AGE_S * 1000,
      );
      this.revoked = { serials: [...listing.serials], fetchedMs: now };
      return this.revoked.serials;
    } catch {
      return null;
    }
  }
}

export function wire(client: Client, Book: typeof Businesses): Services {
  const trust = new OperatorTrust(client);
  const verified = new Map<string, SignedTemplateBody>();

  const tickOf = async (c: Client, profile: BusinessPublic): Promise<Tick> => {
    const ring = await trust.keys();
    const peer = await c.learn(profile.account_id);
    const devices = await c.devicesOf(profile.account_id, true);
    const judged = await judgeTick(profile.certificate ?? null, ring, Date.now(), {
      accountId: profile.account_id,
      phone: peer.phone ?? "",
      displayName: profile.display_name,
      deviceKeys: devices.map((d) => d.ed25519),
      revoked: ring ? await trust.revocations(ring) : null,
      identityChanged: peer.trust !== "trusted",
    });
    if (!judged.verified || judged.serial === null || !profile.certificate) return asShown(judged);
    // The tick only for a certificate the key log holds, where the business and auditors see
    // every certificate the operator issued. Not checked (offline): no tick, "unavailable".
    try {
      await c.checkCertificateLogged(profile.account_id, judged.serial, certificateFromJson(profile.certificate).body);
    } catch (error) {
      if (!(error instanceof KeyLogFailure)) throw error;
      return asShown(notLogged(judged, error.message));
    }
    return asShown(judged);
  };

  // The key log's epochs are signed with the same operator keys as certificates.
  client.checks.operatorKeys = () => trust.keys();
  client.checks.refreshOperatorKeys = async () => {
    const ring = await trust.keys();
    if (ring) await trust.follow(ring);
  };

  const templateOf = async (id: string): Promise<SignedTemplateBody> => {
    const known = verified.get(id);
    if (known) return known;
    const ring = await trust.keys();
    let answer: unknown;
    try {
      answer = await client.api.template(id);
    } catch (error) {
      if (error instanceof RelayError && error.code === 132001) throw new TemplateMismatch(`template ${id} does not exist`);
      throw new TemplateUnavailable(`template ${id} could not be fetched: ${String(error)}`);
    }
    const body = await verifyTemplateOrReject(signedTemplateFromJson(answer), ring, id, Date.now(), async () => {
      if (ring) await trust.follow(ring);
    });
    verified.set(id, body);
    return body;
  };

  client.checks.template = async (frame: MessageFrame, payload: Payload) => {
    try {
      return await checkTemplateMessage(
        payload,
        { sender: frame.sender, templateClass: frame.klass === 1, templateRef: frame.template_ref },
        templateOf,
      );
    } catch (error) {
      if (error instanceof TemplateRejected) throw new Refused(error.kind === "template_mismatch" ? "template_mismatch" : "template_unavailable", error.reason, error.report ? "template_mismatch" : null);
      throw error;
    }
  };

  let lastAt = 0;
  const consentChange = async (business: string, scopes: readonly ConsentScope[], state: ConsentState): Promise<void> => {
    const me = client.me;
    const identity = client.identity;
    if (!me || !identity) throw new Error("this browser is not registered");
    let at = Math.max(Date.now(), lastAt + 1);
    for (let attempt = 0; attempt < 2; attempt += 1) {
      lastAt = at;
      const statements = scopes.map((scope) =>
        signStatement(identity, {
          business_account: business,
          customer_account: me.account_id,
          customer_phone: me.phone,
          scope,
          state,
          at_ms: at,
          device_id: me.device_id,
        }),
      );
      try {
        await client.api.submitConsents(statements);
        return;
      } catch (error) {
        // Another device of this account signed later by its clock: date this one after it.
        const stored = error instanceof RelayError ? Number(error.details["stored_at_ms"]) : NaN;
        if (attempt > 0 || !(error instanceof RelayError) || error.details["reason"] !== "stale" || !stored) throw error;
        at = stored + 1;
      }
    }
  };

  const KEYWORDS: Record<string, ConsentState> = { STOP: "opted_out", STOPP: "opted_out", ABMELDEN: "opted_out", START: "opted_in", ANMELDEN: "opted_in" };
  client.checks.afterText = async (chat: string, text: string) => {
    const keyword = text.trim().toUpperCase();
    const state = KEYWORDS[keyword];
    const peer = client.peer(chat);
    if (!state || peer.kind !== "business") return;
    // German keywords get the German confirmation, as the Python SDK answers them.
    const german = keyword !== "STOP" && keyword !== "START";
    const name = peer.name ?? peer.phone ?? "";
    try {
      await consentChange(chat, ["marketing"], state);
      client.notices.set(chat, translate(german, state === "opted_in" ? "consent.started" : "consent.stopped", { name }));
    } catch (error) {
      client.notices.set(chat, translate(german, "consent.failed", { reason: error instanceof Error ? error.message : String(error) }));
    }
    client.changed();
  };

  const businesses = new Book(client, tickOf);
  return {
    client,
    businesses,
    consent: {
      dashboard: async () => (await client.api.consents()).businesses,
      revokeAll: (business) => consentChange(business, ALL_SCOPES, "opted_out"),
      set: (business, scope, state) => consentChange(business, [scope], state),
    },
    safetyNumber: async (account: string) => {
      const me = client.me;
      if (!me) throw new Error("this browser is not registered");
      const peer = await client.learn(account);
      const mine = (await client.api.keysOf(me.account_id)).devices.map((d) => d.identity_keys.ed25519);
      const theirs = (await client.api.keysOf(account)).devices.map((d) => d.identity_keys.ed25519);
      return safetyNumber({ phone: me.phone, identityKeys: mine }, { phone: peer.phone ?? "", identityKeys: theirs });
    },
  };
}
