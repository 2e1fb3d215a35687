// A room's shared notes (docs/protocol.md, "The notes socket"): a Yjs document synced by the
// stock y-websocket provider, wired to the server's refusals and to token renewal. Needs the
// peer dependencies `yjs` and `y-websocket` (3.x); import it as
// "@menteo/realtime-client/notes" (a bundler resolves them).
//
// What the wiring adds to the provider:
//   - refusals: a close with a 44xx code (4401 token, 4403 not a member, 4404 no room,
//     4413 notes full, 4423 archived: read-only) stops the provider's reconnecting (y-websocket
//     3.0 would retry it every 2.5 s forever) and is told as a "refused" event with a
//     sentence for a person; it listens for `connection-close`, which every 3.x emits
//     (3.1's `closed` comes after it and is not needed);
//   - the token: each renewed token reconnects the socket at once (a y-websocket socket
//     cannot be handed a new token), and a 4401 renews the token through the TokenSource
//     (`getToken`) and reconnects once; a second 4401 before the document synced is final;
//   - the browser: offline disconnects, online reconnects (unless refused).
//
// NotesConnection events (`on(type, fn)` gets the payload):
//   "status"  "connecting" | "connected" | "synced" | "disconnected"
//   "refused" {code, reason, message}: for good (until connect() is called again)

import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";

import { Emitter } from "./events.js";
import { isRefusal } from "./reconnecting.js";
import { TokenSource } from "./token.js";
import { socketTarget } from "./transport.js";

/** The Y.Text the server reads (GET /api/rooms/{id}/notes). */
export const TEXT_NAME = "notes";

/** What a person is told about each refusal of the notes socket. */
export const NOTES_REFUSALS = new Map([
  [4401, "Notes disconnected: your access link is invalid or has expired."],
  [4403, "Notes disconnected: you are not a member of this room."],
  [4404, "Notes disconnected: this room does not exist."],
  [4413, "The notes are full: nothing more can be added."],
  [4423, "The room is archived: the notes are read-only."],
]);

/**
 * Where the provider connects: y-websocket joins `serverUrl/roomname?params`, so the one
 * socketTarget() URL is taken apart.
 * @param {string | URL | undefined} base
 * @param {string} roomId
 * @param {string} token
 */
function providerTarget(base, roomId, token) {
  const { url, protocols } = socketTarget(base, `rooms/${encodeURIComponent(roomId)}/notes`, token, {}, "notes");
  const parsed = new URL(url);
  const slash = parsed.pathname.lastIndexOf("/");
  return {
    serverUrl: `${parsed.protocol}//${parsed.host}${parsed.pathname.slice(0, slash)}`,
    roomname: parsed.pathname.slice(slash + 1),
    params: Object.fromEntries(parsed.searchParams),
    protocols,
  };
}

/**
 * @typedef {object} NotesOptions
 * @property {string} roomId
 * @property {string | URL} [url] the server's base URL (default: the page's origin)
 * @property {string | null} [token]
 * @property {import("./token.js").GetToken | null} [getToken]
 * @property {TokenSource | null} [tokens] e.g. the RoomClient's (room.tokens)
 * @property {Y.Doc} [doc] default: a new Y.Doc
 * @property {any} [WebSocket] default: globalThis.WebSocket
 * @property {boolean} [watchBrowser] follow online/offline (true)
 * @property {Record<string, any>} [providerOptions] more WebsocketProvider options (disableBc…)
 * @property {typeof WebsocketProvider} [Provider] the y-websocket provider class (default: the
 *   "y-websocket" this package resolves; any 3.x)
 */

export class NotesConnection extends Emitter {
  #options;
  #tokens;
  #refused = false;
  #renewed = false; // a 4401 renewed the token, and no sync since: the next one is final
  /** @type {string} the token the notes socket offers (a subprotocol, not in its URL) */
  #token = "";
  #status = "connecting";
  /** @type {Array<() => void>} */
  #cleanup = [];

  /** @param {NotesOptions} options */
  constructor(options) {
    super();
    this.#options = options;
    this.#tokens = TokenSource.from(options);
    this.doc = options.doc ?? new Y.Doc();
    this.text = this.doc.getText(TEXT_NAME);
    this.#token = this.#tokens.token ?? "";
    const target = providerTarget(options.url, options.roomId, this.#token);
    /** The y-websocket provider (its `awareness` carries cursors and names). */
    const Provider = options.Provider ?? WebsocketProvider;
    this.provider = new Provider(target.serverUrl, target.roomname, this.doc, {
      params: target.params,
      protocols: target.protocols,
      WebSocketPolyfill: options.WebSocket ?? globalThis.WebSocket,
      connect: false,
      ...options.providerOptions,
    });
    this.#wire();
  }

  /** The last status ("connecting", "connected", "synced", "disconnected", "refused"). */
  get status() {
    return this.#status;
  }

  /** Refused for good (a 44xx close): no more reconnects until connect(). */
  get refused() {
    return this.#refused;
  }

  get tokens() {
    return this.#tokens;
  }

  /** Open the socket (again, after a refusal too), with a fresh token. */
  connect() {
    this.#refused = false;
    this.#tokens.fresh().then(
      (token) => this.#reconnect(token ?? ""),
      (err) => this.#refuse(4401, "", err.message),
    );
  }

  /** Close and forget the provider (the doc stays the caller's). */
  destroy() {
    for (const undo of this.#cleanup) undo();
    this.#cleanup = [];
    this.provider.destroy();
    this.provider.awareness.destroy(); // its renewal timer, which the provider leaves running
  }

  #wire() {
    const provider = this.provider;
    provider.on("status", (/** @type {{status: string}} */ { status }) => this.#setStatus(status));
    provider.on("sync", (/** @type {boolean} */ synced) => {
      if (!synced) return;
      this.#renewed = false;
      this.#setStatus("synced");
    });
    provider.on("connection-close", (/** @type {CloseEvent | null} */ event) => this.#onClose(event));
    this.#cleanup.push(this.#tokens.on("token", (token) => {
      if (token !== this.#token) this.#reconnect(token);
    }));
    if (this.#options.watchBrowser !== false && typeof globalThis.addEventListener === "function") {
      const offline = () => provider.disconnect();
      const online = () => {
        if (!this.#refused) provider.connect();
      };
      globalThis.addEventListener("offline", offline);
      globalThis.addEventListener("online", online);
      this.#cleanup.push(() => {
        globalThis.removeEventListener("offline", offline);
        globalThis.removeEventListener("online", online);
      });
    }
  }

  /**
   * A socket closed (event null: closed by this side). A refusal stops the provider's own
   * reconnecting through its public `shouldConnect` (calling disconnect() here would re-enter
   * the close under way); a 4401 may be renewed once.
   * @param {CloseEvent | null} event
   */
  #onClose(event) {
    if (event === null || !isRefusal(event.code)) return;
    const provider = this.provider;
    provider.shouldConnect = false;
    if (event.code === 4401 && this.#tokens.renewable && !this.#renewed) {
      this.#renewed = true;
      this.#tokens.invalidate(this.#token || null);
      this.#tokens.fresh().then(
        (token) => this.#reconnect(token ?? ""),
        (err) => this.#refuse(4401, event.reason, err.message),
      );
      return;
    }
    this.#refuse(event.code, event.reason);
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {string} [detail]
   */
  #refuse(code, reason, detail) {
    this.#refused = true;
    this.provider.shouldConnect = false;
    const message = NOTES_REFUSALS.get(code) ?? `Notes disconnected (${code}).`;
    this.#status = "refused";
    this.emit("refused", { code, reason, message, detail });
  }

  /**
   * Open the notes socket again on `token` (the provider reads its protocols per socket).
   * @param {string} token
   */
  #reconnect(token) {
    const provider = this.provider;
    if (this.#token === token && provider.ws !== null) return; // on it already
    this.#token = token;
    const target = providerTarget(this.#options.url, this.#options.roomId, token);
    provider.params = target.params;
    provider.protocols = target.protocols;
    if (this.#refused) return;
    provider.disconnect();
    provider.connect();
  }

  /** @param {string} status */
  #setStatus(status) {
    if (this.#refused) return;
    this.#status = status;
    this.emit("status", status);
  }
}

/**
 * Open a room's notes: a NotesConnection on `options.doc` (or a new Y.Doc), connected.
 * @param {NotesOptions} options
 * @returns {NotesConnection}
 */
export function connectNotes(options) {
  const notes = new NotesConnection(options);
  notes.connect();
  return notes;
}
