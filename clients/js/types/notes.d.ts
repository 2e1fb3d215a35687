/**
 * Open a room's notes: a NotesConnection on `options.doc` (or a new Y.Doc), connected.
 * @param {NotesOptions} options
 * @returns {NotesConnection}
 */
export function connectNotes(options: NotesOptions): NotesConnection;
/** The Y.Text the server reads (GET /api/rooms/{id}/notes). */
export const TEXT_NAME: "notes";
/** What a person is told about each refusal of the notes socket. */
export const NOTES_REFUSALS: Map<number, string>;
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
    /** @param {NotesOptions} options */
    constructor(options: NotesOptions);
    doc: Y.Doc;
    text: Y.Text;
    provider: WebsocketProvider;
    /** The last status ("connecting", "connected", "synced", "disconnected", "refused"). */
    get status(): string;
    /** Refused for good (a 44xx close): no more reconnects until connect(). */
    get refused(): boolean;
    get tokens(): TokenSource;
    /** Open the socket (again, after a refusal too), with a fresh token. */
    connect(): void;
    /** Close and forget the provider (the doc stays the caller's). */
    destroy(): void;
    #private;
}
export type NotesOptions = {
    roomId: string;
    /**
     * the server's base URL (default: the page's origin)
     */
    url?: string | URL | undefined;
    token?: string | null | undefined;
    getToken?: import("./token.js").GetToken | null | undefined;
    /**
     * e.g. the RoomClient's (room.tokens)
     */
    tokens?: TokenSource | null | undefined;
    /**
     * default: a new Y.Doc
     */
    doc?: Y.Doc | undefined;
    /**
     * default: globalThis.WebSocket
     */
    WebSocket?: any;
    /**
     * follow online/offline (true)
     */
    watchBrowser?: boolean | undefined;
    /**
     * more WebsocketProvider options (disableBc…)
     */
    providerOptions?: Record<string, any> | undefined;
    /**
     * the y-websocket provider class (default: the
     * "y-websocket" this package resolves; any 3.x)
     */
    Provider?: typeof WebsocketProvider | undefined;
};
import { Emitter } from "./events.js";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { TokenSource } from "./token.js";
