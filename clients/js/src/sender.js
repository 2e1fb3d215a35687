// Sending on the room socket from the durable outboxes (outbox.js): chat messages and
// operations (checklist.*, chat.edit, chat.delete), a few at a time, resent with the same id
// after a reconnect or a reload, and what the acks and errors say about them.
//
// What it tells (through `emit`):
//   "pending" {id, kind: "chat" | "op", status, message?, seq?}: status is "queued" (not live),
//             "sending", "sent" (stored: acked, or seen in the room), "failed" (refused for good:
//             `message` says why; the entry left the outbox)
//   "outbox"  {size, durable, external}: the number of chat messages waiting changed
//             (external: another tab of this user changed it)

const IN_FLIGHT = 10; // outbox entries sent and not yet acked, at most (server rate limit)
const RETRY_SEND_MS = 2000; // after an "unavailable" or "rate_limited" error
const RETRYABLE = new Set(["unavailable", "rate_limited"]);

/**
 * @typedef {import("./outbox.js").Outbox} Outbox
 * @typedef {import("./outbox.js").ChatEntry} ChatEntry
 * @typedef {import("./outbox.js").OpEntry} OpEntry
 */

export class OutboxSender {
  #conn;
  #messages; // chat messages
  #ops; // operations
  #emit;
  /** @type {Set<string>} outbox ids sent on the current socket, not yet acked */
  #inFlight = new Set();
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer = undefined;

  /**
   * @param {{conn: {live: boolean, send: (frame: object) => boolean}, messages: Outbox, ops: Outbox,
   *   emit: (type: string, detail: any) => void}} parts
   */
  constructor({ conn, messages, ops, emit }) {
    this.#conn = conn;
    this.#messages = messages;
    this.#ops = ops;
    this.#emit = emit;
    messages.addEventListener("change", () => this.#otherTabChanged());
    ops.addEventListener("change", () => this.flush()); // another tab of this user added some
  }

  /** How a pending message is shown now: "sending" while live, else "queued". */
  pendingStatus() {
    return this.#conn.live ? "sending" : "queued";
  }

  /**
   * Keep a chat message to send (stored before it is sent: a crash loses nothing), and send
   * it once stored.
   * @param {string} body
   * @param {{replyTo?: number | null}} [options]
   * @returns {ChatEntry}
   */
  queueMessage(body, options = {}) {
    const entry = this.#messages.add(body, options);
    this.#emit("pending", { id: entry.id, kind: "chat", status: this.pendingStatus(), entry });
    this.#outboxChanged(false);
    this.#messages.settled().then(() => this.flush());
    return entry;
  }

  /**
   * Keep an operation to send, and send it once stored; its id.
   * @param {{type: string, id?: string, [key: string]: any}} frame
   * @returns {string}
   */
  submitOp(frame) {
    const entry = this.#ops.addOp(frame);
    this.#ops.settled().then(() => this.flush());
    return entry.id;
  }

  /**
   * Whether `id` is one of mine waiting in an outbox.
   * @param {string} id
   */
  has(id) {
    return this.#messages.has(id) || this.#ops.has(id);
  }

  /**
   * Send what the outboxes hold (messages and operations, merged by the time they were
   * written, each outbox in its own order), a few at a time; acks make room for more.
   */
  flush() {
    if (!this.#conn.live) return;
    const messages = /** @type {ChatEntry[]} */ (this.#messages.list());
    const operations = /** @type {OpEntry[]} */ (this.#ops.list());
    let m = 0;
    let o = 0;
    while (m < messages.length || o < operations.length) {
      if (this.#inFlight.size >= IN_FLIGHT) break;
      const takeOp =
        m >= messages.length ||
        (o < operations.length && operations[o].created < messages[m].created);
      const entry = takeOp ? operations[o++] : messages[m++];
      if (this.#inFlight.has(entry.id)) continue;
      const frame = takeOp ? /** @type {OpEntry} */ (entry).op : chatFrame(/** @type {ChatEntry} */ (entry));
      if (!this.#conn.send(frame)) break;
      this.#inFlight.add(entry.id);
      if (!takeOp) this.#emit("pending", { id: entry.id, kind: "chat", status: "sending", entry });
    }
  }

  /**
   * A message of mine is stored (its ack, or the message seen in the room, whichever comes
   * first): it leaves the outbox, and is told "sent" once.
   * @param {string} id
   * @param {number} [seq]
   */
  delivered(id, seq) {
    this.#inFlight.delete(id);
    if (!this.#messages.remove(id)) return;
    this.#outboxChanged(false);
    this.#emit("pending", { id, kind: "chat", status: "sent", seq });
  }

  /** A new socket is live: everything not acked is sent (again). */
  onWelcome() {
    this.#inFlight.clear();
    this.flush();
  }

  /** @param {string} state the connection's */
  onState(state) {
    if (state === "live") return;
    this.#inFlight.clear();
    for (const entry of this.#messages.list()) {
      this.#emit("pending", { id: entry.id, kind: "chat", status: "queued", entry });
    }
  }

  /** @param {any} frame an ack or an error (others are ignored) */
  onFrame(frame) {
    if (frame.type === "ack") this.#onAck(frame);
    else if (frame.type === "error") this.#onError(frame);
  }

  /** @param {{id: string, seq: number}} ack */
  #onAck({ id, seq }) {
    if (this.#ops.has(id)) {
      this.#inFlight.delete(id);
      this.#ops.remove(id);
      this.#emit("pending", { id, kind: "op", status: "sent", seq });
      this.flush();
      return;
    }
    this.delivered(id, seq);
    this.flush();
  }

  /** @param {{id: string | null, code: string, message: string}} error */
  #onError({ id, code, message }) {
    if (id && (this.#inFlight.has(id) || this.has(id))) {
      this.#refused(id, code, message);
      return;
    }
    if (code === "rate_limited") {
      // The server drops a frame over the rate limit without saying which (id null): send
      // again, in a moment, whatever is not acked. Repeats are safe (same id, same ack).
      this.#inFlight.clear();
      this.#retrySoon();
    }
  }

  /**
   * One of mine was refused: sent again later, or dropped.
   * @param {string} id
   * @param {string} code
   * @param {string} message
   */
  #refused(id, code, message) {
    this.#inFlight.delete(id);
    if (RETRYABLE.has(code)) {
      // Not stored: the same id is sent again in a moment.
      this.#retrySoon();
      return;
    }
    // Refused for good (invalid, conflict, not_found, forbidden, archived): sending it again
    // cannot help.
    const kind = this.#ops.remove(id) ? "op" : "chat";
    if (kind === "chat") {
      this.#messages.remove(id);
      this.#outboxChanged(false);
    }
    this.#emit("pending", { id, kind, status: "failed", code, message });
    this.flush();
  }

  #retrySoon() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.flush(), RETRY_SEND_MS);
  }

  /** Stop the retry timer (the client stopped). */
  close() {
    clearTimeout(this.#retryTimer);
  }

  /** Another tab of the same user added or delivered messages. */
  #otherTabChanged() {
    this.#outboxChanged(true);
    this.flush();
  }

  /** @param {boolean} external */
  #outboxChanged(external) {
    const { size, durable } = this.#messages;
    this.#emit("outbox", { size, durable, external, entries: this.#messages.list() });
  }
}

/**
 * The chat.send frame of an outbox entry.
 * @param {ChatEntry} entry
 */
function chatFrame(entry) {
  /** @type {{type: string, id: string, body: string, reply_to?: number}} */
  const frame = { type: "chat.send", id: entry.id, body: entry.body };
  if (entry.reply_to !== undefined) frame.reply_to = entry.reply_to;
  return frame;
}
