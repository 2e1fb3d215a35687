// My rooms: the list the inbox socket keeps (the SDK's InboxClient, docs/protocol.md "The
// inbox socket"), each room with its last message and unread count, updated live. Shown as
// the sidebar of the room page on wide screens and as a page of its own (rooms.html), which
// is what a phone links to. The tab's title carries the unread total.

import { InboxClient } from "../sdk/inbox.js";
import { el } from "./dom.js";

const PREVIEW_CHARS = 80; // of the last message, in the list

/** A link to a room's page, carrying the page's access (a token or a token URL). */
export function roomHref(roomId, linkParams) {
  return `./?${new URLSearchParams({ room: roomId, ...linkParams })}`;
}

/** "(3) base" or "base": a title with an unread count in front. */
export function countedTitle(count, base) {
  return count > 0 ? `(${count > 999 ? "999+" : count}) ${base}` : base;
}

/** The last message as one line: "Ben: see you" (mine: "You: …"), or what stands for it. */
export function previewOf(message, myId) {
  if (!message) return "No messages yet";
  if (message.deleted) return "Message deleted";
  const who = message.kind === "system" ? "" : message.author?.user_id === myId ? "You: " : `${message.author?.name ?? "?"}: `;
  const text = String(message.body ?? "").replace(/\s+/g, " ").trim();
  const chars = [...text];
  const short = chars.length > PREVIEW_CHARS ? `${chars.slice(0, PREVIEW_CHARS - 1).join("")}…` : text;
  return who + short;
}

function shortTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  const sameDay = when.toDateString() === new Date().toDateString();
  return sameDay
    ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : when.toLocaleDateString([], { month: "short", day: "numeric" });
}

/** The list itself: <ul> of links, one per room; the current room (if any) marked. */
export class RoomListView {
  #list;
  #status;
  #linkParams;
  #current;

  /**
   * `list`: the <ul>; `status`: a line that says "Loading…", "No rooms yet" or a refusal;
   * `current`: the room this page shows (its own count is not shown: it is on screen).
   */
  constructor({ list, status, linkParams, current = null }) {
    this.#list = list;
    this.#status = status;
    this.#linkParams = linkParams;
    this.#current = current;
  }

  render(rooms, myId) {
    this.#status.textContent = rooms.length === 0 ? "You are not in any room yet." : "";
    this.#list.replaceChildren(...rooms.map((room) => this.#item(room, myId)));
  }

  say(text) {
    this.#status.textContent = text;
  }

  #item(room, myId) {
    const item = el("li", "room-entry");
    item.dataset.roomId = room.id;
    const link = el("a", "room-link");
    link.href = roomHref(room.id, this.#linkParams);
    const current = room.id === this.#current;
    if (current) link.setAttribute("aria-current", "page");
    const unread = current ? 0 : Number(room.unread) || 0;
    item.dataset.unread = String(unread);
    const top = el("span", "room-top");
    top.append(el("span", "room-name", room.title || "Untitled room"));
    if (unread > 0) {
      const badge = el("span", "room-unread", unread >= 999 ? "999+" : String(unread));
      badge.setAttribute("aria-hidden", "true");
      top.append(badge);
      top.append(el("span", "visually-hidden", `, ${unread >= 999 ? "999 or more" : unread} unread`));
    }
    const time = el("time", "room-time", shortTime(room.last_activity));
    time.dateTime = room.last_activity ?? "";
    top.append(time);
    link.append(top, el("span", "room-last", previewOf(room.last_message, myId)));
    item.append(link);
    return item;
  }
}

/**
 * The room list on a page: an InboxClient on the page's TokenSource, rendered into `view`.
 * `onChange({rooms, unread, others})` runs after each render (`others`: the unread count of
 * every room but the current one). Returns the client (started).
 */
export function showRoomList(view, { tokens, current = null, onChange = () => {} }) {
  const inbox = new InboxClient({ tokens, cap: 5000 });
  view.say("Loading your rooms…");
  inbox.on("rooms", ({ rooms, unread }) => {
    const me = inbox.you?.user_id ?? null;
    view.render(rooms, me);
    const here = current !== null ? Number(inbox.room(current)?.unread) || 0 : 0;
    onChange({ rooms, unread, others: unread - here });
  });
  inbox.on("state", ({ state, message }) => {
    if (state === "stopped" && message) view.say(message);
  });
  inbox.start();
  return inbox;
}
