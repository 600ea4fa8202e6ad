// The browser as a full device of the customer's account: registration, keys, Olm sessions
// with every device of every peer, sending through an outbox that survives the tab, receiving
// with the checks the Python SDK makes, receipts (delivery receipts kept until the relay took
// them), transcripts to the account's other devices.
// The UI reads the state kept here and re-renders when `subscribe` calls it.

import { DeviceIdentity, Session, signedKeyMessage, type Ciphertext } from "../crypto/olm";
import { signDelivery } from "../crypto/delivery";
import { verifyEd25519 } from "../crypto/ed25519";
import type { OperatorKeyRing } from "../crypto/operator";
import type { DeviceEntry } from "../crypto/transparency";
import { toBase64 } from "../wire/base64";
import {
  decodePayload,
  type DeliveryReceipt,
  encodePayload,
  InvalidPayload,
  type InteractiveReply,
  type KnownPayload,
  type Payload,
  type SentTranscript,
  type Text,
} from "../wire/payloads";
import { Offline, RelayApi, RelayError, type ListedDevice } from "./api";
import { Connection, NotConnected, type ServerFrame } from "./connection";
import { Healing } from "./healing";
import { KeyLog, KeyLogFailure } from "./keylog";
import { Store, type Write } from "./store";

export const SESSION = 0;
export const TEMPLATE = 1;
export const RECEIPT = 2;
export const SYSTEM = 3;
const KLASS_NAMES = ["session", "template", "receipt", "system"];

export const TYPING_MS = 25_000;
const ONE_TIME_KEYS = 50;
const DEVICE_LIST_MAX_AGE_MS = 60_000;
const PAGE = 200;
const LOCAL_PREFIX = "local-";
const ACK_BATCH = 256;
/** Delivery receipts kept while the relay cannot take them; beyond, the oldest are dropped. */
export const MAX_PENDING_RECEIPTS = 10_000;

export type Status =
  | "pending"
  | "sent"
  | "delivered"
  | "read"
  | "failed"
  | "received"
  | "seen"
  | "waiting";

const ORDER: Record<string, number> = { pending: 0, sent: 1, waiting: 1, delivered: 2, read: 3 };

export interface Message {
  id: string;
  chat: string;
  outgoing: boolean;
  sender: string;
  sender_device: number;
  client_msg_id?: string;
  payload?: Uint8Array;
  status: Status;
  ms: number;
  error?: string;
  error_code?: number;
  klass?: number;
  template_ref?: string;
  /** A template message: the rendering of the operator-signed template, the only form shown. */
  rendered?: unknown;
}

export interface PeerDevice {
  device_id: number;
  registration_id: number;
  curve25519: string;
  ed25519: string;
}

/** `changed`: a known device presented other identity keys; `key_transparency`: the relay's
 * key log does not vouch for the keys (or its history forked). Either way sending waits until
 * the user compared safety numbers and trusted the keys. */
export type Trust = "trusted" | "changed" | "key_transparency";

export interface Peer {
  account_id: string;
  phone?: string;
  kind?: "customer" | "business";
  name?: string;
  devices: Record<string, PeerDevice>;
  trust: Trust;
  checked_ms?: number;
  last_ms?: number;
  preview?: string;
  unread: number;
  blocked?: boolean;
  /** Distrusted because the key log's history forked (not only this peer's keys): kept, so
   * the warning says so after a reload too. */
  key_log_forked?: boolean;
}

export interface Me {
  account_id: string;
  device_id: number;
  phone: string;
  token: string;
  pickle_key: Uint8Array;
  identity: string;
  registration_id?: number;
  operator_key?: string;
  operator_fingerprint?: string;
}

export interface Typing {
  chat: string;
  until: number;
}

export class IdentityNotTrusted extends Error {
  override name = "IdentityNotTrusted";
  constructor(
    readonly accountId: string,
    readonly reason: Trust = "changed",
  ) {
    super(
      reason === "key_transparency"
        ? "the relay's key log does not vouch for the keys of this contact: compare safety numbers, then trust them"
        : "the identity keys of this contact changed: compare safety numbers, then trust them",
    );
  }
}

/** The last key-log failure: for one account, or (`forked`) for the log as a whole. */
export interface KeyLogWarning {
  account: string;
  reason: string;
  forked: boolean;
}

interface Queued {
  id: string;
  chat: string;
  klass: number;
  template_ref?: string;
  ms: number;
}

/** A signed delivery receipt the relay has not accepted yet, under the id of the template
 * message it answers (one per message). Its client message id stays the same on every try,
 * so the relay keeps one copy when an earlier try reached it after all. */
interface PendingReceipt {
  id: string;
  business: string;
  client_msg_id: string;
  plaintext: Uint8Array;
  ms: number;
}

/** A failure that passes when the relay is reachable again: keep what waits, try later. */
function transient(error: unknown): boolean {
  if (error instanceof Offline || error instanceof NotConnected || error instanceof TypeError) return true;
  return error instanceof RelayError && (error.code === 130429 || error.code === 131000 || error.status >= 500);
}

/** Hooks the app gives the client for checks that live in other modules. */
export interface Checks {
  /** A template message from a peer: its rendering, or throw with `kind`/`reason`/`report`. */
  template?(frame: MessageFrame, payload: Payload): Promise<unknown>;
  /** Called after a text went to a business (STOP/START keywords). */
  afterText?(chat: string, text: string): Promise<void>;
  /** The operator keys pinned at registration (they sign the key log's epochs). */
  operatorKeys?(): Promise<OperatorKeyRing | null>;
  /** Follow the operator's key rotations. */
  refreshOperatorKeys?(): Promise<void>;
}

export interface MessageFrame {
  id: number;
  message_id: string;
  sender: string;
  sender_device: number;
  klass: number;
  type: number;
  body: Uint8Array;
  server_ms: number;
  template_ref: string | null;
}

export class Refused extends Error {
  constructor(
    readonly kind: string,
    readonly reason: string,
    readonly report: string | null,
  ) {
    super(`${kind}: ${reason}`);
  }
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function entryOf(device: ListedDevice): DeviceEntry {
  return { device_id: device.device_id, curve25519: device.identity_keys.curve25519, ed25519: device.identity_keys.ed25519 };
}

function sessionKey(account: string, device: number): string {
  return `${account}/${device}`;
}

/** One-line preview of a payload for the chat list. */
export function previewOf(payload: Payload | undefined): string {
  if (!payload) return "";
  const p = payload as unknown as Record<string, unknown>;
  switch (payload.t) {
    case "text":
      return String(p["text"] ?? "");
    case "interactive":
      return String(p["body"] ?? "");
    case "interactive_reply":
    case "button_reply":
      return String(p["title"] ?? p["text"] ?? "");
    case "media": {
      const icon = { image: "📷", video: "🎥", audio: "🎤", document: "📄", sticker: "🏷" }[String(p["kind"])] ?? "📎";
      return `${icon} ${String(p["caption"] ?? p["filename"] ?? "")}`.trim();
    }
    case "reaction":
      return String(p["emoji"] ?? "");
    default:
      return "";
  }
}

export class Client {
  readonly api: RelayApi;
  store!: Store;
  me: Me | null = null;
  identity: DeviceIdentity | null = null;
  connection: Connection | null = null;
  checks: Checks = {};
  readonly healing = new Healing(this);

  readonly peers = new Map<string, Peer>();
  readonly messages = new Map<string, Message[]>();
  readonly typing = new Map<string, Typing>();
  /** A line the app shows under a chat's messages (a consent change a keyword made). */
  readonly notices = new Map<string, string>();
  connected = false;
  drained = false;
  offsetMs = 0;
  problem: string | null = null;
  keyLog!: KeyLog;
  /** The key log's last failure, shown until the user has dealt with it. */
  keyLogWarning: KeyLogWarning | null = null;

  private readonly sessions = new Map<string, Session[]>();
  private readonly listeners = new Set<() => void>();
  private inbound: Promise<void> = Promise.resolve();
  private readonly acks: number[] = [];
  private readonly undecryptable: number[] = [];
  private ackScheduled = false;
  private flushing: Promise<void> | null = null;
  private readonly peerLocks = new Map<string, Promise<unknown>>();
  private readonly early = new Map<string, ServerFrame[]>();
  /** Delivery receipts dropped unsent since the app started (too many waited, or the relay
   * refused one for good). */
  receiptsDropped = 0;
  /** How many delivery receipts wait at most (MAX_PENDING_RECEIPTS; smaller in tests). */
  maxPendingReceipts = MAX_PENDING_RECEIPTS;
  private receiptsFlushing: Promise<void> | null = null;
  private receiptsAgain = false;

  constructor(base = "") {
    this.api = new RelayApi(base);
  }

  // --- life cycle ----------------------------------------------------------------------------

  /** Open the local store and, if this browser is a registered device, go online. */
  async open(dbName = "tresen"): Promise<void> {
    this.store = await Store.open(dbName);
    this.keyLog = await KeyLog.load(this.store, {
      ring: async () => (await this.checks.operatorKeys?.()) ?? null,
      refreshRing: async () => {
        await this.checks.refreshOperatorKeys?.();
      },
      consistency: (first, second) => this.api.keyLogConsistency(first, second),
      certificate: (serial) => this.api.certificateInLog(serial),
    });
    const me = await this.store.get<Me>("meta", "me");
    if (!me) return;
    this.me = me;
    this.api.token = me.token;
    this.identity = DeviceIdentity.fromPickle(me.identity, me.pickle_key);
    for (const peer of await this.store.all<Peer>("peers")) this.peers.set(peer.account_id, peer);
    this.goOnline();
    void this.flushReceipts(); // what the last session could not send (again once connected)
  }

  get registered(): boolean {
    return this.me !== null;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed(): void {
    for (const listener of this.listeners) listener();
  }

  private goOnline(): void {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.connection = new Connection(`${scheme}://${location.host}/v1/ws`, () => this.me?.token ?? null, {
      onOpen: () => {
        this.connected = true;
        this.changed();
      },
      onClose: (code) => {
        this.connected = false;
        this.drained = false;
        if (code === 4401 || code === 1008) this.problem = "device_removed";
        this.changed();
      },
      onFrame: (frame) => this.onFrame(frame),
    });
    this.connection.start();
  }

  close(): void {
    this.connection?.stop();
    this.store?.close();
  }

  /** Remove this browser from the account (when the relay still knows it) and delete
   * everything it holds: keys, sessions, messages. */
  async signOut(dbName = "tresen"): Promise<void> {
    const me = this.me;
    if (me && this.problem !== "device_removed") {
      try {
        await this.api.removeDevice(me.device_id);
      } catch (error) {
        if (!(error instanceof RelayError) || error.code !== 190) throw error;
      }
    }
    this.close();
    await Store.erase(dbName);
  }

  // --- registration --------------------------------------------------------------------------

  async requestCode(phone: string): Promise<number> {
    return (await this.api.requestCode(phone)).expires_in_s;
  }

  /** Verify the code; this browser becomes a device of the number's account (a new account,
   * or another device of an existing one). `operatorKey` is the operator key the user saw. */
  async register(phone: string, code: string, deviceName: string, operator: { key: string; fingerprint: string }): Promise<boolean> {
    const verified = await this.api.verify(phone, code, deviceName);
    this.api.token = verified.token;
    const identity = DeviceIdentity.create();
    const me: Me = {
      account_id: verified.account_id,
      device_id: verified.device_id,
      phone: "",
      token: verified.token,
      pickle_key: crypto.getRandomValues(new Uint8Array(32)),
      identity: "",
      operator_key: operator.key,
      operator_fingerprint: operator.fingerprint,
    };
    const keys = identity.generateOneTimeKeys(ONE_TIME_KEYS);
    const fallback = identity.generateFallbackKey();
    const stored = await this.api.putKeys({
      identity_keys: { curve25519: identity.curve25519, ed25519: identity.ed25519 },
      one_time_keys: keys,
      fallback_key: fallback,
    });
    identity.markPublished();
    me.registration_id = stored.registration_id;
    me.phone = (await this.api.me()).phone;
    me.identity = identity.pickle(me.pickle_key);
    await this.store.put("meta", "me", me);
    this.me = me;
    this.identity = identity;
    this.goOnline();
    this.changed();
    return verified.new_account;
  }

  private async saveIdentity(): Promise<Write> {
    const me = this.requireMe();
    me.identity = this.requireIdentity().pickle(me.pickle_key);
    return { store: "meta", id: "me", value: me };
  }

  private requireMe(): Me {
    if (!this.me) throw new Error("this browser is not registered yet");
    return this.me;
  }

  private requireIdentity(): DeviceIdentity {
    if (!this.identity) throw new Error("this browser is not registered yet");
    return this.identity;
  }

  private async replenish(stored: number): Promise<void> {
    const identity = this.requireIdentity();
    const wanted = ONE_TIME_KEYS - stored;
    if (wanted <= 0) return;
    const keys = identity.generateOneTimeKeys(wanted);
    await this.store.write([await this.saveIdentity()]);
    await this.api.putKeys({ one_time_keys: keys });
    identity.markPublished();
    await this.store.write([await this.saveIdentity()]);
  }

  // --- peers ---------------------------------------------------------------------------------

  peer(accountId: string): Peer {
    let peer = this.peers.get(accountId);
    if (!peer) {
      peer = { account_id: accountId, devices: {}, trust: "trusted", unread: 0 };
      this.peers.set(accountId, peer);
    }
    return peer;
  }

  private peerWrite(peer: Peer): Write {
    return { store: "peers", id: peer.account_id, value: peer };
  }

  async savePeer(peer: Peer): Promise<void> {
    await this.store.write([this.peerWrite(peer)]);
  }

  /** The account behind a phone number or an account id; learns number and kind. */
  async resolve(who: string): Promise<string> {
    if (!who.startsWith("+")) return who;
    for (const peer of this.peers.values()) if (peer.phone === who) return peer.account_id;
    const found = await this.api.accountByPhone(who);
    const peer = this.peer(found.account_id);
    peer.phone = found.phone;
    peer.kind = found.kind;
    await this.savePeer(peer);
    return found.account_id;
  }

  async learn(accountId: string): Promise<Peer> {
    const peer = this.peer(accountId);
    if (peer.phone === undefined && accountId !== this.me?.account_id) {
      try {
        const found = await this.api.account(accountId);
        peer.phone = found.phone;
        peer.kind = found.kind;
        await this.savePeer(peer);
      } catch (error) {
        if (!(error instanceof RelayError)) throw error;
      }
    }
    return peer;
  }

  /** The peer's devices that receive our messages, checked against what was pinned. Only
   * what the relay's key log vouches for is pinned; a list it does not vouch for marks the
   * peer `key_transparency` (every peer, when the log's history forked). */
  async devicesOf(accountId: string, refresh = false): Promise<PeerDevice[]> {
    const peer = this.peer(accountId);
    const now = Date.now();
    const fresh = peer.checked_ms !== undefined && now - peer.checked_ms < DEVICE_LIST_MAX_AGE_MS;
    if (!refresh && fresh && Object.keys(peer.devices).length > 0) return this.recipients(peer);
    const askedAt = this.keyLog.epoch;
    const answer = await this.api.keysWithProof(accountId, this.keyLog.since);
    const listed = answer.devices;
    try {
      await this.keyLog.check(accountId, listed.map(entryOf), answer.transparency ?? null, this.ownEntry(accountId), askedAt);
    } catch (error) {
      if (!(error instanceof KeyLogFailure)) throw error;
      // What was pinned stays, unused for sending until the user trusts the keys again.
      peer.checked_ms = now;
      await this.distrust(accountId, error);
      return this.recipients(peer);
    }
    const writes: Write[] = [];
    const seen = new Set<string>();
    for (const device of listed) {
      const id = String(device.device_id);
      seen.add(id);
      const pinned = peer.devices[id];
      const current = this.pinnable(device);
      if (!pinned) peer.devices[id] = current;
      else if (pinned.curve25519 !== current.curve25519 || pinned.ed25519 !== current.ed25519) {
        if (accountId !== this.me?.account_id) peer.trust = "changed";
        else peer.devices[id] = current;
      } else peer.devices[id] = current;
    }
    for (const id of Object.keys(peer.devices)) {
      if (seen.has(id)) continue;
      delete peer.devices[id];
      writes.push(...this.forgetSessions(accountId, Number(id)));
    }
    peer.checked_ms = now;
    writes.push(this.peerWrite(peer));
    await this.store.write(writes);
    if (peer.trust === "changed") this.changed();
    return this.recipients(peer);
  }

  /** This device as the key log must list it, when `accountId` is this account. */
  private ownEntry(accountId: string): DeviceEntry | null {
    const me = this.me;
    if (!me || accountId !== me.account_id || !this.identity) return null;
    return { device_id: me.device_id, curve25519: this.identity.curve25519, ed25519: this.identity.ed25519 };
  }

  /** Stop sending to `accountId` (and, when the log forked, to every peer) until the user
   * trusts their keys again; kept, so a reload keeps refusing. */
  private async distrust(accountId: string, failure: KeyLogFailure): Promise<void> {
    console.warn("the relay's key log does not vouch for keys", accountId, failure.message);
    const me = this.me?.account_id;
    const concerned = failure.forked
      ? [...this.peers.values()].filter((p) => p.account_id === accountId || Object.keys(p.devices).length > 0)
      : [this.peer(accountId)];
    const writes: Write[] = [];
    for (const peer of concerned) {
      if (peer.account_id !== me) peer.trust = "key_transparency";
      if (failure.forked) peer.key_log_forked = true;
      writes.push(this.peerWrite(peer));
    }
    await this.store.write(writes);
    this.keyLogWarning = { account: accountId, reason: failure.message, forked: failure.forked };
    this.changed();
  }

  private pinnable(device: ListedDevice): PeerDevice {
    return {
      device_id: device.device_id,
      registration_id: device.registration_id,
      curve25519: device.identity_keys.curve25519,
      ed25519: device.identity_keys.ed25519,
    };
  }

  private recipients(peer: Peer): PeerDevice[] {
    const all = Object.values(peer.devices);
    if (peer.account_id === this.me?.account_id) return all.filter((d) => d.device_id !== this.me?.device_id);
    return all;
  }

  /** The user compared safety numbers: trust the keys the relay lists now. */
  async trustIdentity(accountId: string): Promise<void> {
    const peer = this.peer(accountId);
    const listed = (await this.api.keysOf(accountId)).devices;
    const writes: Write[] = [];
    const devices: Record<string, PeerDevice> = {};
    for (const device of listed) {
      const current = this.pinnable(device);
      const pinned = peer.devices[String(device.device_id)];
      if (pinned && (pinned.curve25519 !== current.curve25519 || pinned.ed25519 !== current.ed25519)) {
        writes.push(...this.forgetSessions(accountId, device.device_id));
      }
      devices[String(device.device_id)] = current;
    }
    peer.devices = devices;
    peer.trust = "trusted";
    delete peer.key_log_forked;
    if (this.keyLogWarning?.account === accountId) this.keyLogWarning = null;
    peer.checked_ms = Date.now();
    writes.push(this.peerWrite(peer));
    await this.store.write(writes);
    this.changed();
    // What waited for this decision goes out now.
    await this.flush();
    await this.flushReceipts();
  }

  /** That the business certificate `serial` (its signed `body`) of `accountId` is in the
   * relay's key log. One that is not marks the business like keys the log does not vouch
   * for (sending stops, the warning shows) and throws `KeyLogFailure`; `Offline` or a
   * `RelayError` when it could not be checked. */
  async checkCertificateLogged(accountId: string, serial: number, body: Uint8Array): Promise<void> {
    try {
      await this.keyLog.checkCertificate(accountId, serial, body);
    } catch (error) {
      if (error instanceof KeyLogFailure) await this.distrust(accountId, error);
      throw error;
    }
  }

  // --- sessions ------------------------------------------------------------------------------

  /** The sessions with one peer device, the one to use next first. */
  async sessionsOf(account: string, device: number): Promise<Session[]> {
    const key = sessionKey(account, device);
    let list = this.sessions.get(key);
    if (!list) {
      list = [];
      const stored = await this.store.get<{ pickles: string[] }>("sessions", key);
      for (const pickle of stored?.pickles ?? []) {
        try {
          list.push(Session.fromPickle(pickle, this.requireMe().pickle_key));
        } catch {
          // A state that cannot be read back is dropped: the next send starts a new session.
        }
      }
      this.sessions.set(key, list);
    }
    return list;
  }

  sessionWrite(account: string, device: number): Write {
    const key = sessionKey(account, device);
    const list = this.sessions.get(key) ?? [];
    const pickleKey = this.requireMe().pickle_key;
    return { store: "sessions", id: key, value: { pickles: list.slice(0, 4).map((s) => s.pickle(pickleKey)) } };
  }

  private forgetSessions(account: string, device: number): Write[] {
    const key = sessionKey(account, device);
    for (const session of this.sessions.get(key) ?? []) session.free();
    this.sessions.delete(key);
    return [{ store: "sessions", id: key, delete: true }];
  }

  private promote(list: Session[], session: Session): void {
    const at = list.indexOf(session);
    if (at >= 0) list.splice(at, 1);
    list.unshift(session);
  }

  private async ensureSessions(account: string, devices: PeerDevice[]): Promise<void> {
    const without: PeerDevice[] = [];
    for (const device of devices) {
      if ((await this.sessionsOf(account, device.device_id)).length === 0) without.push(device);
    }
    if (without.length > 0) await this.startSessions(account, without);
  }

  /** A new session with one peer device from a freshly claimed key, used next from now on
   * (to heal a session the peer lost, §8.6). */
  async startSession(account: string, deviceId: number): Promise<void> {
    let device = this.peer(account).devices[String(deviceId)];
    if (!device) {
      await this.devicesOf(account, true);
      device = this.peer(account).devices[String(deviceId)];
    }
    if (!device) throw new Error("the sending device is not in the relay's directory");
    await this.startSessions(account, [device]);
  }

  private async startSessions(account: string, without: PeerDevice[]): Promise<void> {
    const claimed = await this.api.claim(account, without.map((d) => d.device_id));
    const pinned = new Map(without.map((d) => [d.device_id, d]));
    const writes: Write[] = [];
    for (const device of claimed.devices) {
      const expected = pinned.get(device.device_id);
      const key = device.one_time_key;
      if (!expected || !key) continue;
      // The key must be signed by the identity we pinned, not merely by whoever answers.
      const message = signedKeyMessage(key.key_id, key.public_key, key.fallback);
      if (!(await verifyEd25519(expected.ed25519, message, key.signature))) {
        throw new Refused("bad_key_signature", `device ${device.device_id}'s key is not signed by its identity`, null);
      }
      const session = this.requireIdentity().createOutboundSession(expected.curve25519, key.public_key);
      this.promote(await this.sessionsOf(account, device.device_id), session);
      writes.push(this.sessionWrite(account, device.device_id));
    }
    await this.store.write(writes);
  }

  private async decrypt(
    frame: MessageFrame,
  ): Promise<{ plaintext: Uint8Array; session: Session; fresh: boolean }> {
    const message: Ciphertext = { type: frame.type, body: frame.body };
    const list = await this.sessionsOf(frame.sender, frame.sender_device);
    let device: PeerDevice | undefined;
    if (frame.type === 0) {
      device = this.peer(frame.sender).devices[String(frame.sender_device)];
      if (!device) {
        await this.devicesOf(frame.sender, true);
        device = this.peer(frame.sender).devices[String(frame.sender_device)];
      }
    }
    for (const session of list) {
      if (frame.type === 0 && device && !session.matchesInbound(device.curve25519, message)) continue;
      try {
        const plaintext = session.decrypt(message);
        this.promote(list, session);
        return { plaintext, session, fresh: false };
      } catch {
        // the next session may be the right one
      }
    }
    if (frame.type !== 0) throw new Error("no session can decrypt this message");
    if (!device) throw new Error("the sending device is unknown");
    const { session, plaintext } = this.requireIdentity().createInboundSession(device.curve25519, message);
    this.promote(list, session);
    return { plaintext, session, fresh: true };
  }

  // --- sending -------------------------------------------------------------------------------

  private async locked<T>(key: string, work: () => Promise<T>): Promise<T> {
    const before = this.peerLocks.get(key) ?? Promise.resolve();
    const run = before.then(work, work);
    this.peerLocks.set(key, run.catch(() => undefined));
    return run;
  }

  /** Encrypt for each device of `account` and hand to the relay; once again after the relay
   * said the device list changed. */
  async deliver(
    account: string,
    plaintext: Uint8Array,
    clientMsgId: string,
    klass: number,
    templateRef: string | null = null,
  ): Promise<ServerFrame | null> {
    const own = account === this.me?.account_id;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const copies = await this.locked(account, async () => {
        const devices = await this.devicesOf(account, attempt > 0);
        const trust = this.peer(account).trust;
        if (!own && trust !== "trusted") throw new IdentityNotTrusted(account, trust);
        if (devices.length === 0) return null;
        await this.ensureSessions(account, devices);
        const out: { device_id: number; type: number; body: Uint8Array; registration_id: number }[] = [];
        const writes: Write[] = [];
        for (const device of devices) {
          const [session] = await this.sessionsOf(account, device.device_id);
          if (!session) continue;
          const ciphertext = session.encrypt(plaintext);
          writes.push(this.sessionWrite(account, device.device_id));
          out.push({ device_id: device.device_id, type: ciphertext.type, body: ciphertext.body, registration_id: device.registration_id });
        }
        // The ratchet moved: keep its state before the ciphertext leaves.
        await this.store.write(writes);
        return out;
      });
      if (copies === null) {
        if (own) return null;
        throw new RelayError(131026, "the recipient has no devices");
      }
      try {
        return await this.submit({ client_msg_id: clientMsgId, to: account, klass, template_ref: templateRef, per_device: copies });
      } catch (error) {
        if (!(error instanceof RelayError) || error.code !== 150003 || attempt > 0) throw error;
        const details = error.details as { extra?: number[]; stale?: number[] };
        const writes: Write[] = [];
        for (const id of [...(details.extra ?? []), ...(details.stale ?? [])]) writes.push(...this.forgetSessions(account, id));
        await this.store.write(writes);
      }
    }
    throw new Error("unreachable");
  }

  private async submit(frame: {
    client_msg_id: string;
    to: string;
    klass: number;
    template_ref: string | null;
    per_device: { device_id: number; type: number; body: Uint8Array; registration_id: number }[];
  }): Promise<ServerFrame> {
    if (this.connection?.connected) {
      try {
        return await this.connection.request({ t: "send", ...frame });
      } catch (error) {
        if (!(error instanceof NotConnected)) throw error;
      }
    }
    const answer = await this.api.send({
      client_msg_id: frame.client_msg_id,
      to: frame.to,
      class: KLASS_NAMES[frame.klass] ?? "session",
      template_ref: frame.template_ref,
      per_device: frame.per_device,
    });
    return { t: "accepted", ...answer };
  }

  /** A system message (transcript, receipt, typing, retry request): no price, nothing kept. */
  async deliverSystem(account: string, plaintext: Uint8Array): Promise<void> {
    await this.deliver(account, plaintext, randomHex(16), SYSTEM);
  }

  /** Send a chat message: kept as pending (⏱) at once, sent now or when the relay can be
   * reached again. */
  async send(to: string, payload: KnownPayload, klass = SESSION): Promise<Message> {
    const me = this.requireMe();
    const chat = await this.resolve(to);
    if (chat === me.account_id) throw new RelayError(131009, "a chat needs someone else on the other side");
    const framed = encodePayload(payload);
    const clientMsgId = randomHex(16);
    const message: Message = {
      id: LOCAL_PREFIX + clientMsgId,
      chat,
      outgoing: true,
      sender: me.account_id,
      sender_device: me.device_id,
      client_msg_id: clientMsgId,
      payload: framed,
      status: "pending",
      ms: Date.now() - this.offsetMs,
      klass,
    };
    const queued: Queued = { id: message.id, chat, klass, ms: message.ms };
    const peer = this.peer(chat);
    this.touch(peer, message);
    await this.store.write([
      { store: "messages", id: message.id, value: message, chat, ms: message.ms },
      { store: "outbox", id: queued.id, value: queued, ms: queued.ms },
      this.peerWrite(peer),
    ]);
    this.add(message);
    await this.flush();
    return this.find(chat, clientMsgId) ?? message;
  }

  async sendText(to: string, text: string, quoting?: Message): Promise<Message> {
    const payload: Text = { t: "text", text };
    if (quoting) payload.context = { message_id: quoting.id, sender: quoting.sender };
    const sent = await this.send(to, payload);
    await this.checks.afterText?.(sent.chat, text);
    return sent;
  }

  /** Answer an interactive message (reply button or list row) or a template's quick reply. */
  /** React to a message with an emoji; "" takes this user's reaction back. */
  async react(chat: string, message: Message, emoji: string): Promise<Message> {
    return this.send(chat, { t: "reaction", message_id: message.id, emoji });
  }

  async answer(
    chat: string,
    message: Message,
    option: { id: string; title: string; description?: string },
  ): Promise<Message> {
    const asked = this.payloadOf(message);
    const reply: InteractiveReply = {
      t: "interactive_reply",
      kind: asked?.t === "interactive" && asked.type === "list" ? "list_reply" : "button_reply",
      message_id: message.id,
      id: option.id,
      title: option.title,
    };
    if (option.description) reply.description = option.description;
    return this.send(chat, reply);
  }

  /** Tap a QUICK_REPLY button of a template message. */
  async tapQuickReply(chat: string, message: Message, payload: string, text: string): Promise<Message> {
    return this.send(chat, { t: "button_reply", message_id: message.id, payload, text });
  }

  async block(accountId: string): Promise<void> {
    await this.api.block(accountId);
    const peer = this.peer(accountId);
    peer.blocked = true;
    await this.savePeer(peer);
    this.changed();
  }

  async unblock(accountId: string): Promise<void> {
    await this.api.unblock(accountId);
    const peer = this.peer(accountId);
    peer.blocked = false;
    await this.savePeer(peer);
    this.changed();
  }

  async report(accountId: string, reason: string, block: boolean, messageId: string | null = null): Promise<void> {
    await this.api.report(accountId, reason, messageId, "", block);
    if (block) {
      const peer = this.peer(accountId);
      peer.blocked = true;
      await this.savePeer(peer);
      this.changed();
    }
  }

  private find(chat: string, clientMsgId: string): Message | undefined {
    return this.messages.get(chat)?.find((m) => m.client_msg_id === clientMsgId);
  }

  pendingCount(): number {
    let n = 0;
    for (const list of this.messages.values()) n += list.filter((m) => m.status === "pending").length;
    return n;
  }

  /** Send what waits in the outbox, oldest first, each with its own client message id (the
   * relay answers a send it already holds as a duplicate). Stops while the relay is away. */
  flush(): Promise<void> {
    if (!this.flushing) {
      this.flushing = this.flushOnce().finally(() => {
        this.flushing = null;
      });
    }
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    const queued = (await this.store.all<Queued>("outbox")).sort((a, b) => a.ms - b.ms);
    const held = new Set<string>();
    for (const entry of queued) {
      if (held.has(entry.chat)) continue;
      const message = await this.store.get<Message>("messages", entry.id);
      if (!message?.payload || !message.client_msg_id) {
        await this.store.delete("outbox", entry.id);
        continue;
      }
      let accepted: ServerFrame | null;
      try {
        accepted = await this.deliver(entry.chat, message.payload, message.client_msg_id, entry.klass, entry.template_ref ?? null);
      } catch (error) {
        if (error instanceof IdentityNotTrusted) {
          held.add(entry.chat);
          continue;
        }
        if (transient(error)) return;
        const code = error instanceof RelayError ? error.code : 0;
        const failed: Message = { ...message, status: "failed", error: error instanceof Error ? error.message : String(error), error_code: code };
        await this.store.write([
          { store: "outbox", id: entry.id, delete: true },
          { store: "messages", id: failed.id, value: failed, chat: failed.chat, ms: failed.ms },
        ]);
        this.replace(entry.id, failed);
        continue;
      }
      if (!accepted) continue;
      await this.sent(entry.id, message, accepted);
    }
  }

  private async sent(localId: string, message: Message, accepted: ServerFrame): Promise<void> {
    const me = this.requireMe();
    const messageId = String(accepted["message_id"]);
    const serverMs = Number(accepted["server_ms"]);
    const kept: Message = { ...message, id: messageId, status: "sent", ms: serverMs };
    const peer = this.peer(message.chat);
    this.touch(peer, kept);
    await this.store.write([
      { store: "outbox", id: localId, delete: true },
      { store: "messages", id: localId, delete: true },
      { store: "messages", id: messageId, value: kept, chat: kept.chat, ms: kept.ms },
      this.peerWrite(peer),
    ]);
    this.replace(localId, kept);
    await this.applyEarly(messageId);
    const transcript: SentTranscript = {
      t: "sent_transcript",
      to: message.chat,
      message_id: messageId,
      client_msg_id: message.client_msg_id ?? "",
      server_ms: serverMs,
      payload: message.payload ?? new Uint8Array(),
    };
    try {
      await this.deliverSystem(me.account_id, encodePayload(transcript));
    } catch {
      // The other devices of this account miss this one line; the chat goes on.
    }
  }

  async deletePending(localId: string): Promise<void> {
    const message = await this.store.get<Message>("messages", localId);
    if (!message || message.status !== "pending") return;
    await this.store.write([
      { store: "outbox", id: localId, delete: true },
      { store: "messages", id: localId, delete: true },
    ]);
    const list = this.messages.get(message.chat);
    if (list) this.messages.set(message.chat, list.filter((m) => m.id !== localId));
    this.changed();
  }

  /** Tell the peer this user is typing an answer (class SYSTEM, never stored). */
  async sendTyping(chat: string): Promise<void> {
    const last = [...(this.messages.get(chat) ?? [])].reverse().find((m) => !m.outgoing);
    if (!last || this.peer(chat).trust !== "trusted") return;
    await this.deliverSystem(chat, encodePayload({ t: "typing", message_id: last.id }));
  }

  /** The user has seen the chat: receipts to the sender, and to this account's devices. */
  async markRead(chat: string): Promise<void> {
    const list = this.messages.get(chat) ?? [];
    const unseen = list.filter((m) => !m.outgoing && m.status === "received");
    const peer = this.peer(chat);
    if (unseen.length === 0 && peer.unread === 0) return;
    peer.unread = 0;
    for (let i = 0; i < unseen.length; i += 256) {
      const chunk = unseen.slice(i, i + 256);
      const ids = chunk.map((m) => m.id);
      if (!this.connection?.post({ t: "receipt", message_ids: ids })) await this.api.receipts(ids);
      const writes: Write[] = chunk.map((m) => {
        m.status = "seen";
        return { store: "messages", id: m.id, value: m, chat: m.chat, ms: m.ms };
      });
      writes.push(this.peerWrite(peer));
      await this.store.write(writes);
      try {
        await this.deliverSystem(this.requireMe().account_id, encodePayload({ t: "read_receipt", message_ids: ids }));
      } catch {
        // other devices keep showing these as unread
      }
    }
    await this.savePeer(peer);
    this.changed();
  }

  // --- receiving -----------------------------------------------------------------------------

  private onFrame(frame: ServerFrame): void {
    switch (frame.t) {
      case "hello":
        this.offsetMs = Number(frame["server_ms"]) - Date.now();
        this.problem = null;
        void this.afterHello(Number(frame["one_time_keys"]));
        return;
      case "keys_low":
        void this.replenish(Number(frame["one_time_keys"])).catch(() => undefined);
        return;
      case "queue_empty":
        this.inbound = this.inbound.then(() => {
          this.drained = true;
          this.changed();
        });
        return;
      case "message":
        this.serial(() => this.onMessage(frame as unknown as MessageFrame));
        return;
      case "delivered":
      case "read":
      case "failed":
        this.serial(() => this.onReport(frame));
        return;
      default:
        return;
    }
  }

  private serial(work: () => Promise<void>): void {
    this.inbound = this.inbound.then(work).catch((error: unknown) => {
      console.warn("a frame could not be handled", error);
    });
  }

  private async afterHello(oneTimeKeys: number): Promise<void> {
    this.changed();
    try {
      if (oneTimeKeys < 10) await this.replenish(oneTimeKeys);
    } catch {
      // again at the next keys_low
    }
    await this.flush();
    await this.flushReceipts();
    await this.healing.requestMissing();
  }

  private ack(id: number, undecryptable = false): void {
    this.acks.push(id);
    if (undecryptable) this.undecryptable.push(id);
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    queueMicrotask(() => {
      this.inbound = this.inbound.then(() => this.sendAcks());
    });
  }

  private async sendAcks(): Promise<void> {
    this.ackScheduled = false;
    while (this.acks.length > 0) {
      const ids = this.acks.splice(0, ACK_BATCH);
      const bad = this.undecryptable.filter((id) => ids.includes(id));
      this.connection?.post(bad.length ? { t: "ack", ids, undecryptable: bad } : { t: "ack", ids });
    }
    this.undecryptable.length = 0;
  }

  private async onMessage(frame: MessageFrame): Promise<void> {
    const me = this.requireMe();
    const existing = await this.store.get<Message>("messages", frame.message_id);
    if (existing && !(existing.status === "waiting" && !existing.outgoing)) {
      this.ack(frame.id);
      return;
    }
    const own = frame.sender === me.account_id;
    if (!own) await this.learn(frame.sender);
    let decrypted: { plaintext: Uint8Array; session: Session; fresh: boolean };
    try {
      decrypted = await this.decrypt(frame);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (frame.klass !== SYSTEM) {
        await this.healing.unreadable(frame, `could not be decrypted: ${reason}`);
      } else {
        // A typing indicator or a retry request: nobody could send it again.
        await this.record(frame, "failed", { chat: "", error: reason });
      }
      this.ack(frame.id, true);
      return;
    }
    const decryptedMs = Date.now();
    if (!decrypted.fresh) this.healing.read(frame.sender, frame.sender_device);
    const writes: Write[] = [this.sessionWrite(frame.sender, frame.sender_device)];
    if (decrypted.fresh) writes.push(await this.saveIdentity());
    let payload: Payload;
    try {
      payload = decodePayload(decrypted.plaintext);
    } catch (error) {
      await this.store.write(writes);
      const reason = error instanceof InvalidPayload ? error.message : String(error);
      await this.record(frame, "failed", { error: `undecodable payload: ${reason}` });
      this.ack(frame.id);
      return;
    }
    try {
      await this.accept(frame, payload, decrypted.plaintext, writes, decryptedMs);
    } catch (error) {
      if (!(error instanceof Refused)) throw error;
      await this.store.write(writes);
      await this.record(frame, "failed", { error: error.message });
      if (error.report) {
        try {
          await this.api.report(frame.sender, error.report, frame.message_id, (error.report === error.kind ? error.reason : error.message).slice(0, 512));
        } catch {
          // the refusal stands whether the report goes through or not
        }
      }
    }
    this.ack(frame.id);
  }

  private async accept(frame: MessageFrame, payload: Payload, raw: Uint8Array, writes: Write[], decryptedMs: number): Promise<void> {
    const me = this.requireMe();
    const own = frame.sender === me.account_id;
    const p = payload as unknown as Record<string, unknown>;
    const system = ["typing", "retry", "retry_refused", "unsupported"];
    if (!own && frame.klass === SYSTEM && !system.includes(payload.t)) {
      throw new Refused("class_mismatch", `a message of class system carries a ${payload.t} payload, not a typing indicator or a retry request`, "other");
    }
    if (own && payload.t === "sent_transcript") {
      const transcript = payload as SentTranscript;
      const message: Message = {
        id: transcript.message_id,
        chat: transcript.to,
        outgoing: true,
        sender: frame.sender,
        sender_device: frame.sender_device,
        client_msg_id: transcript.client_msg_id,
        payload: transcript.payload,
        status: "sent",
        ms: transcript.server_ms,
      };
      await this.learn(transcript.to);
      const peer = this.peer(transcript.to);
      this.touch(peer, message);
      writes.push(
        { store: "messages", id: message.id, value: message, chat: message.chat, ms: message.ms },
        this.hidden(frame),
        this.peerWrite(peer),
      );
      await this.store.write(writes);
      this.add(message);
      await this.applyEarly(message.id);
      return;
    }
    if (own && payload.t === "read_receipt") {
      const ids = (p["message_ids"] as string[]) ?? [];
      const touched: Set<string> = new Set();
      for (const list of this.messages.values()) {
        for (const m of list) {
          if (!m.outgoing && ids.includes(m.id) && m.status === "received") {
            m.status = "seen";
            touched.add(m.chat);
            writes.push({ store: "messages", id: m.id, value: m, chat: m.chat, ms: m.ms });
          }
        }
      }
      for (const chat of touched) {
        const peer = this.peer(chat);
        peer.unread = (this.messages.get(chat) ?? []).filter((m) => !m.outgoing && m.status === "received").length;
        writes.push(this.peerWrite(peer));
      }
      writes.push(this.hidden(frame));
      await this.store.write(writes);
      this.changed();
      return;
    }
    if (payload.t === "retry" || payload.t === "retry_refused") {
      writes.push(this.hidden(frame));
      await this.store.write(writes);
      if (payload.t === "retry") await this.healing.asked(frame.sender, frame.sender_device, payload);
      else await this.healing.refused(frame.sender, frame.sender_device, payload);
      return;
    }
    if (payload.t === "delivery_receipt") {
      // For businesses; a customer's app has nothing to show for one.
      writes.push(this.hidden(frame));
      await this.store.write(writes);
      return;
    }
    if (payload.t === "typing" || frame.klass === SYSTEM) {
      writes.push(this.hidden(frame));
      await this.store.write(writes);
      if (payload.t === "typing" && !own) {
        const age = Math.max(0, Date.now() + this.offsetMs - frame.server_ms);
        if (age < TYPING_MS) {
          this.typing.set(frame.sender, { chat: frame.sender, until: Date.now() + TYPING_MS - age });
          this.changed();
        }
      }
      return;
    }
    let rendered: unknown;
    const templated = !own && (frame.klass === TEMPLATE || payload.t === "template");
    if (templated) {
      if (!this.checks.template) throw new Refused("template_unavailable", "templates cannot be checked here", null);
      rendered = await this.checks.template(frame, payload);
    }
    const message: Message = {
      id: frame.message_id,
      chat: frame.sender,
      outgoing: false,
      sender: frame.sender,
      sender_device: frame.sender_device,
      payload: raw,
      status: "received",
      ms: frame.server_ms,
      klass: frame.klass,
    };
    if (frame.template_ref) message.template_ref = frame.template_ref;
    if (rendered !== undefined) message.rendered = rendered;
    const peer = this.peer(frame.sender);
    peer.unread += 1;
    this.touch(peer, message);
    this.typing.delete(frame.sender);
    writes.push({ store: "messages", id: message.id, value: message, chat: message.chat, ms: message.ms }, this.peerWrite(peer));
    const receipt = templated && payload.t === "template";
    // The receipt is kept with the message, in one transaction: no accepted template message
    // without its receipt on the way, whatever happens to the tab next.
    if (receipt) writes.push(...(await this.deliveryReceipt(frame, payload.template_id, decryptedMs)));
    await this.store.write(writes);
    this.add(message);
    this.notify(peer, message);
    if (receipt) void this.flushReceipts();
  }

  /** The writes that keep a receipt telling the business, end to end and signed by this
   * device, that its template message arrived and passed the template checks (class receipt:
   * no price, no window); the oldest kept receipts make room beyond `maxPendingReceipts`. */
  private async deliveryReceipt(frame: MessageFrame, templateId: string, deliveredMs: number): Promise<Write[]> {
    const me = this.requireMe();
    const receipt: DeliveryReceipt = {
      t: "delivery_receipt",
      message_id: frame.message_id,
      template_id: templateId,
      delivered_ms: deliveredMs,
      signature: signDelivery(this.requireIdentity(), {
        message_id: frame.message_id,
        business: frame.sender,
        customer: me.account_id,
        device_id: me.device_id,
        template_id: templateId,
        delivered_ms: deliveredMs,
      }),
    };
    const pending: PendingReceipt = {
      id: frame.message_id,
      business: frame.sender,
      client_msg_id: randomHex(16),
      plaintext: encodePayload(receipt),
      ms: deliveredMs,
    };
    const writes: Write[] = [{ store: "receipts", id: pending.id, value: pending, ms: pending.ms }];
    const waiting = await this.store.count("receipts");
    if (waiting >= this.maxPendingReceipts) {
      const dropped = await this.store.oldestIds("receipts", waiting - this.maxPendingReceipts + 1);
      for (const id of dropped) writes.push({ store: "receipts", id, delete: true });
      this.receiptsDropped += dropped.length;
      console.warn(`${dropped.length} delivery receipt(s) dropped unsent: ${this.maxPendingReceipts} wait already`);
    }
    return writes;
  }

  /** Send the delivery receipts the relay has not accepted yet, oldest first; each is deleted
   * once the relay took it. Stops while the relay is away (again at the next connection);
   * a business whose keys wait for the user's decision keeps its receipts until then. */
  flushReceipts(): Promise<void> {
    if (this.receiptsFlushing) {
      this.receiptsAgain = true;
      return this.receiptsFlushing;
    }
    this.receiptsFlushing = (async () => {
      try {
        // A call during a pass gets a pass of its own: the relay may be back, or a receipt new.
        do {
          this.receiptsAgain = false;
          await this.sendReceipts();
        } while (this.receiptsAgain);
      } catch (error) {
        // The store closed under it (the tab signs out or closes): what waits stays kept.
        console.warn("delivery receipts could not be sent now", error);
      }
    })().finally(() => {
      this.receiptsFlushing = null;
    });
    return this.receiptsFlushing;
  }

  /** One pass over the kept receipts, until the relay cannot be reached. */
  private async sendReceipts(): Promise<void> {
    if (!this.me) return;
    const pending = (await this.store.all<PendingReceipt>("receipts", this.maxPendingReceipts + 1)).sort((a, b) => a.ms - b.ms);
    const held = new Set<string>();
    for (const receipt of pending) {
      if (held.has(receipt.business)) continue;
      try {
        await this.deliver(receipt.business, receipt.plaintext, receipt.client_msg_id, RECEIPT);
      } catch (error) {
        if (transient(error)) return;
        if (!(error instanceof RelayError) || error.code === 131026) {
          // Keys to decide on, no device to receive it yet: later, with the business's next turn.
          held.add(receipt.business);
          continue;
        }
        // Refused for good (the business is gone): nobody can take it.
        this.receiptsDropped += 1;
        console.warn("a delivery receipt was refused", receipt.id, error.message);
      }
      await this.store.delete("receipts", receipt.id);
    }
  }

  /** A received message that cannot be shown (yet): waiting to be sent again, or failed. */
  async recordIncoming(frame: MessageFrame, status: Status, error: string): Promise<void> {
    await this.record(frame, status, { error });
  }

  /** Change a kept message's status (and error), and show it. */
  async setStatus(message: Message, status: Status, error?: string): Promise<void> {
    message.status = status;
    if (error !== undefined) message.error = error;
    await this.store.write([{ store: "messages", id: message.id, value: message, chat: message.chat, ms: message.ms }]);
    this.replace(message.id, message);
  }

  /** Encrypt a message this browser sent again, for one device of its recipient, over the
   * session used next with it (the new one its retry request arrived on). */
  async resend(message: Message, account: string, deviceId: number): Promise<void> {
    if (!message.payload) throw new Error("nothing kept to send again");
    const device = this.peer(account).devices[String(deviceId)];
    const [session] = await this.sessionsOf(account, deviceId);
    if (!device || !session) {
      await this.setStatus(message, "failed", "the recipient's device is gone");
      return;
    }
    const ciphertext = session.encrypt(message.payload);
    await this.store.write([this.sessionWrite(account, deviceId)]);
    const frame = {
      client_msg_id: randomHex(16),
      message_id: message.id,
      device_id: deviceId,
      type: ciphertext.type,
      body: ciphertext.body,
      registration_id: device.registration_id,
    };
    if (this.connection?.connected) {
      try {
        await this.connection.request({ t: "resend", ...frame });
        return;
      } catch (error) {
        if (!(error instanceof NotConnected)) throw error;
      }
    }
    await this.api.resend(frame);
  }

  /** A relay message handled but not shown (transcripts, receipts, typing): kept under its id
   * so that a redelivery is not decrypted again. */
  private hidden(frame: MessageFrame): Write {
    return { store: "messages", id: frame.message_id, value: { id: frame.message_id, chat: "", status: "seen" }, chat: "", ms: frame.server_ms };
  }

  private async record(frame: MessageFrame, status: Status, extra: { chat?: string; error?: string }): Promise<void> {
    const chat = extra.chat ?? frame.sender;
    const message: Message = {
      id: frame.message_id,
      chat,
      outgoing: false,
      sender: frame.sender,
      sender_device: frame.sender_device,
      status,
      ms: frame.server_ms,
    };
    if (extra.error) message.error = extra.error;
    const writes: Write[] = [{ store: "messages", id: message.id, value: message, chat, ms: message.ms }];
    if (chat) {
      // Shown in its chat (as refused or unreadable), so the chat is listed.
      const peer = this.peer(chat);
      this.touch(peer, message);
      writes.push(this.peerWrite(peer));
    }
    await this.store.write(writes);
    if (chat) this.add(message);
  }

  private async onReport(frame: ServerFrame): Promise<void> {
    const id = Number(frame["id"]);
    const messageId = String(frame["message_id"]);
    const message = await this.store.get<Message>("messages", messageId);
    if (!message || !message.outgoing) {
      const list = this.early.get(messageId) ?? [];
      list.push(frame);
      if (this.early.size < 10_000) this.early.set(messageId, list);
      this.ack(id);
      return;
    }
    await this.applyReport(message, frame);
    this.ack(id);
  }

  private async applyEarly(messageId: string): Promise<void> {
    const frames = this.early.get(messageId);
    if (!frames) return;
    this.early.delete(messageId);
    const message = await this.store.get<Message>("messages", messageId);
    if (!message) return;
    const order = ["delivered", "read", "failed"];
    for (const frame of frames.sort((a, b) => order.indexOf(a.t) - order.indexOf(b.t))) await this.applyReport(message, frame);
  }

  private async applyReport(message: Message, frame: ServerFrame): Promise<void> {
    if (frame.t === "failed") {
      if (message.status !== "sent" && message.status !== "pending" && message.status !== "waiting") return;
      message.status = "failed";
      message.error = String(frame["reason"] ?? "not delivered");
      message.error_code = Number(frame["code"]);
    } else {
      const status = frame.t as Status;
      if ((ORDER[status] ?? 0) <= (ORDER[message.status] ?? 9)) return;
      message.status = status;
    }
    await this.store.write([{ store: "messages", id: message.id, value: message, chat: message.chat, ms: message.ms }]);
    this.replace(message.id, message);
  }

  // --- what the UI reads ---------------------------------------------------------------------

  chats(): Peer[] {
    return [...this.peers.values()]
      .filter((p) => p.last_ms !== undefined && p.account_id !== this.me?.account_id)
      .sort((a, b) => (b.last_ms ?? 0) - (a.last_ms ?? 0));
  }

  async load(chat: string): Promise<Message[]> {
    if (!this.messages.has(chat)) {
      const stored = await this.store.chatMessages<Message>(chat, PAGE);
      const live = this.messages.get(chat) ?? [];
      const ids = new Set(stored.map((m) => m.id));
      this.messages.set(chat, [...stored, ...live.filter((m) => !ids.has(m.id))].sort((a, b) => a.ms - b.ms));
    }
    return this.messages.get(chat) ?? [];
  }

  private touch(peer: Peer, message: Message): void {
    if (peer.last_ms === undefined || message.ms >= peer.last_ms) {
      peer.last_ms = message.ms;
      const rendered = message.rendered as { body?: string } | undefined;
      peer.preview = rendered?.body ? rendered.body.slice(0, 120) : this.safePreview(message);
    }
  }

  private safePreview(message: Message): string {
    if (!message.payload) return "";
    try {
      return previewOf(decodePayload(message.payload)).slice(0, 120);
    } catch {
      return "";
    }
  }

  private add(message: Message): void {
    const list = this.messages.get(message.chat);
    if (list) {
      const at = list.findIndex((m) => m.id === message.id);
      if (at >= 0) list[at] = message;
      else {
        list.push(message);
        list.sort((a, b) => a.ms - b.ms);
      }
    }
    this.changed();
  }

  private replace(oldId: string, message: Message): void {
    const list = this.messages.get(message.chat);
    if (list) {
      const at = list.findIndex((m) => m.id === oldId || m.id === message.id);
      if (at >= 0) list[at] = message;
      else list.push(message);
      list.sort((a, b) => a.ms - b.ms);
    }
    this.changed();
  }

  onIncoming: ((peer: Peer, message: Message) => void) | null = null;

  private notify(peer: Peer, message: Message): void {
    this.onIncoming?.(peer, message);
  }

  payloadOf(message: Message): Payload | null {
    if (!message.payload) return null;
    try {
      return decodePayload(message.payload);
    } catch {
      return null;
    }
  }

  fingerprintOf(): string {
    return this.me?.operator_fingerprint ?? "";
  }

  identityKeyBase64(): string {
    return this.identity?.ed25519 ?? "";
  }

  static base64(bytes: Uint8Array): string {
    return toBase64(bytes);
  }
}
