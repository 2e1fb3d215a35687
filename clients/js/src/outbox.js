// The durable outbox: what this user wrote and the server has not acknowledged yet.
//
// Each entry keeps the client id it was first sent with. Re-sending an entry with the same
// id is safe: the server stores a (room, author, id) once and acks a repeat with the same
// seq. Entries live in a Storage (localStorage in a browser), so they survive a reload or a
// closed tab, and are removed only once the server has acknowledged them (an ack, or the
// message seen in the room).
//
// Chat entries are {id, body, created, reply_to?}; operation entries are {id, op, created}
// where `op` is the whole client frame (checklist.*, chat.edit, chat.delete; its `id` is the
// entry's). Each kind has its own storage key.
//
// Every change is a read-modify-write of the stored list. Tabs of the same user share it, so
// it runs under a Web Lock named after the key (navigator.locks, where the browser has it):
// two tabs writing at once cannot lose each other's entries. The list in memory changes at
// once; `settled()` says when every change is stored.
//
// Events: "change" when another tab changed this outbox.

import { Emitter } from "./events.js";
import { tokenClaims } from "./token.js";

const PREFIX = { chat: "menteo.outbox.v1", ops: "menteo.ops.v1" };

/** @typedef {{id: string, body: string, created: string, reply_to?: number}} ChatEntry */
/** @typedef {{id: string, op: {type: string, id: string, [key: string]: any}, created: string}} OpEntry */
/** @typedef {ChatEntry | OpEntry} Entry */
/** @typedef {Pick<Storage, "getItem" | "setItem" | "removeItem">} StorageLike */
/**
 * The part of the Web Locks API the outbox uses (navigator.locks).
 * @typedef {{request: (name: string, callback: () => any) => Promise<any>}} LockManagerLike
 */

const isChatEntry = (/** @type {any} */ e) =>
  e && typeof e.id === "string" && typeof e.body === "string";
const isOpEntry = (/** @type {any} */ e) =>
  e &&
  typeof e.id === "string" &&
  e.op !== null &&
  typeof e.op === "object" &&
  typeof e.op.type === "string" &&
  e.op.id === e.id;

/**
 * A client id for chat.send and operations: unique, at most 64 characters (the server's
 * limit).
 * @returns {string}
 */
export function newClientId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes); // unlike randomUUID, also there on plain http
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `c${Date.now().toString(36)}-${hex}`;
}

/**
 * The storage key of a user's outbox in a room: kind "chat" (messages) or "ops". The user
 * is `userId` when given, else the token's `sub`.
 * @param {string} roomId
 * @param {string | null} token
 * @param {"chat" | "ops"} [kind]
 * @param {string | null} [userId]
 * @returns {string}
 */
export function outboxKey(roomId, token, kind = "chat", userId = null) {
  const sub = userId ?? tokenClaims(token).sub;
  return `${PREFIX[kind]}:${roomId}:${typeof sub === "string" ? sub : "anonymous"}`;
}

/**
 * A Storage kept in memory (Node, or a browser that refuses localStorage). Two outboxes on
 * the same MemoryStorage see each other's entries, as two tabs do on localStorage.
 * @implements {StorageLike}
 */
export class MemoryStorage {
  /** @type {Map<string, string>} */
  #items = new Map();

  /** @param {string} key */
  getItem(key) {
    return this.#items.get(key) ?? null;
  }

  /**
   * @param {string} key
   * @param {string} value
   */
  setItem(key, value) {
    this.#items.set(key, String(value));
  }

  /** @param {string} key */
  removeItem(key) {
    this.#items.delete(key);
  }
}

/** The browser's localStorage when it can be used, else null. */
function defaultStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // a sandboxed frame throws on access
  }
}

/** The browser's Web Locks (a secure context), else null: changes then run unlocked. */
function defaultLocks() {
  return /** @type {any} */ (globalThis.navigator)?.locks ?? null;
}

export class Outbox extends Emitter {
  #key;
  #storage;
  #locks;
  /** @type {Entry[]} */
  #entries = [];
  #valid; // which stored entries are well formed for this kind
  /** @type {Array<(entries: Entry[]) => Entry[]>} changes made in memory, not yet stored */
  #unsaved = [];
  /** @type {Promise<void>} */
  #writes = Promise.resolve();
  /** @type {((event: any) => void) | null} */
  #onStorage = null;
  /** False when the storage refused us (private mode, quota): the outbox is memory-only. */
  durable = true;

  /**
   * @param {string} key the storage key (outboxKey)
   * @param {{storage?: StorageLike | null, locks?: LockManagerLike | null, kind?: "chat" | "ops"}} [options]
   *   storage: default localStorage, else memory; locks: default navigator.locks
   */
  constructor(key, { storage, locks, kind = "chat" } = {}) {
    super();
    this.#key = key;
    this.#storage = storage ?? defaultStorage() ?? new MemoryStorage();
    this.#locks = locks === undefined ? defaultLocks() : locks;
    this.#valid = kind === "ops" ? isOpEntry : isChatEntry;
    this.#entries = this.#load();
    if (this.#storage === defaultStorage() && typeof globalThis.addEventListener === "function") {
      this.#onStorage = (event) => {
        if (event.key !== this.#key) return;
        this.#entries = this.#unsaved.reduce((list, change) => change(list), this.#load());
        this.emit("change");
      };
      globalThis.addEventListener("storage", this.#onStorage);
    }
  }

  /** The storage key. */
  get key() {
    return this.#key;
  }

  /**
   * Pending entries, oldest first.
   * @returns {Entry[]}
   */
  list() {
    return this.#entries.slice();
  }

  get size() {
    return this.#entries.length;
  }

  /** @param {string} id */
  has(id) {
    return this.#entries.some((e) => e.id === id);
  }

  /**
   * Keep a chat message to send.
   * @param {string} body
   * @param {{replyTo?: number | null}} [options]
   * @returns {ChatEntry}
   */
  add(body, { replyTo = null } = {}) {
    /** @type {ChatEntry} */
    const entry = { id: newClientId(), body, created: new Date().toISOString() };
    if (replyTo !== null && replyTo !== undefined) entry.reply_to = replyTo;
    this.#change((list) => [...list, entry]);
    return entry;
  }

  /**
   * Keep a client frame to send (an operation); it gets a fresh id if it has none.
   * @param {{type: string, id?: string, [key: string]: any}} frame
   * @returns {OpEntry}
   */
  addOp(frame) {
    const id = typeof frame.id === "string" ? frame.id : newClientId();
    /** @type {OpEntry} */
    const entry = { id, op: { ...frame, id }, created: new Date().toISOString() };
    this.#change((list) => [...list, entry]);
    return entry;
  }

  /**
   * Forget an entry (acknowledged, or refused for good); whether it was here.
   * @param {string} id
   * @returns {boolean}
   */
  remove(id) {
    if (!this.has(id)) return false;
    this.#change((list) => list.filter((e) => e.id !== id));
    return true;
  }

  /** Resolves once every change made so far is stored. */
  settled() {
    return this.#writes;
  }

  /** Stop following other tabs' changes. */
  close() {
    if (this.#onStorage !== null) globalThis.removeEventListener("storage", this.#onStorage);
    this.#onStorage = null;
  }

  /**
   * Apply `change` in memory now, and to the stored list under the lock (re-read first:
   * another tab may have changed it).
   * @param {(entries: Entry[]) => Entry[]} change
   */
  #change(change) {
    this.#entries = change(this.#entries);
    this.#unsaved.push(change);
    let done = false;
    const write = () => {
      if (done) return; // once, whatever the lock manager does
      done = true;
      const stored = change(this.#load());
      this.#save(stored);
      this.#unsaved.splice(this.#unsaved.indexOf(change), 1);
      this.#entries = this.#unsaved.reduce((list, later) => later(list), stored);
    };
    const locked = async () => {
      if (this.#locks !== null) {
        try {
          await this.#locks.request(`menteo:${this.#key}`, write);
          return;
        } catch {
          // the lock manager refused (write itself never throws): store without it
        }
      }
      write();
    };
    this.#writes = this.#writes.then(locked);
  }

  /** @returns {Entry[]} */
  #load() {
    try {
      const raw = this.#storage.getItem(this.#key);
      const parsed = raw ? JSON.parse(raw) : [];
      return Array.isArray(parsed) ? parsed.filter(this.#valid) : [];
    } catch {
      return this.#entries;
    }
  }

  /** @param {Entry[]} entries */
  #save(entries) {
    try {
      if (entries.length === 0) this.#storage.removeItem(this.#key);
      else this.#storage.setItem(this.#key, JSON.stringify(entries));
      this.durable = true;
    } catch {
      this.durable = false;
    }
  }
}
