// Reply, Edit and Delete on the messages of the log: the controls the reader may use
// (chatrules.js mayChat) under each message, editing in place, and deleting after a
// confirmation. Edits and deletes go through the SDK's outbox (editMessage, deleteMessage:
// kept until acked, resent with the same id after a reconnect); the message changes on the
// page when its chat.edited / chat.deleted comes back, for everyone at once.

import { el } from "./dom.js";
import { MAX_BODY, bodyProblem, mayChat } from "./chatrules.js";

const COUNT_FROM = MAX_BODY * 0.9; // the edit box shows its length from here on

const ACTIONS = [
  ["reply", "Reply"],
  ["edit", "Edit"],
  ["delete", "Delete"],
];

export class MessageActions {
  #view; // ChatView
  #room; // RoomClient
  #replies; // Replies: what "Reply" starts
  #me = null; // who I am: the welcome's `you`, then member.updated
  #archived = false;
  #dialog = null; // the delete confirmation, made on first use
  #ops = new Map(); // operation id -> {seq, action}: my edits and deletes waiting for their ack
  #tooOld = new Set(); // seqs the server would not let me edit any more (MENTEO_EDIT_WINDOW)

  constructor({ view, room, replies }) {
    this.#view = view;
    this.#room = room;
    this.#replies = replies;
    view.addEventListener("render", ({ detail }) => this.#decorate(detail.item, detail.frame));
    room.on("pending", (detail) => this.#onPending(detail));
  }

  /** Who I am and whether the room takes writes: every message's controls follow. */
  update({ me, archived }) {
    this.#me = me;
    this.#archived = archived;
    for (const seq of this.#view.seqs()) {
      this.#decorate(this.#view.item(seq), this.#view.frame(seq));
    }
  }

  allowed(action, frame) {
    if (action === "edit" && this.#tooOld.has(frame.seq)) return false;
    return mayChat(this.#me, action, frame, { archived: this.#archived });
  }

  /** (Re)make the controls of one message: only those the reader may use. */
  #decorate(item, frame) {
    if (item === undefined || frame === undefined) return;
    item.querySelector(":scope > .message-actions")?.remove();
    const body = item.querySelector(":scope > .body");
    if (body !== null) body.id = `message-body-${frame.seq}`;
    const offered = ACTIONS.filter(([action]) => this.allowed(action, frame));
    if (offered.length === 0) return;
    const bar = el("div", "message-actions");
    for (const [action, label] of offered) {
      const button = el("button", `link-button action-${action}`, label);
      button.type = "button";
      button.dataset.action = action;
      // "Edit" alone says nothing to a screen reader going from button to button.
      button.setAttribute("aria-describedby", `message-body-${frame.seq}`);
      button.addEventListener("click", () => this.#act(action, frame.seq, button));
      bar.append(button);
    }
    const after = item.querySelector(":scope > .action-status, :scope > .seen");
    if (after) after.before(bar); // the controls stay right under the text
    else item.append(bar);
  }

  #act(action, seq, button) {
    const frame = this.#view.frame(seq);
    if (frame === undefined || !this.allowed(action, frame)) return;
    if (action === "reply") this.#replies.start(frame);
    else if (action === "edit") this.#startEdit(seq);
    else this.#confirmDelete(seq, button);
  }

  // Editing in place -------------------------------------------------------------------

  #startEdit(seq) {
    const item = this.#view.item(seq);
    const frame = this.#view.frame(seq);
    const body = item?.querySelector(":scope > .body");
    if (!item || !frame || !body || item.querySelector(".edit-form")) return;
    const form = el("form", "edit-form");
    const label = el("label", "visually-hidden", "Edit message");
    const input = el("textarea", "edit-input");
    input.id = `edit-input-${seq}`;
    label.htmlFor = input.id;
    input.rows = 2;
    input.value = frame.body;
    const error = el("p", "error edit-error");
    error.id = `edit-error-${seq}`;
    error.setAttribute("aria-live", "assertive");
    const count = el("p", "edit-count");
    count.id = `edit-count-${seq}`;
    input.setAttribute("aria-describedby", `${error.id} ${count.id}`);
    const save = el("button", null, "Save");
    save.type = "submit";
    const cancel = el("button", "link-button", "Cancel");
    cancel.type = "button";
    form.append(label, input, save, cancel, count, error);
    body.hidden = true;
    item.querySelector(":scope > .message-actions")?.setAttribute("hidden", "");
    body.after(form);

    const close = () => {
      form.remove();
      body.hidden = false;
      item.querySelector(":scope > .message-actions")?.removeAttribute("hidden");
      item.querySelector(".action-edit")?.focus();
    };
    const submit = () => {
      const text = input.value;
      if (text === frame.body) return close(); // nothing changed: nothing to send
      const problem = bodyProblem(text);
      if (problem) {
        error.textContent = problem;
        input.setAttribute("aria-invalid", "true");
        return;
      }
      const id = this.#room.editMessage(seq, text);
      this.#ops.set(id, { seq, action: "edit" });
      this.#setStatus(seq, "Saving…");
      close();
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        close();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
    const showCount = () => {
      const length = [...input.value].length;
      count.textContent = length >= COUNT_FROM ? `${length} of ${MAX_BODY} characters` : "";
      count.classList.toggle("over", length > MAX_BODY);
    };
    input.addEventListener("input", () => {
      error.textContent = "";
      input.setAttribute("aria-invalid", "false");
      showCount();
    });
    showCount();
    cancel.addEventListener("click", close);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  // Deleting, after a confirmation -----------------------------------------------------

  #confirmDelete(seq, button) {
    const dialog = this.#deleteDialog();
    const frame = this.#view.frame(seq);
    const excerpt = frame.body.length > 120 ? `${frame.body.slice(0, 120)}…` : frame.body;
    dialog.querySelector(".delete-excerpt").textContent = excerpt;
    dialog.returnValue = "";
    dialog.onclose = () => {
      if (dialog.returnValue === "delete") {
        const id = this.#room.deleteMessage(seq);
        this.#ops.set(id, { seq, action: "delete" });
        this.#setStatus(seq, "Deleting…");
        document.getElementById("messages-scroll")?.focus(); // the button is going away
      } else if (button.isConnected) {
        button.focus();
      }
    };
    dialog.showModal();
    dialog.querySelector(".delete-cancel").focus(); // the safe choice first
  }

  #deleteDialog() {
    if (this.#dialog !== null) return this.#dialog;
    const dialog = el("dialog", "delete-dialog");
    dialog.setAttribute("aria-labelledby", "delete-dialog-title");
    dialog.setAttribute("aria-describedby", "delete-dialog-text");
    const form = el("form");
    form.method = "dialog";
    const title = el("h2", null, "Delete this message?");
    title.id = "delete-dialog-title";
    const text = el("p", null, "It is erased for everyone in the room. This cannot be undone.");
    text.id = "delete-dialog-text";
    const quote = el("blockquote", "delete-excerpt");
    const buttons = el("div", "dialog-buttons");
    const cancel = el("button", "delete-cancel", "Cancel");
    cancel.value = "cancel";
    const confirm = el("button", "danger delete-confirm", "Delete");
    confirm.value = "delete";
    buttons.append(cancel, confirm);
    form.append(title, text, quote, buttons);
    dialog.append(form);
    document.body.append(dialog);
    this.#dialog = dialog;
    return dialog;
  }

  // What came of my edits and deletes --------------------------------------------------

  #onPending({ id, kind, status, code, message }) {
    if (kind !== "op" || !this.#ops.has(id)) return;
    if (status !== "sent" && status !== "failed") return;
    const { seq, action } = this.#ops.get(id);
    this.#ops.delete(id);
    if (status === "sent") {
      this.#setStatus(seq, ""); // the chat.edited / chat.deleted remade the message already
      return;
    }
    if (action === "edit" && code === "forbidden") this.#tooOld.add(seq);
    const what = action === "edit" ? "Not saved" : "Not deleted";
    this.#setStatus(seq, `${what}: ${message}`, true);
    this.#decorate(this.#view.item(seq), this.#view.frame(seq));
  }

  #setStatus(seq, text, failed = false) {
    const item = this.#view.item(seq);
    if (item === undefined) return;
    let status = item.querySelector(":scope > .action-status");
    if (text === "") {
      status?.remove();
      return;
    }
    if (status === null) {
      status = el("p", "action-status");
      status.setAttribute("role", "status");
      item.append(status);
    }
    status.classList.toggle("failed", failed);
    status.textContent = text;
  }
}
