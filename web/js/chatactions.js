// Everything the room's chat does beyond the log itself, put together for ChatPanel
// (roomchat.js): replies, edit and delete (messageactions.js), read markers and "Seen"
// (readmarkers.js), older pages and jumps (olderhistory.js), search (roomsearch.js), and the
// platform's messages, member changes and the archived state (systemmessages.js).

import { byId } from "./dom.js";
import { MessageActions } from "./messageactions.js";
import { OlderHistory } from "./olderhistory.js";
import { ReadMarkers } from "./readmarkers.js";
import { Replies } from "./replies.js";
import { RoomSearch } from "./roomsearch.js";
import { SystemMessages } from "./systemmessages.js";

export class ChatActions {
  #room;
  #older;
  #replies;
  #actions;
  #reads;
  #system;

  constructor({ view, room }) {
    this.#room = room;
    const scroller = byId("messages-scroll");
    const composerForm = byId("composer");
    const composerInput = byId("composer-input");
    this.#older = new OlderHistory({ view, room, scroller });
    const jump = (seq) => this.#older.jump(seq);
    this.#system = new SystemMessages({
      view,
      composer: { input: composerInput, button: byId("send") },
      where: composerForm,
    });
    this.#replies = new Replies({ view, room, jump, composerForm, composerInput });
    this.#actions = new MessageActions({ view, room, replies: this.#replies });
    this.#reads = new ReadMarkers({ view, room, scroller });
    new RoomSearch({ room, jump, where: scroller });
    this.#system.addEventListener("archived", () => this.#update());
  }

  /** A welcome, after the log showed its history. */
  onWelcome(frame) {
    this.#system.onWelcome(frame);
    this.#older.onHistory(frame);
    this.#update();
    this.#reads.onWelcome(frame);
    // The page enables the message box after every welcome; an archived room keeps it off.
    queueMicrotask(() => this.#system.reapply());
  }

  onFrame(frame) {
    this.#system.onFrame(frame);
    if (frame.type === "member.updated" && frame.member?.user_id === this.#room.you?.user_id) {
      this.#update(); // my role changed: what I may do too
    }
    if (frame.type === "chat.deleted") this.#replies.dropIf((target) => target.seq === frame.target);
  }

  #update() {
    const archived = this.#system.archived;
    this.#actions.update({ me: this.#room.you, archived });
    if (archived) this.#replies.cancel();
  }
}
