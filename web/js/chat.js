// The chat log: messages in seq order (each seq once), pending messages from the outbox
// after them, the unread divider and the screen-reader announcements.
//
// All text from the network goes into the page with textContent, never as HTML.
//
// Events: "unread" {count} when the number of messages that came in while the tab was
// hidden changes; "render" {seq, item, frame} when a message's element is made (added, or
// remade by an edit or a delete: chat actions, read markers and replies decorate it);
// "reset" when every confirmed message left.

import { el } from "./dom.js";

const NEAR_BOTTOM_PX = 120;
const ANNOUNCE_KEEP = 5;

const PENDING_TEXT = {
  queued: "Not sent yet: waiting for the connection",
  sending: "Sending…",
  sent: "Sent",
  failed: "Not sent",
};

export function formatTime(ts) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return "";
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (sameDay) return time;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

function renderMessage({ author, body, ts, edited_at, deleted, reply_to }, mine) {
  const item = el("li", mine ? "message mine" : "message");
  const meta = el("div", "meta");
  meta.append(el("span", "author", author.name || author.user_id));
  if (mine) meta.append(el("span", "you", "(you)"));
  const time = el("time", "time", formatTime(ts));
  time.dateTime = ts;
  const full = new Date(ts);
  if (!Number.isNaN(full.getTime())) time.title = full.toLocaleString();
  meta.append(time);
  if (edited_at && !deleted) meta.append(el("span", "edited", "(edited)"));
  if (typeof reply_to === "number") meta.append(el("span", "reply", `reply to #${reply_to}`));
  if (deleted) item.classList.add("deleted");
  item.append(meta, el("p", "body", deleted ? "Message deleted" : body));
  return item;
}

/** A chat.message frame after a chat.edited or chat.deleted (docs/protocol.md). */
export function changed(message, change) {
  if (change.type === "chat.edited" && !change.deleted) {
    return { ...message, body: change.body, edited_at: change.ts };
  }
  const { edited_at: _, ...rest } = message;
  return { ...rest, body: "", deleted: true };
}

export class ChatView extends EventTarget {
  #list;
  #scroller;
  #announcer;
  #me = null;
  #bySeq = new Map(); // seq -> <li>
  #frames = new Map(); // seq -> its chat.message frame, as changed since
  #pending = new Map(); // client id -> <li>, my messages not yet seen in the room
  #divider = null;
  #hidden = false;
  #unread = 0;

  #pinned = true; // at the newest message: it stays there while the log grows
  #lastTop = 0;

  constructor({ list, scroller, announcer }) {
    super();
    this.#list = list;
    this.#scroller = scroller;
    this.#announcer = announcer;
    // Controls, "Seen by" lines and replies are added to messages after they are shown;
    // a reader at the bottom stays at the bottom (a phone opens at the newest message).
    scroller.addEventListener("scroll", () => this.#scrolled(), { passive: true });
    if (typeof ResizeObserver === "function") {
      const keep = new ResizeObserver(() => this.#pinned && this.scrollToEnd());
      keep.observe(list);
      keep.observe(scroller);
    }
  }

  /** The signed-in user, {user_id, name}: their messages are marked as their own. */
  setMe(me) {
    this.#me = me;
  }

  isMine(frame) {
    return this.#me !== null && frame.author?.user_id === this.#me.user_id;
  }

  has(seq) {
    return this.#bySeq.has(seq);
  }

  get unread() {
    return this.#unread;
  }

  /** The chat.message frame shown for `seq` (as changed since), or undefined. */
  frame(seq) {
    return this.#frames.get(seq);
  }

  /** The element shown for `seq`, or undefined. */
  item(seq) {
    return this.#bySeq.get(seq);
  }

  /** The seqs shown, in order. */
  seqs() {
    return [...this.#bySeq.keys()].sort((a, b) => a - b);
  }

  /** Put an element of another stored event (a member change) in its seq's place. */
  place(item, seq) {
    item.dataset.seq = String(seq);
    this.#insert(item, seq);
  }

  /** Forget every confirmed message (the server's history was reset: a new epoch). */
  reset() {
    for (const item of this.#bySeq.values()) item.remove();
    this.#bySeq.clear();
    this.#frames.clear();
    this.#divider?.remove();
    this.#divider = null;
    this.dispatchEvent(new CustomEvent("reset"));
  }

  /**
   * Show a chat.message frame, unless its seq is shown already. `live` is false for the
   * history of a welcome frame: no announcement, no unread mark.
   */
  add(frame, { live = true } = {}) {
    if (typeof frame.seq !== "number" || this.#bySeq.has(frame.seq)) return false;
    const mine = this.isMine(frame);
    const stick = this.#nearBottom() || (mine && live);
    if (mine) this.removePending(frame.id);
    const item = renderMessage(frame, mine);
    item.dataset.seq = String(frame.seq);
    item.dataset.id = frame.id ?? "";
    item.dataset.author = frame.author?.user_id ?? "";
    item.dataset.kind = frame.kind === "system" ? "system" : "user"; // system: the platform's
    this.#insert(item, frame.seq);
    this.#bySeq.set(frame.seq, item);
    this.#frames.set(frame.seq, frame);
    this.#rendered(frame.seq, item, frame);
    if (live && !mine) {
      this.#announce(frame);
      if (this.#hidden) this.#markUnread(item);
    }
    if (stick) this.scrollToEnd();
    return true;
  }

  /** Apply a chat.edited or chat.deleted to the message it names, if shown. */
  change(frame) {
    const item = this.#bySeq.get(frame.target);
    const message = this.#frames.get(frame.target);
    if (item === undefined || message === undefined) return false;
    const next = changed(message, frame);
    const fresh = renderMessage(next, item.classList.contains("mine"));
    Object.assign(fresh.dataset, item.dataset);
    item.replaceWith(fresh);
    this.#bySeq.set(frame.target, fresh);
    this.#frames.set(frame.target, next);
    this.#rendered(frame.target, fresh, next);
    if (next.deleted) {
      // A deleted message's text leaves the page: its screen-reader announcement too.
      for (const said of this.#announcer.querySelectorAll(`[data-seq="${frame.target}"]`)) {
        said.remove();
      }
    }
    return true;
  }

  /** Show (or update) an outbox entry of mine: {id, body, created}. */
  showPending(entry, status) {
    let item = this.#pending.get(entry.id);
    if (item === undefined) {
      const author = this.#me ?? { user_id: "", name: "You" };
      item = renderMessage({ author, body: entry.body, ts: entry.created }, true);
      item.classList.add("pending");
      item.dataset.id = entry.id;
      item.append(el("p", "status"));
      this.#list.append(item);
      this.#pending.set(entry.id, item);
      this.scrollToEnd();
    }
    this.setPendingStatus(entry.id, status);
  }

  hasPending(id) {
    return this.#pending.has(id);
  }

  pendingIds() {
    return [...this.#pending.keys()];
  }

  pendingStatus(id) {
    return this.#pending.get(id)?.dataset.status;
  }

  setPendingStatus(id, status, detail = "") {
    const item = this.#pending.get(id);
    if (item === undefined) return;
    item.dataset.status = status;
    const text = PENDING_TEXT[status] ?? status;
    item.querySelector(".status").textContent = detail ? `${text}: ${detail}` : text;
  }

  removePending(id) {
    const item = this.#pending.get(id);
    if (item === undefined) return;
    item.remove();
    this.#pending.delete(id);
  }

  /** The tab was hidden or shown again (document.visibilitychange). */
  setHidden(hidden) {
    this.#hidden = hidden;
    if (hidden) {
      // A new absence: the old divider has been seen.
      this.#divider?.remove();
      this.#divider = null;
    }
    if (this.#unread !== 0) {
      this.#unread = 0;
      this.dispatchEvent(new CustomEvent("unread", { detail: { count: 0 } }));
    }
  }

  scrollToEnd() {
    this.#scroller.scrollTop = this.#scroller.scrollHeight;
    this.#lastTop = this.#scroller.scrollTop;
    this.#pinned = true;
  }

  /** Only the reader scrolling up unpins: the log growing under a scroll does not. */
  #scrolled() {
    const top = this.#scroller.scrollTop;
    if (top < this.#lastTop - 1) this.#pinned = this.#nearBottom();
    else if (this.#nearBottom()) this.#pinned = true;
    this.#lastTop = top;
  }

  #rendered(seq, item, frame) {
    this.dispatchEvent(new CustomEvent("render", { detail: { seq, item, frame } }));
  }

  #nearBottom() {
    const s = this.#scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  /** Confirmed messages (and other stored events) are kept in seq order, before the pending ones. */
  #insert(item, seq) {
    let anchor = null;
    let prev = this.#list.lastElementChild;
    while (prev !== null) {
      const confirmed = prev.dataset.seq !== undefined && !prev.classList.contains("pending");
      if (confirmed && Number(prev.dataset.seq) < seq) break;
      anchor = prev;
      prev = prev.previousElementSibling;
    }
    this.#list.insertBefore(item, anchor);
  }

  #markUnread(item) {
    if (this.#divider === null) {
      this.#divider = el("li", "unread-divider", "New messages");
      this.#list.insertBefore(this.#divider, item);
    }
    this.#unread += 1;
    this.dispatchEvent(new CustomEvent("unread", { detail: { count: this.#unread } }));
  }

  #announce(frame) {
    const name = frame.author?.name || frame.author?.user_id || "Someone";
    const body = frame.body.length > 300 ? `${frame.body.slice(0, 300)}…` : frame.body;
    const said = el("p", null, `${name}: ${body}`);
    said.dataset.seq = String(frame.seq);
    this.#announcer.append(said);
    while (this.#announcer.childElementCount > ANNOUNCE_KEEP) {
      this.#announcer.firstElementChild.remove();
    }
  }
}
