// The relay's HTTP API (docs/protocol.md), same origin as the app.

import { fromBase64, toBase64 } from "../wire/base64";

export class RelayError extends Error {
  override name = "RelayError";
  constructor(
    readonly code: number,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly status = 0,
  ) {
    super(message);
  }
}

/** The relay could not be reached (no network, the relay is down). */
export class Offline extends Error {
  override name = "Offline";
}

export interface IdentityKeys {
  curve25519: string;
  ed25519: string;
}

export interface ListedDevice {
  device_id: number;
  registration_id: number;
  identity_keys: IdentityKeys;
}

export interface ClaimedKey {
  key_id: string;
  public_key: string;
  signature: string;
  fallback: boolean;
}

export interface ClaimedDevice extends ListedDevice {
  one_time_key: ClaimedKey | null;
}

export interface Verified {
  account_id: string;
  device_id: number;
  token: string;
  new_account: boolean;
}

export interface AccountInfo {
  account_id: string;
  phone: string;
  kind: "customer" | "business";
}

export interface SignedBlob {
  body: string;
  signature: string;
}

export interface BusinessPublic {
  account_id: string;
  display_name: string;
  about?: string | null;
  description?: string | null;
  address?: string | null;
  email?: string | null;
  websites?: string[];
  category?: string | null;
  timezone?: string | null;
  hours?: Record<string, [string, string][]> | null;
  closed_dates?: string[];
  open_now?: boolean | null;
  next_change_ms?: number | null;
  verification?: string;
  certificate?: SignedBlob | null;
  has_picture?: boolean;
  [key: string]: unknown;
}

export interface Envelope {
  id: number;
  kind: "message" | "delivered" | "read" | "failed";
  message_id: string;
  peer: string;
  peer_device: number;
  class: string;
  type: number | null;
  body: string | null;
  server_ms: number;
  template_ref?: string | null;
  code?: number | null;
  reason?: string | null;
}

const MAX_ERROR_TEXT = 200;

export class RelayApi {
  token: string | null = null;

  constructor(readonly base = "") {}

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    options: { auth?: boolean; raw?: BodyInit; contentType?: string; headers?: Record<string, string> } = {},
  ): Promise<T> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.auth !== false && this.token) headers["Authorization"] = `Bearer ${this.token}`;
    let payload: BodyInit | undefined;
    if (options.raw !== undefined) {
      payload = options.raw;
      if (options.contentType) headers["Content-Type"] = options.contentType;
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    let response: Response;
    try {
      response = await fetch(this.base + path, { method, headers, body: payload ?? null });
    } catch (error) {
      throw new Offline(`the relay cannot be reached: ${String(error)}`);
    }
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (!response.ok) throw refusal(response.status, parsed, text);
    return parsed as T;
  }

  // --- registration and devices ------------------------------------------------------------

  requestCode(phone: string): Promise<{ expires_in_s: number }> {
    return this.request("POST", "/v1/registration/code", { phone }, { auth: false });
  }

  verify(phone: string, code: string, deviceName: string): Promise<Verified> {
    return this.request(
      "POST",
      "/v1/registration/verify",
      { phone, code, device_name: deviceName },
      { auth: false },
    );
  }

  me(): Promise<{ account_id: string; device_id: number; phone: string }> {
    return this.request("GET", "/v1/me");
  }

  devices(): Promise<
    { device_id: number; name: string | null; created_ms: number; last_seen_ms: number; identity_ed25519: string | null }[]
  > {
    return this.request("GET", "/v1/devices");
  }

  removeDevice(deviceId: number): Promise<void> {
    return this.request("DELETE", `/v1/devices/${deviceId}`);
  }

  // --- keys ---------------------------------------------------------------------------------

  putKeys(body: {
    identity_keys?: IdentityKeys;
    one_time_keys?: { key_id: string; public_key: string; signature: string }[];
    fallback_key?: { key_id: string; public_key: string; signature: string };
  }): Promise<{ one_time_keys: number; max_one_time_keys: number; registration_id: number }> {
    return this.request("PUT", "/v1/keys", body);
  }

  keyCount(): Promise<{ one_time_keys: number; max_one_time_keys: number; low: boolean }> {
    return this.request("GET", "/v1/keys/count");
  }

  keysOf(accountId: string): Promise<{ account_id: string; devices: ListedDevice[] }> {
    return this.request("GET", `/v1/keys/${encodeURIComponent(accountId)}`);
  }

  /** The account's devices with the key log's proofs of them (`transparency`, null when the
   * relay keeps no log), with a consistency proof from the log size `since`. */
  keysWithProof(accountId: string, since: number | null): Promise<{ account_id: string; devices: ListedDevice[]; transparency?: unknown }> {
    const q = new URLSearchParams({ transparency: "true" });
    if (since !== null) q.set("transparency_since", String(since));
    return this.request("GET", `/v1/keys/${encodeURIComponent(accountId)}?${q.toString()}`);
  }

  /** The RFC 9162 consistency proof between the key log's sizes `first` and `second`. */
  async keyLogConsistency(first: number, second: number): Promise<unknown> {
    const q = new URLSearchParams({ first: String(first), second: String(second) });
    const body = await this.request<{ proof?: unknown }>("GET", `/v1/transparency/consistency?${q.toString()}`, undefined, { auth: false });
    return body?.proof;
  }

  /** Where business certificate `serial` is in the key log, with its inclusion proof; null
   * when the relay keeps no log (150081). A certificate it has not logged is the RelayError
   * 150082. */
  async certificateInLog(serial: number): Promise<unknown> {
    try {
      return await this.request("GET", `/v1/transparency/certificates/${serial}`);
    } catch (error) {
      if (error instanceof RelayError && error.code === 150081) return null;
      throw error;
    }
  }

  claim(accountId: string, deviceIds: number[]): Promise<{ devices: ClaimedDevice[] }> {
    return this.request("POST", `/v1/keys/${encodeURIComponent(accountId)}/claim`, {
      device_ids: deviceIds,
    });
  }

  // --- accounts and businesses ---------------------------------------------------------------

  accountByPhone(phone: string): Promise<AccountInfo> {
    return this.request("GET", `/v1/accounts?phone=${encodeURIComponent(phone)}`);
  }

  account(accountId: string): Promise<AccountInfo> {
    return this.request("GET", `/v1/accounts/${encodeURIComponent(accountId)}`);
  }

  findBusinesses(query: string, limit = 50): Promise<{ businesses: BusinessPublic[] }> {
    const q = new URLSearchParams({ q: query, limit: String(limit) });
    return this.request("GET", `/v1/businesses?${q.toString()}`);
  }

  business(accountId: string): Promise<BusinessPublic> {
    return this.request("GET", `/v1/businesses/${encodeURIComponent(accountId)}`);
  }

  /** A business's profile picture (JPEG or PNG), fetched with this device's token. */
  async picture(accountId: string): Promise<Uint8Array & { type: string }> {
    const headers: Record<string, string> = {};
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    let response: Response;
    try {
      response = await fetch(`${this.base}/v1/businesses/${encodeURIComponent(accountId)}/picture`, { headers });
    } catch (error) {
      throw new Offline(String(error));
    }
    if (!response.ok) throw new RelayError(response.status, `no picture (${response.status})`);
    const type = response.headers.get("content-type") ?? "image/png";
    return Object.assign(new Uint8Array(await response.arrayBuffer()), { type });
  }

  operatorKeys(): Promise<unknown> {
    return this.request("GET", "/v1/operator/keys", undefined, { auth: false });
  }

  revocations(): Promise<SignedBlob> {
    return this.request("GET", "/v1/certificates/revoked", undefined, { auth: false });
  }

  template(id: string): Promise<{ id: string; body: string; signature: string }> {
    return this.request("GET", `/v1/templates/${encodeURIComponent(id)}`);
  }

  // --- mailbox over HTTP ---------------------------------------------------------------------

  send(body: {
    client_msg_id: string;
    to: string;
    class: string;
    template_ref: string | null;
    per_device: { device_id: number; type: number; body: Uint8Array; registration_id: number }[];
  }): Promise<{ client_msg_id: string; message_id: string; server_ms: number; duplicate: boolean }> {
    return this.request("POST", "/v1/messages", {
      ...body,
      per_device: body.per_device.map((c) => ({ ...c, body: toBase64(c.body) })),
    });
  }

  resend(frame: {
    client_msg_id: string;
    message_id: string;
    device_id: number;
    type: number;
    body: Uint8Array;
    registration_id: number;
  }): Promise<{ resends: number }> {
    const { message_id: messageId, body, ...rest } = frame;
    return this.request("POST", `/v1/messages/${encodeURIComponent(messageId)}/resend`, { ...rest, body: toBase64(body) });
  }

  receipts(messageIds: string[]): Promise<{ routed: number }> {
    return this.request("POST", "/v1/receipts", { message_ids: messageIds });
  }

  // --- consent, blocks and reports -----------------------------------------------------------

  consents(): Promise<{ businesses: ConsentDashboardEntry[] }> {
    return this.request("GET", "/v1/consents");
  }

  submitConsents(statements: { statement: string; signature: string }[]): Promise<{ consents: ConsentRecord[] }> {
    return this.request("POST", "/v1/consents", { statements });
  }

  block(accountId: string): Promise<{ new: boolean }> {
    return this.request("POST", "/v1/blocks", { account_id: accountId });
  }

  unblock(accountId: string): Promise<unknown> {
    return this.request("DELETE", `/v1/blocks/${encodeURIComponent(accountId)}`);
  }

  blocked(): Promise<{ blocked: { account_id: string }[] }> {
    return this.request("GET", "/v1/blocks");
  }

  report(
    accountId: string,
    reason: string,
    messageId: string | null,
    detail: string,
    block = false,
  ): Promise<unknown> {
    const body: Record<string, unknown> = { account_id: accountId, reason, block };
    if (messageId) body["message_id"] = messageId;
    if (detail) body["detail"] = detail;
    return this.request("POST", "/v1/reports", body);
  }

  // --- attachments (docs/protocol.md §13) --------------------------------------------------

  createAttachment(kind: "media" | "document", size: number): Promise<{ id: string; size: number; offset: number }> {
    return this.request("POST", "/v1/attachments", { kind, size });
  }

  /** Append `piece` at `offset` of the upload `id`: the offset the relay recorded after it. */
  appendAttachment(id: string, offset: number, piece: Uint8Array): Promise<{ offset: number; complete: boolean }> {
    return this.request("PATCH", `/v1/attachments/${encodeURIComponent(id)}`, undefined, {
      raw: piece as BufferSource,
      contentType: "application/offset+octet-stream",
      headers: { "Upload-Offset": String(offset) },
    });
  }

  /** Where the upload `id` stands, to resume it after a lost connection. */
  attachmentUpload(id: string): Promise<{ offset: number; size: number; complete: boolean }> {
    return this.request("GET", `/v1/attachments/${encodeURIComponent(id)}/upload`);
  }

  /** Hand the blob's bytes from `start` on to `sink` as they arrive, each with its position in
   * the blob (from 0 again should the relay ignore the range). A connection that breaks
   * midway throws Offline after the bytes that did arrive were handed over. */
  async downloadAttachment(id: string, start: number, sink: (chunk: Uint8Array, at: number) => void): Promise<void> {
    const headers: Record<string, string> = {};
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    if (start > 0) headers["Range"] = `bytes=${start}-`;
    let response: Response;
    try {
      response = await fetch(`${this.base}/v1/attachments/${encodeURIComponent(id)}`, { headers });
    } catch (error) {
      throw new Offline(`the relay cannot be reached: ${String(error)}`);
    }
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      let parsed: unknown = null;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        parsed = null;
      }
      throw refusal(response.status, parsed, text);
    }
    let at = response.status === 206 ? start : 0;
    if (!response.body) {
      sink(new Uint8Array(await response.arrayBuffer()), at);
      return;
    }
    const reader = response.body.getReader();
    for (;;) {
      let read: ReadableStreamReadResult<Uint8Array>;
      try {
        read = await reader.read();
      } catch (error) {
        throw new Offline(`the download broke off: ${String(error)}`);
      }
      if (read.done) return;
      sink(read.value, at);
      at += read.value.length;
    }
  }
}

/** The error an answer that is not ok stands for: the relay's envelope as a RelayError; no
 * envelope from a gateway in front of it (502, 503, 504) means the relay cannot be reached. */
function refusal(status: number, parsed: unknown, text: string): Error {
  const error = (parsed as { error?: { code?: number; message?: string; details?: Record<string, unknown> } } | null)?.error;
  if (!error && status >= 502) return new Offline(`the relay answered ${status}`);
  return new RelayError(error?.code ?? status, error?.message ?? text.slice(0, MAX_ERROR_TEXT), error?.details ?? {}, status);
}

export interface ConsentRecord {
  business_account: string;
  business_name?: string;
  customer_account: string;
  scope: "utility" | "marketing";
  state: "opted_in" | "opted_out";
  source: "customer" | "business";
  decided_ms: number;
  updated_ms: number;
  evidence?: string | null;
}

export interface ConsentDashboardEntry {
  business_account: string;
  display_name: string;
  consents: ConsentRecord[];
}

export function envelopeBody(envelope: Envelope): Uint8Array {
  return fromBase64(envelope.body ?? "");
}
