// A socket that stays connected: backoff with jitter, keep-alive pings, and the
// connection's state. The room socket (room.js) and the feed socket (feed.js) extend
// ReconnectingSocket with what is their own: the socket's path and query (and so what a
// resume sends), what a welcome means, and which later frames they pass on.
//
// The socket keeps its token fresh through its TokenSource (token.js): on auth.expiring it
// has the source renew it and sends it as auth.refresh (so does a renewal made for another
// reason), it renews a stale token before it reopens, and a 4401 close is one more reason to
// renew and reconnect (a second one in a row is final). A source that cannot renew makes a
// 4401 final.
//
// A socket that takes the hand-off (`handoff`: the room socket) moves when its server
// process stops: on `reconnect` (docs/protocol.md) it opens its next socket (the balancer
// sends it to a process that stays) while the old one still serves, and once the next one
// is welcomed it switches to it and closes the old one, so it never goes "reconnecting".
//
// Events (CustomEvent, payload in `detail`; `on(type, fn)` gets the payload):
//   "state"   {state, delay?, code?, reason?, message?}   state is one of
//             "connecting" (first attempt), "live", "reconnecting", "offline",
//             "stopped" (for good: a refusal, or stop() was called)
//   "welcome" what welcomed() returns: the first frame of every socket
// and whatever the subclass emits for the later frames.

import { Emitter } from "./events.js";
import { socketTarget } from "./transport.js";
import { TokenSource } from "./token.js";

const RATE_LIMITED = 1008;
const SERVER_RESTART = 1012;
const UNAUTHORIZED = 4401;
const MOVE_RETRY = 100; // ms before a refused hand-off socket is tried again (then doubled)
const MOVE_FOR = 60; // s: the longest a hand-off is tried (the server's close_in is at most 60)

/** The most a first reconnect waits, ms: a jitter, so a crowd does not come back at once. */
export const PROMPT_JITTER = 100;

/**
 * Milliseconds to wait before reconnect attempt number `attempt` (0 first). Attempt 0
 * follows a socket that was live, or a 1012 (another server is up already): it goes at
 * once, after at most PROMPT_JITTER ms. From attempt 1 (the one before failed) the wait is
 * exponential, capped, with "equal jitter" (between half and all of the step).
 * @param {number} attempt
 * @param {{base?: number, cap?: number, random?: () => number}} [options]
 * @returns {number}
 */
export function backoffDelay(attempt, { base = 500, cap = 30000, random = Math.random } = {}) {
  if (attempt <= 0) return Math.round(random() * Math.min(PROMPT_JITTER, base));
  const step = Math.min(cap, base * 2 ** Math.min(attempt - 1, 30));
  return Math.round(step / 2 + (random() * step) / 2);
}

/**
 * Stop listening to a socket we are done with, and close it.
 * @param {any} ws
 * @param {number} code
 * @param {string} reason
 */
function closeQuietly(ws, code, reason) {
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = () => {}; // closing one still connecting reports an error
  try {
    ws.close(code, reason);
  } catch {
    // already closing
  }
}

/** Whether a close code is a refusal (44xx): reconnecting cannot help, except a 4401 with a renewable token. */
export const isRefusal = (/** @type {number} */ code) => code >= 4400 && code < 4500;

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
  #name;
  #fatalCloses;
  #options;
  #tokens;
  /** @type {any} */
  #ws = null;
  #welcomed = false;
  #welcomes = 0;
  #state = "idle";
  #attempt = 0;
  /** @type {{retry: any, welcome: any, heartbeat: any, move: any}} */
  #timers = { retry: null, welcome: null, heartbeat: null, move: null };
  #awaitingPong = false;
  #pingSentAt = 0;
  #stopped = false;
  /** @type {Array<[any, string, any]>} */
  #listeners = [];
  #renewing = false; // waiting for a fresh token before the next socket opens
  /** @type {string | null} the token the current socket runs on (its URL, or auth.refresh) */
  #socketToken = null;
  #refusedOnce = false; // a 4401 and no welcome since: another one is final
  #refreshes = 0;
  /** @type {any} a hand-off's next socket, until it is welcomed (or fails) */
  #next = null;
  /** @type {any} its welcome's deadline */
  #nextTimer = null;
  /** @type {string | null} the token it opened with */
  #nextToken = null;
  /** @type {{code: number, reason: string} | null} how the old socket closed meanwhile */
  #oldClosed = null;
  #moveUntil = 0; // Date.now() until which a refused next socket is tried again
  #renewingForMove = false;
  #moveAttempt = 0;
  /** Hand-offs taken: switched to the next socket before the old one closed. */
  moves = 0;

  /** The newest event seq this client has seen, and the epoch it belongs to (for resume). */
  /** @type {number | null} */
  lastSeq = null;
  /** @type {string | null} */
  epoch = null;

  /**
   * `name` says which socket in messages ("room socket"); `fatalCloses` maps the close codes
   * after which reconnecting cannot help to what a person is told.
   * @param {string} name
   * @param {Map<number, string>} fatalCloses
   * @param {SocketOptions} [options]
   */
  constructor(name, fatalCloses, options = {}) {
    super();
    this.#name = name;
    this.#fatalCloses = fatalCloses;
    this.#tokens = TokenSource.from(options);
    this.#options = {
      base: 500,
      cap: 30000,
      welcomeTimeout: 15000,
      heartbeat: 25000,
      watchBrowser: true,
      WebSocket: globalThis.WebSocket,
      ...options,
    };
  }

  /** The TokenSource this socket's tokens come from. */
  get tokens() {
    return this.#tokens;
  }

  /** The server's base URL as given (undefined: the page's origin). */
  get baseUrl() {
    return this.#options.url;
  }

  /** "idle", "connecting", "live", "reconnecting", "offline" or "stopped". */
  get state() {
    return this.#state;
  }

  get live() {
    return this.#state === "live";
  }

  start() {
    if (this.#options.watchBrowser && typeof globalThis.addEventListener === "function") {
      this.#listen(globalThis, "offline", () => this.#wentOffline());
      this.#listen(globalThis, "online", () => this.retryNow());
    }
    // Phones freeze background tabs: when the page is looked at again, do not make the
    // user wait out the backoff.
    const doc = globalThis.document;
    if (this.#options.watchBrowser && doc) {
      this.#listen(doc, "visibilitychange", () => {
        if (!doc.hidden) this.retryNow();
      });
    }
    this.#listen(this.#tokens, "token", () => this.#sendToken());
    this.#open();
  }

  /**
   * Send a frame now; false when the socket is not live (the caller keeps it).
   * @param {object} frame
   * @returns {boolean}
   */
  send(frame) {
    const ws = this.#ws;
    if (!this.live || ws === null || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  /** Skip the rest of the backoff wait ("Retry now", back online, tab shown again). */
  retryNow() {
    if (this.#stopped || this.#state === "live" || this.#state === "stopped") return;
    if (this.#renewing || (this.#ws !== null && !this.#welcomed)) return; // under way
    this.#attempt = 0;
    this.#open();
  }

  /** Close for good. */
  stop() {
    this.#stopped = true;
    this.#clearTimers();
    for (const [target, type, fn] of this.#listeners) target.removeEventListener(type, fn);
    this.#listeners = [];
    this.#drop(1000, "bye");
    this.#setState("stopped", {});
  }

  /**
   * Close the current socket as if the network dropped it (it reconnects and resumes): for
   * tests and for a page that knows its connection is gone.
   */
  drop() {
    if (this.#ws === null || this.#stopped) return;
    this.#lost();
  }

  // What a subclass defines ----------------------------------------------------------------

  /**
   * The socket's path from the server's base and its query for the next socket, resuming
   * after lastSeq/epoch by the server's rules.
   * @returns {{path: string, query: Record<string, string | number | null | undefined>, kind?: "room" | "feed"}}
   */
  where() {
    throw new Error(`${this.#name}: no where()`);
  }

  /** Whether the socket is opened with `handoff=1` and moves when asked (`reconnect`). */
  get handoff() {
    return false;
  }

  /** The type of the socket's first frame ("welcome"; the inbox's is "inbox.welcome"). */
  get welcomeType() {
    return "welcome";
  }

  /**
   * A welcome (the first frame of a socket; `first` for the first socket): take its epoch
   * and where events resume. Returns the "welcome" event's detail.
   * @param {any} frame
   * @param {boolean} first
   * @returns {any}
   */
  welcomed(frame, first) {
    return { frame, first };
  }

  /**
   * A later frame (an object with a string type): pass on what the client wants (emit).
   * @param {any} frame
   */
  received(frame) {}

  // Internals ------------------------------------------------------------------------------

  /**
   * @param {any} target
   * @param {string} type
   * @param {(event: any) => void} fn
   */
  #listen(target, type, fn) {
    target.addEventListener(type, fn);
    this.#listeners.push([target, type, fn]);
  }

  /**
   * @param {string} state
   * @param {object} [detail]
   */
  #setState(state, detail = {}) {
    this.#state = state;
    this.emit("state", { state, ...detail });
  }

  #open({ renewed = false } = {}) {
    this.#clearTimers();
    this.#drop(1000, "replaced");
    const tokens = this.#tokens;
    if (tokens.renewable && tokens.stale && !renewed) {
      this.#renewThenOpen(tokens);
      return;
    }
    let ws;
    try {
      ws = this.#socket();
      this.#socketToken = tokens.token;
    } catch (err) {
      // A malformed URL, or no WebSocket here; retrying the same cannot help.
      const message = `Cannot open the ${this.#name}: ${/** @type {Error} */ (err).message}`;
      this.#setState("stopped", { message });
      return;
    }
    this.#ws = ws;
    this.#welcomed = false;
    this.#setState(this.#opening(), {});
    this.#attach(ws);
    this.#timers.welcome = setTimeout(() => {
      if (ws === this.#ws && !this.#welcomed) this.#lost();
    }, this.#options.welcomeTimeout);
  }

  /** A new socket to where() with the current token (throws on a malformed URL). */
  #socket() {
    const token = this.#tokens.token;
    const { path, query, kind = "room" } = this.where();
    const target = socketTarget(this.#options.url, path, token ?? "", query, kind);
    return new this.#options.WebSocket(target.url, target.protocols);
  }

  /** @param {any} ws the current socket from now on: its frames and its close are ours */
  #attach(ws) {
    ws.onmessage = (/** @type {MessageEvent} */ event) => this.#onMessage(ws, event);
    ws.onclose = (/** @type {CloseEvent} */ event) => this.#onClose(ws, event.code, event.reason);
    ws.onerror = () => {}; // the close that follows says what happened
  }

  /** `reconnect`: open the next socket while this one serves; switch at its welcome. */
  #move() {
    if (this.#next !== null || this.#stopped || this.#renewingForMove) return;
    const tokens = this.#tokens;
    if (tokens.renewable && tokens.stale) {
      // The next socket needs a token that outlives its handshake, as a reconnect does.
      this.#renewingForMove = true;
      const again = () => {
        this.#renewingForMove = false;
        if (this.#ws !== null && Date.now() < this.#moveUntil && !tokens.stale) this.#move();
      };
      tokens.fresh().then(again, again);
      return;
    }
    let next;
    try {
      next = this.#socket();
    } catch {
      return; // the old socket's 1012 brings the usual reconnect
    }
    this.#next = next;
    this.#nextToken = this.#tokens.token;
    this.#nextTimer = setTimeout(() => this.#moveFailed(next), this.#options.welcomeTimeout);
    // A refused handshake may end in "error" alone (Node's WebSocket): either one fails it.
    next.onerror = next.onclose = () => this.#moveFailed(next);
    next.onmessage = (/** @type {MessageEvent} */ event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        frame = null;
      }
      if (frame?.type === this.welcomeType) this.#moved(next, frame);
      else this.#moveFailed(next);
    };
  }

  /**
   * The next socket is welcomed: it becomes the socket, the old one is closed (1000).
   * @param {any} next
   * @param {any} frame
   */
  #moved(next, frame) {
    if (next !== this.#next) return;
    clearTimeout(this.#nextTimer);
    this.#next = null;
    this.#oldClosed = null;
    const old = this.#ws;
    this.#ws = null; // #drop leaves the socket alone
    if (old !== null) closeQuietly(old, 1000, "moved");
    this.#clearTimers(); // the old socket's retry or heartbeat
    this.#ws = next;
    this.#socketToken = this.#nextToken; // a newer one goes as auth.refresh once welcomed
    this.#attach(next);
    this.moves += 1;
    this.#welcomed = false;
    this.#onWelcome(frame);
  }

  /**
   * The next socket closed or sent no welcome in time. While the old one serves and is due
   * to, try again, briefly spaced (the balancer may not know yet that its process drains);
   * if the old one has closed too, reconnect as after its 1012.
   * @param {any} next
   */
  #moveFailed(next) {
    if (next !== this.#next) return;
    this.#next = null;
    this.#dropNext(next);
    if (this.#stopped || this.#state === "stopped") return;
    const closed = this.#oldClosed;
    if (closed !== null) {
      this.#oldClosed = null;
      this.#closed(closed.code, closed.reason); // as if the move had never begun
    } else if (Date.now() < this.#moveUntil) {
      const delay = Math.min(1000, MOVE_RETRY * 2 ** this.#moveAttempt++);
      this.#timers.move = setTimeout(() => this.#move(), delay);
    }
  }

  /** @param {any} next */
  #dropNext(next) {
    clearTimeout(this.#nextTimer);
    closeQuietly(next, 1000, "not needed");
  }

  /** "connecting" only for the very first try; after any failure it is a reconnect. */
  #opening() {
    return this.#welcomes === 0 && this.#attempt === 0 ? "connecting" : "reconnecting";
  }

  /**
   * Get a fresh token, then open; a refusal by the token's issuer is final.
   * @param {TokenSource} tokens
   */
  #renewThenOpen(tokens) {
    if (this.#renewing) return;
    this.#renewing = true;
    this.#setState(this.#opening(), {});
    tokens.fresh().then(
      () => {
        this.#renewing = false;
        if (!this.#stopped && this.#state !== "stopped") this.#open({ renewed: true });
      },
      (err) => {
        this.#renewing = false;
        if (this.#stopped || this.#state === "stopped") return;
        if (err?.transient) this.#scheduleRetry(1006);
        else this.#setState("stopped", { code: UNAUTHORIZED, message: err.message });
      },
    );
  }

  /** A renewed token goes to the live socket as auth.refresh (docs/protocol.md). */
  #sendToken() {
    const token = this.#tokens.token;
    if (!token || token === this.#socketToken || !this.live) return;
    const id = `auth-refresh-${++this.#refreshes}`;
    if (this.send({ type: "auth.refresh", id, token })) this.#socketToken = token;
  }

  /** auth.expiring: a newer token than the socket's goes at once; else one is fetched. */
  #onExpiring() {
    const tokens = this.#tokens;
    if (!tokens.renewable) return; // no way to renew: at expiry, 4401
    if (tokens.token !== this.#socketToken) this.#sendToken();
    else tokens.refresh().catch((err) => console.warn(`${this.#name}: ${err.message}`));
  }

  /**
   * @param {any} ws
   * @param {MessageEvent} event
   */
  #onMessage(ws, event) {
    if (ws !== this.#ws) return;
    this.#awaitingPong = false;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") return;
    if (!this.#welcomed) {
      if (frame.type === this.welcomeType) this.#onWelcome(frame);
      return;
    }
    if (frame.type === "auth.expiring") this.#onExpiring();
    if (frame.type === "reconnect" && this.handoff && this.#next === null) {
      this.#moveUntil = Date.now() + Math.min(MOVE_FOR, Number(frame.close_in) || 0) * 1000;
      this.#moveAttempt = 0;
      this.#move();
    }
    if (frame.type === "error" && String(frame.id).startsWith("auth-refresh-")) {
      // The renewed token was refused; the socket's token stays in force until its expiry,
      // whose 4401 close has the token renewed once more.
      console.warn(`${this.#name}: auth.refresh refused (${frame.code}): ${frame.message}`);
      return;
    }
    this.received(frame);
  }

  /** @param {any} frame */
  #onWelcome(frame) {
    this.#welcomed = true;
    this.#refusedOnce = false;
    clearTimeout(this.#timers.welcome);
    this.#attempt = 0;
    const detail = this.welcomed(frame, this.#welcomes++ === 0);
    this.#setState("live", {});
    this.#startHeartbeat();
    this.emit("welcome", detail);
    this.#sendToken(); // renewed while this socket was opening
  }

  /**
   * @param {any} ws
   * @param {number} code
   * @param {string} reason
   */
  #onClose(ws, code, reason) {
    if (ws !== this.#ws) return; // a socket we already gave up on
    this.#ws = null;
    this.#clearTimers();
    if (this.#stopped) return;
    if (this.#next !== null) {
      // Closed before the hand-off's next socket was welcomed: that one decides.
      this.#oldClosed = { code, reason };
      this.#setState("reconnecting", { code, delay: 0 });
      return;
    }
    this.#closed(code, reason);
  }

  /**
   * What a close means: renew and come back, stop for good, or reconnect after a backoff.
   * @param {number} code
   * @param {string} reason
   */
  #closed(code, reason) {
    if (code === UNAUTHORIZED && this.#tokens.renewable && !this.#refusedOnce) {
      // Expired or refused: renew the token and come back (once; a new token refused too is
      // final). The next #open fetches it.
      this.#refusedOnce = true;
      this.#tokens.invalidate(this.#socketToken);
      this.#attempt = 0;
      this.#scheduleRetry(code);
      return;
    }
    const fatal = this.#fatalCloses.get(code);
    if (fatal !== undefined || isRefusal(code)) {
      const message = fatal ?? `The ${this.#name} was refused (${code}${reason ? `: ${reason}` : ""}).`;
      this.#setState("stopped", { code, message, reason });
      return;
    }
    this.#scheduleRetry(code);
  }

  /** Give up on a socket that looks dead, and reconnect as after a drop. */
  #lost() {
    this.#drop(4000, "no answer");
    this.#clearTimers();
    this.#scheduleRetry(1006);
  }

  /** @param {number} code */
  #scheduleRetry(code) {
    if (globalThis.navigator?.onLine === false) {
      // Wait for the online event; still probe now and then, in case onLine is wrong.
      this.#setState("offline", { code });
      this.#timers.retry = setTimeout(() => this.#open(), this.#options.cap);
      return;
    }
    let attempt = this.#attempt++;
    if (code === SERVER_RESTART) attempt = 0; // another server is up already: come back soon
    if (code === RATE_LIMITED) attempt = Math.max(attempt, 5); // slow down (4 s steps and up)
    const delay = backoffDelay(attempt, this.#options);
    this.#setState("reconnecting", { code, delay });
    this.#timers.retry = setTimeout(() => this.#open(), delay);
  }

  #wentOffline() {
    if (this.#stopped || this.#state === "stopped") return;
    this.#clearTimers();
    this.#drop(1000, "offline");
    this.#setState("offline", {});
    this.#timers.retry = setTimeout(() => this.#open(), this.#options.cap);
  }

  /**
   * Close the current socket, if any, and stop listening to it.
   * @param {number} code
   * @param {string} reason
   */
  #drop(code, reason) {
    if (this.#next !== null) {
      this.#dropNext(this.#next);
      this.#next = null;
    }
    this.#oldClosed = null;
    const ws = this.#ws;
    this.#ws = null;
    this.#welcomed = false;
    if (ws !== null) closeQuietly(ws, code, reason);
  }

  #startHeartbeat() {
    this.#awaitingPong = false;
    const period = this.#options.heartbeat;
    this.#timers.heartbeat = setInterval(() => {
      if (this.#ws === null) return;
      // Checked against the time of our own ping, not of the last frame: timers of a
      // background tab may run only once a minute, which must not look like a dead socket.
      if (this.#awaitingPong && Date.now() - this.#pingSentAt > period) {
        this.#lost();
        return;
      }
      if (this.send({ type: "ping", id: "heartbeat" })) {
        this.#awaitingPong = true;
        this.#pingSentAt = Date.now();
      }
    }, period);
  }

  #clearTimers() {
    clearTimeout(this.#timers.retry);
    clearTimeout(this.#timers.welcome);
    clearInterval(this.#timers.heartbeat);
    clearTimeout(this.#timers.move);
    this.#timers = { retry: null, welcome: null, heartbeat: null, move: null };
  }
}
