// The durable outbox: chat messages (and, in a second outbox, checklist operations) written
// but not yet acknowledged by the server.
//
// Each entry keeps the client id it was first sent with. Re-sending an entry with the same
// id is safe: the server stores a (room, author, id) once and acks a repeat with the same
// seq. Entries live in localStorage, so they survive a reload or a closed tab, and are
// removed only once the server has acknowledged them (ack, or the message seen in the room).
//
// Chat entries are {id, body, created}; operation entries are {id, op, created} where `op`
// is the whole client frame (its `id` is the entry's). Each kind has its own storage key.
//
// Events: "change" when another tab changed this outbox.

const PREFIX = "menteo.outbox.v1";
const OPS_PREFIX = "menteo.ops.v1";

const isChatEntry = (e) => e && typeof e.id === "string" && typeof e.body === "string";
const isOpEntry = (e) =>
  e &&
  typeof e.id === "string" &&
  e.op !== null &&
  typeof e.op === "object" &&
  typeof e.op.type === "string" &&
  e.op.id === e.id;

/** A client id for chat.send: unique, at most 64 characters (the server's limit). */
export function newClientId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes); // unlike randomUUID, also there on plain http
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `c${Date.now().toString(36)}-${hex}`;
}

/**
 * The claims of a token, unverified: only to keep apart the outboxes of different people
 * who use the same browser, and to name the user before the welcome frame. The server
 * verifies the token; the page never trusts these for anything else.
 */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(part.padEnd(Math.ceil(part.length / 4) * 4, "="));
    const text = new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    const claims = JSON.parse(text);
    return claims !== null && typeof claims === "object" ? claims : {};
  } catch {
    return {};
  }
}

/** The storage key of a user's outbox in a room: kind "chat" (messages) or "ops". */
export function outboxKey(roomId, token, kind = "chat") {
  const sub = tokenClaims(token).sub;
  const prefix = kind === "ops" ? OPS_PREFIX : PREFIX;
  return `${prefix}:${roomId}:${typeof sub === "string" ? sub : "anonymous"}`;
}

export class Outbox extends EventTarget {
  #key;
  #storage;
  #entries = [];
  #valid; // which stored entries are well formed for this kind
  /** False when localStorage refused us (private mode, quota): the outbox is memory-only. */
  durable = true;

  /** `kind` is "chat" (entries {id, body, created}) or "ops" (entries {id, op, created}). */
  constructor(key, storage = globalThis.localStorage, { kind = "chat" } = {}) {
    super();
    this.#key = key;
    this.#storage = storage;
    this.#valid = kind === "ops" ? isOpEntry : isChatEntry;
    this.#entries = this.#load();
    globalThis.addEventListener("storage", (event) => {
      if (event.key !== this.#key) return;
      this.#entries = this.#load();
      this.dispatchEvent(new Event("change"));
    });
  }

  /** Pending entries, oldest first: {id, body | op, created} (created: an ISO timestamp). */
  list() {
    return this.#entries.slice();
  }

  get size() {
    return this.#entries.length;
  }

  has(id) {
    return this.#entries.some((e) => e.id === id);
  }

  add(body) {
    return this.#push({ id: newClientId(), body, created: new Date().toISOString() });
  }

  /** Keep a client frame to send (a checklist operation); it gets a fresh id if it has none. */
  addOp(frame) {
    const id = typeof frame.id === "string" ? frame.id : newClientId();
    return this.#push({ id, op: { ...frame, id }, created: new Date().toISOString() });
  }

  #push(entry) {
    this.#refresh();
    this.#entries.push(entry);
    this.#save();
    return entry;
  }

  remove(id) {
    this.#refresh();
    const before = this.#entries.length;
    this.#entries = this.#entries.filter((e) => e.id !== id);
    if (this.#entries.length !== before) this.#save();
    return this.#entries.length !== before;
  }

  /** Re-read storage: another tab of the same user may have changed the outbox. */
  #refresh() {
    if (this.durable) this.#entries = this.#load();
  }

  #load() {
    try {
      const raw = this.#storage.getItem(this.#key);
      const parsed = raw ? JSON.parse(raw) : [];
      return Array.isArray(parsed) ? parsed.filter(this.#valid) : [];
    } catch {
      return this.#entries;
    }
  }

  #save() {
    try {
      if (this.#entries.length === 0) this.#storage.removeItem(this.#key);
      else this.#storage.setItem(this.#key, JSON.stringify(this.#entries));
      this.durable = true;
    } catch {
      this.durable = false;
    }
  }
}
