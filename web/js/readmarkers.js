// Read markers, both ways.
//
// Mine: a message counts as read once it is on screen (an IntersectionObserver sees most of
// it) while this tab is shown and has the focus (document.visibilityState, hasFocus). The
// highest such seq goes to the room as one `read` frame (the SDK's markRead) at most every
// READ_EVERY_MS: a burst of messages is one frame, not one per message. While the tab is
// hidden or unfocused nothing is sent; what came into view meanwhile counts once it is back.
//
// Theirs: "Seen by Ben" under the newest message a member has read (their marker, from the
// welcome's `read` and every read.marker since: the SDK's room.readMarkers), not counting
// their own messages.

import { el } from "./dom.js";

const READ_EVERY_MS = 500;
const VISIBLE_RATIO = 0.6; // of the message, or of the screen for a message taller than it

export class ReadMarkers {
  #view; // ChatView
  #room; // RoomClient
  #observer;
  #visible = new Set(); // seqs on screen now
  #wanted = 0; // the highest seq read here
  #sent = 0; // ... and handed to markRead
  #timer;
  #lastSent = -Infinity;
  #me = null;
  #state; // where the page shows what it holds back (data-read-held, data-read-sent)

  constructor({ view, room, scroller }) {
    this.#view = view;
    this.#room = room;
    this.#state = scroller;
    this.#observer = new IntersectionObserver((entries) => this.#onIntersect(entries), {
      threshold: [0, 0.25, VISIBLE_RATIO, 1],
    });
    view.addEventListener("render", ({ detail }) => {
      this.#observer.observe(detail.item);
      this.#showSeen();
    });
    view.addEventListener("reset", () => this.#visible.clear());
    room.on("read", () => this.#showSeen());
    document.addEventListener("visibilitychange", () => this.#consider());
    window.addEventListener("focus", () => this.#consider());
    window.addEventListener("blur", () => this.#consider());
  }

  /** A welcome: who I am, and the markers as stored (the SDK keeps them in readMarkers). */
  onWelcome(frame) {
    this.#me = frame.you?.user_id ?? null;
    const mine = frame.read?.[this.#me];
    if (typeof mine === "number") this.#sent = Math.max(this.#sent, mine);
    this.#showSeen();
    this.#consider();
  }

  /** Whether what is on screen counts as read now. */
  static looking() {
    return document.visibilityState === "visible" && document.hasFocus();
  }

  #onIntersect(entries) {
    for (const entry of entries) {
      const seq = Number(entry.target.dataset.seq);
      if (!entry.target.isConnected) {
        this.#observer.unobserve(entry.target); // remade by an edit, or the log was reset
        if (this.#view.item(seq) === undefined) this.#visible.delete(seq);
        continue;
      }
      if (!Number.isInteger(seq) || !this.#view.has(seq)) continue;
      const rect = entry.intersectionRect.height;
      const screen = entry.rootBounds?.height ?? window.innerHeight;
      const seen = entry.isIntersecting && (entry.intersectionRatio >= VISIBLE_RATIO || rect >= screen * VISIBLE_RATIO);
      if (seen) this.#visible.add(seq);
      else this.#visible.delete(seq);
    }
    this.#consider();
  }

  #consider() {
    let top = 0;
    for (const seq of this.#visible) {
      if (this.#view.item(seq)?.isConnected) top = Math.max(top, seq);
    }
    if (top <= this.#sent) return;
    if (!ReadMarkers.looking() || this.#me === null) {
      // Held back until the tab is looked at again (visibilitychange, focus).
      this.#state.dataset.readHeld = String(top);
      return;
    }
    this.#wanted = Math.max(this.#wanted, top);
    delete this.#state.dataset.readHeld;
    this.#schedule();
  }

  #schedule() {
    if (this.#timer !== undefined) return; // the pending send takes the newest
    const wait = Math.max(0, this.#lastSent + READ_EVERY_MS - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#wanted <= this.#sent || !ReadMarkers.looking()) return;
      this.#sent = this.#wanted;
      this.#lastSent = performance.now();
      this.#state.dataset.readSent = String(this.#sent);
      this.#room.markRead(this.#sent);
    }, wait);
  }

  /** "Seen by …" under the newest message each other member has read. */
  #showSeen() {
    const names = new Map(); // seq -> names
    const seqs = this.#view.seqs();
    const members = this.#room.presence.members;
    for (const [user, marker] of this.#room.readMarkers) {
      if (user === this.#me || marker <= 0) continue;
      if (members.size > 0 && !members.has(user)) continue; // removed since
      for (let i = seqs.length - 1; i >= 0; i -= 1) {
        const seq = seqs[i];
        if (seq > marker) continue;
        if (this.#view.frame(seq)?.author?.user_id === user) continue; // their own: no news
        const name = members.get(user)?.name || user;
        names.set(seq, [...(names.get(seq) ?? []), name]);
        break;
      }
    }
    for (const old of document.querySelectorAll("#messages .seen")) {
      if (!names.has(Number(old.closest("[data-seq]")?.dataset.seq))) old.remove();
    }
    for (const [seq, who] of names) {
      const item = this.#view.item(seq);
      let seen = item.querySelector(":scope > .seen");
      if (seen === null) {
        seen = el("p", "seen");
        item.append(seen);
      }
      const text = `Seen by ${who.sort().join(", ")}`;
      if (seen.textContent !== text) seen.textContent = text;
    }
  }
}
