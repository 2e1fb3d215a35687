// The roadmap checklist panel: the room's steps in order, progress, and the operations of
// docs/protocol.md ("Checklist operations" / "Checklist events").
//
// State: the welcome frame's `checklist` snapshot (everything up to welcome.seq), then every
// checklist.* event with a higher seq, applied as the protocol's table says. A new socket's
// welcome always carries a fresh snapshot, so it replaces the state (recovered or not): the
// events replayed after it that it already holds (seq <= welcome.seq) are skipped.
//
// My own operations go through ctx.submit (the durable outbox of main.js: kept in
// localStorage until acked, resent with the same id after a reconnect or a reload). Until
// the server's event for one is applied, it is shown on top of the server's state ("pending"):
// a tick made offline shows at once and stays across a reload. A refused operation is dropped
// and its error shown for a few seconds.
//
// All text from the network goes into the page with textContent, never as HTML.

import { formatTime } from "./chat.js";
import { el } from "./dom.js";
import { newClientId } from "./outbox.js";

export const MAX_TITLE = 200; // characters (code points), as the server counts them
const ERROR_SHOW_MS = 8000;
const RETRYABLE = new Set(["unavailable", "rate_limited"]); // main.js sends these again

const VERBS = {
  "checklist.add": "add",
  "checklist.toggle": "tick",
  "checklist.rename": "rename",
  "checklist.move": "move",
  "checklist.remove": "remove",
  "checklist.verify": "verify",
};

const REASONS = {
  not_found: "that step (or the one it was placed after) no longer exists",
  forbidden: "only the room's mentor can verify steps",
};

/** Plain string order by code points (Python's str comparison, which the server uses). */
export function compareStrings(a, b) {
  if (a === b) return 0;
  const x = a[Symbol.iterator]();
  const y = b[Symbol.iterator]();
  for (;;) {
    const p = x.next();
    const q = y.next();
    if (p.done) return q.done ? 0 : -1;
    if (q.done) return 1;
    if (p.value !== q.value) return p.value.codePointAt(0) < q.value.codePointAt(0) ? -1 : 1;
  }
}

/** The list's order: by `pos`, then `id`, both compared as plain strings. */
export function byPosition(a, b) {
  return compareStrings(a.pos, b.pos) || compareStrings(a.id, b.id);
}

function freshItem(raw) {
  return {
    id: raw.id,
    title: raw.title,
    description: raw.description ?? "",
    pos: raw.pos,
    done: raw.done === true,
    done_by: raw.done_by ?? null,
    done_at: raw.done_at ?? null,
    verified: raw.verified === true,
    verified_by: raw.verified_by ?? null,
    verified_at: raw.verified_at ?? null,
    verified_title: raw.verified_title ?? null,
  };
}

function unverify(item) {
  item.verified = false;
  item.verified_by = null;
  item.verified_at = null;
  item.verified_title = null;
}

/** The server's checklist as this page knows it: a snapshot plus the events after it. */
export class ChecklistState {
  items = new Map(); // id -> item
  seq = 0; // every event up to this seq is in `items`
  known = false; // a snapshot has been loaded

  /** Replace everything with a welcome's snapshot {items: [...]} taken at `seq`. */
  reset(snapshot, seq) {
    this.items = new Map((snapshot?.items ?? []).map((raw) => [raw.id, freshItem(raw)]));
    this.seq = seq;
    this.known = true;
  }

  /**
   * Apply one stored event (any type: only checklist.* change the list). Events at or below
   * `seq` are already in the state and are skipped. Returns true when the list changed.
   */
  apply(frame) {
    if (typeof frame.seq !== "number" || frame.seq <= this.seq) return false;
    this.seq = frame.seq;
    if (!frame.type.startsWith("checklist.")) return false;
    const author = frame.author?.user_id ?? null;
    const ts = frame.ts ?? null;
    if (frame.type === "checklist.add") {
      const raw = frame.item;
      if (!raw || typeof raw.id !== "string") return false;
      this.items.set(raw.id, freshItem({ ...raw, done: false, verified: false }));
      this.rebalance(frame.rebalance);
      return true;
    }
    const item = this.items.get(frame.item_id);
    if (item === undefined) return false; // never happens: the server refuses those
    switch (frame.type) {
      case "checklist.toggle":
        item.done = frame.done === true;
        item.done_by = item.done ? author : null;
        item.done_at = item.done ? ts : null;
        if (!item.done) unverify(item);
        return true;
      case "checklist.rename":
        item.title = frame.title;
        if (frame.verified === false) unverify(item); // the mentor did not verify these words
        return true;
      case "checklist.move":
        item.pos = frame.pos;
        this.rebalance(frame.rebalance);
        return true;
      case "checklist.remove":
        this.items.delete(item.id);
        return true;
      case "checklist.verify":
        item.verified = frame.verified === true;
        item.verified_by = item.verified ? author : null;
        item.verified_at = item.verified ? ts : null;
        item.verified_title = item.verified ? (frame.verified_title ?? item.title) : null;
        return true;
      default:
        return false;
    }
  }

  /** A rebalance (docs/protocol.md): every other live item's new position key. */
  rebalance(keys) {
    if (!keys || typeof keys !== "object") return;
    for (const [id, pos] of Object.entries(keys)) {
      const item = this.items.get(id);
      if (item !== undefined && typeof pos === "string") item.pos = pos;
    }
  }

  ordered() {
    return [...this.items.values()].sort(byPosition);
  }

  progress() {
    const items = [...this.items.values()];
    return {
      done: items.filter((i) => i.done).length,
      verified: items.filter((i) => i.verified).length,
      total: items.length,
    };
  }
}

/**
 * The list as shown: the server's order with my operations not yet applied by the server on
 * top (in the order they were made). Items they touch are marked `pending`.
 */
export function withPending(ordered, ops, me, now = new Date().toISOString()) {
  let list = ordered.map((item) => ({ ...item, pending: false }));
  const indexOf = (id) => list.findIndex((i) => i.id === id);
  const placeAfter = (item, after) => {
    if (after === null || after === undefined) {
      list.unshift(item);
      return;
    }
    const at = indexOf(after);
    if (at === -1) list.push(item);
    else list.splice(at + 1, 0, item);
  };
  for (const op of ops) {
    if (op.type === "checklist.add") {
      if (indexOf(op.item_id) !== -1) continue; // already applied by the server
      const item = freshItem({ id: op.item_id, title: op.title, description: op.description, pos: "" });
      item.pending = true;
      if ("after" in op) placeAfter(item, op.after);
      else list.push(item);
      continue;
    }
    const at = indexOf(op.item_id);
    if (at === -1) continue;
    const item = { ...list[at], pending: true };
    list[at] = item;
    if (op.type === "checklist.toggle") {
      item.done = op.done === true;
      item.done_by = item.done ? (me?.user_id ?? null) : null;
      item.done_at = item.done ? now : null;
      if (!item.done) Object.assign(item, { verified: false, verified_by: null, verified_at: null });
    } else if (op.type === "checklist.rename") {
      item.title = op.title;
    } else if (op.type === "checklist.move") {
      if (op.after !== null && indexOf(op.after) === -1) continue;
      list.splice(at, 1);
      placeAfter(item, op.after);
    } else if (op.type === "checklist.remove") {
      list = list.filter((i) => i.id !== op.item_id);
    } else if (op.type === "checklist.verify") {
      item.verified = op.verified !== false;
      item.verified_by = item.verified ? (me?.user_id ?? null) : null;
      item.verified_at = item.verified ? now : null;
    }
  }
  return list;
}

/** A title as typed: trimmed; an error message when it cannot be sent. */
export function checkTitle(raw) {
  const title = raw.trim();
  if (title === "") return { title, error: "A step needs a title." };
  const length = [...title].length;
  if (length > MAX_TITLE) {
    return { title, error: `Too long: ${length} characters, at most ${MAX_TITLE}.` };
  }
  return { title, error: "" };
}

let domIds = 0;

export class ChecklistPanel {
  #ctx;
  #state = new ChecklistState();
  #pending = new Map(); // op id -> {op, ackSeq, title}: mine, not yet seen applied
  #names = new Map(); // user id -> display name
  #rows = new Map(); // item id -> <li>
  #view = []; // the items as shown, in order
  #errorTimer = null;
  #dragged = null; // item id being dragged

  // Elements.
  section;
  #bar;
  #barDone;
  #barVerified;
  #progressText;
  #list;
  #empty;
  #error;
  #note;
  #announcer;
  #form;
  #input;
  #formError;

  constructor(ctx) {
    this.#ctx = ctx;
    for (const op of ctx.pendingOps?.() ?? []) {
      if (op.type in VERBS) this.#pending.set(op.id, { op, ackSeq: null, title: null });
    }
    this.#build();
    this.render();
  }

  // Frames ---------------------------------------------------------------------------------

  onWelcome(frame) {
    for (const m of frame.room?.members ?? []) this.#names.set(m.user_id, m.name || m.user_id);
    if (frame.you) this.#names.set(frame.you.user_id, frame.you.name || frame.you.user_id);
    if (frame.checklist) {
      this.#state.reset(frame.checklist, frame.seq);
    } else if (!frame.recovered || !this.#state.known) {
      this.#state.reset({ items: [] }, frame.seq);
    }
    this.#settle();
    this.render();
  }

  onFrame(frame) {
    if (frame.type === "ack") {
      const entry = this.#pending.get(frame.id);
      if (entry === undefined) return;
      entry.ackSeq = frame.seq;
      if (this.#settle()) this.render();
      else this.#renderNote();
      return;
    }
    if (frame.type === "error") {
      const entry = this.#pending.get(frame.id);
      if (entry === undefined || RETRYABLE.has(frame.code)) return;
      const title = entry.title ?? this.#titleOf(entry.op);
      this.#pending.delete(frame.id);
      this.render();
      const verb = VERBS[entry.op.type] ?? "change";
      const reason = REASONS[frame.code] ?? frame.message ?? frame.code;
      this.showError(`Could not ${verb} ${title ? `“${title}”` : "the step"}: ${reason}.`);
      return;
    }
    if (frame.author?.user_id) {
      this.#names.set(frame.author.user_id, frame.author.name || frame.author.user_id);
    }
    const changed = this.#state.apply(frame);
    if (frame.type.startsWith("checklist.") && typeof frame.id === "string") {
      this.#pending.delete(frame.id); // my operation, now in the server's state
    }
    if (this.#settle() || changed) this.render();
  }

  onState() {
    this.#renderNote();
  }

  /** Drop pending operations the state already holds (acked at or below its seq). */
  #settle() {
    let dropped = false;
    for (const [id, entry] of this.#pending) {
      if (entry.ackSeq !== null && entry.ackSeq <= this.#state.seq) {
        this.#pending.delete(id);
        dropped = true;
      }
    }
    return dropped;
  }

  // Operations -----------------------------------------------------------------------------

  #submit(frame) {
    const op = { ...frame, id: newClientId() };
    this.#pending.set(op.id, { op, ackSeq: null, title: this.#titleOf(op) || null });
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

  verify(itemId, verified) {
    this.#submit({ type: "checklist.verify", item_id: itemId, verified });
  }

  remove(itemId) {
    this.#submit({ type: "checklist.remove", item_id: itemId });
  }

  /** Move an item to follow `after` (null: first). No-op when it is there already. */
  move(itemId, after) {
    const order = this.#view.map((i) => i.id);
    const at = order.indexOf(itemId);
    if (at === -1 || after === itemId) return false;
    const before = at > 0 ? order[at - 1] : null;
    if (before === after) return false;
    this.#submit({ type: "checklist.move", item_id: itemId, after });
    const now = this.#view.map((i) => i.id);
    const title = this.#view.find((i) => i.id === itemId)?.title ?? "";
    this.#announce(`Moved “${title}” to position ${now.indexOf(itemId) + 1} of ${now.length}.`);
    return true;
  }

  /** Move one place up (-1) or down (+1) in the shown order. */
  step(itemId, direction) {
    const order = this.#view.map((i) => i.id);
    const at = order.indexOf(itemId);
    if (at === -1) return false;
    if (direction < 0) {
      if (at === 0) return false;
      return this.move(itemId, at >= 2 ? order[at - 2] : null);
    }
    if (at >= order.length - 1) return false;
    return this.move(itemId, order[at + 1]);
  }

  showError(text) {
    clearTimeout(this.#errorTimer);
    this.#error.textContent = text;
    this.#error.hidden = false;
    this.#errorTimer = setTimeout(() => {
      this.#error.hidden = true;
      this.#error.textContent = "";
    }, ERROR_SHOW_MS);
  }

  // Rendering ------------------------------------------------------------------------------

  #build() {
    const section = el("section", "panel checklist");
    section.id = "checklist-panel";
    section.setAttribute("aria-labelledby", "checklist-heading");
    const heading = el("h2", null, "Roadmap");
    heading.id = "checklist-heading";

    const progress = el("div", "checklist-progress");
    this.#bar = el("div", "progress-bar");
    this.#bar.setAttribute("role", "progressbar");
    this.#bar.setAttribute("aria-labelledby", "checklist-heading");
    this.#bar.setAttribute("aria-valuemin", "0");
    this.#barDone = el("span", "progress-done");
    this.#barVerified = el("span", "progress-verified");
    this.#bar.append(this.#barVerified, this.#barDone); // verified steps first, then done
    this.#progressText = el("p", "progress-text");
    this.#progressText.id = "checklist-progress-text";
    progress.append(this.#bar, this.#progressText);

    this.#error = el("p", "checklist-error");
    this.#error.setAttribute("role", "alert");
    this.#error.hidden = true;
    this.#note = el("p", "checklist-note");
    this.#note.setAttribute("aria-live", "polite");

    this.#list = el("ol", "checklist-items");
    this.#list.setAttribute("aria-labelledby", "checklist-heading");
    this.#list.setAttribute("aria-describedby", "checklist-help");
    this.#empty = el("p", "checklist-empty");

    this.#form = el("form", "checklist-add");
    const label = el("label", "visually-hidden", "New step");
    label.htmlFor = "checklist-new";
    this.#input = el("input");
    this.#input.id = "checklist-new";
    this.#input.name = "title";
    this.#input.autocomplete = "off";
    this.#input.placeholder = "Add a step";
    this.#input.maxLength = MAX_TITLE * 2; // code points are checked on submit
    this.#input.setAttribute("aria-describedby", "checklist-add-error");
    const button = el("button", null, "Add");
    button.type = "submit";
    this.#formError = el("p", "error");
    this.#formError.id = "checklist-add-error";
    this.#formError.setAttribute("aria-live", "assertive");
    this.#form.append(label, this.#input, button, this.#formError);

    const help = el(
      "p",
      "hint",
      "Tick a step when it is done. Alt+↑ and Alt+↓ move the focused step; F2 renames it.",
    );
    help.id = "checklist-help";

    this.#announcer = el("div", "visually-hidden");
    this.#announcer.setAttribute("aria-live", "polite");

    section.append(
      heading,
      progress,
      this.#error,
      this.#note,
      this.#list,
      this.#empty,
      this.#form,
      help,
      this.#announcer,
    );
    this.section = section;

    this.#form.addEventListener("submit", (event) => {
      event.preventDefault();
      const { title, error } = checkTitle(this.#input.value);
      this.#setFormError(error);
      if (error) return;
      this.add(title);
      this.#input.value = "";
      this.#input.focus();
    });
    this.#input.addEventListener("input", () => this.#setFormError(""));
    this.#list.addEventListener("change", (event) => this.#onChange(event));
    this.#list.addEventListener("click", (event) => this.#onClick(event));
    this.#list.addEventListener("keydown", (event) => this.#onKeydown(event));
    this.#list.addEventListener("dragstart", (event) => this.#onDragStart(event));
    this.#list.addEventListener("dragover", (event) => this.#onDragOver(event));
    this.#list.addEventListener("dragleave", (event) => {
      if (!this.#list.contains(event.relatedTarget)) this.#clearDropMarks();
    });
    this.#list.addEventListener("drop", (event) => this.#onDrop(event));
    this.#list.addEventListener("dragend", () => this.#endDrag());
  }

  #setFormError(text) {
    this.#formError.textContent = text;
    this.#input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  render() {
    const ops = [...this.#pending.values()].map((e) => e.op);
    this.#view = withPending(this.#state.ordered(), ops, this.#ctx.me);
    this.#renderProgress();
    this.#renderList();
    this.#renderNote();
  }

  #renderProgress() {
    const total = this.#view.length;
    const done = this.#view.filter((i) => i.done).length;
    const verified = this.#view.filter((i) => i.verified).length;
    const pct = (n) => (total === 0 ? 0 : (100 * n) / total);
    this.#barDone.style.width = `${pct(done - verified)}%`;
    this.#barVerified.style.width = `${pct(verified)}%`;
    this.#bar.setAttribute("aria-valuemax", String(total));
    this.#bar.setAttribute("aria-valuenow", String(done));
    const text = `${done} of ${total} done · ${verified} verified`;
    this.#bar.setAttribute("aria-valuetext", text);
    this.#bar.dataset.done = String(done);
    this.#bar.dataset.verified = String(verified);
    this.#bar.dataset.total = String(total);
    this.#progressText.textContent = this.#state.known || total > 0 ? text : "";
  }

  #renderNote() {
    const waiting = [...this.#pending.values()].filter((e) => e.ackSeq === null).length;
    const live = this.#ctx.live?.() ?? false;
    if (waiting === 0 || live) {
      this.#note.textContent = "";
      return;
    }
    const where = this.#ctx.opsDurable?.() === false ? " (kept in this tab only)" : "";
    this.#note.textContent =
      `${waiting} change${waiting === 1 ? "" : "s"} not sent yet${where}: ` +
      "they are sent when the connection is back.";
  }

  #renderList() {
    const focused = document.activeElement;
    const keep = new Set();
    const rows = [];
    for (const item of this.#view) {
      let row = this.#rows.get(item.id);
      if (row === undefined) {
        row = this.#makeRow(item.id);
        this.#rows.set(item.id, row);
      }
      this.#updateRow(row, item);
      keep.add(item.id);
      rows.push(row);
    }
    for (const [id, row] of this.#rows) {
      if (!keep.has(id)) {
        row.remove();
        this.#rows.delete(id);
      }
    }
    // Put rows in order, moving as few as possible.
    let cursor = this.#list.firstElementChild;
    for (const row of rows) {
      if (row === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        this.#list.insertBefore(row, cursor);
      }
    }
    // A moved row lost the focus it held (the browser blurs what leaves the document).
    if (focused instanceof HTMLElement && focused.isConnected && document.activeElement !== focused) {
      focused.focus();
    }
    if (!this.#state.known && this.#view.length === 0) {
      this.#empty.textContent = "Loading the checklist…";
      this.#empty.hidden = false;
    } else {
      this.#empty.textContent = "No steps yet: add the first one below.";
      this.#empty.hidden = this.#view.length !== 0;
    }
  }

  #makeRow(itemId) {
    const n = ++domIds;
    const row = el("li", "step");
    row.dataset.itemId = itemId;
    row.draggable = true;
    const handle = el("span", "drag-handle", "⠿");
    handle.setAttribute("aria-hidden", "true");
    const check = el("input", "step-check");
    check.type = "checkbox";
    check.id = `step-check-${n}`;
    const title = el("label", "step-title");
    title.htmlFor = check.id;
    title.id = `step-title-${n}`;
    const body = el("div", "step-body");
    const description = el("p", "step-description");
    body.append(title, description);
    const badge = el("span", "step-badge", "✓ Verified");
    const actions = el("span", "step-actions");
    const verify = el("button", "step-verify", "Verify");
    const up = el("button", "step-up", "↑");
    const down = el("button", "step-down", "↓");
    const rename = el("button", "step-rename", "Rename");
    const remove = el("button", "step-remove", "Remove");
    for (const b of [verify, up, down, rename, remove]) b.type = "button";
    actions.append(verify, up, down, rename, remove);
    row.append(handle, check, body, badge, actions);
    return row;
  }

  #updateRow(row, item) {
    const mentor = this.#ctx.me?.role === "mentor";
    row.dataset.done = String(item.done);
    row.dataset.verified = String(item.verified);
    if (item.pending) row.dataset.pending = "true";
    else delete row.dataset.pending;
    row.classList.toggle("done", item.done);
    row.classList.toggle("verified", item.verified);
    row.classList.toggle("pending", item.pending);
    row.title = this.#hoverText(item);
    const editing = row.dataset.editing === "true";
    row.draggable = !editing;

    const check = row.querySelector(".step-check");
    check.checked = item.done;
    const title = row.querySelector(".step-title");
    if (!editing) title.textContent = item.title;
    const description = row.querySelector(".step-description");
    description.textContent = item.description || "";
    description.hidden = !item.description;
    row.querySelector(".step-badge").hidden = !item.verified;

    const verify = row.querySelector(".step-verify");
    verify.hidden = !(mentor && item.done);
    verify.textContent = item.verified ? "Unverify" : "Verify";
    verify.setAttribute("aria-label", `${item.verified ? "Unverify" : "Verify"}: ${item.title}`);
    const index = this.#view.indexOf(item);
    const up = row.querySelector(".step-up");
    up.setAttribute("aria-label", `Move up: ${item.title}`);
    up.disabled = index === 0;
    const down = row.querySelector(".step-down");
    down.setAttribute("aria-label", `Move down: ${item.title}`);
    down.disabled = index === this.#view.length - 1;
    row.querySelector(".step-rename").setAttribute("aria-label", `Rename: ${item.title}`);
    row.querySelector(".step-remove").setAttribute("aria-label", `Remove: ${item.title}`);
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
    this.#announcer.replaceChildren(el("p", null, text));
  }

  // Events ---------------------------------------------------------------------------------

  #itemOf(node) {
    const row = node instanceof Element ? node.closest("li.step") : null;
    return row && this.#list.contains(row) ? row.dataset.itemId : null;
  }

  #itemById(itemId) {
    return this.#view.find((i) => i.id === itemId);
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
    if (button.classList.contains("step-verify")) this.verify(itemId, !item.verified);
    else if (button.classList.contains("step-up") || button.classList.contains("step-down")) {
      this.step(itemId, button.classList.contains("step-up") ? -1 : +1);
      // At the top (or the bottom) now, the button is disabled: keep the focus on the step.
      if (button.disabled) this.#rows.get(itemId)?.querySelector(".step-check").focus();
    } else if (button.classList.contains("step-rename")) this.#startRename(itemId);
    else if (button.classList.contains("step-remove")) this.#removeWithFocus(itemId);
  }

  #onKeydown(event) {
    const itemId = this.#itemOf(event.target);
    if (!itemId || event.target.classList.contains("step-rename-input")) return;
    if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      this.step(itemId, event.key === "ArrowUp" ? -1 : +1);
    } else if (event.key === "F2") {
      event.preventDefault();
      this.#startRename(itemId);
    }
  }

  /** Remove a step, and keep the keyboard focus in the list (on the next step). */
  #removeWithFocus(itemId) {
    const order = this.#view.map((i) => i.id);
    const at = order.indexOf(itemId);
    const next = order[at + 1] ?? order[at - 1] ?? null;
    const title = this.#itemById(itemId)?.title ?? "";
    this.remove(itemId);
    this.#announce(`Removed “${title}”.`);
    const row = next && this.#rows.get(next);
    if (row) row.querySelector(".step-check").focus();
    else this.#input.focus();
  }

  #startRename(itemId) {
    const row = this.#rows.get(itemId);
    const item = this.#itemById(itemId);
    if (!row || !item || row.dataset.editing === "true") return;
    row.dataset.editing = "true";
    row.draggable = false;
    const title = row.querySelector(".step-title");
    const input = el("input", "step-rename-input");
    input.value = item.title;
    input.maxLength = MAX_TITLE * 2;
    input.setAttribute("aria-label", "Step title");
    title.hidden = true;
    title.after(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = (commit, refocus) => {
      if (finished) return;
      finished = true;
      const { title: value, error } = checkTitle(input.value);
      input.remove();
      title.hidden = false;
      delete row.dataset.editing;
      if (commit && error) this.showError(error);
      const current = this.#itemById(itemId);
      if (commit && !error && current && current.title !== value) this.rename(itemId, value);
      else this.render();
      if (refocus && row.isConnected) row.querySelector(".step-check").focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        finish(true, true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        finish(false, true);
      }
    });
    // Leaving the field saves it; but a row moved by someone else's change loses the focus
    // for a moment (render gives it back at once): that is not leaving.
    input.addEventListener("blur", () => {
      queueMicrotask(() => {
        if (document.activeElement !== input) finish(true, false);
      });
    });
  }

  // Drag and drop ---------------------------------------------------------------------------

  #onDragStart(event) {
    const row = event.target instanceof Element ? event.target.closest("li.step") : null;
    if (!row || row.dataset.editing === "true") {
      event.preventDefault();
      return;
    }
    this.#dragged = row.dataset.itemId;
    row.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", row.querySelector(".step-title").textContent);
  }

  /** Where a drop at this pointer position would put the dragged item: {row, before}. */
  #dropTarget(event) {
    const row = event.target instanceof Element ? event.target.closest("li.step") : null;
    if (row && this.#list.contains(row)) {
      const box = row.getBoundingClientRect();
      return { row, before: event.clientY < box.top + box.height / 2 };
    }
    const last = this.#list.lastElementChild;
    return last ? { row: last, before: false } : null;
  }

  #onDragOver(event) {
    if (this.#dragged === null) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    const target = this.#dropTarget(event);
    this.#clearDropMarks();
    if (target && target.row.dataset.itemId !== this.#dragged) {
      target.row.classList.add(target.before ? "drop-before" : "drop-after");
    }
  }

  #onDrop(event) {
    if (this.#dragged === null) return;
    event.preventDefault();
    const dragged = this.#dragged;
    const target = this.#dropTarget(event);
    this.#endDrag();
    if (!target || target.row.dataset.itemId === dragged) return;
    const targetId = target.row.dataset.itemId;
    let after = targetId;
    if (target.before) {
      const others = this.#view.map((i) => i.id).filter((id) => id !== dragged);
      const at = others.indexOf(targetId);
      after = at > 0 ? others[at - 1] : null;
    }
    this.move(dragged, after);
  }

  #endDrag() {
    if (this.#dragged !== null) this.#rows.get(this.#dragged)?.classList.remove("dragging");
    this.#dragged = null;
    this.#clearDropMarks();
  }

  #clearDropMarks() {
    for (const row of this.#list.querySelectorAll(".drop-before, .drop-after")) {
      row.classList.remove("drop-before", "drop-after");
    }
  }

  #titleOf(op) {
    if (op.type === "checklist.add") return op.title;
    return this.#itemById(op.item_id)?.title ?? this.#state.items.get(op.item_id)?.title ?? "";
  }
}

let panel = null;

/** The room feature (web/js/main.js FEATURES). */
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
