// The shared notes editor, bundled by `npm run build` into web/dist/notes.bundle.js (built,
// not committed). web/js/notes.js loads it lazily: the room page works without it.
//
// A Yjs document synced with the server's notes socket (/rooms/{id}/notes, the token offered
// as a subprotocol beside menteo.notes.v1, never in the URL) by the stock y-websocket
// provider; CodeMirror 6 edits its Y.Text "notes" through y-codemirror.next, which also
// shows the other people's cursors and names (awareness).

import { defaultKeymap, indentWithTab } from "@codemirror/commands";
import { EditorState } from "@codemirror/state";
import {
  drawSelection,
  EditorView,
  highlightSpecialChars,
  keymap,
  placeholder,
} from "@codemirror/view";
import { yCollab, yUndoManagerKeymap } from "y-codemirror.next";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";

export const TEXT_NAME = "notes"; // the Y.Text the server reads (GET /api/rooms/{id}/notes)

const theme = EditorView.theme({
  "&": { height: "100%", fontSize: "0.95rem" },
  ".cm-scroller": { fontFamily: "inherit", lineHeight: "1.5" },
  // Room above the first line for the name labels of the cursors there.
  ".cm-content": { padding: "1.4em 0 0.75em" },
  // Two people in a room: always show who the other cursor is, not only on hover.
  ".cm-ySelectionInfo": { opacity: "1" },
});

/**
 * Open the notes of a room in `parent`.
 *   wsBase: "ws(s)://HOST"; user: {name, color, colorLight}
 *   onStatus(status): "connecting" | "connected" | "synced" | "disconnected" |
 *                     {closed: {code, reason}} (the server refused for good: 44xx)
 * Returns {doc, text, provider, view, destroy()}.
 */
export function openNotes({ parent, wsBase, roomId, token, user, label, onStatus = () => {} }) {
  const doc = new Y.Doc();
  const text = doc.getText(TEXT_NAME);
  const provider = new WebsocketProvider(
    `${wsBase}/rooms/${encodeURIComponent(roomId)}`,
    "notes",
    doc,
    // The token as a subprotocol (docs/protocol.md, "Authentication"): out of the URL, and
    // so out of proxy logs. The server selects menteo.notes.v1.
    { protocols: ["menteo.notes.v1", `menteo.token.${token}`] },
  );
  provider.awareness.setLocalStateField("user", user);
  const undoManager = new Y.UndoManager(text);

  provider.on("status", ({ status }) => onStatus(status));
  provider.on("sync", (synced) => {
    if (synced) onStatus("synced");
  });
  provider.on("closed", (event) => onStatus({ closed: event }));

  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: text.toString(),
      extensions: [
        highlightSpecialChars(),
        drawSelection(),
        EditorView.lineWrapping,
        placeholder("Shared notes: agenda, links, next steps…"),
        keymap.of([...yUndoManagerKeymap, ...defaultKeymap, indentWithTab]),
        EditorView.contentAttributes.of({ "aria-label": label ?? "Shared notes" }),
        theme,
        yCollab(text, provider.awareness, { undoManager }),
      ],
    }),
  });

  return {
    doc,
    text,
    provider,
    view,
    destroy() {
      view.destroy();
      provider.destroy();
      doc.destroy();
    },
  };
}
