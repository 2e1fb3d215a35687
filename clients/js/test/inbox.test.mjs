// The inbox client against a live server: the welcome's room list, a message by another
// member raising the unread count live, my read marker bringing it back to 0, a new room
// appearing, and a service token refused for good.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { InboxClient, RoomClient } from "../src/index.js";
import { NO_SERVER, URL_, newRoom, next, service, token, until } from "./helpers.mjs";

const clients = [];
after(() => {
  for (const client of clients) client.stop();
});
function inbox(options) {
  const client = new InboxClient({ url: URL_, ...options });
  clients.push(client);
  return client.start();
}
function room(roomId, options) {
  const client = new RoomClient({ url: URL_, roomId, ...options });
  clients.push(client);
  return client.start();
}

describe("inbox client", { skip: NO_SERVER }, () => {
  it("lists my rooms and follows their last message and unread count live", async () => {
    const { id } = await newRoom("Inbox room");
    const ana = inbox({ token: token("ana") });
    const { frame } = await next("Ana's inbox welcome", ana, "welcome");
    assert.equal(frame.type, "inbox.welcome");
    assert.equal(ana.you.user_id, "ana");
    assert.equal(ana.room(id).title, "Inbox room");
    assert.equal(ana.room(id).unread, 0);
    const before = ana.unread;

    const ben = room(id, { token: token("ben") });
    await next("Ben's welcome", ben, "welcome");
    ben.sendMessage("news for Ana");
    await until("Ana's unread count to go up", ana, ["rooms"], () => ana.room(id).unread === 1);
    assert.equal(ana.room(id).last_message.body, "news for Ana");
    assert.equal(ana.unread, before + 1);
    assert.equal(ana.rooms[0].id, id, "the room with the newest activity comes first");

    const mine = room(id, { token: token("ana") });
    const { frame: welcome } = await next("Ana's room welcome", mine, "welcome");
    mine.markRead(welcome.seq);
    await until("Ana's unread count back to 0", ana, ["rooms"], () => ana.room(id).unread === 0);
    assert.equal(ana.unread, before);

    const { id: other } = await newRoom("A new room");
    await until("the new room listed", ana, ["rooms"], () => ana.room(other) !== undefined);
    assert.equal(ana.rooms[0].id, other);
  });

  it("refuses a service token for good (4403)", async () => {
    const client = inbox({ token: service() });
    const stopped = await next("the refusal", client, "state", (s) => s.state === "stopped");
    assert.equal(stopped.code, 4403);
    assert.match(stopped.message, /service token/);
  });
});
