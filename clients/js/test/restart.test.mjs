// A reconnect across a server restart loses nothing and duplicates nothing: Ana writes
// through a kill -9 of the server and the time it is down; her outbox keeps every message and
// resends each not acked with its client id; a reloaded client (a new RoomClient on the same
// storage) sends what the closed one left. Ben, who reads throughout, sees every message
// once, in seq order, with no gap, and the server stores each once.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { MemoryStorage, RoomClient } from "../src/index.js";
import { NO_SERVER, URL_, control, newRoom, next, recordingWebSocket, token, until } from "./helpers.mjs";

const clients = [];
function open(roomId, options) {
  const room = new RoomClient({ url: URL_, roomId, base: 200, cap: 2000, ...options });
  clients.push(room);
  return room.start();
}
after(() => {
  for (const room of clients) room.stop();
});

describe("a server restart", { skip: NO_SERVER }, () => {
  it("loses nothing and duplicates nothing: the outbox resends with the same client ids", async () => {
    const { id } = await newRoom("restart");
    const storage = new MemoryStorage(); // Ana's browser's: her outbox lives here
    const { WebSocket, record } = recordingWebSocket();
    const ana = open(id, { token: token("ana"), storage, WebSocket });
    const ben = open(id, { token: token("ben") });
    await Promise.all([next("Ana live", ana, "welcome"), next("Ben live", ben, "welcome")]);

    /** @type {any[]} every chat.message Ben is given (welcome histories and live) */
    const benSaw = [];
    ben.on("welcome", ({ frame }) => benSaw.push(...(frame.history ?? [])));
    ben.on("chat.message", (m) => benSaw.push(m));
    const bodies = [];
    const say = (text) => {
      bodies.push(text);
      ana.sendMessage(text);
    };

    // Written while live, some in flight when the server dies.
    for (let i = 0; i < 20; i++) say(`before ${i}`);
    await until("Ben seeing the first ones", ben, ["chat.message"], () => benSaw.length >= 5);
    await control("kill");
    for (let i = 0; i < 10; i++) say(`while down ${i}`);
    // The tab closes with messages unsent; the page is opened again later on the same storage.
    const left = ana.pending().messages.length;
    assert.ok(left >= 10, `the outbox keeps what was not acked (${left})`);
    ana.stop();
    await ana.outboxes.messages.settled();
    await control("start");
    const { WebSocket: WebSocket2, record: record2 } = recordingWebSocket();
    const again = open(id, { token: token("ana"), storage, WebSocket: WebSocket2 });
    assert.equal(again.pending().messages.length, left, "the reloaded client finds the outbox");
    for (let i = 0; i < 10; i++) {
      bodies.push(`after ${i}`);
      again.sendMessage(`after ${i}`);
    }
    const all = bodies.length;
    await until("Ben seeing every message", ben, ["chat.message", "welcome"], () => new Set(benSaw.map((m) => m.body)).size === all, 30_000);
    await until("Ana's outbox emptied", again, ["outbox", "pending"], () => again.pending().messages.length === 0, 30_000);

    // Stored once each, in the order written.
    const page = await again.history({ limit: 100 });
    assert.deepEqual(page.messages.map((m) => m.body), bodies);
    const seqs = page.messages.map((m) => m.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i), "no gap in the room's seqs");
    // Ben: every message once, in seq order (a replay after his reconnect included).
    const benSeqs = benSaw.map((m) => m.seq);
    assert.deepEqual(benSeqs, seqs, "Ben saw each message once, in order");
    // The resends carried the ids the messages were first sent with.
    const sent = [...record.sent, ...record2.sent].filter((f) => f.type === "chat.send");
    const idOf = new Map();
    for (const frame of sent) {
      assert.ok(!idOf.has(frame.body) || idOf.get(frame.body) === frame.id, `one id for ${frame.body}`);
      idOf.set(frame.body, frame.id);
    }
    assert.deepEqual(page.messages.map((m) => m.id), bodies.map((b) => idOf.get(b)));
    assert.ok(record2.urls.length >= 1);
    // Ben's socket resumed (since/epoch) rather than starting over.
    assert.equal(ben.welcome.recovered, true);
  });
});
