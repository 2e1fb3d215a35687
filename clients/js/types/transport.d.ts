/**
 * The server's base URL as an http(s) URL: `base` as given ("https://chat.example.com", a
 * relative path resolved against the page), or the page's own origin.
 * @param {string | URL | undefined | null} base
 * @returns {URL}
 */
export function httpBase(base: string | URL | undefined | null): URL;
/**
 * A socket's URL and the subprotocols it offers. `path` is relative to the server's base
 * ("rooms/R/ws"); `query` the socket's own parameters (since, epoch, community…); `kind`
 * is "room", "feed" or "notes" (the notes socket speaks y-websocket: no subprotocol).
 *
 * The token travels in the URL as `?token=` (docs/protocol.md, "Authentication"). This
 * function is the one place that decides it: a server that takes the token as a
 * subprotocol would have it offered here instead.
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
