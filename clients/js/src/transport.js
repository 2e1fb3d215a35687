// Where sockets go and how they carry their token: the one place to change either.

/** The room and feed sockets' subprotocol (JSON frames). */
export const SUBPROTOCOL = "menteo.v1.json";

/**
 * The server's base URL as an http(s) URL: `base` as given ("https://chat.example.com", a
 * relative path resolved against the page), or the page's own origin.
 * @param {string | URL | undefined | null} base
 * @returns {URL}
 */
export function httpBase(base) {
  const page = globalThis.location?.href;
  if (base === undefined || base === null || base === "") {
    if (page === undefined) throw new TypeError("menteo: no server URL (option `url`)");
    return new URL("/", page);
  }
  const url = new URL(String(base), page);
  if (url.protocol === "ws:") url.protocol = "http:";
  if (url.protocol === "wss:") url.protocol = "https:";
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  url.search = "";
  url.hash = "";
  return url;
}

/** The notes socket's subprotocol (y-websocket's binary messages). */
export const NOTES_SUBPROTOCOL = "menteo.notes.v1";

/**
 * A token as an offered subprotocol (docs/protocol.md, "Authentication"): the server reads
 * it there and never selects it, so the token stays out of the URL and out of proxy logs.
 * @param {string} token
 * @returns {string}
 */
export function tokenProtocol(token) {
  return `menteo.token.${token}`;
}

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
export function socketTarget(base, path, token, query = {}, kind = "room") {
  const url = new URL(path.replace(/^\//, ""), httpBase(base));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined) params.set(key, String(value));
  }
  url.search = params.toString();
  const codec = kind === "notes" ? NOTES_SUBPROTOCOL : SUBPROTOCOL;
  return { url: url.href, protocols: token ? [codec, tokenProtocol(token)] : [codec] };
}
