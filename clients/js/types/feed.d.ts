/**
 * The feed's query: {community} or {following}, then `extra` (null values left out).
 * @param {Feed} feed
 * @param {Record<string, string | number | null | undefined>} [extra]
 * @returns {string}
 */
export function feedQuery(feed: Feed, extra?: Record<string, string | number | null | undefined>): string;
/**
 * REST calls of the feed with a TokenSource (renewed and tried once more after a 401).
 * @param {{url?: string | URL, fetch?: typeof fetch}} where
 * @param {TokenSource} tokens
 */
export function feedApi(where: {
    url?: string | URL;
    fetch?: typeof fetch;
}, tokens: TokenSource): {
    /**
     * @param {string} method
     * @param {string} path
     * @param {any} [body]
     * @param {Record<string, string>} [headers]
     */
    call: (method: string, path: string, body?: any, headers?: Record<string, string>) => Promise<any>;
    /** @param {Feed} feed @param {{before?: number | null, limit?: number}} [page] */
    page: (feed: Feed, { before, limit }?: {
        before?: number | null;
        limit?: number;
    }) => Promise<any>;
};
/** @typedef {{community?: string, following?: boolean}} Feed */
export const FEED_FATAL_CLOSES: Map<number, string>;
/** The feed socket: its own events are "welcome" and "event" (above). */
export class FeedSocket extends ReconnectingSocket {
    /**
     * @param {Feed} feed
     * @param {import("./reconnecting.js").SocketOptions} [options]
     */
    constructor(feed: Feed, options?: import("./reconnecting.js").SocketOptions);
    /**
     * Open the socket; events after `since` (the first REST page's cursor) follow its welcome.
     * @param {number | null} [since]
     */
    start(since?: number | null): void;
    where(): {
        path: string;
        query: Record<string, string | number | null>;
        kind: "feed";
    };
    /**
     * @param {any} frame
     * @param {boolean} first
     */
    welcomed(frame: any, first: boolean): {
        frame: any;
        first: boolean;
    };
    #private;
}
/**
 * @typedef {object} StreamOptions
 * @property {string | URL} [url] the server's base URL (default: the page's origin)
 * @property {string | null} [token]
 * @property {import("./token.js").GetToken | null} [getToken]
 * @property {TokenSource | null} [tokens]
 * @property {typeof fetch} [fetch]
 * @property {number} [base] first backoff step, ms (500)
 * @property {number} [cap] longest wait between attempts, ms (30000)
 */
/**
 * The event stream (Server-Sent Events) read with fetch: the token goes in the
 * Authorization header (never in a URL), and a reconnect sends Last-Event-ID.
 */
export class FeedStream extends Emitter {
    /**
     * @param {Feed} feed
     * @param {StreamOptions} [options]
     */
    constructor(feed: Feed, options?: StreamOptions);
    /** @type {string | null} the last `id:` seen (EPOCH:SEQ): where a reconnect resumes */
    lastEventId: string | null;
    /** @type {number | null} */
    lastSeq: number | null;
    get tokens(): TokenSource;
    get state(): string;
    get live(): boolean;
    /**
     * Open the stream, after `since` (a REST page's cursor) when given.
     * @param {number | null} [since]
     */
    start(since?: number | null): this;
    stop(): void;
    #private;
}
export type Feed = {
    community?: string;
    following?: boolean;
};
export type StreamOptions = {
    /**
     * the server's base URL (default: the page's origin)
     */
    url?: string | URL | undefined;
    token?: string | null | undefined;
    getToken?: import("./token.js").GetToken | null | undefined;
    tokens?: TokenSource | null | undefined;
    fetch?: typeof fetch | undefined;
    /**
     * first backoff step, ms (500)
     */
    base?: number | undefined;
    /**
     * longest wait between attempts, ms (30000)
     */
    cap?: number | undefined;
};
import { TokenSource } from "./token.js";
import { ReconnectingSocket } from "./reconnecting.js";
import { Emitter } from "./events.js";
