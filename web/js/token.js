// A page's access token: the one in its URL (?token=T), or, with ?token_url=URL, tokens the
// page fetches from URL before they expire (docs/protocol.md, "Token refresh in the pages").
//
// The token URL must be of this page's origin or of an origin the server allows
// (MENTEO_ALLOWED_ORIGINS, as GET /api/client-config names it); any other is refused with a
// message. It is fetched with credentials (the platform's session cookie) and answers
// {"token": "..."}. A TokenSource renews its token when a socket is told auth.expiring
// (reconnecting.js then sends the new token as auth.refresh), before a socket reopens with a
// token that is about to expire or was refused (4401), and, should no socket say so, on a
// timer before the token's expiry. Without a token URL nothing is ever fetched: the page
// behaves as it always has.
//
// Events (CustomEvent): "token", detail the new token, after every renewal.

import { tokenClaims } from "./outbox.js";

const RENEW_AHEAD_MS = 30_000; // the fallback timer renews this long before expiry
const MIN_TIMER_MS = 10_000; // ... and never sooner than this after the last token
const STALE_MS = 10_000; // a socket never opens with a token this close to its expiry
const MIN_GAP_MS = 2_000; // renewals at most this often (a server that warns at once)
const RETRY_MS = [2_000, 5_000, 15_000, 30_000]; // after a renewal that could not reach URL
const MAX_TOKEN_CHARS = 4096; // the server refuses longer tokens

export class TokenError extends Error {
  /** `status`: what the token URL answered (0: not reached). Transient ones are retried. */
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }

  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

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

export class TokenSource extends EventTarget {
  #token = null;
  #url; // a URL, or null: the token is never renewed
  #raw; // the token URL as the page's link gave it (for links to the other pages)
  #pending = null; // the renewal under way, shared by every caller
  #timer = null;
  #refused = false; // the server closed a socket 4401 on the current token
  #expiresAt = Infinity; // ms, on this browser's clock
  #fetchedAt = -Infinity;
  #failures = 0;

  constructor(token = null, url = null, raw = null) {
    super();
    this.#url = url;
    this.#raw = raw ?? url?.href ?? null;
    if (token) this.#take(token, false);
  }

  /** The page's tokens from its query (?token=T, ?token_url=URL). Throws TokenError. */
  static async fromQuery(params, location = globalThis.location) {
    const token = params.get("token")?.trim() || null;
    const raw = params.get("token_url")?.trim() || null;
    const url = raw ? await checkTokenUrl(raw, location) : null;
    const source = new TokenSource(token, url, raw);
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

  /** Renew no more. */
  close() {
    clearTimeout(this.#timer);
    this.#url = null;
  }

  get token() {
    return this.#token;
  }

  get renewable() {
    return this.#url !== null;
  }

  /** What a link to another page carries: the token URL when there is one, else the token. */
  get linkParams() {
    return this.#raw !== null ? { token_url: this.#raw } : { token: this.#token };
  }

  /** To be renewed before a socket opens with it: refused, or about to expire. */
  get stale() {
    return this.#token === null || this.#refused || this.#expiresAt - Date.now() < STALE_MS;
  }

  /** The server refused `token` (a 4401 close): the next fresh() fetches another. */
  invalidate(token) {
    if (token === this.#token) this.#refused = true;
  }

  /** A token to open a socket or call the API with, renewed first when stale. */
  async fresh() {
    if (this.renewable && this.stale) await this.refresh();
    return this.#token;
  }

  /** Fetch a new token now; one request at a time, whoever asks. Rejects with TokenError. */
  refresh() {
    if (this.#url === null) {
      return Promise.reject(new TokenError("Your access link has expired. Ask for a new one.", 401));
    }
    this.#pending ??= this.#renew().finally(() => {
      this.#pending = null;
    });
    return this.#pending;
  }

  async #renew() {
    const wait = this.#fetchedAt + MIN_GAP_MS - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    this.#fetchedAt = Date.now();
    clearTimeout(this.#timer);
    let token;
    try {
      token = await fetchToken(this.#url);
    } catch (err) {
      if (err.transient) this.#retryLater();
      throw err;
    }
    const was = tokenClaims(this.#token ?? "").sub;
    if (was !== undefined && tokenClaims(token).sub !== was) {
      throw new TokenError("Your access could not be renewed: the token URL named someone else.", 403);
    }
    this.#failures = 0;
    this.#take(token, true);
    this.dispatchEvent(new CustomEvent("token", { detail: token }));
    return token;
  }

  /** `fetched`: just issued, so its life is its exp - iat (the browser's clock may be off). */
  #take(token, fetched) {
    const { exp, iat } = tokenClaims(token);
    const now = Date.now();
    let left = typeof exp === "number" ? exp * 1000 - now : Infinity;
    if (typeof exp === "number" && typeof iat === "number") {
      const life = (exp - iat) * 1000;
      left = fetched ? life : Math.min(left, life);
    }
    this.#token = token;
    this.#refused = false;
    this.#expiresAt = now + left;
    clearTimeout(this.#timer);
    if (this.#url === null || !Number.isFinite(left)) return;
    const delay = Math.max(left - Math.min(RENEW_AHEAD_MS, left / 2), MIN_TIMER_MS);
    this.#timer = setTimeout(() => this.refresh().catch(() => {}), Math.min(delay, 2 ** 31 - 1));
  }

  #retryLater() {
    const delay = RETRY_MS[Math.min(this.#failures++, RETRY_MS.length - 1)];
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.refresh().catch(() => {}), delay);
  }
}

/**
 * `call(token)` with a fresh token; when the server answers 401 (err.status) and the token can
 * be renewed, once more with a new one.
 */
export async function withToken(tokens, call) {
  const token = await tokens.fresh();
  try {
    return await call(token);
  } catch (err) {
    if (err?.status !== 401 || !tokens.renewable) throw err;
    tokens.invalidate(token);
    return call(await tokens.fresh());
  }
}
