// Sending on the room socket: my chat messages and checklist operations, from their durable
// outboxes (outbox.js: kept in localStorage until acked, resent with the same id after a
// reconnect or a reload), a few at a time, and what the acks and errors say about them.

const IN_FLIGHT = 10; // outbox entries sent and not yet acked, at most (server rate limit)
const RETRY_SEND_MS = 2000; // after an "unavailable" or "rate_limited" error

export class RoomSender {
  #conn;
  #outbox; // chat messages: {id, body, created}
  #ops; // checklist operations: {id, op, created}
  #chat; // the ChatView showing my pending messages
  #note; // the "N messages waiting" line
  #inFlight = new Set(); // outbox ids sent on the current socket, not yet acked
  #retryTimer = null;

  constructor({ conn, outbox, ops, chat, note }) {
    this.#conn = conn;
    this.#outbox = outbox;
    this.#ops = ops;
    this.#chat = chat;
    this.#note = note;
    outbox.addEventListener("change", () => this.#otherTabChanged());
    ops.addEventListener("change", () => this.flush()); // another tab of this user added some
  }

  /** How a pending message of mine is shown now. */
  pendingStatus() {
    return this.#conn.live ? "sending" : "queued";
  }

  /** Show the messages the outbox holds (written before a reload or while offline). */
  showQueued() {
    for (const entry of this.#outbox.list()) this.#chat.showPending(entry, this.pendingStatus());
    this.#updateNote();
  }

  /** Keep a chat message to send (stored before it is sent: a crash loses nothing). */
  queueMessage(body) {
    const entry = this.#outbox.add(body);
    this.#chat.showPending(entry, this.pendingStatus());
    this.#updateNote();
  }

  /** Keep a checklist operation to send, and send it; its id. */
  submitOp(frame) {
    const entry = this.#ops.addOp(frame); // stored before it is sent, like a chat message
    this.flush();
    return entry.id;
  }

  pendingOps() {
    return this.#ops.list().map((e) => e.op);
  }

  get opsDurable() {
    return this.#ops.durable;
  }

  /**
   * Send what the outboxes hold (chat messages and checklist operations, merged by the time
   * they were written, each outbox in its own order), a few at a time; acks make room for
   * more.
   */
  flush() {
    if (!this.#conn.live) return;
    const messages = this.#outbox.list();
    const operations = this.#ops.list();
    let m = 0;
    let o = 0;
    while (m < messages.length || o < operations.length) {
      if (this.#inFlight.size >= IN_FLIGHT) break;
      const takeOp =
        m >= messages.length ||
        (o < operations.length && operations[o].created < messages[m].created);
      const entry = takeOp ? operations[o++] : messages[m++];
      if (this.#inFlight.has(entry.id)) continue;
      const frame = takeOp ? entry.op : { type: "chat.send", id: entry.id, body: entry.body };
      if (!this.#conn.send(frame)) break;
      this.#inFlight.add(entry.id);
      if (!takeOp) this.#chat.showPending(entry, "sending");
    }
  }

  /** A message of mine is in the room: it leaves the outbox. */
  delivered(id) {
    this.#inFlight.delete(id);
    if (this.#outbox.remove(id)) this.#updateNote();
  }

  /** A new socket is live: everything not acked is sent (again). */
  onWelcome() {
    this.#inFlight.clear();
    this.flush();
  }

  onState(state) {
    if (state === "live") return;
    this.#inFlight.clear();
    for (const id of this.#chat.pendingIds()) {
      if (this.#outbox.has(id)) this.#chat.setPendingStatus(id, "queued");
    }
  }

  onFrame(frame) {
    if (frame.type === "ack") this.#onAck(frame);
    else if (frame.type === "error") this.#onError(frame);
  }

  #onAck({ id, seq }) {
    if (this.#ops.has(id)) {
      this.#inFlight.delete(id);
      this.#ops.remove(id);
      this.flush();
      return;
    }
    if (!this.#inFlight.has(id) && !this.#outbox.has(id)) return;
    this.delivered(id);
    if (!this.#chat.has(seq)) this.#chat.setPendingStatus(id, "sent"); // the message follows
    this.flush();
  }

  #onError({ id, code, message }) {
    if (id && (this.#inFlight.has(id) || this.#outbox.has(id) || this.#ops.has(id))) {
      this.#refused(id, code, message);
      return;
    }
    if (code === "rate_limited") {
      // The server drops a frame over the rate limit without saying which (id null): send
      // again, in a moment, whatever is not acked. Repeats are safe (same id, same ack).
      this.#inFlight.clear();
      this.#retrySoon();
      return;
    }
    console.warn("room error", code, message);
  }

  /** One of mine was refused: sent again later, or dropped. */
  #refused(id, code, message) {
    this.#inFlight.delete(id);
    if (code === "unavailable" || code === "rate_limited") {
      // Not stored: the same id is sent again in a moment.
      this.#retrySoon();
      return;
    }
    // Refused for good (invalid, conflict, not_found, forbidden): sending it again cannot
    // help. A refused checklist operation is shown by its panel (it sees this frame too).
    if (this.#ops.remove(id)) {
      this.flush();
      return;
    }
    this.#outbox.remove(id);
    this.#chat.setPendingStatus(id, "failed", message);
    this.#updateNote();
  }

  #retrySoon() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.flush(), RETRY_SEND_MS);
  }

  /** Another tab of the same user added or delivered messages. */
  #otherTabChanged() {
    const ids = new Set(this.#outbox.list().map((e) => e.id));
    for (const entry of this.#outbox.list()) this.#chat.showPending(entry, this.pendingStatus());
    for (const id of this.#chat.pendingIds()) {
      if (!ids.has(id) && this.#chat.pendingStatus(id) !== "failed") {
        this.#chat.setPendingStatus(id, "sent");
      }
    }
    this.#updateNote();
    this.flush();
  }

  #updateNote() {
    const n = this.#outbox.size;
    const where = this.#outbox.durable ? "" : " (kept in this tab only: storage is unavailable)";
    this.#note.textContent =
      n === 0 ? "" : `${n} message${n === 1 ? "" : "s"} waiting to be sent${where}.`;
  }
}
