// A room: its socket (connect, keep alive, reconnect with backoff, resume with since/epoch),
// the durable outboxes of what this user sends, who is here and typing, and a thin helper
// for every client frame (docs/protocol.md, "The room socket").
//
// RoomClient events (CustomEvent, payload in `detail`; `room.on(type, fn)` gets the payload):
//   "state"    {state, delay?, code?, message?}: "connecting", "live", "reconnecting",
//              "offline", "stopped" (refused for good, or stop())
//   "welcome"  {frame, first, epochChanged}: the first frame of every socket. When
//              frame.recovered is false on a later socket, replace what is shown with
//              frame.history (the events after the old seq were not replayed).
//   "frame"    every later frame; stored events (those with a seq) each once, in seq order
//   <type>     each later frame under its own type as well: "chat.message", "ack", "error",
//              "presence.join", "checklist.toggle", and whatever the server adds
//              ("chat.edited", "read.marker", "member.removed", "room.updated"…): no
//              client change is needed to receive a new kind of frame
//   "pending"  {id, kind, status, message?, seq?}: one of my outbox entries (sender.js)
//   "outbox"   {size, durable, external, entries}: the chat messages waiting changed
//   "presence" {members, online, typing}: presence.js
//   "read"     {user_id, seq, markers}: a member's read marker moved (a `read.marker`);
//              markers: the Map of every member's, also `room.readMarkers` (the welcome's
//              `read` replaces it on every socket, before "welcome")
//   "room"     {room}: a room.updated changed the room (its title, its `archived` flag);
//              `room.room` and `room.archived` are current from the welcome on

import { apiRequest } from "./api.js";
import { Emitter } from "./events.js";
import { Outbox, newClientId, outboxKey } from "./outbox.js";
import { Presence } from "./presence.js";
import { ReconnectingSocket } from "./reconnecting.js";
import { OutboxSender } from "./sender.js";
import { withToken } from "./token.js";

/** Close codes after which reconnecting cannot help, and what a person is told. */
export const ROOM_FATAL_CLOSES = new Map([
  [4401, "Your access link is invalid or has expired. Ask for a new link to this room."],
  [4403, "You are not a member of this room."],
  [4404, "This room does not exist."],
]);

// Frames whose `seq` names an event rather than being one: never dropped as seen already
// (a read.marker's seq is at or below the last event's, by definition).
const SEQ_NOT_EVENT = new Set(["ack", "read.marker"]);

const TYPING_REFRESH_MS = 3000; // "still typing" is repeated this often while typing
const TYPING_IDLE_MS = 4000; // no keystroke for this long: stopped typing

/**
 * The room socket alone: events "state", "welcome" {frame, epochChanged, first} and "frame"
 * (every later frame; events already seen by seq are dropped, so nothing is seen twice).
 */
export class RoomConnection extends ReconnectingSocket {
  #roomId;
  #handoff;

  /**
   * `options.handoff` (true): move to the next socket when the server process stops
   * (`reconnect`), instead of reconnecting after its 1012.
   * @param {string} roomId
   * @param {import("./reconnecting.js").SocketOptions & {handoff?: boolean}} [options]
   */
  constructor(roomId, options = {}) {
    super("room socket", ROOM_FATAL_CLOSES, options);
    this.#roomId = roomId;
    this.#handoff = options.handoff ?? true;
  }

  get roomId() {
    return this.#roomId;
  }

  get handoff() {
    return this.#handoff;
  }

  where() {
    const resume = this.lastSeq !== null && this.epoch !== null;
    /** @type {Record<string, string | number | null>} */
    const query = resume ? { since: this.lastSeq, epoch: this.epoch } : {};
    if (this.#handoff) query.handoff = 1;
    return { path: `rooms/${encodeURIComponent(this.#roomId)}/ws`, query };
  }

  /**
   * @param {any} frame
   * @param {boolean} first
   */
  welcomed(frame, first) {
    const epochChanged = this.epoch !== null && frame.epoch !== this.epoch;
    this.epoch = frame.epoch;
    // recovered: the events after `since` follow this frame. Otherwise the history in the
    // frame is all there is, up to frame.seq.
    if (!frame.recovered) this.lastSeq = frame.seq;
    return { frame, first, epochChanged };
  }

  /** @param {any} frame */
  received(frame) {
    if (typeof frame.seq === "number" && !SEQ_NOT_EVENT.has(frame.type)) {
      // A stored event: every one is seen once, in seq order.
      if (this.lastSeq !== null && frame.seq <= this.lastSeq) return;
      this.lastSeq = frame.seq;
    }
    this.emit("frame", frame);
  }
}

/**
 * @typedef {import("./reconnecting.js").SocketOptions & {
 *   roomId: string,
 *   storage?: import("./outbox.js").StorageLike | null,
 *   locks?: import("./outbox.js").LockManagerLike | null,
 *   fetch?: typeof fetch,
 *   userId?: string | null,
 *   handoff?: boolean,
 * }} RoomOptions
 * handoff (true): when the server process stops, move to the next socket before the old one
 * closes (`reconnect`, docs/protocol.md) instead of reconnecting after its 1012;
 * storage: where the outboxes live (default localStorage, else memory); locks: the Web
 * Locks the outboxes take across tabs (default navigator.locks; null: none); userId: whose
 * outboxes these are (default: the first token's `sub`; give it when there is no token
 * before getToken() runs, so that two people on one browser never share an outbox)
 */

export class RoomClient extends Emitter {
  #options;
  #conn;
  #messages;
  #ops;
  #sender;
  #presence = new Presence();
  /** @type {any} the last welcome frame */
  #welcome = null;
  #typingActive = false;
  #typingSentAt = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #typingIdle = undefined;
  #readWanted = 0; // the highest `read` asked for
  #readSent = 0; // ... and sent on the current socket
  /** @type {Map<string, number>} every member's read marker (welcome `read`, `read.marker`) */
  #markers = new Map();
  /** @type {any} the room as it is now: the welcome's `room`, then each room.updated's */
  #room = null;

  /** @param {RoomOptions} options */
  constructor(options) {
    super();
    if (typeof options?.roomId !== "string" || options.roomId === "") {
      throw new TypeError("menteo: RoomClient needs a roomId");
    }
    this.#options = options;
    this.#conn = new RoomConnection(options.roomId, options);
    const token = this.#conn.tokens.token;
    const user = options.userId ?? null;
    const store = { storage: options.storage, locks: options.locks };
    const key = (/** @type {"chat" | "ops"} */ kind) => outboxKey(options.roomId, token, kind, user);
    this.#messages = new Outbox(key("chat"), { ...store, kind: "chat" });
    this.#ops = new Outbox(key("ops"), { ...store, kind: "ops" });
    this.#sender = new OutboxSender({
      conn: this.#conn,
      messages: this.#messages,
      ops: this.#ops,
      emit: (type, detail) => this.emit(type, detail),
    });
    this.#presence.on("change", (detail) => this.emit("presence", detail));
    this.#conn.on("state", (detail) => this.#onState(detail));
    this.#conn.on("welcome", (detail) => this.#onWelcome(detail));
    this.#conn.on("frame", (frame) => this.#onFrame(frame));
  }

  // What it is -------------------------------------------------------------------------------

  get roomId() {
    return this.#options.roomId;
  }

  /** The room socket (a RoomConnection). */
  get connection() {
    return this.#conn;
  }

  /** The TokenSource the room's socket and REST calls use. */
  get tokens() {
    return this.#conn.tokens;
  }

  /** Members, who is here, who is typing (presence.js). */
  get presence() {
    return this.#presence;
  }

  get state() {
    return this.#conn.state;
  }

  get live() {
    return this.#conn.live;
  }

  /** Hand-offs taken: moved to the next socket before the old one closed. */
  get moves() {
    return this.#conn.moves;
  }

  /** The last welcome frame (null before the first). */
  get welcome() {
    return this.#welcome;
  }

  /** Who I am in this room ({user_id, name, role}), from the last welcome. */
  get you() {
    return this.#presence.me;
  }

  /** The room as it is now ({id, title, created_at, members, archived}); null before a welcome. */
  get room() {
    return this.#room;
  }

  /** True while the room is archived: chat and checklist writes are refused (`archived`). */
  get archived() {
    return this.#room?.archived === true;
  }

  /**
   * Every member's read marker (user id -> seq: everything up to it is read), as the
   * welcome's `read` and the `read.marker` frames since tell it. Markers only move forward.
   * @returns {ReadonlyMap<string, number>}
   */
  get readMarkers() {
    return this.#markers;
  }

  /** The highest seq seen, and the epoch it belongs to (what a resume sends). */
  get lastSeq() {
    return this.#conn.lastSeq;
  }

  get epoch() {
    return this.#conn.epoch;
  }

  /** The chat messages and operations not acknowledged yet. */
  pending() {
    return { messages: this.#messages.list(), ops: this.#ops.list() };
  }

  /** False when the outboxes could not be stored (they are kept in memory only). */
  get durable() {
    return this.#messages.durable && this.#ops.durable;
  }

  /** The outbox of chat messages and the one of operations (outbox.js). */
  get outboxes() {
    return { messages: this.#messages, ops: this.#ops };
  }

  // Running --------------------------------------------------------------------------------

  /** Open the socket (and keep it open until stop()). */
  start() {
    this.#conn.start();
    return this;
  }

  /** Close for good; the outboxes keep what was not acknowledged. */
  stop() {
    this.#stopTyping();
    this.#conn.stop();
    this.#sender.close();
    this.#presence.close();
    this.#messages.close();
    this.#ops.close();
  }

  /** Skip the backoff wait and reconnect now. */
  retryNow() {
    this.#conn.retryNow();
  }

  // Sending --------------------------------------------------------------------------------

  /**
   * Send a frame now, if live (presence, typing, ping: nothing durable); false otherwise.
   * @param {object} frame
   */
  send(frame) {
    return this.#conn.send(frame);
  }

  /**
   * Send a durable operation (any acked client frame with an `id`): kept in the outbox until
   * acked, resent with the same id after a reconnect or a reload. Returns its id.
   * @param {{type: string, id?: string, [key: string]: any}} frame
   * @returns {string}
   */
  submit(frame) {
    return this.#sender.submitOp(frame);
  }

  /**
   * A chat message (chat.send), through the outbox; the entry {id, body, created}.
   * @param {string} body
   * @param {{replyTo?: number | null}} [options] replyTo: the seq of the message answered
   */
  sendMessage(body, options = {}) {
    const entry = this.#sender.queueMessage(body, options);
    this.#stopTyping();
    return entry;
  }

  /**
   * Edit my message `target` (its seq): chat.edit, through the outbox; its id.
   * @param {number} target
   * @param {string} body
   */
  editMessage(target, body) {
    return this.submit({ type: "chat.edit", target, body });
  }

  /**
   * Delete my message `target` (its seq): chat.delete, through the outbox; its id.
   * @param {number} target
   */
  deleteMessage(target) {
    return this.submit({ type: "chat.delete", target });
  }

  /**
   * Everything up to `seq` is read (`read`): sent now when live, else on the next socket;
   * only ever forward.
   * @param {number} seq
   */
  markRead(seq) {
    if (!Number.isInteger(seq) || seq <= this.#readWanted) return;
    this.#readWanted = seq;
    this.#sendRead();
  }

  /**
   * Tell the room I am typing (or stopped): `presence.typing` for the others.
   * @param {boolean} active
   */
  setTyping(active) {
    this.#typingActive = active;
    this.#typingSentAt = Date.now();
    this.send({ type: "typing", active });
  }

  /**
   * A keystroke in the message box: "typing" at once, again every 3 s while it goes on, and
   * "stopped" after 4 s without one (or when the message is sent).
   */
  keystroke() {
    if (!this.#typingActive || Date.now() - this.#typingSentAt > TYPING_REFRESH_MS) {
      this.setTyping(true);
    }
    clearTimeout(this.#typingIdle);
    this.#typingIdle = setTimeout(() => this.#stopTyping(), TYPING_IDLE_MS);
  }

  /** The message box was emptied: stopped typing. */
  stopTyping() {
    this.#stopTyping();
  }

  /** Checklist operations (docs/protocol.md, "Checklist operations"); each returns its id. */
  checklist = {
    /**
     * @param {{title: string, description?: string, after?: string | null, position?: number | string | null, itemId?: string}} step
     * after: the item it follows (null: first); position: an index; neither: at the end
     */
    add: ({ title, description, after, position, itemId }) => {
      /** @type {Record<string, any>} */
      const frame = { type: "checklist.add", item_id: itemId ?? newClientId(), title };
      if (description !== undefined) frame.description = description;
      if (after !== undefined) frame.after = after;
      else if (position !== undefined) frame.position = position;
      return this.submit(/** @type {any} */ (frame));
    },
    /** @param {string} itemId @param {boolean} done */
    toggle: (itemId, done) => this.submit({ type: "checklist.toggle", item_id: itemId, done }),
    /** @param {string} itemId @param {string} title */
    rename: (itemId, title) => this.submit({ type: "checklist.rename", item_id: itemId, title }),
    /** @param {string} itemId @param {string | null} after */
    move: (itemId, after) => this.submit({ type: "checklist.move", item_id: itemId, after }),
    /** @param {string} itemId */
    remove: (itemId) => this.submit({ type: "checklist.remove", item_id: itemId }),
    /**
     * @param {string} itemId
     * @param {{verified?: boolean, title?: string}} [options] title: the words the mentor saw
     */
    verify: (itemId, { verified = true, title } = {}) => {
      /** @type {Record<string, any>} */
      const frame = { type: "checklist.verify", item_id: itemId, verified };
      if (title !== undefined) frame.title = title;
      return this.submit(/** @type {any} */ (frame));
    },
  };

  // REST -----------------------------------------------------------------------------------

  /**
   * A REST call with this room's token (renewed and tried again once after a 401).
   * @param {string} method
   * @param {string} path
   * @param {any} [body]
   * @param {Record<string, string>} [headers]
   */
  api(method, path, body, headers) {
    const where = { url: this.#options.url, fetch: this.#options.fetch };
    return withToken(this.tokens, (token) => apiRequest(where, token, method, path, body, headers));
  }

  /**
   * A page of older messages: `{messages, has_more}`, oldest first, seq < `before`.
   * @param {{before?: number, limit?: number}} [page]
   */
  history({ before, limit } = {}) {
    const query = new URLSearchParams();
    if (before !== undefined) query.set("before", String(before));
    if (limit !== undefined) query.set("limit", String(limit));
    const path = `/api/rooms/${encodeURIComponent(this.roomId)}/messages?${query}`;
    return this.api("GET", path);
  }

  /**
   * Search this room's chat messages (`GET /api/rooms/{id}/search`): `{results, has_more}`,
   * the newest `limit` matches (seq < `before`, if given), best match first; each result
   * `{seq, id, author, body, ts, snippet}` with the matched words between « and ». For the
   * next page pass the smallest `seq` of this one as `before`.
   * @param {string} q 1..200 characters with at least one word (letters or digits)
   * @param {{before?: number, limit?: number}} [page]
   */
  search(q, { before, limit } = {}) {
    const query = new URLSearchParams({ q });
    if (before !== undefined) query.set("before", String(before));
    if (limit !== undefined) query.set("limit", String(limit));
    const path = `/api/rooms/${encodeURIComponent(this.roomId)}/search?${query}`;
    return this.api("GET", path);
  }

  // Internals ------------------------------------------------------------------------------

  /** @param {any} detail */
  #onState(detail) {
    this.#sender.onState(detail.state);
    if (detail.state !== "live") this.#readSent = 0;
    this.emit("state", detail);
  }

  /** @param {{frame: any, first: boolean, epochChanged: boolean}} detail */
  #onWelcome(detail) {
    const { frame } = detail;
    this.#welcome = frame;
    this.#room = frame.room ?? null;
    this.#presence.onWelcome(frame);
    // The welcome's markers are as stored now: they replace what an older socket told.
    this.#markers = new Map();
    for (const [user, seq] of Object.entries(frame.read ?? {})) {
      if (typeof seq === "number") this.#markers.set(user, seq);
    }
    for (const message of frame.history ?? []) this.#seen(message);
    this.emit("welcome", detail);
    this.#sender.onWelcome();
    const marker = frame.read?.[frame.you?.user_id];
    if (typeof marker === "number" && marker >= this.#readWanted) this.#readWanted = marker;
    else this.#sendRead();
  }

  /** @param {any} frame */
  #onFrame(frame) {
    this.#sender.onFrame(frame); // acks and errors
    if (frame.type === "chat.message") this.#seen(frame);
    if (frame.type === "read.marker" && frame.user_id === this.you?.user_id) {
      this.#readSent = Math.max(this.#readSent, frame.seq);
    }
    if (frame.type === "room.updated" && frame.room) this.#room = frame.room;
    this.#presence.onFrame(frame);
    this.emit("frame", frame);
    this.emit(frame.type, frame);
    if (frame.type === "read.marker") this.#moveMarker(frame.user_id, frame.seq);
    if (frame.type === "room.updated" && frame.room) this.emit("room", { room: frame.room });
  }

  /**
   * A member's marker, only ever forward; "read" when it moved.
   * @param {unknown} user
   * @param {unknown} seq
   */
  #moveMarker(user, seq) {
    if (typeof user !== "string" || typeof seq !== "number") return;
    if (seq <= (this.#markers.get(user) ?? -1)) return;
    this.#markers.set(user, seq);
    this.emit("read", { user_id: user, seq, markers: this.#markers });
  }

  /**
   * A chat.message in the room (history or live): one of mine leaves the outbox.
   * @param {any} message
   */
  #seen(message) {
    const me = this.you?.user_id;
    if (me !== undefined && message.author?.user_id === me && typeof message.id === "string") {
      this.#sender.delivered(message.id, message.seq);
    }
  }

  #sendRead() {
    if (this.#readWanted <= this.#readSent || !this.live) return;
    if (this.send({ type: "read", seq: this.#readWanted })) this.#readSent = this.#readWanted;
  }

  #stopTyping() {
    clearTimeout(this.#typingIdle);
    if (this.#typingActive) this.setTyping(false);
  }
}
