// The community feed, live: the feed socket (/feed/ws) and the event stream (/feed/stream),
// each resuming after the last event seen so that nothing is missed or seen twice
// (docs/protocol.md, "The community feed").
//
// `feed` names what to follow: {community: ID} or {following: true}.
//
// FeedSocket and FeedStream events (`on(type, fn)` gets the payload):
//   "state"   {state, …}: as the room socket's (reconnecting.js)
//   "welcome" {frame, first}: the first frame of every socket or stream. frame.recovered
//             false on a later one means events may have been missed: read the feed again
//             over REST (GET /api/feed).
//   "event"   frame: every feed.* event, each seq once and in order

import { apiRequest } from "./api.js";
import { Emitter } from "./events.js";
import { backoffDelay, ReconnectingSocket } from "./reconnecting.js";
import { httpBase } from "./transport.js";
import { TokenError, TokenSource, withToken } from "./token.js";

/** @typedef {{community?: string, following?: boolean}} Feed */

export const FEED_FATAL_CLOSES = new Map([
  [4401, "Your access link is invalid or has expired. Ask for a new link."],
  [4400, "This link does not name a feed."],
  [4404, "This community does not exist."],
]);

/**
 * The feed's query: {community} or {following}, then `extra` (null values left out).
 * @param {Feed} feed
 * @param {Record<string, string | number | null | undefined>} [extra]
 * @returns {string}
 */
export function feedQuery(feed, extra = {}) {
  const query = new URLSearchParams();
  if (feed.community) query.set("community", feed.community);
  else query.set("following", "1");
  for (const [k, v] of Object.entries(extra)) {
    if (v !== null && v !== undefined) query.set(k, String(v));
  }
  return query.toString();
}

/** The feed socket: its own events are "welcome" and "event" (above). */
export class FeedSocket extends ReconnectingSocket {
  #feed;

  /**
   * @param {Feed} feed
   * @param {import("./reconnecting.js").SocketOptions} [options]
   */
  constructor(feed, options = {}) {
    super("feed socket", FEED_FATAL_CLOSES, options);
    this.#feed = feed;
  }

  /**
   * Open the socket; events after `since` (the first REST page's cursor) follow its welcome.
   * @param {number | null} [since]
   */
  start(since = null) {
    this.lastSeq = since ?? null;
    super.start();
  }

  where() {
    /** @type {Record<string, string | number | null>} */
    const query = this.#feed.community ? { community: this.#feed.community } : { following: "1" };
    if (this.lastSeq !== null) query.since = this.lastSeq;
    if (this.lastSeq !== null && this.epoch !== null) query.epoch = this.epoch;
    return { path: "feed/ws", query, kind: /** @type {"feed"} */ ("feed") };
  }

  /**
   * @param {any} frame
   * @param {boolean} first
   */
  welcomed(frame, first) {
    this.epoch = frame.epoch;
    // Not recovered: the socket starts at the feed's cursor, with live events only.
    if (!frame.recovered) this.lastSeq = frame.cursor;
    return { frame, first };
  }

  /** @param {any} frame */
  received(frame) {
    if (!frame.type.startsWith("feed.") || typeof frame.seq !== "number") return;
    if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // seen already
    this.lastSeq = frame.seq;
    this.emit("event", frame);
  }
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
  #feed;
  #options;
  #tokens;
  /** @type {AbortController | null} */
  #abort = null;
  #state = "idle";
  #stopped = false;
  #attempt = 0;
  #welcomes = 0;
  #refusedOnce = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retry = undefined;
  /** @type {string | null} the last `id:` seen (EPOCH:SEQ): where a reconnect resumes */
  lastEventId = null;
  /** @type {number | null} */
  lastSeq = null;

  /**
   * @param {Feed} feed
   * @param {StreamOptions} [options]
   */
  constructor(feed, options = {}) {
    super();
    this.#feed = feed;
    this.#options = { base: 500, cap: 30000, ...options };
    this.#tokens = TokenSource.from(options);
  }

  get tokens() {
    return this.#tokens;
  }

  get state() {
    return this.#state;
  }

  get live() {
    return this.#state === "live";
  }

  /**
   * Open the stream, after `since` (a REST page's cursor) when given.
   * @param {number | null} [since]
   */
  start(since = null) {
    this.lastSeq = since ?? null;
    this.#connect();
    return this;
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#abort?.abort();
    this.#setState("stopped", {});
  }

  /**
   * @param {string} state
   * @param {object} detail
   */
  #setState(state, detail) {
    this.#state = state;
    this.emit("state", { state, ...detail });
  }

  async #connect() {
    if (this.#stopped) return;
    this.#setState(this.#welcomes === 0 && this.#attempt === 0 ? "connecting" : "reconnecting", {});
    let token;
    try {
      token = await this.#tokens.fresh();
    } catch (err) {
      if (err instanceof TokenError && !err.transient) this.#fail(4401, err.message);
      else this.#later();
      return;
    }
    const abort = new AbortController();
    this.#abort = abort;
    /** @type {Record<string, string>} */
    const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
    if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
    const since = this.lastEventId === null && this.lastSeq !== null ? this.lastSeq : null;
    const url = new URL(`feed/stream?${feedQuery(this.#feed, { since })}`, httpBase(this.#options.url));
    let ended = "dropped";
    try {
      const resp = await (this.#options.fetch ?? globalThis.fetch)(url, { headers, signal: abort.signal, cache: "no-store" });
      if (!resp.ok || resp.body === null) {
        await this.#refused(resp, token);
        return;
      }
      ended = await this.#read(resp.body);
    } catch {
      if (this.#stopped) return; // aborted by stop()
    }
    if (ended === "auth.revoked" || ended === "auth.expired") {
      this.#tokens.invalidate(token);
      if (this.#tokens.renewable) this.#connect();
      else this.#fail(4401, "The access token has expired.");
      return;
    }
    this.#later();
  }

  /**
   * An HTTP refusal: 401 renews the token once; 400 and 404 are final; the rest is retried.
   * @param {Response} resp
   * @param {string | null} token
   */
  async #refused(resp, token) {
    let message = `The event stream was refused (${resp.status}).`;
    try {
      message = (await resp.json())?.error?.message ?? message;
    } catch {
      // not JSON
    }
    if (resp.status === 401 && this.#tokens.renewable && !this.#refusedOnce) {
      this.#refusedOnce = true;
      this.#tokens.invalidate(token);
      this.#connect();
      return;
    }
    if (resp.status === 401 || resp.status === 403) this.#fail(4401, message);
    else if (resp.status === 400) this.#fail(4400, message);
    else if (resp.status === 404) this.#fail(4404, message);
    else this.#later();
  }

  /**
   * @param {number} code
   * @param {string} message
   */
  #fail(code, message) {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#setState("stopped", { code, message: FEED_FATAL_CLOSES.get(code) ?? message });
  }

  #later() {
    if (this.#stopped) return;
    const delay = backoffDelay(this.#attempt++, this.#options);
    this.#setState("reconnecting", { delay });
    this.#retry = setTimeout(() => this.#connect(), delay);
  }

  /**
   * Read messages until the stream ends; the last event's name when it ended the stream.
   * @param {ReadableStream<Uint8Array>} body
   * @returns {Promise<string>}
   */
  async #read(body) {
    // (TypeScript's DOM types disagree on TextDecoderStream's input: it takes Uint8Array)
    const reader = body.pipeThrough(/** @type {any} */ (new TextDecoderStream())).getReader();
    let buffer = "";
    /** @type {{id: string | null, event: string, data: string[]}} */
    let message = { id: null, event: "message", data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "dropped";
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "") {
          const ended = this.#dispatch(message);
          if (ended !== null) {
            reader.cancel().catch(() => {});
            return ended;
          }
          message = { id: null, event: "message", data: [] };
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "id") message.id = text;
          else if (field === "event") message.event = text;
          else if (field === "data") message.data.push(text);
        }
      }
    }
  }

  /**
   * One message of the stream; the event's name when it ends the stream, else null.
   * @param {{id: string | null, event: string, data: string[]}} message
   * @returns {string | null}
   */
  #dispatch({ id, event, data }) {
    if (id !== null) this.lastEventId = id;
    if (event === "auth.expired" || event === "auth.revoked") return event;
    if (data.length === 0) return null;
    let frame;
    try {
      frame = JSON.parse(data.join("\n"));
    } catch {
      return null;
    }
    if (event === "welcome") {
      this.#attempt = 0;
      this.#refusedOnce = false;
      if (!frame.recovered) this.lastSeq = frame.cursor;
      this.#setState("live", {});
      this.emit("welcome", { frame, first: this.#welcomes++ === 0 });
      return null;
    }
    if (!event.startsWith("feed.") || typeof frame?.seq !== "number") return null;
    if (this.lastSeq !== null && frame.seq <= this.lastSeq) return null; // seen already
    this.lastSeq = frame.seq;
    this.emit("event", frame);
    return null;
  }
}

/**
 * REST calls of the feed with a TokenSource (renewed and tried once more after a 401).
 * @param {{url?: string | URL, fetch?: typeof fetch}} where
 * @param {TokenSource} tokens
 */
export function feedApi(where, tokens) {
  return {
    /**
     * @param {string} method
     * @param {string} path
     * @param {any} [body]
     * @param {Record<string, string>} [headers]
     */
    call: (method, path, body, headers) =>
      withToken(tokens, (token) => apiRequest(where, token, method, path, body, headers)),
    /** @param {Feed} feed @param {{before?: number | null, limit?: number}} [page] */
    page: (feed, { before = null, limit = 20 } = {}) =>
      withToken(tokens, (token) =>
        apiRequest(where, token, "GET", `/api/feed?${feedQuery(feed, { before, limit })}`),
      ),
  };
}
