// Older messages: the welcome brings the last 50; "Show older messages" (at the top of the
// log) and a jump to a message not shown yet (a search result, a quoted message) load the
// pages before them over REST (GET /api/rooms/{id}/messages?before=SEQ, the SDK's
// room.history), each message as it is now.
//
// An edit or delete that arrives while a page is on its way may be newer than the page:
// those are applied again once the page is shown (applying one twice changes nothing).

import { el } from "./dom.js";

const PAGE = 100; // the server's most per page
const MAX_PAGES = 500; // a jump gives up after this many pages (50,000 messages)

export class OlderHistory {
  #view; // ChatView
  #room; // RoomClient
  #button;
  #status;
  #hasMore = true; // older messages may exist
  #loading = null; // the page on its way (a promise), or null
  #during = []; // chat.edited / chat.deleted that arrived while it was
  #found = null; // the message a jump last showed

  constructor({ view, room, scroller }) {
    this.#view = view;
    this.#room = room;
    this.#button = el("button", "link-button load-older", "Show older messages");
    this.#button.type = "button";
    this.#button.hidden = true;
    this.#button.addEventListener("click", () => this.#showOlder());
    this.#status = el("p", "older-status");
    this.#status.setAttribute("role", "status");
    const top = el("div", "older");
    top.append(this.#button, this.#status);
    scroller.prepend(top);
    room.on("chat.edited", (frame) => this.#loading && this.#during.push(frame));
    room.on("chat.deleted", (frame) => this.#loading && this.#during.push(frame));
  }

  /** A welcome that replaced the history: whether older messages may exist is known again. */
  onHistory(frame) {
    if (frame.recovered) return;
    const oldest = this.#view.seqs()[0];
    // Events before the oldest message may be messages (the history's length is a server
    // setting): only a history that starts at the room's first event has nothing before it.
    this.#hasMore = oldest !== undefined && oldest > 1;
    this.#button.hidden = !this.#hasMore;
    this.#status.textContent = "";
  }

  /** Show message `seq`: load older pages until it is there; false when it is not. */
  async jump(seq) {
    let pages = 0;
    while (!this.#view.has(seq) && this.#hasMore && pages < MAX_PAGES) {
      const oldest = this.#view.seqs()[0];
      if (oldest !== undefined && oldest < seq) break; // it would be shown: it is gone
      try {
        await this.#loadPage();
      } catch {
        return false; // the status line says why
      }
      pages += 1;
    }
    const item = this.#view.item(seq);
    if (item === undefined) {
      this.#status.textContent = "That message is no longer in the room.";
      return false;
    }
    this.#found?.classList.remove("found");
    this.#found = item;
    item.classList.add("found");
    item.tabIndex = -1;
    item.scrollIntoView({ block: "center" });
    item.focus({ preventScroll: true });
    return true;
  }

  async #showOlder() {
    const scroller = this.#button.closest(".messages") ?? document.scrollingElement;
    const before = scroller.scrollHeight - scroller.scrollTop;
    await this.#loadPage();
    // Keep what was on screen where it was: the new messages grow above it.
    scroller.scrollTop = scroller.scrollHeight - before;
  }

  /** One older page (one at a time). */
  #loadPage() {
    this.#loading ??= this.#fetchPage().finally(() => {
      this.#loading = null;
    });
    return this.#loading;
  }

  async #fetchPage() {
    const oldest = this.#view.seqs()[0];
    this.#during = [];
    this.#status.textContent = "Loading older messages…";
    this.#button.disabled = true;
    try {
      const page = await this.#room.history(oldest === undefined ? { limit: PAGE } : { before: oldest, limit: PAGE });
      for (const message of page.messages ?? []) this.#view.add(message, { live: false });
      for (const change of this.#during) this.#view.change(change);
      this.#hasMore = page.has_more === true;
      this.#status.textContent = this.#hasMore ? "" : "This is the start of the room.";
    } catch (err) {
      this.#status.textContent = `Older messages could not be loaded: ${err.message}`;
      throw err;
    } finally {
      this.#during = [];
      this.#button.disabled = false;
      this.#button.hidden = !this.#hasMore;
    }
  }
}
