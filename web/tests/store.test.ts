import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { describe, expect, it } from "vitest";
import { Store } from "../src/core/store";

function rawRows(factory: IDBFactory, name: string, store: string): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const open = factory.open(name);
    open.onsuccess = () => {
      const request = open.result.transaction(store).objectStore(store).getAll();
      request.onsuccess = () => resolve(request.result as unknown[]);
      request.onerror = () => reject(request.error);
    };
  });
}

describe("the local store", () => {
  it("keeps values sealed at rest and reads them back", async () => {
    const factory = new IDBFactory();
    const store = await Store.open("t1", factory);
    await store.put("messages", "m1", { text: "geheimer Marker 4711" }, { chat: "bob", ms: 10 });
    expect(await store.get("messages", "m1")).toEqual({ text: "geheimer Marker 4711" });
    store.close();
    const rows = await rawRows(factory, "t1", "messages");
    const bytes = JSON.stringify(rows, (_, v) => (v instanceof Uint8Array ? Array.from(v) : v));
    expect(bytes).not.toContain("4711");
    const raw = (rows[0] as { box: Uint8Array }).box;
    expect(new TextDecoder().decode(raw)).not.toContain("Marker");
    // Reopened, the same non-extractable key still opens it.
    const again = await Store.open("t1", factory);
    expect(await again.get("messages", "m1")).toEqual({ text: "geheimer Marker 4711" });
  });

  it("writes several records in one transaction and lists a chat newest last", async () => {
    const store = await Store.open("t2", new IDBFactory());
    await store.write([
      { store: "messages", id: "a", value: { n: 1 }, chat: "bob", ms: 3 },
      { store: "messages", id: "b", value: { n: 2 }, chat: "bob", ms: 1 },
      { store: "messages", id: "c", value: { n: 3 }, chat: "eve", ms: 2 },
      { store: "sessions", id: "bob/1", value: { pickle: "x" } },
    ]);
    expect(await store.chatMessages("bob", 10)).toEqual([{ n: 2 }, { n: 1 }]);
    expect(await store.chatMessages("bob", 1)).toEqual([{ n: 1 }]);
    expect(await store.chatMessages("bob", 10, 3)).toEqual([{ n: 2 }]);
    await store.write([{ store: "sessions", id: "bob/1", delete: true }]);
    expect(await store.get("sessions", "bob/1")).toBeUndefined();
  });
});
