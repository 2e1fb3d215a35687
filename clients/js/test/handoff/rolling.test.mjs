// A rolling restart behind a load balancer takes nothing from a room client that takes the
// hand-off: tests/test_js_sdk.py runs this file alone, with two server processes behind a
// balancer; control("rolling") takes the first out of the balancer and sends it SIGTERM.
// Each client is asked to `reconnect`, opens its next socket (to the second process) while
// the first still serves it, and switches at the welcome: it never goes "reconnecting", Ana's
// messages written before, during and after the move are each stored once, and Ben sees
// every one once, in seq order.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { RoomClient } from "../../src/index.js";
import { NO_SERVER, URL_, control, newRoom, next, token, until } from "../helpers.mjs";

const clients = [];
after(() => {
  for (const room of clients) room.stop();
});

describe("a rolling restart", { skip: NO_SERVER }, () => {
  it("moves each room client to its next socket before the old one closes", async () => {
    const { id } = await newRoom("hand-off");
    /** @type {string[]} */
    const states = [];
    const [ana, ben] = ["ana", "ben"].map((user) => {
      const room = new RoomClient({ url: URL_, roomId: id, token: token(user), base: 200, cap: 2000 });
      room.on("state", ({ state }) => states.push(`${user} ${state}`));
      clients.push(room);
      return room;
    });
    /** @type {any[]} */
    const benSaw = [];
    ben.on("chat.message", (m) => benSaw.push(m));
    const welcomed = Promise.all([next("Ana live", ana, "welcome"), next("Ben live", ben, "welcome")]);
    ana.start();
    ben.start();
    await welcomed;

    const bodies = [];
    const say = (/** @type {string} */ text) => {
      bodies.push(text);
      ana.sendMessage(text);
    };
    for (let i = 0; i < 10; i++) say(`before ${i}`);
    await until("Ben seeing the first ten", ben, ["chat.message"], () => benSaw.length >= 10);
    await control("rolling");
    for (let i = 0; i < 10; i++) say(`during ${i}`);
    await Promise.all(
      [ana, ben].map((room, i) => until(`client ${i} to move`, room, ["welcome"], () => room.moves === 1)),
    );
    for (let i = 0; i < 10; i++) say(`after ${i}`);
    await until("Ben seeing every message", ben, ["chat.message"], () => benSaw.length >= bodies.length);
    await until("Ana's outbox emptied", ana, ["outbox", "pending"], () => ana.pending().messages.length === 0);

    const page = await ana.history({ limit: 100 });
    assert.deepEqual(page.messages.map((m) => m.body), bodies, "each stored once, in order");
    const seqs = page.messages.map((m) => m.seq);
    assert.deepEqual(benSaw.map((m) => m.seq), seqs, "Ben saw each once, in seq order");
    assert.ok(!states.some((s) => s.endsWith("reconnecting")), `never reconnecting: ${states}`);
    assert.ok(ben.presence.online.has("ana") && ana.presence.online.has("ben"), "nobody left meanwhile");
  });
});
