// Every room of the token's user on one socket, live (docs/protocol.md, "The inbox socket"):
// the room list with each room's last message and unread count. The inbox is a view, not a
// log: each socket starts with the whole list (inbox.welcome), then each change is a room's
// whole new summary (inbox.room). A reconnect gets a fresh list; nothing is resumed.
//
// InboxClient events (`on(type, fn)` gets the payload):
//   "state"   {state, …}: as the room socket's (reconnecting.js)
//   "welcome" {frame, first}: the first frame of every socket
//   "rooms"   {rooms, unread, changed}: the list changed (a welcome, or one room's summary:
//             `changed` is that summary, null after a welcome); `rooms` newest activity first
//   "frame"   every later frame but inbox.room (pong, error, auth.expiring…)

import { ReconnectingSocket } from "./reconnecting.js";

/** Close codes after which reconnecting cannot help, and what a person is told. */
export const INBOX_FATAL_CLOSES = new Map([
  [4401, "Your access token was not accepted. Ask for a new link."],
  [4403, "A service token has no room list: open it with a member's token."],
]);

/**
 * Newest activity first, then by id (the server's order for GET /api/rooms).
 * @param {any} a
 * @param {any} b
 */
function newestFirst(a, b) {
  const at = String(a.last_activity ?? "");
  const bt = String(b.last_activity ?? "");
  if (at !== bt) return at < bt ? 1 : -1;
  return String(a.id) < String(b.id) ? -1 : 1;
}

export class InboxClient extends ReconnectingSocket {
  /** @type {Map<string, any>} room id -> summary */
  #rooms = new Map();
  /** @type {{user_id: string, name: string} | null} who the last welcome said I am */
  you = null;

  /** @param {import("./reconnecting.js").SocketOptions} [options] */
  constructor(options = {}) {
    super("inbox socket", INBOX_FATAL_CLOSES, options);
  }

  /** Open the socket (and keep it open until stop()); returns this. */
  start() {
    super.start();
    return this;
  }

  get welcomeType() {
    return "inbox.welcome";
  }

  where() {
    return { path: "inbox/ws", query: {} };
  }

  /** Every room's summary, newest activity first. */
  get rooms() {
    return [...this.#rooms.values()].sort(newestFirst);
  }

  /**
   * One room's summary, or undefined.
   * @param {string} roomId
   */
  room(roomId) {
    return this.#rooms.get(roomId);
  }

  /** The unread messages of every room together (each room's count stops at 999). */
  get unread() {
    let total = 0;
    for (const room of this.#rooms.values()) total += Number(room.unread) || 0;
    return total;
  }

  /**
   * @param {any} frame
   * @param {boolean} first
   */
  welcomed(frame, first) {
    /** @type {any[]} */
    const rooms = Array.isArray(frame.rooms) ? frame.rooms : [];
    this.#rooms = new Map(rooms.filter((r) => typeof r?.id === "string").map((r) => [r.id, r]));
    this.you = frame.you ?? null;
    this.#changed(null);
    return { frame, first };
  }

  /** @param {any} frame */
  received(frame) {
    const room = frame.room;
    if (frame.type === "inbox.room" && room !== null && typeof room?.id === "string") {
      this.#rooms.set(room.id, room); // the room's whole summary; a new id is a new room
      this.#changed(room);
      return;
    }
    this.emit("frame", frame);
  }

  /** @param {any} changed */
  #changed(changed) {
    this.emit("rooms", { rooms: this.rooms, unread: this.unread, changed });
  }
}
