// The feed clients against a live server: the feed socket and the event stream (read with
// fetch, the token in a header) each get every post once, in order, and resume after a
// server restart with nothing missed or repeated.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { FeedSocket, FeedStream, feedApi } from "../src/index.js";
import { NO_SERVER, URL_, control, next, rest, token, until } from "./helpers.mjs";

const clients = [];
after(() => {
  for (const client of clients) client.stop();
});

async function community() {
  const { id } = await rest("POST", "/api/communities", { name: `SDK ${Date.now()}` });
  const thread = await rest("POST", "/api/threads", { title: "My path", community_id: id }, token("ana"));
  return { id, thread: thread.id };
}

const post = (thread, body) => rest("POST", `/api/threads/${thread}/posts`, { body }, token("ana"));

describe("feed clients", { skip: NO_SERVER }, () => {
  it("the socket and the stream get each post once, in order, and resume after a restart", async () => {
    const { id, thread } = await community();
    const feed = { community: id };
    const api = feedApi({ url: URL_ }, new FeedStream(feed, { token: token("cy") }).tokens);
    const first = await api.page(feed, { limit: 5 });
    const socket = new FeedSocket(feed, { url: URL_, token: token("ben"), base: 200, cap: 2000 });
    const stream = new FeedStream(feed, { url: URL_, token: token("cy"), base: 200, cap: 2000 });
    clients.push(socket, stream);
    const got = { socket: [], stream: [] };
    socket.on("event", (f) => got.socket.push(f));
    stream.on("event", (f) => got.stream.push(f));
    socket.start(first.cursor);
    stream.start(first.cursor);
    await Promise.all([next("the socket's welcome", socket, "welcome"), next("the stream's welcome", stream, "welcome")]);
    assert.match(stream.lastEventId, /^[^:]+:\d+$/);

    for (const body of ["one", "two"]) await post(thread, body);
    const both = (n) => () => got.socket.length >= n && got.stream.length >= n;
    await until("two posts on both", socket, ["event"], both(2));
    await until("two posts on the stream", stream, ["event"], both(2));

    await control("restart");
    for (const body of ["three", "four"]) await post(thread, body); // likely before they are back
    await until("four posts on the socket", socket, ["event", "welcome"], () => got.socket.length >= 4, 30_000);
    await until("four posts on the stream", stream, ["event", "welcome"], () => got.stream.length >= 4, 30_000);
    for (const list of [got.socket, got.stream]) {
      assert.deepEqual(list.map((f) => f.post.body), ["one", "two", "three", "four"]);
      const seqs = list.map((f) => f.seq);
      assert.deepEqual([...seqs].sort((a, b) => a - b), seqs);
    }
    assert.equal(socket.lastSeq, stream.lastSeq);
  });

  it("the stream renews its token through getToken when the server ends it at expiry", async () => {
    const { id, thread } = await community();
    let calls = 0;
    const stream = new FeedStream({ community: id }, {
      url: URL_,
      token: token("cy", { ttl: 2 }),
      // A token under 10 s is renewed before a stream opens with it: the first renewal
      // lasts 3 s, so the server ends that stream (auth.expired); the next lasts an hour.
      getToken: () => {
        calls += 1;
        return token("cy", { ttl: calls < 2 ? 3 : 3600 });
      },
    });
    clients.push(stream);
    stream.start();
    await next("the stream's welcome", stream, "welcome");
    // The 3 s token expires: the stream ends with auth.expired and comes back on a new one.
    const welcomed = await next("a second welcome", stream, "welcome", (d) => !d.first, 20_000);
    assert.equal(welcomed.frame.recovered, true);
    assert.equal(calls, 2);
    const got = next("a post after the renewal", stream, "event");
    await post(thread, "after renewal");
    assert.equal((await got).post.body, "after renewal");
  });

  it("stops on a refusal: no such community", async () => {
    const stream = new FeedStream({ community: "no-such" }, { url: URL_, token: token("cy") });
    const socket = new FeedSocket({ community: "no-such" }, { url: URL_, token: token("cy") });
    clients.push(stream, socket);
    const stops = [stream, socket].map((c) => next("a refusal", c, "state", (s) => s.state === "stopped"));
    stream.start();
    socket.start();
    const [a, b] = await Promise.all(stops);
    assert.equal(a.code, 4404);
    assert.equal(b.code, 4404);
  });
});
