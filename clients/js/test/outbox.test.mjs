// The outbox on its own (no server): entries kept in storage until removed, two "tabs" on one
// storage lose nothing, and every write happens under the Web Lock of its key.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { MemoryStorage, Outbox, newClientId, outboxKey } from "../src/index.js";

/** A LockManager like navigator.locks (exclusive, in order), whose holder a test controls. */
function lockManager() {
  const queues = new Map();
  const log = [];
  return {
    log,
    request(name, callback) {
      const prev = queues.get(name) ?? Promise.resolve();
      const run = prev.then(async () => {
        log.push(`take ${name}`);
        try {
          return await callback();
        } finally {
          log.push(`release ${name}`);
        }
      });
      queues.set(name, run.catch(() => {}));
      return run;
    },
    /** Hold `name` (as another tab would) until the returned function is called. */
    hold(name) {
      let release;
      const held = new Promise((resolve) => (release = resolve));
      this.request(name, () => held);
      return release;
    },
  };
}

describe("outbox", () => {
  it("makes ids the server accepts (1..64 characters, unique)", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newClientId()));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.ok(id.length <= 64 && /^[\w-]+$/.test(id));
  });

  it("keeps entries in storage until removed; a new outbox on the storage finds them", async () => {
    const storage = new MemoryStorage();
    const key = outboxKey("room-1", null);
    const outbox = new Outbox(key, { storage, locks: null });
    const a = outbox.add("one");
    const b = outbox.add("two", { replyTo: 7 });
    const op = new Outbox(outboxKey("room-1", null, "ops"), { storage, locks: null, kind: "ops" });
    op.addOp({ type: "checklist.toggle", item_id: "x", done: true });
    await outbox.settled();
    const reloaded = new Outbox(key, { storage, locks: null });
    assert.deepEqual(reloaded.list().map((e) => e.body), ["one", "two"]);
    assert.equal(reloaded.list()[1].reply_to, 7);
    assert.ok(reloaded.remove(a.id));
    await reloaded.settled();
    assert.deepEqual(new Outbox(key, { storage, locks: null }).list().map((e) => e.id), [b.id]);
    assert.equal(new Outbox(op.key, { storage, locks: null, kind: "ops" }).size, 1);
  });

  it("writes under the key's Web Lock: nothing is stored while another tab holds it", async () => {
    const storage = new MemoryStorage();
    const locks = lockManager();
    const key = outboxKey("room-2", null);
    const tab = new Outbox(key, { storage, locks });
    const release = locks.hold(`menteo:${key}`); // another tab is in its read-modify-write
    const entry = tab.add("waits for the lock");
    assert.equal(tab.size, 1, "shown at once");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(storage.getItem(key), null, "not written while the lock is held");
    release();
    await tab.settled();
    assert.deepEqual(JSON.parse(storage.getItem(key)).map((e) => e.id), [entry.id]);
    assert.deepEqual(locks.log.slice(-2), [`take menteo:${key}`, `release menteo:${key}`]);
  });

  it("two tabs on one storage, writing in turn, lose nothing", async () => {
    const storage = new MemoryStorage();
    const locks = lockManager();
    const key = outboxKey("room-3", null);
    const one = new Outbox(key, { storage, locks });
    const two = new Outbox(key, { storage, locks });
    const ids = [];
    for (let i = 0; i < 20; i++) ids.push((i % 2 ? one : two).add(`m${i}`).id);
    await Promise.all([one.settled(), two.settled()]);
    one.remove(ids[0]);
    two.remove(ids[1]);
    await Promise.all([one.settled(), two.settled()]);
    const stored = JSON.parse(storage.getItem(key)).map((e) => e.id);
    assert.deepEqual(new Set(stored), new Set(ids.slice(2)));
  });
});
