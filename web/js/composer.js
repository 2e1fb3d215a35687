// The message box: Enter sends (through the RoomClient's durable outbox), and "typing"
// frames tell the room while I write (the SDK's keystroke(): at once, then every 3 s while
// typing, and "stopped" after 4 s without a key).

import { attachCounter, charCount, tooLong } from "./charcount.js";
import { byId } from "./dom.js";

const MAX_BODY = 4000; // characters (code points), as the server counts them (docs/protocol.md)
export const BLANK = "Nothing to send: write a message first (spaces and new lines alone are not sent).";

export class Composer {
  #room;
  #input = byId("composer-input");
  #sendButton = byId("send");
  #count;

  constructor(room) {
    this.#room = room;
    this.#count = attachCounter(this.#input, byId("composer-count"), MAX_BODY);
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
    this.#room.stopTyping();
  }

  focus() {
    this.#input.focus();
  }

  #onInput() {
    this.#setError("");
    if (this.#input.value.trim() === "") this.#room.stopTyping();
    else this.#room.keystroke();
  }

  #setError(text) {
    byId("composer-error").textContent = text;
    this.#input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  #submit() {
    const input = this.#input;
    if (input.disabled) return;
    const body = input.value;
    if (body.trim() === "") {
      this.#setError(BLANK);
      return;
    }
    const length = charCount(body);
    if (length > MAX_BODY) {
      this.#setError(tooLong(length, MAX_BODY));
      return;
    }
    this.#room.sendMessage(body); // stored, then sent; typing stops
    input.value = "";
    this.#count();
    input.focus();
  }
}
