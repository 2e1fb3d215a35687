/**
 * The server's base URL as an http(s) URL: `base` as given ("https://chat.example.com", a
 * relative path resolved against the page), or the page's own origin.
 * @param {string | URL | undefined | null} base
 * @returns {URL}
 */
export function httpBase(base: string | URL | undefined | null): URL;
/**
 * A token as an offered subprotocol (docs/protocol.md, "Authentication"): the server reads
 * it there and never selects it, so the token stays out of the URL and out of proxy logs.
 * @param {string} token
 * @returns {string}
 */
export function tokenProtocol(token: string): string;
/**
 * A socket's URL and the subprotocols it offers. `path` is relative to the server's base
 * ("rooms/R/ws"); `query` the socket's own parameters (since, epoch, community…); `kind`
 * is "room", "feed" or "notes".
 *
 * The token is offered as a `menteo.token.<token>` subprotocol, never put in the URL
 * (docs/protocol.md, "Authentication"); this function is the one place that decides it.
 * @param {string | URL | undefined | null} base
 * @param {string} path
 * @param {string} token
 * @param {Record<string, string | number | null | undefined>} [query]
 * @param {"room" | "feed" | "notes"} [kind]
 * @returns {{url: string, protocols: string[]}}
 */
export function socketTarget(base: string | URL | undefined | null, path: string, token: string, query?: Record<string, string | number | null | undefined>, kind?: "room" | "feed" | "notes"): {
    url: string;
    protocols: string[];
};
/** The room and feed sockets' subprotocol (JSON frames). */
export const SUBPROTOCOL: "menteo.v1.json";
/** The notes socket's subprotocol (y-websocket's binary messages). */
export const NOTES_SUBPROTOCOL: "menteo.notes.v1";
