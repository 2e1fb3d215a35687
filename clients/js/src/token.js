// A client's access token, and fresh ones from the application's `getToken()` callback
// before it expires (docs/protocol.md, "auth.expiring" and "auth.refresh").
//
// A TokenSource holds the current token. With a `getToken` callback it is renewable: it
// renews when a socket is told auth.expiring (the socket then sends the new token as
// auth.refresh), before a socket reopens with a token that is about to expire or was
// refused (4401), and, should no socket say so, on a timer before the token's expiry.
// Renewals are one at a time (every caller shares the one under way) and at most one every
// 2 s. Without a callback the token is never renewed: a 4401 is final.
//
// `getToken()` returns the new token (a string, or a promise of one). To say that access is
// over, it returns null or throws a TokenError whose status is 401 or 403; any other error
// (the network, a 5xx) is retried (2, 5, 15, then every 30 s) while the current token lasts.
//
// Events: "token" (detail: the new token) after every renewal.

import { Emitter } from "./events.js";

const RENEW_AHEAD_MS = 30_000; // the fallback timer renews this long before expiry
const MIN_TIMER_MS = 10_000; // ... and never sooner than this after the last token
const STALE_MS = 10_000; // a socket never opens with a token this close to its expiry
const MIN_GAP_MS = 2_000; // renewals at most this often (a server that warns at once)
const RETRY_MS = [2_000, 5_000, 15_000, 30_000]; // after a renewal that failed for now
const MAX_TOKEN_CHARS = 4096; // the server refuses longer tokens

/** Why a token could not be had; `status` 0 (not reached), 429 or 5xx are transient. */
export class TokenError extends Error {
  /**
   * @param {string} message
   * @param {number} [status] what the token's issuer answered (0: not reached)
   */
  constructor(message, status = 0) {
    super(message);
    this.name = "TokenError";
    this.status = status;
  }

  /** Worth trying again later. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/**
 * The claims of a token, unverified: to tell apart the outboxes of different people who use
 * the same browser and to name the user before the welcome. The server verifies tokens;
 * a client never trusts these for anything else.
 * @param {string | null | undefined} token
 * @returns {Record<string, any>}
 */
export function tokenClaims(token) {
  try {
    const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(part.padEnd(Math.ceil(part.length / 4) * 4, "="));
    const text = new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    const claims = JSON.parse(text);
    return claims !== null && typeof claims === "object" ? claims : {};
  } catch {
    return {};
  }
}

/** @typedef {() => (string | null | undefined | Promise<string | null | undefined>)} GetToken */

export class TokenSource extends Emitter {
  /** @type {string | null} */
  #token = null;
  /** @type {GetToken | null} */
  #getToken;
  /** @type {Promise<string> | null} the renewal under way, shared by every caller */
  #pending = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer = undefined;
  #refused = false; // the server closed a socket 4401 on the current token
  #expiresAt = Infinity; // ms, on this machine's clock
  #fetchedAt = -Infinity;
  #failures = 0;

  /**
   * @param {{token?: string | null, getToken?: GetToken | null}} [options]
   */
  constructor({ token = null, getToken = null } = {}) {
    super();
    this.#getToken = getToken;
    if (token) this.#take(token, false);
  }

  /**
   * A TokenSource from what a client's options hold: one given as `tokens`, else a new one
   * on `token` and `getToken`.
   * @param {{tokens?: TokenSource | null, token?: string | null, getToken?: GetToken | null}} options
   * @returns {TokenSource}
   */
  static from({ tokens = null, token = null, getToken = null }) {
    if (tokens) return tokens;
    if (!token && !getToken) throw new TypeError("menteo: a `token` or a `getToken` callback is needed");
    return new TokenSource({ token, getToken });
  }

  /** Renew no more (the timer stops; the current token stays). */
  close() {
    clearTimeout(this.#timer);
    this.#getToken = null;
  }

  /** The current token, or null before the first one. */
  get token() {
    return this.#token;
  }

  /** Whether this source can get new tokens (it has a `getToken`). */
  get renewable() {
    return this.#getToken !== null;
  }

  /** To be renewed before a socket opens with it: none yet, refused, or about to expire. */
  get stale() {
    return this.#token === null || this.#refused || this.#expiresAt - Date.now() < STALE_MS;
  }

  /**
   * The server refused `token` (a 4401 close): the next `fresh()` gets another.
   * @param {string | null} token
   */
  invalidate(token) {
    if (token === this.#token) this.#refused = true;
  }

  /**
   * A token to open a socket or call the API with, renewed first when stale.
   * @returns {Promise<string | null>}
   */
  async fresh() {
    if (this.renewable && this.stale) await this.refresh();
    return this.#token;
  }

  /**
   * Get a new token now; one request at a time, whoever asks. Rejects with a TokenError.
   * @returns {Promise<string>}
   */
  refresh() {
    if (this.#getToken === null) {
      return Promise.reject(new TokenError("The access token has expired and cannot be renewed.", 401));
    }
    this.#pending ??= this.#renew().finally(() => {
      this.#pending = null;
    });
    return this.#pending;
  }

  /** @returns {Promise<string>} */
  async #renew() {
    const wait = this.#fetchedAt + MIN_GAP_MS - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    this.#fetchedAt = Date.now();
    clearTimeout(this.#timer);
    let token;
    try {
      token = await this.#call();
    } catch (err) {
      if (/** @type {TokenError} */ (err).transient) this.#retryLater();
      throw err;
    }
    const was = tokenClaims(this.#token).sub;
    if (was !== undefined && tokenClaims(token).sub !== was) {
      throw new TokenError("The access could not be renewed: the new token names someone else.", 403);
    }
    this.#failures = 0;
    this.#take(token, true);
    this.emit("token", token);
    return token;
  }

  /** `getToken()`, its answer checked; every failure as a TokenError. */
  async #call() {
    const getToken = /** @type {GetToken} */ (this.#getToken);
    let token;
    try {
      token = await getToken();
    } catch (err) {
      if (err instanceof TokenError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new TokenError(`Cannot renew the access token: ${message}`, 0);
    }
    if (token === null || token === undefined) {
      throw new TokenError("The access could not be renewed: sign in again.", 401);
    }
    if (typeof token !== "string" || token === "" || token.length > MAX_TOKEN_CHARS) {
      throw new TokenError("The access could not be renewed: getToken() gave no token.", 400);
    }
    return token;
  }

  /**
   * `fetched`: just issued, so its life is its exp - iat (this machine's clock may be off).
   * @param {string} token
   * @param {boolean} fetched
   */
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
    if (this.#getToken === null || !Number.isFinite(left)) return;
    const delay = Math.max(left - Math.min(RENEW_AHEAD_MS, left / 2), MIN_TIMER_MS);
    this.#timer = setTimeout(() => this.refresh().catch(() => {}), Math.min(delay, 2 ** 31 - 1));
    unref(this.#timer);
  }

  #retryLater() {
    const delay = RETRY_MS[Math.min(this.#failures++, RETRY_MS.length - 1)];
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.refresh().catch(() => {}), delay);
    unref(this.#timer);
  }
}

/**
 * A timer that does not keep a Node process alive on its own (no-op in browsers).
 * @param {any} timer
 */
export function unref(timer) {
  if (typeof timer?.unref === "function") timer.unref();
}

/**
 * `call(token)` with a fresh token; when the server answers 401 (err.status) and the token
 * can be renewed, once more with a new one.
 * @template T
 * @param {TokenSource} tokens
 * @param {(token: string) => Promise<T>} call
 * @returns {Promise<T>}
 */
export async function withToken(tokens, call) {
  const token = /** @type {string} */ (await tokens.fresh());
  try {
    return await call(token);
  } catch (err) {
    if (/** @type {any} */ (err)?.status !== 401 || !tokens.renewable) throw err;
    tokens.invalidate(token);
    return call(/** @type {string} */ (await tokens.fresh()));
  }
}
