// The room's chat: the message log (chat.js ChatView) fed from the room socket, and the
// room's title with the unread count in the tab's title.

import { byId } from "./dom.js";

export class ChatPanel {
  #view; // ChatView
  #sender; // RoomSender: my messages seen in the room leave its outbox
  #title = "Menteo room";
  welcomed = false; // at least one welcome: the room is known

  constructor(view, sender) {
    this.#view = view;
    this.#sender = sender;
    view.addEventListener("unread", () => this.#updateTitle());
    document.addEventListener("visibilitychange", () => view.setHidden(document.hidden));
    view.setHidden(document.hidden);
  }

  /** A new socket's welcome: who I am and the room (its history comes with showHistory). */
  onWelcome(frame, epochChanged) {
    // Not recovered on a reconnect (a new epoch, or a since the server could not honour):
    // the history in this frame replaces what is shown (docs/protocol.md, "Resuming").
    if (this.welcomed && (epochChanged || !frame.recovered)) this.#view.reset();
    this.welcomed = true;
    this.#view.setMe(frame.you);
    this.#title = frame.room.title || "Menteo room";
    byId("room-title").textContent = this.#title;
    this.#updateTitle();
  }

  /** The welcome's history (the messages before the live ones). */
  showHistory(frame) {
    for (const message of frame.history ?? []) this.#accept(message, false);
    if (!frame.recovered) this.#view.scrollToEnd();
  }

  onFrame(frame) {
    if (frame.type === "chat.message") this.#accept(frame, true);
    else if (frame.type === "chat.edited" || frame.type === "chat.deleted") this.#view.change(frame);
  }

  /** A chat.message from the room (history or live). */
  #accept(frame, live) {
    if (this.#view.isMine(frame) && frame.id) this.#sender.delivered(frame.id);
    this.#view.add(frame, { live });
  }

  /** The unread count in the tab title. */
  #updateTitle() {
    const n = this.#view.unread;
    document.title = n > 0 ? `(${n}) ${this.#title} · Menteo` : `${this.#title} · Menteo`;
  }
}
