// The room's people: the members (with their role), who is here now, and who is typing.

import { el } from "./dom.js";

const TYPING_TIMEOUT_MS = 6000; // a typing user who sends nothing more is forgotten then

export function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return "Several people are typing…";
}

export class PresenceView {
  #membersList;
  #hereList;
  #typingLine;
  #me = null;
  #members = new Map(); // user_id -> {name, role}
  #online = new Map(); // user_id -> name
  #typing = new Map(); // user_id -> timeout handle

  constructor({ membersList, hereList, typingLine }) {
    this.#membersList = membersList;
    this.#hereList = hereList;
    this.#typingLine = typingLine;
  }

  /** A new socket's welcome: the room's members and who is here now. */
  onWelcome(frame) {
    this.setRoom(frame.room, frame.you);
    this.setOnline(frame.presence ?? []);
  }

  /** A frame from the room socket: presence.*, and a message ends its author's typing. */
  onFrame(frame) {
    switch (frame.type) {
      case "chat.message":
        this.typing(frame.author?.user_id, false);
        break;
      case "presence.join":
        this.join(frame);
        break;
      case "presence.leave":
        this.leave(frame.user_id);
        break;
      case "presence.sync":
        this.sync(frame.presence);
        break;
      case "presence.typing":
        this.typing(frame.user_id, frame.active === true);
        break;
      default:
        break;
    }
  }

  /** From the welcome frame: room {members: [{user_id, name, role}]} and you {user_id}. */
  setRoom(room, me) {
    this.#me = me;
    this.#members = new Map(room.members.map((m) => [m.user_id, { name: m.name, role: m.role }]));
    this.#render();
  }

  /** Everyone here now, [{user_id, name}]: replaces what was known (a new socket). */
  setOnline(list) {
    this.#online = new Map(list.map((u) => [u.user_id, u.name]));
    for (const id of [...this.#typing.keys()]) this.#clearTyping(id);
    this.#render();
    this.#renderTyping();
  }

  /** A presence.sync snapshot: replaces who is here, keeping the typing of those still here. */
  sync(list) {
    this.#online = new Map(list.map((u) => [u.user_id, u.name]));
    for (const id of [...this.#typing.keys()]) {
      if (!this.#online.has(id)) this.#clearTyping(id);
    }
    this.#render();
    this.#renderTyping();
  }

  join({ user_id, name }) {
    this.#online.set(user_id, name);
    this.#render();
  }

  leave(userId) {
    this.#online.delete(userId);
    this.#clearTyping(userId);
    this.#render();
    this.#renderTyping();
  }

  typing(userId, active) {
    if (this.#me !== null && userId === this.#me.user_id) return;
    this.#clearTyping(userId);
    if (active) {
      this.#typing.set(
        userId,
        setTimeout(() => this.typing(userId, false), TYPING_TIMEOUT_MS),
      );
    }
    this.#renderTyping();
  }

  nameOf(userId) {
    return this.#online.get(userId) || this.#members.get(userId)?.name || userId;
  }

  #clearTyping(userId) {
    clearTimeout(this.#typing.get(userId));
    this.#typing.delete(userId);
  }

  #isMe(userId) {
    return this.#me !== null && userId === this.#me.user_id;
  }

  #render() {
    const members = [...this.#members].map(([id, m]) => {
      const here = this.#online.has(id);
      const item = el("li", here ? "person here" : "person away");
      item.dataset.userId = id;
      item.append(el("span", "dot", ""), el("span", "name", m.name));
      if (this.#isMe(id)) item.append(el("span", "you", "(you)"));
      item.append(el("span", "role", m.role));
      item.append(el("span", "visually-hidden", here ? ", here now" : ", away"));
      item.querySelector(".dot").setAttribute("aria-hidden", "true");
      return item;
    });
    this.#membersList.replaceChildren(...members);

    const here = [...this.#online].map(([id, name]) => {
      const item = el("li", "person here");
      item.dataset.userId = id;
      item.append(el("span", "name", name || id));
      if (this.#isMe(id)) item.append(el("span", "you", "(you)"));
      return item;
    });
    if (here.length === 0) here.push(el("li", "empty", "Nobody yet"));
    this.#hereList.replaceChildren(...here);
  }

  #renderTyping() {
    const names = [...this.#typing.keys()].map((id) => this.nameOf(id));
    this.#typingLine.textContent = typingText(names);
  }
}
