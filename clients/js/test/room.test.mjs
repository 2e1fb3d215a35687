// The room client against a live server: welcome, chat acked once, presence and typing,
// checklist operations, frames as events by type, refusals, token renewal (auth.expiring ->
// getToken -> auth.refresh, and after a 4401), and a lost ack resent with the same id.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { RoomClient } from "../src/index.js";
import { NO_SERVER, URL_, newRoom, next, recordingWebSocket, rest, token, until } from "./helpers.mjs";

const clients = [];
/** A started RoomClient (stopped after the file's tests). */
function open(roomId, options) {
  const room = new RoomClient({ url: URL_, roomId, ...options });
  clients.push(room);
  return room.start();
}
const welcomed = (room, who) => next(`${who}'s welcome`, room, "welcome");
after(() => {
  for (const room of clients) room.stop();
});

describe("room client", { skip: NO_SERVER }, () => {
  it("chats: each message acked once, seen once by both, in seq order; history over REST", async () => {
    const { id } = await newRoom();
    const ana = open(id, { token: token("ana") });
    await welcomed(ana, "Ana");
    const { WebSocket, record } = recordingWebSocket();
    const ben = open(id, { token: token("ben"), WebSocket });
    const { frame } = await welcomed(ben, "Ben");
    assert.equal(frame.you.user_id, "ben");
    assert.equal(ben.you.role, "mentee");

    const seen = { ana: [], ben: [] };
    ana.on("chat.message", (m) => seen.ana.push(m));
    ben.on("chat.message", (m) => seen.ben.push(m));
    const sent = next("the ack of Ana's message", ana, "pending", (p) => p.status === "sent");
    const entry = ana.sendMessage("Hello Ben");
    assert.equal((await sent).id, entry.id);
    await until("Ben seeing Hello Ben", ben, ["chat.message"], () => seen.ben.length === 1);
    const reply = ben.sendMessage("Hello Ana", { replyTo: seen.ben[0].seq });
    await until("both seeing both", ana, ["chat.message"], () => seen.ana.length === 2);
    await until("Ben's outbox emptied", ben, ["outbox"], () => ben.pending().messages.length === 0);
    const frameSent = record.sent.find((f) => f.type === "chat.send");
    assert.deepEqual(frameSent, { type: "chat.send", id: reply.id, body: "Hello Ana", reply_to: seen.ben[0].seq });
    assert.deepEqual(seen.ana.map((m) => m.body), ["Hello Ben", "Hello Ana"]);
    assert.deepEqual(seen.ana.map((m) => m.seq), seen.ben.map((m) => m.seq));
    assert.ok(seen.ana[0].seq < seen.ana[1].seq);

    const page = await ana.history({ limit: 10 });
    assert.deepEqual(page.messages.map((m) => m.body), ["Hello Ben", "Hello Ana"]);
    const later = open(id, { token: token("ana") });
    const { frame: again } = await welcomed(later, "Ana's second client");
    assert.deepEqual(again.history.map((m) => m.id), [entry.id, reply.id]);
  });

  it("keeps presence and typing from the frames", async () => {
    const { id } = await newRoom();
    const ana = open(id, { token: token("ana") });
    await welcomed(ana, "Ana");
    assert.deepEqual([...ana.presence.members.keys()].sort(), ["ana", "ben"]);
    const ben = open(id, { token: token("ben") });
    await welcomed(ben, "Ben");
    await until("Ana seeing Ben here", ana, ["presence"], () => ana.presence.online.has("ben"));
    ben.keystroke();
    await until("Ana seeing Ben typing", ana, ["presence"], () => ana.presence.typing.includes("ben"));
    ben.sendMessage("done typing"); // a message ends the typing
    await until("Ben's typing over", ana, ["presence"], () => !ana.presence.typing.includes("ben"));
    ben.stop();
    await until("Ana seeing Ben leave", ana, ["presence"], () => !ana.presence.online.has("ben"));
  });

  it("sends checklist operations through the outbox; each comes back as its event", async () => {
    const { id } = await newRoom();
    const ana = open(id, { token: token("ana") });
    const ben = open(id, { token: token("ben") });
    await Promise.all([welcomed(ana, "Ana"), welcomed(ben, "Ben")]);
    const event = (type, opId) => next(`${type} ${opId}`, ana, type, (f) => f.id === opId);

    const addId = ben.checklist.add({ title: "Read the guide", itemId: "guide" });
    await event("checklist.add", addId);
    const secondId = ana.checklist.add({ title: "Write a plan", itemId: "plan", after: null });
    const added = await event("checklist.add", secondId);
    assert.equal(added.item.id, "plan");
    let opId = ben.checklist.toggle("guide", true);
    assert.equal((await event("checklist.toggle", opId)).done, true);
    opId = ana.checklist.verify("guide", { title: "Read the guide" });
    assert.equal((await event("checklist.verify", opId)).verified, true);
    opId = ana.checklist.rename("plan", "Write the plan");
    assert.equal((await event("checklist.rename", opId)).title, "Write the plan");
    opId = ana.checklist.move("plan", "guide");
    assert.equal((await event("checklist.move", opId)).after, "guide");
    opId = ana.checklist.remove("plan");
    assert.equal((await event("checklist.remove", opId)).item_id, "plan");

    // A refused operation leaves the outbox with its reason (a mentee cannot verify).
    const failed = next("the refusal of Ben's verify", ben, "pending", (p) => p.status === "failed");
    const refusedId = ben.checklist.verify("guide", { verified: false });
    const refusal = await failed;
    assert.equal(refusal.id, refusedId);
    assert.equal(refusal.code, "forbidden");
    assert.equal(ben.pending().ops.length, 0);
  });

  it("passes every frame on under its own type, and takes any frame to send", async () => {
    const { id } = await newRoom();
    const ana = open(id, { token: token("ana") });
    await welcomed(ana, "Ana");
    const pong = next("a pong", ana, "pong", (f) => f.id === "p-1");
    assert.equal(ana.send({ type: "ping", id: "p-1" }), true);
    await pong;
    const error = next("an error for an unknown frame", ana, "error", (f) => f.id === "x-1");
    ana.send({ type: "no.such.frame", id: "x-1" });
    assert.equal((await error).code, "unknown_type");
    const system = next("the system message", ana, "chat.message", (f) => f.kind === "system");
    await rest("POST", `/api/rooms/${id}/messages`, { id: "sys-1", body: "Welcome to your room" });
    assert.equal((await system).body, "Welcome to your room");
  });

  it("stops on a refusal (not a member) without trying again", async () => {
    const { id } = await newRoom();
    const { WebSocket, record } = recordingWebSocket();
    const zed = open(id, { token: token("zed"), WebSocket });
    const stopped = await next("Zed's refusal", zed, "state", (s) => s.state === "stopped");
    assert.equal(stopped.code, 4403);
    assert.match(stopped.message, /not a member/);
    // A refusal schedules nothing: still one socket after the first backoff steps would
    // have passed (500 ms, then 1 s).
    await new Promise((resolve) => setTimeout(resolve, 1600));
    assert.equal(record.opened, 1);
  });

  it("renews a token on auth.expiring through getToken, sent as auth.refresh on the same socket", async () => {
    const { id } = await newRoom();
    const { WebSocket, record } = recordingWebSocket();
    let calls = 0;
    const getToken = async () => {
      calls += 1;
      return token("ana", { ttl: 4 });
    };
    // A token that lasts 4 s: the server says auth.expiring at once, and each renewed one too.
    const ana = open(id, { token: token("ana", { ttl: 4 }), getToken, WebSocket });
    await welcomed(ana, "Ana");
    let refreshed = 0;
    ana.on("auth.refreshed", () => (refreshed += 1));
    // Three renewals (at most one every 2 s) outlive the first token's 4 s.
    await until("three auth.refreshed", ana, ["auth.refreshed"], () => refreshed >= 3, 20_000);
    assert.ok(calls >= 3);
    assert.equal(record.opened, 1, "the socket was never replaced");
    assert.ok(record.sent.filter((f) => f.type === "auth.refresh").length >= 3);
    const pong = next("a pong on the renewed socket", ana, "pong", (f) => f.id === "still");
    ana.send({ type: "ping", id: "still" });
    await pong;
  });

  it("after a 4401 gets a new token once and reconnects; without getToken a 4401 is final", async () => {
    const { id } = await newRoom();
    const bad = token("ana", { secret: "not-the-servers-secret" });
    const { WebSocket, record } = recordingWebSocket();
    const ana = open(id, { token: bad, getToken: () => token("ana"), WebSocket });
    await welcomed(ana, "Ana, on a renewed token");
    assert.equal(record.opened, 2);
    assert.ok(record.protocols[0].includes(`menteo.token.${bad}`));
    assert.ok(!record.protocols[1].includes(`menteo.token.${bad}`));
    assert.ok(!record.urls.some((u) => u.includes("token=")), "no token in any socket URL");

    const ben = open(id, { token: token("ben", { secret: "not-the-servers-secret" }) });
    const stopped = await next("Ben's final 4401", ben, "state", (s) => s.state === "stopped");
    assert.equal(stopped.code, 4401);

    // A getToken that says access is over (null): final too.
    const cy = open(id, { token: bad, getToken: () => null });
    const over = await next("the end of Cy's access", cy, "state", (s) => s.state === "stopped");
    assert.equal(over.code, 4401);
  });

  it("resends a message whose ack was lost with the same id: stored once", async () => {
    const { id } = await newRoom();
    const ben = open(id, { token: token("ben") });
    await welcomed(ben, "Ben");
    const { WebSocket, record } = recordingWebSocket();
    const ana = open(id, { token: token("ana"), WebSocket });
    await welcomed(ana, "Ana");
    let lose = true; // Ana's socket loses what the server says about her message
    record.dropIncoming = (f) => lose && (f.type === "ack" || f.type === "chat.message");
    const stored = next("Ben seeing the message", ben, "chat.message", (m) => m.body === "only once");
    const entry = ana.sendMessage("only once");
    await stored;
    assert.equal(ana.pending().messages.length, 1, "no ack: still in the outbox");
    lose = false;
    ana.connection.drop(); // the network goes; the client resumes with since/epoch
    await until("Ana's outbox emptied", ana, ["outbox", "pending"], () => ana.pending().messages.length === 0);
    const sends = record.sent.filter((f) => f.type === "chat.send");
    assert.ok(sends.length >= 2, "sent again after the reconnect");
    assert.ok(sends.every((f) => f.id === entry.id), "always with the same client id");
    const page = await ana.history({ limit: 10 });
    assert.deepEqual(page.messages.map((m) => m.body), ["only once"]);
    assert.ok(record.urls[1].includes("since=") && record.urls[1].includes("epoch="));
  });
});
