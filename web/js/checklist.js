// The roadmap checklist's state: the room's steps as the server holds them, and my
// operations not yet applied on top of them. No DOM here: the panel (checklistpanel.js)
// shows this state, and node can import this module (tests/test_checklist_security.py).
//
// State: the welcome frame's `checklist` snapshot (everything up to welcome.seq), then every
// checklist.* event with a higher seq, applied as docs/protocol.md's table says ("Checklist
// operations" / "Checklist events"). A new socket's welcome always carries a fresh snapshot,
// so it replaces the state (recovered or not): the events replayed after it that it already
// holds (seq <= welcome.seq) are skipped.
//
// My own operations are kept until the server's event for one is applied ("pending"): they
// are shown on top of the server's state, so a tick made offline shows at once and stays
// across a reload.

export const MAX_TITLE = 200; // characters (code points), as the server counts them
export const RETRYABLE = new Set(["unavailable", "rate_limited"]); // main.js sends these again

/** The checklist operations, and the verb that says what each does. */
export const VERBS = {
  "checklist.add": "add",
  "checklist.toggle": "tick",
  "checklist.rename": "rename",
  "checklist.move": "move",
  "checklist.remove": "remove",
  "checklist.verify": "verify",
};

const REASONS = {
  not_found: "that step (or the one it was placed after) no longer exists",
  // forbidden: the server's message says which rule of the role table refused it
};

// The role table (docs/protocol.md, "Roles on the roadmap"; the server decides it in
// realtime/checklist/roles.py: keep the two in step). The page offers only what it allows.
const UNDOES_VERIFICATION = new Set(["untick", "rename", "remove"]); // the mentor's alone
const OWN_STEPS_ONLY = new Set(["rename", "move", "remove"]); // a mentee's: steps they added

/**
 * May `me` ({user_id, role}: the welcome's `you`) do `action` ("add", "tick", "untick",
 * "rename", "move", "remove", "verify") to `item`? The mentor may do everything; a service
 * token curates but neither verifies nor undoes a verification; a mentee (or a role not
 * known yet) adds, ticks, unticks what is not verified, and renames, moves or removes only
 * the steps they added (renaming or removing one the mentor verified is the mentor's).
 * In an archived room nobody does anything (the server answers `archived`).
 */
export function mayDo(me, action, item, { archived = false } = {}) {
  if (archived) return false;
  const role = me?.role;
  if (action === "add" || role === "mentor") return true;
  if (action === "verify") return false;
  if (item?.verified && UNDOES_VERIFICATION.has(action)) return false;
  if (role === "service") return true;
  if (OWN_STEPS_ONLY.has(action)) return item?.added_by != null && item.added_by === me?.user_id;
  return true;
}

/** Every per-step action `me` may take on `item`: {tick, untick, rename, move, remove, verify}. */
export function allowedActions(me, item, room = {}) {
  const out = {};
  for (const action of ["tick", "untick", "rename", "move", "remove", "verify"]) {
    out[action] = mayDo(me, action, item, room);
  }
  return out;
}

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
    added_by: raw.added_by ?? null,
  };
}

/** A tick or untick by `by` at `at`; unticking drops the mentor's verification too. */
function setDone(item, done, by, at) {
  item.done = done;
  item.done_by = done ? by : null;
  item.done_at = done ? at : null;
  if (!done) setVerified(item, false);
}

/** A verification (of the words `title`) or its withdrawal, by `by` at `at`. */
function setVerified(item, verified, by = null, at = null, title = null) {
  item.verified = verified;
  item.verified_by = verified ? by : null;
  item.verified_at = verified ? at : null;
  item.verified_title = verified ? title : null;
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
    if (frame.type === "checklist.add") return this.#add(frame);
    const item = this.items.get(frame.item_id);
    if (item === undefined) return false; // never happens: the server refuses those
    return this.#change(item, frame, frame.author?.user_id ?? null, frame.ts ?? null);
  }

  #add(frame) {
    const raw = frame.item;
    if (!raw || typeof raw.id !== "string") return false;
    const added_by = frame.author?.user_id ?? null;
    this.items.set(raw.id, freshItem({ ...raw, done: false, verified: false, added_by }));
    this.rebalance(frame.rebalance);
    return true;
  }

  #change(item, frame, author, ts) {
    switch (frame.type) {
      case "checklist.toggle":
        setDone(item, frame.done === true, author, ts);
        return true;
      case "checklist.rename":
        item.title = frame.title;
        if (frame.verified === false) setVerified(item, false); // not the words verified
        return true;
      case "checklist.move":
        item.pos = frame.pos;
        this.rebalance(frame.rebalance);
        return true;
      case "checklist.remove":
        this.items.delete(item.id);
        return true;
      case "checklist.verify":
        setVerified(item, frame.verified === true, author, ts, frame.verified_title ?? item.title);
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
    return countProgress([...this.items.values()]);
  }
}

/** How many of these items are done, verified, and in all. */
export function countProgress(items) {
  return {
    done: items.filter((i) => i.done).length,
    verified: items.filter((i) => i.verified).length,
    total: items.length,
  };
}

// Pending operations ------------------------------------------------------------------------

/**
 * My checklist operations not yet seen applied by the server, by op id: {op, ackSeq, title}
 * (ackSeq: the seq of the server's ack, null until then; title: the step's title when the
 * operation was made, for an error message).
 */
export class PendingOps {
  #entries = new Map();

  /** Start from the operations the durable outbox still holds (after a reload too). */
  constructor(ops = []) {
    for (const op of ops) {
      if (op.type in VERBS) this.#entries.set(op.id, { op, ackSeq: null, title: null });
    }
  }

  add(op, title) {
    this.#entries.set(op.id, { op, ackSeq: null, title });
  }

  get(id) {
    return this.#entries.get(id);
  }

  delete(id) {
    return this.#entries.delete(id);
  }

  /** The server acked `id` at `seq`; false when it is not one of these. */
  acked(id, seq) {
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    entry.ackSeq = seq;
    return true;
  }

  /** Drop the operations a state at `seq` already holds (acked at or below it). */
  settle(seq) {
    let dropped = false;
    for (const [id, entry] of this.#entries) {
      if (entry.ackSeq !== null && entry.ackSeq <= seq) {
        this.#entries.delete(id);
        dropped = true;
      }
    }
    return dropped;
  }

  /** The operations, in the order they were made. */
  ops() {
    return [...this.#entries.values()].map((e) => e.op);
  }

  /** How many are not acked yet (not sent, or sent and unanswered). */
  waiting() {
    return [...this.#entries.values()].filter((e) => e.ackSeq === null).length;
  }
}

/** What to tell about an operation the server refused for good. */
export function refusalText(op, title, code, message) {
  const verb = VERBS[op.type] ?? "change";
  const reason = REASONS[code] ?? message ?? code;
  return `Could not ${verb} ${title ? `“${title}”` : "the step"}: ${reason}.`;
}

/**
 * The list as shown: the server's order with my operations not yet applied by the server on
 * top (in the order they were made). Items they touch are marked `pending`.
 */
export function withPending(ordered, ops, me, now = new Date().toISOString()) {
  const list = ordered.map((item) => ({ ...item, pending: false }));
  const by = me?.user_id ?? null;
  for (const op of ops) {
    if (op.type === "checklist.add") addPending(list, op, by);
    else changePending(list, op, by, now);
  }
  return list;
}

const indexOf = (list, id) => list.findIndex((i) => i.id === id);

/** Put `item` right after the item `after` (first when null, last when it is gone). */
function placeAfter(list, item, after) {
  if (after === null || after === undefined) {
    list.unshift(item);
    return;
  }
  const at = indexOf(list, after);
  if (at === -1) list.push(item);
  else list.splice(at + 1, 0, item);
}

function addPending(list, op, by) {
  if (indexOf(list, op.item_id) !== -1) return; // already applied by the server
  const raw = { id: op.item_id, title: op.title, description: op.description, pos: "" };
  const item = freshItem({ ...raw, added_by: by });
  item.pending = true;
  if ("after" in op) placeAfter(list, item, op.after);
  else list.push(item);
}

function changePending(list, op, by, now) {
  const at = indexOf(list, op.item_id);
  if (at === -1) return;
  const item = { ...list[at], pending: true };
  list[at] = item;
  switch (op.type) {
    case "checklist.toggle":
      setDone(item, op.done === true, by, now);
      break;
    case "checklist.rename":
      item.title = op.title;
      break;
    case "checklist.move":
      if (op.after !== null && indexOf(list, op.after) === -1) break;
      list.splice(at, 1);
      placeAfter(list, item, op.after);
      break;
    case "checklist.remove":
      list.splice(at, 1);
      break;
    case "checklist.verify":
      setVerified(item, op.verified !== false, by, now, item.title);
      break;
    default:
      break;
  }
}

// Order and titles ----------------------------------------------------------------------------

/** True when moving `itemId` to follow `after` (null: first) changes the `order` of ids. */
export function movesItem(order, itemId, after) {
  const at = order.indexOf(itemId);
  if (at === -1 || after === itemId) return false;
  const before = at > 0 ? order[at - 1] : null;
  return before !== after;
}

/** The `after` of a move one place up (-1) or down (+1); undefined when it cannot move. */
export function stepAfter(order, itemId, direction) {
  const at = order.indexOf(itemId);
  if (at === -1) return undefined;
  if (direction < 0) {
    if (at === 0) return undefined;
    return at >= 2 ? order[at - 2] : null;
  }
  if (at >= order.length - 1) return undefined;
  return order[at + 1];
}

/** The `after` of a drop of `dragged` just before (or after) the item `target`. */
export function dropAfter(order, dragged, target, before) {
  if (!before) return target;
  const others = order.filter((id) => id !== dragged);
  const at = others.indexOf(target);
  return at > 0 ? others[at - 1] : null;
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
