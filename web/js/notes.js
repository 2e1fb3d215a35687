// The shared notes panel: one Yjs document per room, edited by everyone at once.
//
// The editor (CodeMirror 6, yjs, y-websocket, y-codemirror.next, and the SDK's notes wiring
// from clients/js/src/notes.js) is a bundle built with npm (`npm ci && npm run build` ->
// web/dist/notes.bundle.js), loaded here lazily: when it is missing or fails to load, the
// panel says "Notes unavailable" and the rest of the page (chat, checklist) works as before.
// The notes socket opens after the first welcome of the room socket (the room exists and
// the token is good). The SDK's NotesConnection reconnects after a drop, stops on the
// server's refusals (44xx: shown here), reconnects with each token the page renews, and
// after a 4401 renews the token and reconnects once before the panel says anything.

import { el } from "./dom.js";

const BUNDLE = "../dist/notes.bundle.js";

// Cursor colours: readable on white, told apart from each other.
const COLORS = ["#2456c7", "#b3261e", "#137a3a", "#8a3ffc", "#9a5b00", "#00738a", "#c2185b"];

const STATUS_TEXT = {
  loading: "Loading the editor…",
  connecting: "Connecting…",
  connected: "Syncing…",
  synced: "Saved on the server: everyone here sees the same notes.",
  disconnected: "Offline: your edits are kept in this tab and synced when you are back.",
  unavailable: "Notes unavailable.",
};

/** A stable colour for a user: the same on every screen. */
export function colorFor(userId) {
  let hash = 0;
  for (const ch of userId) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return COLORS[hash % COLORS.length];
}

let panel = null;
let session = null; // what openNotes returned, once open

/** The notes' current text in this page (null before they are open): for tests and tools. */
export function notesText() {
  return session ? session.text.toString() : null;
}

/** `status`: a NotesConnection status, "loading", "unavailable", or {refused} (its event). */
function setStatus(status) {
  if (panel === null) return;
  const refused = typeof status === "object" && status !== null ? status.refused : null;
  panel.status.textContent = refused ? refused.message : (STATUS_TEXT[status] ?? "");
  panel.section.dataset.status = refused ? "closed" : status;
}

function mount(ctx) {
  const section = el("section", "panel notes");
  section.id = "notes-panel";
  section.setAttribute("aria-labelledby", "notes-heading");
  const heading = el("h2", null, "Shared notes");
  heading.id = "notes-heading";
  const status = el("p", "notes-status");
  status.setAttribute("role", "status");
  const editor = el("div", "notes-editor");
  section.append(heading, status, editor);
  ctx.panels.append(section);
  ctx.panels.hidden = false;

  panel = { section, status, editor, module: null, failed: false, welcome: null };
  setStatus("loading");
  import(BUNDLE).then(
    (module) => {
      panel.module = module;
      if (panel.welcome === null) setStatus("connecting"); // waiting for the room
      open(ctx);
    },
    (err) => {
      panel.failed = true;
      editor.hidden = true;
      setStatus("unavailable");
      console.warn("the notes editor could not be loaded", err);
    },
  );
}

/** Open the document once both the bundle and the room (a welcome) are there. */
function open(ctx) {
  if (session !== null || panel.module === null || panel.welcome === null) return;
  const me = panel.welcome.you;
  const color = colorFor(me.user_id);
  setStatus("connecting");
  session = panel.module.openNotes({
    parent: panel.editor,
    roomId: ctx.roomId,
    tokens: ctx.tokens,
    user: { name: me.name || me.user_id, color, colorLight: `${color}33` },
    label: "Shared notes",
  });
  const { notes } = session;
  notes.on("status", (status) => setStatus(status));
  notes.on("refused", (refused) => {
    setStatus({ refused });
    if (refused.detail) console.warn("notes:", refused.detail);
  });
  notes.connect();
  panel.section.dataset.ready = "true";
}

export const notesFeature = {
  name: "notes",
  mount,
  onWelcome(frame, ctx) {
    if (panel === null || panel.welcome !== null) return;
    panel.welcome = frame;
    if (!panel.failed) open(ctx);
  },
};
