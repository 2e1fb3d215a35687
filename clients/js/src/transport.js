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
export function socketTarget(base, path, token, query = {}, kind = "room") {
  const url = new URL(path.replace(/^\//, ""), httpBase(base));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams({ token });
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined) params.set(key, String(value));
  }
  url.search = params.toString();
  return { url: url.href, protocols: kind === "notes" ? [] : [SUBPROTOCOL] };
}
