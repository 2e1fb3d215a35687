// The notes wiring against a live server, with the oldest and the newest y-websocket 3.x:
// two clients converge on the server's text; a refusal (not a member) stops the provider
// and is told, where y-websocket 3.0 alone would retry it every 2.5 s forever; a 4401 gets a
// new token through getToken and reconnects.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { WebsocketProvider as Provider30 } from "y-websocket-3.0";
import { WebsocketProvider as Provider31 } from "y-websocket";

import { NotesConnection, connectNotes } from "../src/notes.js";
import { NO_SERVER, URL_, newRoom, next, recordingWebSocket, rest, token, until } from "./helpers.mjs";

const open = [];
after(() => {
  for (const notes of open) notes.destroy();
});

function notes(roomId, options) {
  const connection = connectNotes({
    url: URL_,
    roomId,
    watchBrowser: false,
    providerOptions: { disableBc: true }, // through the server only, not between these two
    ...options,
  });
  open.push(connection);
  return connection;
}

const synced = (n, who) => until(`${who}'s notes synced`, n, ["status"], () => n.status === "synced");

for (const [version, Provider] of [["3.0.0", Provider30], ["3.1.0", Provider31]]) {
  describe(`notes with y-websocket ${version}`, { skip: NO_SERVER }, () => {
    it("two clients converge on the server's text", async () => {
      const { id } = await newRoom();
      const ana = notes(id, { token: token("ana"), Provider });
      const ben = notes(id, { token: token("ben"), Provider });
      await Promise.all([synced(ana, "Ana"), synced(ben, "Ben")]);
      ana.text.insert(0, "from ana; ");
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("timed out waiting for Ben's text")), 15_000);
        const check = () => {
          if (ben.text.toString() !== "from ana; ") return;
          clearTimeout(timer);
          resolve();
        };
        ben.text.observe(check);
        check();
      });
      const { text } = await rest("GET", `/api/rooms/${id}/notes`);
      assert.equal(text, "from ana; ");
    });

    it("stops on a refusal and says why, without trying again", async () => {
      const { id } = await newRoom();
      const { WebSocket, record } = recordingWebSocket();
      const zed = notes(id, { token: token("zed"), Provider, WebSocket });
      const refused = await next("Zed's refusal", zed, "refused");
      assert.equal(refused.code, 4403);
      assert.match(refused.message, /not a member/);
      // y-websocket's own backoff is 2.5 s at most: after longer, still the one socket.
      await new Promise((resolve) => setTimeout(resolve, 3500));
      assert.equal(record.opened, 1);
      assert.equal(zed.refused, true);
    });

    it("after a 4401 gets a new token through getToken and syncs; without one it stops", async () => {
      const { id } = await newRoom();
      const bad = token("ana", { secret: "not-the-servers-secret" });
      const ana = notes(id, { token: bad, getToken: () => token("ana"), Provider });
      await synced(ana, "Ana, on a renewed token");
      const ben = notes(id, { token: token("ben", { secret: "not-the-servers-secret" }), Provider });
      assert.equal((await next("Ben's refusal", ben, "refused")).code, 4401);
    });
  });
}

describe("notes tokens", { skip: NO_SERVER }, () => {
  it("reconnects with each renewed token at once", async () => {
    const { id } = await newRoom();
    const { WebSocket, record } = recordingWebSocket();
    const ana = new NotesConnection({
      url: URL_,
      roomId: id,
      token: token("ana"),
      getToken: () => token("ana", { ttl: 600 }),
      WebSocket,
      watchBrowser: false,
      providerOptions: { disableBc: true },
    });
    open.push(ana);
    ana.connect();
    await synced(ana, "Ana");
    const renewed = await ana.tokens.refresh();
    await until("a socket on the renewed token", ana, ["status"], () => record.protocols.some((p) => p.includes(`menteo.token.${renewed}`)) && ana.status === "synced");
  });
});
