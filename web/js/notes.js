// The shared notes panel: one Yjs document per room, edited by everyone at once.
//
// The editor (CodeMirror 6, yjs, y-websocket, y-codemirror.next) is a bundle built with npm
// (`npm ci && npm run build` -> web/dist/notes.bundle.js), loaded here lazily: when it is
// missing or fails to load, the panel says "Notes unavailable" and the rest of the page
// (chat, checklist) works as before. The notes socket opens after the first welcome of the
// room socket (the room exists and the token is good); y-websocket reconnects on its own.
// When the page renews its token (token.js), the notes socket reconnects with the new one at
// once (y-websocket has no way to hand an open socket a token), and a 4401 close (the token
// expired) renews the token and reconnects before the panel says anything.

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

const CLOSED_TEXT = {
  4401: "Notes disconnected: your access link is invalid or has expired.",
  4403: "Notes disconnected: you are not a member of this room.",
  4404: "Notes disconnected: this room does not exist.",
  4413: "The notes are full: nothing more can be added.",
};

/** A stable colour for a user: the same on every screen. */
export function colorFor(userId) {
  let hash = 0;
  for (const ch of userId) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return COLORS[hash % COLORS.length];
}

export function wsBase(location) {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;
}

let panel = null;
let session = null; // what openNotes returned, once open

/** The notes' current text in this page (null before they are open): for tests and tools. */
export function notesText() {
  return session ? session.text.toString() : null;
}

function setStatus(status) {
  if (panel === null) return;
  const closed = typeof status === "object" && status !== null ? status.closed : null;
  const key = closed ? "closed" : status;
  panel.status.textContent = closed
    ? (CLOSED_TEXT[closed.code] ?? `Notes disconnected (${closed.code}).`)
    : (STATUS_TEXT[status] ?? "");
  panel.section.dataset.status = key;
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
  const tokens = ctx.tokens;
  let refused = false;
  let renewed = false; // a 4401 renewed the token, and no sync since: the next one is final
  let current = tokens.token; // the token the notes socket offers
  setStatus("connecting");
  session = panel.module.openNotes({
    parent: panel.editor,
    wsBase: wsBase(globalThis.location),
    roomId: ctx.roomId,
    token: tokens.token,
    user: { name: me.name || me.user_id, color, colorLight: `${color}33` },
    label: "Shared notes",
    onStatus: (status) => {
      if (status === "synced") renewed = false;
      if (status?.closed?.code === 4401 && tokens.renewable && !renewed) {
        renewed = true;
        tokens.invalidate(current);
        tokens.fresh().then(
          (token) => reconnect(token),
          (err) => {
            refused = true;
            setStatus(status);
            console.warn("notes:", err.message);
          },
        );
        return;
      }
      if (status?.closed) refused = true; // 44xx: the server said no for good
      setStatus(status);
    },
  });
  panel.section.dataset.ready = "true";
  const { provider } = session;
  /** Open the notes socket again, on `token` (y-websocket reads `protocols` per socket; the
   * token travels as a subprotocol, docs/protocol.md "Authentication"). */
  function reconnect(token) {
    current = token;
    provider.protocols = ["menteo.notes.v1", `menteo.token.${token}`];
    if (refused) return;
    provider.disconnect();
    provider.connect();
  }
  tokens.addEventListener("token", ({ detail: token }) => {
    if (token !== current) reconnect(token);
  });
  // Like the room socket: no waiting on a dead socket when the browser knows it is offline,
  // and no waiting out a backoff when it is back.
  globalThis.addEventListener("offline", () => provider.disconnect());
  globalThis.addEventListener("online", () => {
    if (!refused) provider.connect();
  });
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
