// What the platform says and does in the room, shown as such in the log:
// - a system message (kind "system", posted by the platform's backend) is the platform's
//   notice, not a member's message;
// - member changes (member.added / .updated / .removed) and a new title (room.updated) are
//   lines in the log, in seq order;
// - an archived room (welcome room.archived, room.updated) says so above the message box,
//   and the message box is disabled while it is (the server refuses every write: `archived`).

import { el } from "./dom.js";

export function memberChangeText(frame, before) {
  const member = frame.member ?? {};
  const name = member.name || member.user_id || "Someone";
  if (frame.type === "member.added") return `${name} joined the room as ${member.role}.`;
  if (frame.type === "member.removed") {
    return `${before?.name || frame.user_id} was removed from the room.`;
  }
  const changes = [];
  if (before && before.name !== member.name) changes.push(`${before.name} is now called ${name}`);
  if (!before || before.role !== member.role) changes.push(`${name} is now the room's ${member.role}`);
  return changes.length > 0 ? `${changes.join("; ")}.` : `${name}'s membership changed.`;
}

export class SystemMessages extends EventTarget {
  #view; // ChatView
  #composer; // {input, button}: the message box's controls
  #banner;
  #members = new Map(); // user_id -> {user_id, name, role}, as last told
  #lines = new Set(); // the member-change lines shown
  #disabledHere = false; // the message box is off because the room is archived
  #title = null; // the room's title, as last told
  archived = false;

  constructor({ view, composer, where }) {
    super();
    this.#view = view;
    this.#composer = composer;
    this.#banner = el("p", "banner banner-archived");
    this.#banner.id = "archived-note";
    this.#banner.setAttribute("role", "status");
    this.#banner.hidden = true;
    where.before(this.#banner);
    view.addEventListener("render", ({ detail }) => this.#decorate(detail.item, detail.frame));
    view.addEventListener("reset", () => {
      for (const line of this.#lines) line.remove();
      this.#lines.clear();
    });
  }

  onWelcome(frame) {
    this.#members = new Map((frame.room?.members ?? []).map((m) => [m.user_id, m]));
    this.#title = frame.room?.title ?? null;
    this.#setArchived(frame.room?.archived === true);
  }

  onFrame(frame) {
    switch (frame.type) {
      case "member.added":
      case "member.updated":
      case "member.removed": {
        const id = frame.member?.user_id ?? frame.user_id;
        this.#line(frame, memberChangeText(frame, this.#members.get(id)));
        if (frame.type === "member.removed") this.#members.delete(id);
        else this.#members.set(id, frame.member);
        break;
      }
      case "room.updated": {
        const archived = frame.room?.archived === true;
        const title = frame.room?.title ?? null;
        if (title !== null && this.#title !== null && title !== this.#title) {
          this.#line(frame, `The room was renamed “${title}”.`);
        }
        this.#title = title;
        if (archived !== this.archived) {
          this.#line(frame, archived ? "The room was archived: it is read-only now." : "The room was reopened.");
        }
        this.#setArchived(archived);
        break;
      }
      default:
    }
  }

  /** After the page's own welcome handling, which enables the message box on every socket. */
  reapply() {
    this.#applyComposer();
  }

  #setArchived(archived) {
    const changed = archived !== this.archived;
    this.archived = archived;
    this.#banner.hidden = !archived;
    this.#banner.textContent = archived
      ? "This room is archived: everything in it stays readable, but no one can write in it."
      : "";
    document.getElementById("room")?.toggleAttribute("data-archived", archived);
    this.#applyComposer();
    if (changed) this.dispatchEvent(new CustomEvent("archived", { detail: { archived } }));
  }

  #applyComposer() {
    const { input, button } = this.#composer;
    if (this.archived) {
      input.disabled = true;
      button.disabled = true;
      this.#disabledHere = true;
      input.setAttribute("aria-describedby", addId(input.getAttribute("aria-describedby"), this.#banner.id));
    } else {
      if (this.#disabledHere) {
        // Reopened (a room.updated on a live socket): the box takes messages again.
        input.disabled = false;
        button.disabled = false;
        this.#disabledHere = false;
      }
      input.setAttribute("aria-describedby", dropId(input.getAttribute("aria-describedby"), this.#banner.id));
    }
  }

  /** A system message: the platform's notice. */
  #decorate(item, frame) {
    if (frame.kind !== "system") return;
    item.classList.add("system");
    const author = item.querySelector(".author");
    if (author !== null) {
      author.textContent = "Platform notice";
      author.title = frame.author?.name || frame.author?.user_id || "";
    }
    item.querySelector(".you")?.remove();
  }

  #line(frame, text) {
    if (typeof frame.seq !== "number") return;
    const line = el("li", "room-event", text);
    line.dataset.type = frame.type;
    this.#view.place(line, frame.seq);
    this.#lines.add(line);
  }
}

function addId(list, id) {
  const ids = (list ?? "").split(/\s+/).filter(Boolean);
  return ids.includes(id) ? ids.join(" ") : [...ids, id].join(" ");
}

function dropId(list, id) {
  return (list ?? "").split(/\s+/).filter((x) => x && x !== id).join(" ");
}
