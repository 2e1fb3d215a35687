// The roadmap checklist panel: the room's steps in order, progress, and the operations of
// docs/protocol.md ("Checklist operations" / "Checklist events"). The state it shows (the
// server's list and my pending operations) is checklist.js; the elements, checklistdom.js.
//
// My own operations go through ctx.submit (the durable outbox of main.js: kept in
// localStorage until acked, resent with the same id after a reconnect or a reload). Until
// the server's event for one is applied, it is shown on top of the server's state ("pending").
// A refused operation is dropped and its error shown for a few seconds.
//
// What each role may do is the role table (checklist.js mayDo): a control the reader's role
// may not use is not offered. The role is the welcome's `you.role`, kept current by
// member.updated events.

import { formatTime } from "./chat.js";
import { attachCounter } from "./charcount.js";
import {
  allowedActions,
  ChecklistState,
  checkTitle,
  MAX_TITLE,
  countProgress,
  dropAfter,
  movesItem,
  PendingOps,
  mayDo,
  refusalText,
  RETRYABLE,
  stepAfter,
  withPending,
} from "./checklist.js";
import { DragReorder } from "./checklistdrag.js";
import { buildPanel, editTitle, makeRow, updateRow } from "./checklistdom.js";
import { el } from "./dom.js";
import { newClientId } from "../sdk/outbox.js";

const ERROR_SHOW_MS = 8000;
// The role table in a sentence, for the reader's role (docs/protocol.md).
const ROLE_NOTES = {
  mentor: "As the mentor you curate the roadmap and verify the steps your mentee ticks.",
  mentee:
    "As the mentee you tick steps and add your own; the mentor's steps, and verified ones, " +
    "are the mentor's to change.",
  service: "As the platform you curate the roadmap; only the mentor verifies.",
};

export class ChecklistPanel {
  #ctx;
  #state = new ChecklistState();
  #pending; // mine, not yet seen applied
  #names = new Map(); // user id -> display name
  #rows = new Map(); // item id -> <li>
  #view = []; // the items as shown, in order
  #errorTimer = null;
  #archived = false; // the room is archived: the roadmap is read-only
  #dom; // the elements of checklistdom.js buildPanel
  section;

  constructor(ctx) {
    this.#ctx = ctx;
    this.#pending = new PendingOps(ctx.pendingOps?.() ?? []);
    this.#dom = buildPanel();
    this.section = this.#dom.section;
    this.#listen();
    this.render();
  }

  // Frames ---------------------------------------------------------------------------------

  onWelcome(frame) {
    this.#archived = frame.room?.archived === true;
    for (const m of frame.room?.members ?? []) this.#names.set(m.user_id, m.name || m.user_id);
    if (frame.you) this.#names.set(frame.you.user_id, frame.you.name || frame.you.user_id);
    if (frame.checklist) {
      this.#state.reset(frame.checklist, frame.seq);
    } else if (!frame.recovered || !this.#state.known) {
      this.#state.reset({ items: [] }, frame.seq);
    }
    this.#pending.settle(this.#state.seq);
    this.render();
  }

  onFrame(frame) {
    if (frame.type === "member.updated") this.#onMember(frame.member);
    if (frame.type === "room.updated" && frame.room) {
      this.#archived = frame.room.archived === true;
      this.render();
    }
    if (frame.type === "ack") this.#onAck(frame);
    else if (frame.type === "error") this.#onError(frame);
    else this.#onEvent(frame);
  }

  onState() {
    this.#renderNote();
  }

  /** My role changed: offer what the new one allows. */
  #onMember(member) {
    const me = this.#ctx.me;
    if (!member || !me || member.user_id !== me.user_id) return;
    this.#ctx.me = { ...me, role: member.role };
    this.render();
  }

  #onAck(frame) {
    if (!this.#pending.acked(frame.id, frame.seq)) return;
    if (this.#pending.settle(this.#state.seq)) this.render();
    else this.#renderNote();
  }

  #onError(frame) {
    const entry = this.#pending.get(frame.id);
    if (entry === undefined || RETRYABLE.has(frame.code)) return;
    const title = entry.title ?? this.#titleOf(entry.op);
    this.#pending.delete(frame.id);
    this.render();
    this.showError(refusalText(entry.op, title, frame.code, frame.message));
  }

  #onEvent(frame) {
    if (frame.author?.user_id) {
      this.#names.set(frame.author.user_id, frame.author.name || frame.author.user_id);
    }
    const changed = this.#state.apply(frame);
    if (frame.type.startsWith("checklist.") && typeof frame.id === "string") {
      this.#pending.delete(frame.id); // my operation, now in the server's state
    }
    if (this.#pending.settle(this.#state.seq) || changed) this.render();
  }

  // Operations -----------------------------------------------------------------------------

  #submit(frame) {
    const op = { ...frame, id: newClientId() };
    this.#pending.add(op, this.#titleOf(op) || null);
    this.render();
    this.#ctx.submit(op);
    this.#renderNote();
  }

  add(title) {
    const last = this.#view.at(-1);
    this.#submit({ type: "checklist.add", item_id: newClientId(), title, after: last ? last.id : null });
  }

  toggle(itemId, done) {
    this.#submit({ type: "checklist.toggle", item_id: itemId, done });
  }

  rename(itemId, title) {
    this.#submit({ type: "checklist.rename", item_id: itemId, title });
  }

  // A verify names the words the mentor saw: the server refuses it if they changed since.
  verify(itemId, verified, title) {
    const frame = { type: "checklist.verify", item_id: itemId, verified };
    if (verified && title !== undefined) frame.title = title;
    this.#submit(frame);
  }

  remove(itemId) {
    this.#submit({ type: "checklist.remove", item_id: itemId });
  }

  /** Move an item to follow `after` (null: first). No-op when it is there already. */
  move(itemId, after) {
    if (!movesItem(this.#order(), itemId, after)) return false;
    this.#submit({ type: "checklist.move", item_id: itemId, after });
    const now = this.#order();
    const title = this.#itemById(itemId)?.title ?? "";
    this.#announce(`Moved “${title}” to position ${now.indexOf(itemId) + 1} of ${now.length}.`);
    return true;
  }

  /** May I do `action` to the step `itemId` (the role table)? */
  may(action, itemId) {
    return mayDo(this.#ctx.me, action, this.#itemById(itemId), { archived: this.#archived });
  }

  /** Move one place up (-1) or down (+1) in the shown order. */
  step(itemId, direction) {
    const after = stepAfter(this.#order(), itemId, direction);
    return after === undefined ? false : this.move(itemId, after);
  }

  showError(text) {
    const error = this.#dom.error;
    clearTimeout(this.#errorTimer);
    error.textContent = text;
    error.hidden = false;
    this.#errorTimer = setTimeout(() => {
      error.hidden = true;
      error.textContent = "";
    }, ERROR_SHOW_MS);
  }

  // Rendering ------------------------------------------------------------------------------

  render() {
    this.#view = withPending(this.#state.ordered(), this.#pending.ops(), this.#ctx.me);
    this.#renderProgress();
    this.#renderList();
    this.#renderNote();
    const role = this.#ctx.me?.role;
    this.#dom.roleNote.textContent = this.#archived
      ? "The room is archived: the roadmap is read-only."
      : (ROLE_NOTES[role] ?? "");
    for (const control of this.#dom.form.elements) control.disabled = this.#archived;
    this.#dom.roleNote.dataset.role = role ?? "";
  }

  #renderProgress() {
    const { bar, barDone, barVerified, progressText } = this.#dom;
    const { done, verified, total } = countProgress(this.#view);
    const pct = (n) => (total === 0 ? 0 : (100 * n) / total);
    barDone.style.width = `${pct(done - verified)}%`;
    barVerified.style.width = `${pct(verified)}%`;
    bar.setAttribute("aria-valuemax", String(total));
    bar.setAttribute("aria-valuenow", String(done));
    const text = `${done} of ${total} done · ${verified} verified`;
    bar.setAttribute("aria-valuetext", text);
    bar.dataset.done = String(done);
    bar.dataset.verified = String(verified);
    bar.dataset.total = String(total);
    progressText.textContent = this.#state.known || total > 0 ? text : "";
  }

  #renderNote() {
    const waiting = this.#pending.waiting();
    const live = this.#ctx.live?.() ?? false;
    if (waiting === 0 || live) {
      this.#dom.note.textContent = "";
      return;
    }
    const where = this.#ctx.opsDurable?.() === false ? " (kept in this tab only)" : "";
    this.#dom.note.textContent =
      `${waiting} change${waiting === 1 ? "" : "s"} not sent yet${where}: ` +
      "they are sent when the connection is back.";
  }

  #renderList() {
    const focused = document.activeElement;
    this.#placeRows(this.#updateRows());
    // A moved row lost the focus it held (the browser blurs what leaves the document).
    if (focused instanceof HTMLElement && focused.isConnected && document.activeElement !== focused) {
      focused.focus();
    }
    const empty = this.#dom.empty;
    if (!this.#state.known && this.#view.length === 0) {
      empty.textContent = "Loading the checklist…";
      empty.hidden = false;
    } else {
      empty.textContent = "No steps yet: add the first one below.";
      empty.hidden = this.#view.length !== 0;
    }
  }

  /** Update (or make) the row of every step shown, drop the others; the rows, in order. */
  #updateRows() {
    const me = this.#ctx.me;
    const rows = this.#view.map((item, index) => {
      let row = this.#rows.get(item.id);
      if (row === undefined) {
        row = makeRow(item.id);
        this.#rows.set(item.id, row);
      }
      const first = index === 0;
      const last = index === this.#view.length - 1;
      const may = allowedActions(me, item, { archived: this.#archived });
      updateRow(row, item, { may, first, last, hover: this.#hoverText(item) });
      return row;
    });
    const keep = new Set(this.#view.map((item) => item.id));
    for (const [id, row] of this.#rows) {
      if (!keep.has(id)) {
        row.remove();
        this.#rows.delete(id);
      }
    }
    return rows;
  }

  /** Put rows in order, moving as few as possible. */
  #placeRows(rows) {
    const list = this.#dom.list;
    let cursor = list.firstElementChild;
    for (const row of rows) {
      if (row === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        list.insertBefore(row, cursor);
      }
    }
  }

  #hoverText(item) {
    const lines = [];
    if (item.done && item.done_by) {
      lines.push(`Ticked by ${this.#nameOf(item.done_by)} at ${this.#when(item.done_at)}`);
    }
    if (item.verified && item.verified_by) {
      lines.push(`Verified by ${this.#nameOf(item.verified_by)} (mentor) at ${this.#when(item.verified_at)}`);
    }
    if (item.pending) lines.push("Not saved yet");
    return lines.join("\n");
  }

  #nameOf(userId) {
    return this.#names.get(userId) || userId;
  }

  #when(ts) {
    if (!ts) return "";
    const date = new Date(ts);
    return Number.isNaN(date.getTime()) ? ts : formatTime(ts) || date.toLocaleString();
  }

  #announce(text) {
    this.#dom.announcer.replaceChildren(el("p", null, text));
  }

  // Events ---------------------------------------------------------------------------------

  #listen() {
    const { form, input, list } = this.#dom;
    // The title's limit, shown as it nears (charcount.js): a long paste is kept and counted.
    const counter = el("p", "counter");
    counter.id = "checklist-add-count";
    input.after(counter);
    const count = attachCounter(input, counter, MAX_TITLE);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const { title, error } = checkTitle(input.value);
      this.#setFormError(error);
      if (error) return;
      this.add(title);
      input.value = "";
      count();
      input.focus();
    });
    input.addEventListener("input", () => this.#setFormError(""));
    list.addEventListener("change", (event) => this.#onChange(event));
    list.addEventListener("click", (event) => this.#onClick(event));
    list.addEventListener("keydown", (event) => this.#onKeydown(event));
    new DragReorder(list, {
      rowOf: (itemId) => this.#rows.get(itemId),
      onDrop: (dragged, target, before) => {
        if (!this.may("move", dragged)) return;
        this.move(dragged, dropAfter(this.#order(), dragged, target, before));
      },
    });
  }

  #setFormError(text) {
    this.#dom.formError.textContent = text;
    this.#dom.input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  #order() {
    return this.#view.map((i) => i.id);
  }

  #itemOf(node) {
    const row = node instanceof Element ? node.closest("li.step") : null;
    return row && this.#dom.list.contains(row) ? row.dataset.itemId : null;
  }

  #itemById(itemId) {
    return this.#view.find((i) => i.id === itemId);
  }

  #focusStep(itemId) {
    this.#rows.get(itemId)?.querySelector(".step-check").focus();
  }

  #onChange(event) {
    const target = event.target;
    if (!target.classList.contains("step-check")) return;
    const itemId = this.#itemOf(target);
    if (itemId) this.toggle(itemId, target.checked);
  }

  #onClick(event) {
    const button = event.target.closest("button");
    if (button === null) return;
    const itemId = this.#itemOf(button);
    const item = itemId && this.#itemById(itemId);
    if (!item) return;
    const is = (name) => button.classList.contains(name);
    if (is("step-verify")) this.verify(itemId, !item.verified, item.title);
    else if (is("step-up") || is("step-down")) {
      this.step(itemId, is("step-up") ? -1 : +1);
      // At the top (or the bottom) now, the button is disabled: keep the focus on the step.
      if (button.disabled) this.#focusStep(itemId);
    } else if (is("step-rename")) this.#startRename(itemId);
    else if (is("step-remove")) this.#removeWithFocus(itemId);
  }

  #onKeydown(event) {
    const itemId = this.#itemOf(event.target);
    if (!itemId || event.target.classList.contains("step-rename-input")) return;
    if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      if (this.may("move", itemId)) this.step(itemId, event.key === "ArrowUp" ? -1 : +1);
    } else if (event.key === "F2") {
      event.preventDefault();
      if (this.may("rename", itemId)) this.#startRename(itemId);
    }
  }

  /** Remove a step, and keep the keyboard focus in the list (on the next step). */
  #removeWithFocus(itemId) {
    const order = this.#order();
    const at = order.indexOf(itemId);
    const next = order[at + 1] ?? order[at - 1] ?? null;
    const title = this.#itemById(itemId)?.title ?? "";
    this.remove(itemId);
    this.#announce(`Removed “${title}”.`);
    if (next && this.#rows.get(next)) this.#focusStep(next);
    else this.#dom.input.focus();
  }

  #startRename(itemId) {
    const row = this.#rows.get(itemId);
    const item = this.#itemById(itemId);
    if (!row || !item || row.dataset.editing === "true") return;
    editTitle(row, item.title, (save, refocus, text) => {
      const { title, error } = checkTitle(text);
      if (save && error) this.showError(error);
      const current = this.#itemById(itemId);
      if (save && !error && current && current.title !== title) this.rename(itemId, title);
      else this.render();
      if (refocus && row.isConnected) row.querySelector(".step-check").focus();
    });
  }

  #titleOf(op) {
    if (op.type === "checklist.add") return op.title;
    return this.#itemById(op.item_id)?.title ?? this.#state.items.get(op.item_id)?.title ?? "";
  }
}

let panel = null;

/** The room feature (FEATURES in web/js/main.js; web/js/roomfeatures.js says what it is). */
export const checklistFeature = {
  name: "checklist",
  mount(ctx) {
    panel = new ChecklistPanel(ctx);
    ctx.panels.append(panel.section);
    ctx.panels.hidden = false;
  },
  onWelcome(frame) {
    panel?.onWelcome(frame);
  },
  onFrame(frame) {
    panel?.onFrame(frame);
  },
  onState(state) {
    panel?.onState(state);
  },
};
