// Replies: the "Replying to …" line above the message box while a reply is being written,
// and, on every message that answers another, a quote of it that jumps to it (loading older
// pages when it is not shown yet).
//
// The message box (composer.js) sends with the SDK's room.sendMessage(body); the reply
// target rides along on that call (see `#wrapSend`), so the composer knows nothing of
// replies and stays the layout's.

import { el } from "./dom.js";

const QUOTE_CHARS = 80;

/** What a message is called in a quote: its author (the platform's for a system message). */
export function authorName(frame) {
  if (frame.kind === "system") return "Platform notice";
  return frame.author?.name || frame.author?.user_id || "Someone";
}

export function excerpt(text, max = QUOTE_CHARS) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

export class Replies {
  #view; // ChatView
  #jump; // (seq) => Promise: show that message (older pages loaded as needed)
  #target = null; // the chat.message frame being answered
  #bar;
  #input;

  constructor({ view, room, jump, composerForm, composerInput }) {
    this.#view = view;
    this.#jump = jump;
    this.#input = composerInput;
    this.#bar = el("div", "reply-draft");
    this.#bar.hidden = true;
    this.#bar.id = "reply-draft";
    composerForm.before(this.#bar);
    this.#wrapSend(room);
    composerInput.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.#target !== null) {
        event.preventDefault();
        this.cancel();
      }
    });
    view.addEventListener("render", ({ detail }) => this.#decorate(detail.item, detail.frame));
    // A message answered elsewhere changed: the quotes of it follow.
    view.addEventListener("render", ({ detail }) => this.#refreshQuotesOf(detail.seq));
    view.addEventListener("reset", () => this.cancel());
  }

  /** Answer `frame` with the next message sent from the message box. */
  start(frame) {
    this.#target = frame;
    const who = el("strong", null, authorName(frame));
    const text = el("span", "reply-draft-text", ` “${excerpt(frame.body)}”`);
    const cancel = el("button", "link-button", "Cancel reply");
    cancel.type = "button";
    cancel.addEventListener("click", () => {
      this.cancel();
      this.#input.focus();
    });
    this.#bar.replaceChildren(el("span", null, "Replying to "), who, text, cancel);
    this.#bar.hidden = false;
    this.#input.setAttribute("aria-describedby", this.#describedBy(true));
    this.#input.focus();
  }

  cancel() {
    this.#target = null;
    this.#bar.hidden = true;
    this.#bar.replaceChildren();
    this.#input.setAttribute("aria-describedby", this.#describedBy(false));
  }

  /** The reply target no longer takes replies (deleted, or the room archived). */
  dropIf(check) {
    if (this.#target !== null && check(this.#target)) this.cancel();
  }

  #describedBy(on) {
    const ids = (this.#input.getAttribute("aria-describedby") ?? "").split(/\s+/);
    const rest = ids.filter((id) => id && id !== this.#bar.id);
    return (on ? [this.#bar.id, ...rest] : rest).join(" ");
  }

  /** room.sendMessage(body) from the message box gets the reply target, once. */
  #wrapSend(room) {
    const send = room.sendMessage.bind(room);
    room.sendMessage = (body, options = {}) => {
      const replyTo = options.replyTo ?? this.#target?.seq ?? null;
      const entry = send(body, replyTo === null ? options : { ...options, replyTo });
      if (this.#target !== null) this.cancel();
      return entry;
    };
  }

  /** A message that answers another: its quote, a button that shows the original. */
  #decorate(item, frame) {
    if (typeof frame.reply_to !== "number") return;
    const old = item.querySelector(".reply");
    const quote = el("button", "reply reply-quote");
    quote.type = "button";
    quote.dataset.replyTo = String(frame.reply_to);
    this.#fillQuote(quote, frame.reply_to);
    quote.addEventListener("click", () => this.#jump(frame.reply_to));
    if (old) old.replaceWith(quote);
    else item.querySelector(":scope > .body")?.before(quote);
  }

  #fillQuote(quote, seq) {
    const original = this.#view.frame(seq);
    let text;
    if (original === undefined) text = "Reply to an earlier message";
    else if (original.deleted) text = "Reply to a deleted message";
    else text = `Reply to ${authorName(original)}: “${excerpt(original.body, 60)}”`;
    const arrow = el("span", null, "↩ ");
    arrow.setAttribute("aria-hidden", "true");
    quote.replaceChildren(arrow, text);
  }

  #refreshQuotesOf(seq) {
    for (const quote of this.#view.item(seq)?.parentElement?.querySelectorAll(
      `.reply-quote[data-reply-to="${seq}"]`,
    ) ?? []) {
      this.#fillQuote(quote, seq);
    }
  }
}
