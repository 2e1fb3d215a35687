// The message box: Enter sends (through the outbox of roomsender.js), and "typing" frames
// tell the room while I write.

import { byId } from "./dom.js";

const MAX_BODY = 4000; // characters (code points), as the server counts them
const TYPING_REFRESH_MS = 3000; // "still typing" is repeated this often while typing
const TYPING_IDLE_MS = 4000; // no keystroke for this long: stopped typing

export class Composer {
  #conn;
  #sender;
  #input = byId("composer-input");
  #sendButton = byId("send");
  #typingActive = false;
  #typingSentAt = 0;
  #typingIdle = null;

  constructor(conn, sender) {
    this.#conn = conn;
    this.#sender = sender;
    this.#input.addEventListener("input", () => this.#onInput());
    this.#input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter is a new line; never while an input method is composing.
      if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
        return;
      }
      event.preventDefault();
      this.#submit();
    });
    byId("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.#submit();
    });
  }

  /** The room is there (a welcome): messages can be written. */
  enable() {
    this.#input.disabled = false;
    this.#sendButton.disabled = false;
  }

  /** The room is gone for good. */
  disable() {
    this.#input.disabled = true;
    this.#sendButton.disabled = true;
    this.#stopTyping();
  }

  focus() {
    this.#input.focus();
  }

  #onInput() {
    this.#setError("");
    if (this.#input.value.trim() === "") {
      this.#stopTyping();
      return;
    }
    if (!this.#typingActive || Date.now() - this.#typingSentAt > TYPING_REFRESH_MS) {
      this.#sendTyping(true);
    }
    clearTimeout(this.#typingIdle);
    this.#typingIdle = setTimeout(() => this.#stopTyping(), TYPING_IDLE_MS);
  }

  #sendTyping(active) {
    this.#typingActive = active;
    this.#typingSentAt = Date.now();
    this.#conn.send({ type: "typing", active });
  }

  #stopTyping() {
    clearTimeout(this.#typingIdle);
    if (this.#typingActive) this.#sendTyping(false);
  }

  #setError(text) {
    byId("composer-error").textContent = text;
    this.#input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  #submit() {
    const input = this.#input;
    if (input.disabled) return;
    const body = input.value;
    if (body.trim() === "") return;
    const length = [...body].length;
    if (length > MAX_BODY) {
      this.#setError(`Too long: ${length} characters, at most ${MAX_BODY}.`);
      return;
    }
    this.#sender.queueMessage(body);
    input.value = "";
    this.#stopTyping();
    this.#sender.flush();
    input.focus();
  }
}
