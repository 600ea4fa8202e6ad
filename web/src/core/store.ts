// The device's local store: IndexedDB, every record sealed with AES-256-GCM under a
// non-extractable WebCrypto key that lives in the same database. The key can encrypt and
// decrypt inside this browser profile but can never be read out, so a copy of the database
// files (a backup, a stolen disk image) holds no readable message, session or device key.
// Only what the indexes need stays in the clear: record ids, a chat's account id and times.

import { decode, encode } from "@msgpack/msgpack";

const DB_VERSION = 4;
const IV_BYTES = 12;
const KEY_RECORD = "at-rest-key";

export type StoreName = "meta" | "sessions" | "messages" | "peers" | "outbox" | "templates" | "files" | "roots" | "receipts";
// "roots": the key log's epoch heads this device checked (core/keylog.ts); "receipts": delivery
// receipts the relay has not accepted yet (core/client.ts).
const STORES: StoreName[] = ["meta", "sessions", "messages", "peers", "outbox", "templates", "files", "roots", "receipts"];

interface Row {
  id: string;
  chat?: string;
  ms?: number;
  box: Uint8Array;
}

export interface Put {
  store: StoreName;
  id: string;
  value: unknown;
  chat?: string;
  ms?: number;
}

export interface Delete {
  store: StoreName;
  id: string;
  delete: true;
}

export type Write = Put | Delete;

function promised<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB request failed"));
  });
}

function finished(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
  });
}

export class Store {
  private constructor(
    private readonly db: IDBDatabase,
    private readonly key: CryptoKey,
  ) {}

  static async open(name = "tresen", factory: IDBFactory = indexedDB): Promise<Store> {
    const request = factory.open(name, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      for (const store of STORES) {
        if (db.objectStoreNames.contains(store)) continue;
        const created = db.createObjectStore(store, { keyPath: "id" });
        if (store === "messages") created.createIndex("chat", ["chat", "ms"]);
        if (store === "outbox" || store === "receipts") created.createIndex("ms", "ms");
      }
    };
    const db = await promised(request);
    const key = await Store.atRestKey(db);
    return new Store(db, key);
  }

  private static async atRestKey(db: IDBDatabase): Promise<CryptoKey> {
    const read = db.transaction("meta", "readonly").objectStore("meta").get(KEY_RECORD);
    const found = (await promised(read)) as { id: string; key: CryptoKey } | undefined;
    if (found) return found.key;
    const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
      "encrypt",
      "decrypt",
    ]);
    const tx = db.transaction("meta", "readwrite");
    const store = tx.objectStore("meta");
    // Two tabs opening at once: the first key written wins, the other tab reads it back.
    const existing = (await promised(store.get(KEY_RECORD))) as { key: CryptoKey } | undefined;
    if (existing) return existing.key;
    store.put({ id: KEY_RECORD, key });
    await finished(tx);
    return key;
  }

  close(): void {
    this.db.close();
  }

  private async seal(value: unknown): Promise<Uint8Array> {
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const plain = encode(value, { ignoreUndefined: true });
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt({ name: "AES-GCM", iv }, this.key, plain as BufferSource),
    );
    const box = new Uint8Array(IV_BYTES + sealed.length);
    box.set(iv);
    box.set(sealed, IV_BYTES);
    return box;
  }

  private async open<T>(row: Row): Promise<T> {
    const box = row.box;
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: box.subarray(0, IV_BYTES) as BufferSource },
      this.key,
      box.subarray(IV_BYTES) as BufferSource,
    );
    return decode(new Uint8Array(plain)) as T;
  }

  /** Apply all writes in one transaction: all land, or none does. Sealing happens first,
   * since an IndexedDB transaction cannot wait for WebCrypto. */
  async write(writes: Write[]): Promise<void> {
    if (writes.length === 0) return;
    const rows = await Promise.all(
      writes.map(async (w): Promise<[StoreName, Row | string]> => {
        if ("delete" in w) return [w.store, w.id];
        const row: Row = { id: w.id, box: await this.seal(w.value) };
        if (w.chat !== undefined) row.chat = w.chat;
        if (w.ms !== undefined) row.ms = w.ms;
        return [w.store, row];
      }),
    );
    const names = [...new Set(rows.map(([store]) => store))];
    const tx = this.db.transaction(names, "readwrite");
    for (const [store, row] of rows) {
      if (typeof row === "string") tx.objectStore(store).delete(row);
      else tx.objectStore(store).put(row);
    }
    await finished(tx);
  }

  async put(store: StoreName, id: string, value: unknown, index: { chat?: string; ms?: number } = {}): Promise<void> {
    await this.write([{ store, id, value, ...index }]);
  }

  async delete(store: StoreName, id: string): Promise<void> {
    await this.write([{ store, id, delete: true }]);
  }

  async get<T>(store: StoreName, id: string): Promise<T | undefined> {
    const row = (await promised(this.db.transaction(store, "readonly").objectStore(store).get(id))) as
      | Row
      | undefined;
    return row ? this.open<T>(row) : undefined;
  }

  async has(store: StoreName, id: string): Promise<boolean> {
    const tx = this.db.transaction(store, "readonly");
    return (await promised(tx.objectStore(store).count(id))) > 0;
  }

  /** How many records `store` holds. */
  async count(store: StoreName): Promise<number> {
    return promised(this.db.transaction(store, "readonly").objectStore(store).count());
  }

  /** The ids of the `limit` oldest records of a store indexed by time ("outbox", "receipts"). */
  async oldestIds(store: StoreName, limit: number): Promise<string[]> {
    const index = this.db.transaction(store, "readonly").objectStore(store).index("ms");
    const ids: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const cursor = index.openKeyCursor();
      cursor.onerror = () => reject(cursor.error ?? new Error("IndexedDB cursor failed"));
      cursor.onsuccess = () => {
        const at = cursor.result;
        if (!at || ids.length >= limit) return resolve();
        ids.push(String(at.primaryKey));
        at.continue();
      };
    });
    return ids;
  }

  async all<T>(store: StoreName, limit = 10_000): Promise<T[]> {
    const rows = (await promised(
      this.db.transaction(store, "readonly").objectStore(store).getAll(null, limit),
    )) as Row[];
    return Promise.all(rows.filter((r) => r.box instanceof Uint8Array).map((r) => this.open<T>(r)));
  }

  /** A chat's newest `limit` messages (oldest first), optionally before `beforeMs`. */
  async chatMessages<T>(chat: string, limit: number, beforeMs = Number.MAX_SAFE_INTEGER): Promise<T[]> {
    const index = this.db.transaction("messages", "readonly").objectStore("messages").index("chat");
    const range = IDBKeyRange.bound([chat, 0], [chat, beforeMs], false, true);
    const rows: Row[] = [];
    await new Promise<void>((resolve, reject) => {
      const cursor = index.openCursor(range, "prev");
      cursor.onerror = () => reject(cursor.error ?? new Error("IndexedDB cursor failed"));
      cursor.onsuccess = () => {
        const at = cursor.result;
        if (!at || rows.length >= limit) return resolve();
        rows.push(at.value as Row);
        at.continue();
      };
    });
    rows.reverse();
    return Promise.all(rows.map((r) => this.open<T>(r)));
  }

  /** Everything this device holds is deleted (the device was removed, or the user signs out). */
  static async erase(name = "tresen", factory: IDBFactory = indexedDB): Promise<void> {
    await promised(factory.deleteDatabase(name) as unknown as IDBRequest<unknown>);
  }
}
