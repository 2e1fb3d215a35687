// Who is in a room: its members (with their role), who is here now, and who is typing,
// kept from the room socket's frames (docs/protocol.md: welcome, presence.*, member.*).
//
// Events: "change" {members, online, typing}: after every change (arrays of
// {user_id, name, role?}; `typing` never holds the reader).

import { Emitter } from "./events.js";

const TYPING_TIMEOUT_MS = 6000; // a typing user who sends nothing more is forgotten then

/** @typedef {{user_id: string, name: string, role?: string}} Person */

export class Presence extends Emitter {
  /** @type {Person | null} */
  me = null;
  /** @type {Map<string, Person>} user_id -> member */
  members = new Map();
  /** @type {Map<string, string>} user_id -> name: here now */
  online = new Map();
  /** @type {Map<string, ReturnType<typeof setTimeout>>} user_id -> its timeout */
  #typing = new Map();

  /** @param {{typingTimeout?: number}} [options] */
  constructor({ typingTimeout = TYPING_TIMEOUT_MS } = {}) {
    super();
    this.typingTimeout = typingTimeout;
  }

  /** User ids typing now (never the reader). */
  get typing() {
    return [...this.#typing.keys()];
  }

  /**
   * The name to show for a user.
   * @param {string} userId
   */
  nameOf(userId) {
    return this.online.get(userId) || this.members.get(userId)?.name || userId;
  }

  /**
   * A new socket's welcome: the room's members, who I am and who is here (replaces all).
   * @param {any} frame
   */
  onWelcome(frame) {
    this.me = frame.you ?? null;
    const members = Array.isArray(frame.room?.members) ? frame.room.members : [];
    this.members = new Map(members.map((/** @type {Person} */ m) => [m.user_id, m]));
    this.#setOnline(frame.presence ?? [], true);
  }

  /**
   * A later frame: presence.*, member.*, room.updated; a message ends its author's typing.
   * @param {any} frame
   */
  onFrame(frame) {
    switch (frame.type) {
      case "chat.message":
        if (this.#typing.has(frame.author?.user_id)) this.#stopTyping(frame.author.user_id);
        return;
      case "presence.join":
        this.online.set(frame.user_id, frame.name);
        break;
      case "presence.leave":
        this.online.delete(frame.user_id);
        this.#clearTyping(frame.user_id);
        break;
      case "presence.sync":
        this.#setOnline(frame.presence ?? [], false);
        return;
      case "presence.typing":
        this.#setTyping(frame.user_id, frame.active === true);
        return;
      case "member.added":
      case "member.updated":
        if (frame.member?.user_id) this.members.set(frame.member.user_id, frame.member);
        if (frame.member?.user_id === this.me?.user_id) this.me = { ...this.me, ...frame.member };
        break;
      case "member.removed":
        this.members.delete(frame.user_id);
        break;
      case "room.updated":
        if (!Array.isArray(frame.room?.members)) return;
        this.members = new Map(frame.room.members.map((/** @type {Person} */ m) => [m.user_id, m]));
        break;
      default:
        return;
    }
    this.#changed();
  }

  /** Forget every typing timer (the client stopped). */
  close() {
    for (const id of [...this.#typing.keys()]) this.#clearTyping(id);
  }

  /**
   * Everyone here now, [{user_id, name}]: replaces what was known. A new socket (`reset`)
   * forgets who was typing; a presence.sync keeps the typing of those still here.
   * @param {Array<{user_id: string, name: string}>} list
   * @param {boolean} reset
   */
  #setOnline(list, reset) {
    this.online = new Map(list.map((u) => [u.user_id, u.name]));
    for (const id of [...this.#typing.keys()]) {
      if (reset || !this.online.has(id)) this.#clearTyping(id);
    }
    this.#changed();
  }

  /**
   * @param {string} userId
   * @param {boolean} active
   */
  #setTyping(userId, active) {
    if (this.me !== null && userId === this.me.user_id) return;
    this.#clearTyping(userId);
    if (active) {
      const timer = setTimeout(() => this.#stopTyping(userId), this.typingTimeout);
      this.#typing.set(userId, timer);
    }
    this.#changed();
  }

  /** @param {string} userId */
  #stopTyping(userId) {
    this.#clearTyping(userId);
    this.#changed();
  }

  /** @param {string} userId */
  #clearTyping(userId) {
    clearTimeout(this.#typing.get(userId));
    this.#typing.delete(userId);
  }

  #changed() {
    this.emit("change", {
      members: [...this.members.values()],
      online: [...this.online].map(([user_id, name]) => ({ user_id, name })),
      typing: this.typing,
    });
  }
}
