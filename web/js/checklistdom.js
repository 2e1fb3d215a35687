// The roadmap checklist panel's elements: the panel itself, one <li class="step"> per step,
// and the in-place title editor. checklistpanel.js decides what they show.
//
// All text from the network goes into the page with textContent, never as HTML.

import { el } from "./dom.js";

let domIds = 0;

/** The panel's section and the elements checklistpanel.js updates. */
export function buildPanel() {
  const section = el("section", "panel checklist");
  section.id = "checklist-panel";
  section.setAttribute("aria-labelledby", "checklist-heading");
  const heading = el("h2", null, "Roadmap");
  heading.id = "checklist-heading";
  const parts = { section, ...buildProgress(), ...buildList(), ...buildForm() };
  const help = el(
    "p",
    "hint",
    "Tick a step when it is done. Alt+↑ and Alt+↓ move the focused step; F2 renames it.",
  );
  help.id = "checklist-help";
  parts.roleNote = el("p", "hint checklist-role"); // what the reader's role may do
  parts.announcer = el("div", "visually-hidden");
  parts.announcer.setAttribute("aria-live", "polite");
  section.append(
    heading,
    parts.progress,
    parts.error,
    parts.note,
    parts.list,
    parts.empty,
    parts.form,
    help,
    parts.roleNote,
    parts.announcer,
  );
  return parts;
}

function buildProgress() {
  const progress = el("div", "checklist-progress");
  const bar = el("div", "progress-bar");
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-labelledby", "checklist-heading");
  bar.setAttribute("aria-valuemin", "0");
  const barDone = el("span", "progress-done");
  const barVerified = el("span", "progress-verified");
  bar.append(barVerified, barDone); // verified steps first, then done
  const progressText = el("p", "progress-text");
  progressText.id = "checklist-progress-text";
  progress.append(bar, progressText);
  return { progress, bar, barDone, barVerified, progressText };
}

function buildList() {
  const error = el("p", "checklist-error");
  error.setAttribute("role", "alert");
  error.hidden = true;
  const note = el("p", "checklist-note");
  note.setAttribute("aria-live", "polite");
  const list = el("ol", "checklist-items");
  list.setAttribute("aria-labelledby", "checklist-heading");
  list.setAttribute("aria-describedby", "checklist-help");
  const empty = el("p", "checklist-empty");
  return { error, note, list, empty };
}

function buildForm() {
  const form = el("form", "checklist-add");
  const label = el("label", "visually-hidden", "New step");
  label.htmlFor = "checklist-new";
  const input = el("input");
  input.id = "checklist-new";
  input.name = "title";
  input.autocomplete = "off";
  input.placeholder = "Add a step";
  // No maxlength: a paste over the limit stays whole (checklistpanel.js counts it).
  input.setAttribute("aria-describedby", "checklist-add-count checklist-add-error");
  const button = el("button", null, "Add");
  button.type = "submit";
  const formError = el("p", "error");
  formError.id = "checklist-add-error";
  formError.setAttribute("aria-live", "assertive");
  form.append(label, input, button, formError);
  return { form, input, formError };
}

/** A new, empty row for the step `itemId`: updateRow fills it. */
export function makeRow(itemId) {
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

/**
 * Show `item` in its row. `may`: what the reader's role allows on it (checklist.js
 * allowedActions: a control it does not allow is not offered); `first`/`last`: its place in
 * the list; `hover`: the row's tooltip.
 */
export function updateRow(row, item, { may, first, last, hover }) {
  row.dataset.done = String(item.done);
  row.dataset.verified = String(item.verified);
  if (item.pending) row.dataset.pending = "true";
  else delete row.dataset.pending;
  row.classList.toggle("done", item.done);
  row.classList.toggle("verified", item.verified);
  row.classList.toggle("pending", item.pending);
  row.title = hover;
  const editing = row.dataset.editing === "true";
  row.draggable = !editing && may.move;
  row.querySelector(".drag-handle").hidden = !may.move;

  const check = row.querySelector(".step-check");
  check.checked = item.done;
  // Shown either way (it says whether the step is done), but not usable when the role may not.
  check.disabled = !(item.done ? may.untick : may.tick);
  if (!editing) row.querySelector(".step-title").textContent = item.title;
  const description = row.querySelector(".step-description");
  description.textContent = item.description || "";
  description.hidden = !item.description;
  row.querySelector(".step-badge").hidden = !item.verified;
  updateButtons(row, item, { may, first, last });
}

function updateButtons(row, item, { may, first, last }) {
  const verify = row.querySelector(".step-verify");
  verify.hidden = !(may.verify && item.done);
  verify.textContent = item.verified ? "Unverify" : "Verify";
  verify.setAttribute("aria-label", `${item.verified ? "Unverify" : "Verify"}: ${item.title}`);
  const up = row.querySelector(".step-up");
  up.setAttribute("aria-label", `Move up: ${item.title}`);
  up.disabled = first;
  up.hidden = !may.move;
  const down = row.querySelector(".step-down");
  down.setAttribute("aria-label", `Move down: ${item.title}`);
  down.disabled = last;
  down.hidden = !may.move;
  const rename = row.querySelector(".step-rename");
  rename.setAttribute("aria-label", `Rename: ${item.title}`);
  rename.hidden = !may.rename;
  const remove = row.querySelector(".step-remove");
  remove.setAttribute("aria-label", `Remove: ${item.title}`);
  remove.hidden = !may.remove;
}

/**
 * Edit a row's title in place, starting from `text`. Enter saves, Escape cancels, leaving the
 * field saves. `done(save, refocus, value)` runs once, after the field is gone.
 */
export function editTitle(row, text, done) {
  row.dataset.editing = "true";
  row.draggable = false;
  const title = row.querySelector(".step-title");
  const input = el("input", "step-rename-input");
  input.value = text;
  input.setAttribute("aria-label", "Step title");
  title.hidden = true;
  title.after(input);
  input.focus();
  input.select();
  let finished = false;
  const finish = (save, refocus) => {
    if (finished) return;
    finished = true;
    const value = input.value;
    input.remove();
    title.hidden = false;
    delete row.dataset.editing;
    done(save, refocus, value);
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
