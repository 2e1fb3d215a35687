// The shared notes editor, bundled by `npm run build` into web/dist/notes.bundle.js (built,
// not committed). web/js/notes.js loads it lazily: the room page works without it.
//
// The Yjs document and its socket are the SDK's NotesConnection
// (clients/js/src/notes.js: the stock y-websocket provider, stopped on the server's 44xx
// refusals, reconnected with each renewed token); CodeMirror 6 edits its Y.Text "notes"
// through y-codemirror.next, which also shows the other people's cursors and names
// (awareness). The build aliases yjs and y-websocket to this package's copies, so the SDK's
// imports and these are one Yjs.

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
import * as Y from "yjs";

import { NotesConnection } from "../../clients/js/src/notes.js";

export { TEXT_NAME } from "../../clients/js/src/notes.js";

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
 *   roomId; tokens: the page's TokenSource (the SDK's); user: {name, color, colorLight}
 * Returns {doc, text, provider, notes, view, destroy()}: `notes` is the NotesConnection,
 * whose "status" and "refused" events say how the document is (web/js/notes.js shows them).
 * It is not connected yet: call notes.connect() once its events are listened to.
 */
export function openNotes({ parent, roomId, tokens, user, label }) {
  const doc = new Y.Doc();
  const notes = new NotesConnection({ roomId, tokens, doc });
  const { text, provider } = notes;
  provider.awareness.setLocalStateField("user", user);
  const undoManager = new Y.UndoManager(text);

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
    notes,
    view,
    destroy() {
      view.destroy();
      notes.destroy();
      doc.destroy();
    },
  };
}
