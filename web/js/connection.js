// The room socket: connect, keep alive, reconnect with backoff, resume with since/epoch.
//
// A RoomConnection is a ReconnectingSocket (reconnecting.js: the "state" event, backoff,
// heartbeat). Its own events (CustomEvent, payload in `detail`):
//   "welcome" {frame, epochChanged}               the first frame of every socket
//   "frame"   frame                                every later frame; events that carry a
//             seq the page has already seen are dropped here, so nothing is seen twice
//
// The protocol (close codes, resume rules) is the server's: see realtime/rooms/socket.py.

import { ReconnectingSocket, SUBPROTOCOL, tokenProtocol } from "./reconnecting.js";
import { TokenSource } from "./token.js";

// Close codes after which reconnecting cannot help: the page says why and stops.
export const FATAL_CLOSES = new Map([
  [4401, "Your access link is invalid or has expired. Ask for a new link to this room."],
  [4403, "You are not a member of this room."],
  [4404, "This room does not exist."],
]);

// The URL carries no token: protocols() offers it (tokenProtocol).
export function socketUrl(location, roomId, since, epoch) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams();
  if (since !== null && epoch !== null) {
    query.set("since", String(since));
    query.set("epoch", epoch);
  }
  const path = `/rooms/${encodeURIComponent(roomId)}/ws`;
  const search = query.toString();
  return `${scheme}//${location.host}${path}${search ? `?${search}` : ""}`;
}

export class RoomConnection extends ReconnectingSocket {
  #roomId;

  /** `tokens`: the page's TokenSource (token.js), or a token that is never renewed. */
  constructor(roomId, tokens, options = {}) {
    const source = typeof tokens === "string" ? new TokenSource(tokens) : tokens;
    super("room socket", FATAL_CLOSES, { ...options, tokens: source });
    this.#roomId = roomId;
  }

  url(location) {
    return socketUrl(location, this.#roomId, this.lastSeq, this.epoch);
  }

  protocols() {
    return [SUBPROTOCOL, tokenProtocol(this.tokens.token)];
  }

  welcomed(frame) {
    const epochChanged = this.epoch !== null && frame.epoch !== this.epoch;
    this.epoch = frame.epoch;
    // recovered: the events after `since` follow this frame. Otherwise the history in the
    // frame is all there is, up to frame.seq.
    if (!frame.recovered) this.lastSeq = frame.seq;
    return { frame, epochChanged };
  }

  received(frame) {
    if (typeof frame.seq === "number" && frame.type !== "ack") {
      // A stored event: every one is seen once, in seq order.
      if (this.lastSeq !== null && frame.seq <= this.lastSeq) return;
      this.lastSeq = frame.seq;
    }
    this.emit("frame", frame);
  }
}
