// The room's people on the page: the members (with their role), who is here now, and who is
// typing, rendered from the SDK's Presence (clients/js/src/presence.js), which keeps them from
// the room socket's frames. While the socket is not live nobody is shown as here for sure:
// the dots go grey (dashed) and read "here when last connected".

import { el } from "./dom.js";

export function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return "Several people are typing…";
}

export class PresenceView {
  #presence; // the SDK's Presence
  #membersList;
  #hereList;
  #typingLine;
  #live = false; // the room socket is live: presence is current

  constructor(presence, { membersList, hereList, typingLine }) {
    this.#presence = presence;
    this.#membersList = membersList;
    this.#hereList = hereList;
    this.#typingLine = typingLine;
    presence.on("change", () => this.render());
  }

  /** The room socket's state changed: presence is current only while it is live. */
  setLive(live) {
    if (live === this.#live) return;
    this.#live = live;
    this.render();
  }

  #isMe(userId) {
    return this.#presence.me !== null && userId === this.#presence.me.user_id;
  }

  render() {
    const { members, online } = this.#presence;
    const items = [...members.values()].map((m) => {
      const here = online.has(m.user_id);
      const item = el("li", here ? "person here" : "person away");
      if (!this.#live) item.classList.add("stale");
      item.dataset.userId = m.user_id;
      item.append(el("span", "dot", ""), el("span", "name", m.name));
      if (this.#isMe(m.user_id)) item.append(el("span", "you", "(you)"));
      item.append(el("span", "role", m.role));
      const said = !this.#live ? (here ? ", here when last connected" : ", away when last connected") : here ? ", here now" : ", away";
      item.append(el("span", "visually-hidden", said));
      item.querySelector(".dot").setAttribute("aria-hidden", "true");
      return item;
    });
    this.#membersList.replaceChildren(...items);

    const here = [...online].map(([id, name]) => {
      const item = el("li", this.#live ? "person here" : "person here stale");
      item.dataset.userId = id;
      item.append(el("span", "name", name || id));
      if (this.#isMe(id)) item.append(el("span", "you", "(you)"));
      return item;
    });
    if (here.length === 0) here.push(el("li", "empty", "Nobody yet"));
    this.#hereList.replaceChildren(...here);

    const names = this.#presence.typing.map((id) => this.#presence.nameOf(id));
    this.#typingLine.textContent = typingText(names);
  }
}
