// The feed socket (/feed/ws): connect, keep alive, reconnect with backoff and jitter, and
// resume after the last event seen (since + epoch), so nothing is missed or seen twice.
//
// A FeedSocket is a ReconnectingSocket (reconnecting.js: the "state" event, backoff,
// heartbeat). Its own events (CustomEvent, payload in `detail`):
//   "welcome" {frame, first}: the first frame of every socket. frame.recovered false on a
//             later socket means events may have been missed: the page reloads its posts.
//   "event"   frame: every feed.* event, each seq once and in order
//
// The protocol is docs/protocol.md, "The feed socket".

import { ReconnectingSocket, SUBPROTOCOL, tokenProtocol } from "./reconnecting.js";
import { TokenSource } from "./token.js";

export const FEED_FATAL_CLOSES = new Map([
  [4401, "Your access link is invalid or has expired. Ask for a new link."],
  [4400, "This link does not name a feed."],
  [4404, "This community does not exist."],
]);

/** The socket URL for a feed ({community} or {following: true}), resuming after `since`. */
// The URL carries no token: protocols() offers it (tokenProtocol).
export function feedSocketUrl(location, feed, since, epoch) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams();
  if (feed.community) query.set("community", feed.community);
  else query.set("following", "1");
  if (since !== null) query.set("since", String(since));
  if (since !== null && epoch !== null) query.set("epoch", epoch);
  return `${scheme}//${location.host}/feed/ws?${query}`;
}

export class FeedSocket extends ReconnectingSocket {
  #feed;

  /** `tokens`: the page's TokenSource (token.js), or a token that is never renewed. */
  constructor(tokens, feed, options = {}) {
    const source = typeof tokens === "string" ? new TokenSource(tokens) : tokens;
    super("feed socket", FEED_FATAL_CLOSES, { ...options, tokens: source });
    this.#feed = feed;
  }

  /** Open the socket; events after `since` (the first page's cursor) follow its welcome. */
  start(since) {
    this.lastSeq = since ?? null;
    super.start();
  }

  url(location) {
    return feedSocketUrl(location, this.#feed, this.lastSeq, this.epoch);
  }

  protocols() {
    return [SUBPROTOCOL, tokenProtocol(this.tokens.token)];
  }

  welcomed(frame, first) {
    this.epoch = frame.epoch;
    // Not recovered: the socket starts at the feed's cursor, with live events only.
    if (!frame.recovered) this.lastSeq = frame.cursor;
    return { frame, first };
  }

  received(frame) {
    if (!frame.type.startsWith("feed.") || typeof frame.seq !== "number") return;
    if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // seen already
    this.lastSeq = frame.seq;
    this.emit("event", frame);
  }
}
