// A page's access token: the one in its URL (?token=T), or, with ?token_url=URL, tokens the
// page fetches from URL before they expire (docs/protocol.md, "Token refresh in the pages").
// The renewing itself is the SDK's TokenSource (clients/js/src/token.js, served at /sdk/):
// this module gives it a `getToken` that fetches the token URL, and checks that URL first.
//
// The token URL must be of this page's origin or of an origin the server allows
// (MENTEO_ALLOWED_ORIGINS, as GET /api/client-config names it); any other is refused with a
// message. It is fetched with credentials (the platform's session cookie) and answers
// {"token": "..."}. Without a token URL nothing is ever fetched: the page behaves as it
// always has.

import { TokenError, TokenSource } from "../sdk/token.js";

export { TokenError, withToken } from "../sdk/token.js";

const MAX_TOKEN_CHARS = 4096; // the server refuses longer tokens

async function allowedOrigins() {
  const resp = await fetch("/api/client-config", { cache: "no-store" });
  if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
  const data = await resp.json();
  return Array.isArray(data?.allowed_origins) ? data.allowed_origins : [];
}

/** A page's ?token_url=, checked: an http(s) URL of this origin or of an allowed one. */
export async function checkTokenUrl(raw, location, origins = allowedOrigins) {
  let url;
  try {
    url = new URL(raw, location.href);
  } catch {
    throw new TokenError("This link's token_url is not a URL. Ask for a new link.", 400);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new TokenError("This link's token_url must be an http(s) URL. Ask for a new link.", 400);
  }
  if (url.origin === location.origin) return url;
  let allowed;
  try {
    allowed = await origins();
  } catch {
    throw new TokenError("The server cannot be reached to check this link. Reload to try again.");
  }
  if (allowed.includes("*") || allowed.includes(url.origin)) return url;
  throw new TokenError(
    `This link fetches its access from ${url.origin}, which this server does not allow ` +
      "(MENTEO_ALLOWED_ORIGINS). Nothing was fetched. Ask for a new link.",
    403,
  );
}

/** The token URL's answer: a token, or a TokenError saying why not (transient or not). */
async function fetchToken(url) {
  let resp;
  try {
    const headers = { Accept: "application/json" };
    resp = await fetch(url, { credentials: "include", cache: "no-store", headers });
  } catch {
    throw new TokenError("Cannot renew your access: the token URL cannot be reached.");
  }
  if (!resp.ok) {
    const refused = resp.status === 401 || resp.status === 403;
    const message = refused
      ? "Your access could not be renewed: sign in again, or ask for a new link."
      : `Your access could not be renewed: the token URL answered ${resp.status}.`;
    throw new TokenError(message, resp.status);
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // not JSON: refused below
  }
  const token = data?.token;
  if (typeof token !== "string" || token === "" || token.length > MAX_TOKEN_CHARS) {
    const message = 'Your access could not be renewed: the token URL did not answer {"token": …}.';
    throw new TokenError(message, resp.status);
  }
  return token;
}

/** The page's TokenSource, and what its links to the other pages carry. */
export class PageTokens extends TokenSource {
  #raw; // the token URL as the page's link gave it

  constructor(token, url, raw) {
    super({ token, getToken: url ? () => fetchToken(url) : null });
    this.#raw = raw;
  }

  /** What a link to another page carries: the token URL when there is one, else the token. */
  get linkParams() {
    return this.#raw !== null ? { token_url: this.#raw } : { token: this.token };
  }

  /** The page's tokens from its query (?token=T, ?token_url=URL). Throws TokenError. */
  static async fromQuery(params, location = globalThis.location) {
    const token = params.get("token")?.trim() || null;
    const raw = params.get("token_url")?.trim() || null;
    const url = raw ? await checkTokenUrl(raw, location) : null;
    const source = new PageTokens(token, url, raw);
    if (source.token === null && url !== null) {
      try {
        await source.refresh();
      } catch (err) {
        source.close(); // the page shows why and opens nothing: no retries behind its back
        throw err;
      }
    }
    return source;
  }
}
