// The room's chat: the message log (chat.js ChatView) fed from the RoomClient (the SDK), my
// messages waiting in its outbox, and the room's title with the unread count in the tab's
// title.

import { ChatActions } from "./chatactions.js";
import { byId } from "./dom.js";

export class ChatPanel {
  #view; // ChatView
  #room; // RoomClient
  #note; // the "N messages waiting" line
  #title = "Menteo room";
  #actions; // reply, edit, delete, read markers, search, system messages (chatactions.js)
  welcomed = false; // at least one welcome: the room is known

  constructor(view, room, note) {
    this.#view = view;
    this.#room = room;
    this.#note = note;
    view.addEventListener("unread", () => this.#updateTitle());
    document.addEventListener("visibilitychange", () => view.setHidden(document.hidden));
    view.setHidden(document.hidden);
    room.on("pending", (detail) => this.#onPending(detail));
    room.on("outbox", (detail) => this.#onOutbox(detail));
    this.#actions = new ChatActions({ view, room });
  }

  /** Show the messages the outbox holds (written before a reload or while offline). */
  showQueued() {
    const status = this.#room.live ? "sending" : "queued";
    for (const entry of this.#room.pending().messages) this.#view.showPending(entry, status);
    this.#updateNote();
  }

  /** A new socket's welcome: who I am and the room (its history comes with showHistory). */
  onWelcome(frame, epochChanged) {
    // Not recovered on a reconnect (a new epoch, or a since the server could not honour):
    // the history in this frame replaces what is shown (docs/protocol.md, "Resuming").
    if (this.welcomed && (epochChanged || !frame.recovered)) this.#view.reset();
    this.welcomed = true;
    this.#view.setMe(frame.you);
    this.#setTitle(frame.room.title);
  }

  #setTitle(title) {
    this.#title = title || "Menteo room";
    byId("room-title").textContent = this.#title;
    this.#updateTitle();
  }

  /** The welcome's history (the messages before the live ones). */
  showHistory(frame) {
    for (const message of frame.history ?? []) this.#view.add(message, { live: false });
    if (!frame.recovered) this.#view.scrollToEnd();
    this.#actions.onWelcome(frame);
  }

  onFrame(frame) {
    if (frame.type === "chat.message") this.#view.add(frame, { live: true });
    else if (frame.type === "chat.edited" || frame.type === "chat.deleted") this.#view.change(frame);
    else if (frame.type === "room.updated" && frame.room?.title) this.#setTitle(frame.room.title);
    this.#actions.onFrame(frame);
  }

  /** One of my messages changed state in the outbox (the SDK's "pending" event). */
  #onPending({ id, kind, status, message, seq, entry }) {
    if (kind !== "chat") return; // operations: their panel shows them
    if (status === "sent") {
      if (!this.#view.has(seq)) this.#view.setPendingStatus(id, "sent"); // the message follows
    } else if (status === "failed") {
      this.#view.setPendingStatus(id, "failed", message);
    } else if (entry !== undefined) {
      this.#view.showPending(entry, status);
    }
  }

  /** The outbox changed: here (a message sent or delivered) or in another tab of mine. */
  #onOutbox({ entries, external }) {
    if (external) {
      const ids = new Set(entries.map((e) => e.id));
      const status = this.#room.live ? "sending" : "queued";
      for (const entry of entries) this.#view.showPending(entry, status);
      for (const id of this.#view.pendingIds()) {
        if (!ids.has(id) && this.#view.pendingStatus(id) !== "failed") {
          this.#view.setPendingStatus(id, "sent");
        }
      }
    }
    this.#updateNote();
  }

  #updateNote() {
    const { messages } = this.#room.outboxes;
    const n = messages.size;
    const where = messages.durable ? "" : " (kept in this tab only: storage is unavailable)";
    this.#note.textContent =
      n === 0 ? "" : `${n} message${n === 1 ? "" : "s"} waiting to be sent${where}.`;
  }

  /** The unread count in the tab title. */
  #updateTitle() {
    const n = this.#view.unread;
    document.title = n > 0 ? `(${n}) ${this.#title} · Menteo` : `${this.#title} · Menteo`;
  }
}
