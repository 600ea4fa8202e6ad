// The relay's key log as this browser checks it (docs/architecture.md, "Key transparency";
// docs/protocol.md §14.4): the web app's counterpart of the Python SDK's client/transparency.py.
//
// Every device list of a peer comes with proofs against an operator-signed epoch head: that
// the list is the account's latest entry in the map, and that its leaf is in the append-only
// log. The heads seen are kept (the newest 1,000 and the first, in the store's "roots"), and a
// newer head is accepted only with a consistency proof that its log extends the newest one
// seen, so the relay cannot rewrite history, nor show this browser one history and others
// another without the two diverging for good.

import { CertificateError, type OperatorKeyRing, UnknownOperatorKey } from "../crypto/operator";
import {
  accountKey,
  certificateDigest,
  decodeHead,
  encodeCertificateLeaf,
  encodeDevicesLeaf,
  equalBytes,
  hashesOf,
  headHash,
  logLeafHash,
  mapProofFromJson,
  mapValue,
  ProofError,
  signedEpochFromJson,
  verifyConsistency,
  verifyEpoch,
  verifyInclusion,
  verifyMapProof,
  type DeviceEntry,
  type EpochHead,
  type SignedEpoch,
} from "../crypto/transparency";
import { Offline, RelayError } from "./api";
import type { Store, Write } from "./store";

/** Heads kept besides the first one: enough to compare with auditors' roots. */
export const KEPT_ROOTS = 1_000;

/** A head this browser checked and accepted. */
export interface LoggedRoot {
  epoch: number;
  tree_size: number;
  body: Uint8Array;
  signature: string;
  seen_ms: number;
}

/** The relay's key log does not vouch for what the relay said. `forked`: the log itself is
 * not the one seen before (a rewritten or forked history); otherwise it concerns one
 * account's keys. */
export class KeyLogFailure extends Error {
  override name = "KeyLogFailure";
  constructor(
    message: string,
    readonly forked = false,
  ) {
    super(message);
  }
}

/** What the key log needs from the rest of the app. */
export interface KeyLogSource {
  /** The operator keys this browser trusts (pinned at registration); null if none. */
  ring(): Promise<OperatorKeyRing | null>;
  /** Follow the operator's published key rotations (a head signed by a newer key). */
  refreshRing(): Promise<void>;
  /** `GET /v1/transparency/consistency?first=&second=`: the proof's hashes. */
  consistency(first: number, second: number): Promise<unknown>;
  /** `GET /v1/transparency/certificates/{serial}`: where the certificate is in the log, with
   * its inclusion proof; null when the relay keeps no log (150081). Throws the RelayError
   * 150082 when the certificate is not logged. */
  certificate(serial: number): Promise<unknown>;
}

/** The relay's answer for a certificate it has not logged. */
export const NOT_FOUND_IN_LOG = 150082;

const ROOTS = "roots";

function rootId(epoch: number): string {
  return String(epoch).padStart(16, "0");
}

function count(data: Record<string, unknown>, name: string): number | null {
  const value = data[name];
  if (value === null || value === undefined) return null;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw new ProofError(`${name} is not a count`);
  return value;
}

export class KeyLog {
  private roots: LoggedRoot[];
  private queue: Promise<unknown> = Promise.resolve();
  /** Certificates found in the log ("serial:digest"): the log only grows, so once logged,
   * logged for good. */
  private readonly logged = new Set<string>();

  private constructor(
    private readonly store: Store,
    private readonly source: KeyLogSource,
    roots: LoggedRoot[],
    private readonly now: () => number,
  ) {
    this.roots = roots.sort((a, b) => a.epoch - b.epoch);
  }

  static async load(store: Store, source: KeyLogSource, now: () => number = Date.now): Promise<KeyLog> {
    return new KeyLog(store, source, await store.all<LoggedRoot>(ROOTS, KEPT_ROOTS + 10), now);
  }

  /** The log size of the newest head seen: proofs are asked for from there. */
  get since(): number | null {
    return this.latest()?.tree_size ?? null;
  }

  /** The newest epoch seen. Taken when a request is sent and given to `check`: the answer
   * may come from that epoch or a later one, even if a newer one was seen while it was on its
   * way (look-ups run side by side). */
  get epoch(): number | null {
    return this.latest()?.epoch ?? null;
  }

  /** The heads checked so far, oldest first. */
  seen(): readonly LoggedRoot[] {
    return this.roots;
  }

  private latest(): LoggedRoot | undefined {
    return this.roots[this.roots.length - 1];
  }

  /** Forget every head seen: the next one is trusted as the first (after the operator has
   * explained a fork, or on a relay that started a new log). */
  async forget(): Promise<void> {
    const writes: Write[] = this.roots.map((r) => ({ store: ROOTS, id: rootId(r.epoch), delete: true }));
    this.roots = [];
    await this.store.write(writes);
  }

  /** That `devices` are the account's current device set in the relay's key log; `own` (this
   * device) must be among them when the account is this browser's own. Without a `proof`
   * from a relay whose log this browser has seen before, that is a failure; from one it never
   * saw, the relay keeps no log. `askedAt`: `epoch` when the request was sent (else the
   * newest epoch seen now): an answer from an older epoch is a history that went back.
   * Throws `KeyLogFailure` (or `Offline`). */
  check(
    accountId: string,
    devices: readonly DeviceEntry[],
    proof: unknown,
    own: DeviceEntry | null = null,
    askedAt: number | null = null,
  ): Promise<void> {
    // One check at a time: each may store a new head the next one must extend.
    const run = this.queue.then(() => this.checkNow(accountId, devices, proof, own, askedAt));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async checkNow(
    accountId: string,
    devices: readonly DeviceEntry[],
    proof: unknown,
    own: DeviceEntry | null,
    askedAt: number | null,
  ): Promise<void> {
    if (proof === null || proof === undefined) {
      if (this.latest()) throw new KeyLogFailure(`the relay gave no key-log proof for ${accountId}`);
      return;
    }
    try {
      if (typeof proof !== "object" || Array.isArray(proof)) throw new ProofError("a key-log proof is an object");
      const data = proof as Record<string, unknown>;
      const head = await this.head(data["epoch"], data["consistency"], askedAt);
      await this.checkDevices(accountId, devices, data, head, own);
    } catch (error) {
      if (error instanceof KeyLogFailure || error instanceof Offline) throw error;
      if (error instanceof CertificateError || error instanceof TypeError || error instanceof RangeError) {
        throw new KeyLogFailure(`the key log does not vouch for ${accountId}: ${error.message}`);
      }
      throw error;
    }
  }

  /** That business certificate `serial` (its exact signed `body`), issued to `accountId`, is
   * in the relay's key log: a certificate shown to this browser only is not. Without a proof
   * from a relay whose log this browser has seen before, that is a failure; from one it never
   * saw, the relay keeps no log. Throws `KeyLogFailure`; `Offline` or another `RelayError`
   * when it could not be checked. */
  async checkCertificate(accountId: string, serial: number, body: Uint8Array): Promise<void> {
    const digest = await certificateDigest(body);
    const seen = `${serial}:${Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    if (this.logged.has(seen)) return;
    const askedAt = this.epoch;
    let proof: unknown;
    try {
      proof = await this.source.certificate(serial);
    } catch (error) {
      if (error instanceof RelayError && error.code === NOT_FOUND_IN_LOG) {
        throw new KeyLogFailure(`certificate ${serial} is not in the key log`);
      }
      throw error;
    }
    const run = this.queue.then(() => this.checkCertificateNow(accountId, serial, digest, proof, askedAt));
    this.queue = run.catch(() => undefined);
    if (await run) this.logged.add(seen);
  }

  /** Whether the proof placed the certificate in the log (false: the relay keeps none). */
  private async checkCertificateNow(
    accountId: string,
    serial: number,
    digest: Uint8Array,
    proof: unknown,
    askedAt: number | null,
  ): Promise<boolean> {
    if (proof === null || proof === undefined) {
      if (this.latest()) throw new KeyLogFailure(`the relay gave no key-log proof for certificate ${serial}`);
      return false;
    }
    try {
      if (typeof proof !== "object" || Array.isArray(proof)) throw new ProofError("a key-log proof is an object");
      const data = proof as Record<string, unknown>;
      const head = await this.head(data["epoch"], null, askedAt);
      const leafIndex = count(data, "leaf_index");
      const leafEpoch = count(data, "leaf_epoch");
      if (leafIndex === null || leafEpoch === null || leafEpoch > head.epoch) {
        throw new ProofError("the proof does not say where the certificate was logged");
      }
      const leafHash = await logLeafHash(encodeCertificateLeaf(accountId, leafEpoch, serial, digest));
      const inclusion = hashesOf(data["inclusion"] ?? []);
      if (!(await verifyInclusion(leafHash, leafIndex, head.tree_size, inclusion, head.log_root))) {
        throw new KeyLogFailure(`certificate ${serial} is not in the signed log`);
      }
    } catch (error) {
      if (error instanceof KeyLogFailure || error instanceof Offline) throw error;
      if (error instanceof CertificateError || error instanceof TypeError || error instanceof RangeError) {
        throw new KeyLogFailure(`the key log does not vouch for certificate ${serial}: ${error.message}`);
      }
      throw error;
    }
    return true;
  }

  private async checkDevices(
    accountId: string,
    devices: readonly DeviceEntry[],
    proof: Record<string, unknown>,
    head: EpochHead,
    own: DeviceEntry | null,
  ): Promise<void> {
    const entries = [...devices].sort((a, b) => a.device_id - b.device_id);
    if (own && !entries.some((e) => e.device_id === own.device_id && e.curve25519 === own.curve25519 && e.ed25519 === own.ed25519)) {
      throw new KeyLogFailure("the key log does not list this device with its own keys");
    }
    const value = await verifyMapProof(await accountKey(accountId), mapProofFromJson(proof["map_proof"]), head.map_root);
    const leafIndex = count(proof, "leaf_index");
    const leafEpoch = count(proof, "leaf_epoch");
    if (value === null) {
      if (entries.length > 0) throw new KeyLogFailure(`the key log has no devices of ${accountId}`);
      return;
    }
    if (leafIndex === null || leafEpoch === null || leafEpoch > head.epoch) {
      throw new ProofError("the proof does not say where the devices were logged");
    }
    const leafHash = await logLeafHash(encodeDevicesLeaf(accountId, leafEpoch, entries));
    if (!equalBytes(value, mapValue(leafIndex, leafHash))) {
      throw new KeyLogFailure(`the keys of ${accountId} are not the ones the key log holds`);
    }
    const inclusion = hashesOf(proof["inclusion"] ?? []);
    if (!(await verifyInclusion(leafHash, leafIndex, head.tree_size, inclusion, head.log_root))) {
      throw new KeyLogFailure(`the devices of ${accountId} are not in the signed log`);
    }
  }

  /** The head of `epoch` (JSON), checked and remembered: signed by the operator, and
   * extending the newest head seen before (or, if it is older than that but no older than
   * epoch `askedAt`, extended by it). */
  private async head(epoch: unknown, consistency: unknown, askedAt: number | null): Promise<EpochHead> {
    const signed = signedEpochFromJson(epoch);
    const head = await this.verified(signed);
    const latest = this.latest();
    if (latest) {
      const seen = decodeHead(latest.body);
      const digest = await headHash(signed.body);
      if (head.epoch === seen.epoch) {
        if (!equalBytes(digest, await headHash(latest.body))) {
          throw new KeyLogFailure(`two different signed heads for epoch ${head.epoch}`, true);
        }
        return head;
      }
      if (head.epoch < seen.epoch) {
        const earlier = this.roots.find((r) => r.epoch === head.epoch);
        if (earlier && !equalBytes(await headHash(earlier.body), digest)) {
          throw new KeyLogFailure(`two different signed heads for epoch ${head.epoch}`, true);
        }
        if (askedAt === null || head.epoch < askedAt) {
          throw new KeyLogFailure(
            `the relay answered from epoch ${head.epoch}, older than epoch ${askedAt ?? seen.epoch} seen before: its history went back`,
            true,
          );
        }
        // Answered before the newer epoch seen meanwhile was published: that one must extend it.
        if (!earlier) await this.extends(head, signed.body, seen, null);
        return head;
      }
      await this.extends(seen, latest.body, head, consistency);
    }
    await this.remember({
      epoch: head.epoch,
      tree_size: head.tree_size,
      body: signed.body,
      signature: signed.signature,
      seen_ms: this.now(),
    });
    return head;
  }

  private async verified(signed: SignedEpoch): Promise<EpochHead> {
    const ring = await this.source.ring();
    if (!ring) throw new ProofError("no operator key is pinned");
    try {
      return await verifyEpoch(signed, ring);
    } catch (error) {
      if (!(error instanceof UnknownOperatorKey)) throw error;
      await this.source.refreshRing(); // signed by a key rotated in since
      return verifyEpoch(signed, ring);
    }
  }

  /** That the log of `head` extends the log of the earlier `seen` (signed as `seenBody`), by
   * `consistency` (JSON) if it proves it from there, else by a proof asked for. */
  private async extends(seen: EpochHead, seenBody: Uint8Array, head: EpochHead, consistency: unknown): Promise<void> {
    if (head.tree_size < seen.tree_size) {
      throw new KeyLogFailure(`epoch ${head.epoch} has a smaller log than epoch ${seen.epoch} had`, true);
    }
    if (head.epoch === seen.epoch + 1 && !equalBytes(head.previous, await headHash(seenBody))) {
      throw new KeyLogFailure(`epoch ${head.epoch} does not follow epoch ${seen.epoch}`, true);
    }
    let proof: Uint8Array[] | null = null;
    const given = consistency as Record<string, unknown> | null;
    if (given && typeof given === "object" && given["first"] === seen.tree_size) proof = hashesOf(given["proof"] ?? []);
    if (proof === null) {
      try {
        proof = hashesOf(await this.source.consistency(seen.tree_size, head.tree_size));
      } catch (error) {
        if (!(error instanceof RelayError)) throw error;
        throw new KeyLogFailure(`the relay proves no consistency from epoch ${seen.epoch}: ${error.message}`, true);
      }
    }
    if (!(await verifyConsistency(seen.tree_size, head.tree_size, proof, seen.log_root, head.log_root))) {
      throw new KeyLogFailure(`the log of epoch ${head.epoch} does not extend the log of epoch ${seen.epoch}`, true);
    }
  }

  private async remember(root: LoggedRoot): Promise<void> {
    const writes: Write[] = [{ store: ROOTS, id: rootId(root.epoch), value: root }];
    const kept = [...this.roots.filter((r) => r.epoch !== root.epoch), root].sort((a, b) => a.epoch - b.epoch);
    // The first head and the newest ones stay.
    while (kept.length > KEPT_ROOTS + 1) {
      const [dropped] = kept.splice(1, 1);
      writes.push({ store: ROOTS, id: rootId(dropped!.epoch), delete: true });
    }
    await this.store.write(writes);
    this.roots = kept;
  }
}
