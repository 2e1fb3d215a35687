// Changing and finding messages with the room client against a live server: edit, delete and
// reply through the outbox (each acked once, seen live by the other member), read markers
// (markRead only forward; every member's marker in readMarkers, moved by read.marker), the
// archived flag from the welcome and room.updated, and search over the room's history.
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

/** Send `body` as `room` and wait for it in the room: its chat.message. */
async function say(room, body, options) {
  const seen = next(`"${body}" in the room`, room, "chat.message", (m) => m.body === body);
  room.sendMessage(body, options);
  return seen;
}

describe("room client: changing and finding messages", { skip: NO_SERVER }, () => {
  it("edits, deletes and replies: each acked once, seen live by the other member", async () => {
    const { id } = await newRoom();
    const { WebSocket, record } = recordingWebSocket();
    const ana = open(id, { token: token("ana"), WebSocket });
    const ben = open(id, { token: token("ben") });
    await Promise.all([welcomed(ana, "Ana"), welcomed(ben, "Ben")]);

    const first = await say(ana, "see you Tursday");
    const reply = await say(ben, "which time?", { replyTo: first.seq });
    assert.equal(reply.reply_to, first.seq);

    const edited = next("Ben seeing the edit", ben, "chat.edited");
    const editId = ana.editMessage(first.seq, "see you Thursday");
    const edit = await edited;
    assert.deepEqual([edit.id, edit.target, edit.body], [editId, first.seq, "see you Thursday"]);
    assert.deepEqual(
      record.sent.find((f) => f.type === "chat.edit"),
      { type: "chat.edit", id: editId, target: first.seq, body: "see you Thursday" },
    );

    // Only the author edits: Ben's edit of Ana's message is refused for good.
    const refused = next("the refusal", ben, "pending", (p) => p.status === "failed");
    const benEdit = ben.editMessage(first.seq, "not mine");
    const refusal = await refused;
    assert.deepEqual([refusal.id, refusal.code], [benEdit, "forbidden"]);
    assert.equal(ben.pending().ops.length, 0);

    const deleted = next("Ben seeing the delete", ben, "chat.deleted");
    const deleteId = ana.deleteMessage(first.seq);
    const gone = await deleted;
    assert.deepEqual([gone.id, gone.target, gone.by], [deleteId, first.seq, "ana"]);
    await until("Ana's operations acked", ana, ["pending"], () => ana.pending().ops.length === 0);

    // History pages show messages as they are now.
    const page = await ben.history({ limit: 10 });
    const shown = page.messages.find((m) => m.seq === first.seq);
    assert.equal(shown.deleted, true);
    assert.equal(shown.body, "");
  });

  it("sends read markers only forward and keeps every member's from read.marker", async () => {
    const { id } = await newRoom();
    const { WebSocket, record } = recordingWebSocket();
    const ana = open(id, { token: token("ana") });
    const ben = open(id, { token: token("ben"), WebSocket });
    await Promise.all([welcomed(ana, "Ana"), welcomed(ben, "Ben")]);
    assert.equal(ana.readMarkers.get("ben"), 0);

    const one = await say(ana, "one");
    const two = await say(ana, "two");
    await until("Ben having both", ben, ["chat.message"], () => ben.lastSeq >= two.seq);
    const moved = next("Ana seeing Ben's marker", ana, "read", (r) => r.user_id === "ben" && r.seq === two.seq);
    ben.markRead(two.seq);
    ben.markRead(one.seq); // behind the marker: not sent
    ben.markRead(two.seq); // the same again: not sent
    const detail = await moved;
    assert.equal(detail.markers.get("ben"), two.seq);
    assert.equal(ana.readMarkers.get("ben"), two.seq);
    assert.deepEqual(
      record.sent.filter((f) => f.type === "read"),
      [{ type: "read", seq: two.seq }],
    );

    // A new socket's welcome tells the stored markers.
    const again = open(id, { token: token("ana") });
    await welcomed(again, "Ana's second client");
    assert.equal(again.readMarkers.get("ben"), two.seq);
  });

  it("knows when the room is archived, from the welcome and live", async () => {
    const { id } = await newRoom();
    const ana = open(id, { token: token("ana") });
    await welcomed(ana, "Ana");
    assert.equal(ana.archived, false);
    assert.equal(ana.room.id, id);
    const changed = next("room.updated", ana, "room");
    await rest("PATCH", `/api/rooms/${id}`, { archived: true });
    assert.equal((await changed).room.archived, true);
    assert.equal(ana.archived, true);
    const refused = next("the refusal of a message", ana, "pending", (p) => p.status === "failed");
    ana.sendMessage("too late");
    assert.equal((await refused).code, "archived");
    const later = open(id, { token: token("ben") });
    await welcomed(later, "Ben");
    assert.equal(later.archived, true);
  });

  it("searches the room's messages, newest matches first, paged with before", async () => {
    const { id } = await newRoom();
    const ana = open(id, { token: token("ana") });
    await welcomed(ana, "Ana");
    const a = await say(ana, "window functions are neat");
    await say(ana, "something else");
    const b = await say(ana, "more about window frames");
    const found = await ana.search("window", { limit: 1 });
    assert.deepEqual(found.results.map((r) => r.seq), [b.seq]);
    assert.equal(found.has_more, true);
    assert.match(found.results[0].snippet, /«window»/);
    const older = await ana.search("window", { before: b.seq, limit: 1 });
    assert.deepEqual(older.results.map((r) => r.seq), [a.seq]);
    await assert.rejects(ana.search("«»"), (err) => err.status === 400 && err.code === "invalid");
  });
});
