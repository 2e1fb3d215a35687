/**
 * Milliseconds to wait before reconnect attempt number `attempt` (0 first). Attempt 0
 * follows a socket that was live, or a 1012 (another server is up already): it goes at
 * once, after at most PROMPT_JITTER ms. From attempt 1 (the one before failed) the wait is
 * exponential, capped, with "equal jitter" (between half and all of the step).
 * @param {number} attempt
 * @param {{base?: number, cap?: number, random?: () => number}} [options]
 * @returns {number}
 */
export function backoffDelay(attempt: number, { base, cap, random }?: {
    base?: number;
    cap?: number;
    random?: () => number;
}): number;
/** The most a first reconnect waits, ms: a jitter, so a crowd does not come back at once. */
export const PROMPT_JITTER: 100;
export function isRefusal(code: number): boolean;
/**
 * @typedef {object} SocketOptions
 * @property {string | URL} [url] the server's base URL (default: the page's origin)
 * @property {string | null} [token] an access token
 * @property {import("./token.js").GetToken | null} [getToken] returns a fresh token
 * @property {TokenSource | null} [tokens] a TokenSource shared with other clients
 * @property {any} [WebSocket] the WebSocket class (default: globalThis.WebSocket)
 * @property {number} [base] first backoff step, ms (500)
 * @property {number} [cap] longest wait between attempts, ms (30000)
 * @property {number} [welcomeTimeout] a socket without a welcome by then is given up, ms (15000)
 * @property {number} [heartbeat] ping period while live, ms; a ping unanswered that long: dead (25000)
 * @property {boolean} [watchBrowser] follow the browser's online/offline/visibility events (true)
 */
export class ReconnectingSocket extends Emitter {
    /**
     * `name` says which socket in messages ("room socket"); `fatalCloses` maps the close codes
     * after which reconnecting cannot help to what a person is told.
     * @param {string} name
     * @param {Map<number, string>} fatalCloses
     * @param {SocketOptions} [options]
     */
    constructor(name: string, fatalCloses: Map<number, string>, options?: SocketOptions);
    /** Hand-offs taken: switched to the next socket before the old one closed. */
    moves: number;
    /** The newest event seq this client has seen, and the epoch it belongs to (for resume). */
    /** @type {number | null} */
    lastSeq: number | null;
    /** @type {string | null} */
    epoch: string | null;
    /** The TokenSource this socket's tokens come from. */
    get tokens(): TokenSource;
    /** The server's base URL as given (undefined: the page's origin). */
    get baseUrl(): string | URL | undefined;
    /** "idle", "connecting", "live", "reconnecting", "offline" or "stopped". */
    get state(): string;
    get live(): boolean;
    start(): void;
    /**
     * Send a frame now; false when the socket is not live (the caller keeps it).
     * @param {object} frame
     * @returns {boolean}
     */
    send(frame: object): boolean;
    /** Skip the rest of the backoff wait ("Retry now", back online, tab shown again). */
    retryNow(): void;
    /** Close for good. */
    stop(): void;
    /**
     * Close the current socket as if the network dropped it (it reconnects and resumes): for
     * tests and for a page that knows its connection is gone.
     */
    drop(): void;
    /**
     * The socket's path from the server's base and its query for the next socket, resuming
     * after lastSeq/epoch by the server's rules.
     * @returns {{path: string, query: Record<string, string | number | null | undefined>, kind?: "room" | "feed"}}
     */
    where(): {
        path: string;
        query: Record<string, string | number | null | undefined>;
        kind?: "room" | "feed";
    };
    /** Whether the socket is opened with `handoff=1` and moves when asked (`reconnect`). */
    get handoff(): boolean;
    /** The type of the socket's first frame ("welcome"; the inbox's is "inbox.welcome"). */
    get welcomeType(): string;
    /**
     * A welcome (the first frame of a socket; `first` for the first socket): take its epoch
     * and where events resume. Returns the "welcome" event's detail.
     * @param {any} frame
     * @param {boolean} first
     * @returns {any}
     */
    welcomed(frame: any, first: boolean): any;
    /**
     * A later frame (an object with a string type): pass on what the client wants (emit).
     * @param {any} frame
     */
    received(frame: any): void;
    #private;
}
export type SocketOptions = {
    /**
     * the server's base URL (default: the page's origin)
     */
    url?: string | URL | undefined;
    /**
     * an access token
     */
    token?: string | null | undefined;
    /**
     * returns a fresh token
     */
    getToken?: import("./token.js").GetToken | null | undefined;
    /**
     * a TokenSource shared with other clients
     */
    tokens?: TokenSource | null | undefined;
    /**
     * the WebSocket class (default: globalThis.WebSocket)
     */
    WebSocket?: any;
    /**
     * first backoff step, ms (500)
     */
    base?: number | undefined;
    /**
     * longest wait between attempts, ms (30000)
     */
    cap?: number | undefined;
    /**
     * a socket without a welcome by then is given up, ms (15000)
     */
    welcomeTimeout?: number | undefined;
    /**
     * ping period while live, ms; a ping unanswered that long: dead (25000)
     */
    heartbeat?: number | undefined;
    /**
     * follow the browser's online/offline/visibility events (true)
     */
    watchBrowser?: boolean | undefined;
};
import { Emitter } from "./events.js";
import { TokenSource } from "./token.js";
