// The feed socket (/feed/ws): connect, keep alive, reconnect with backoff and jitter, and
// resume after the last event seen (since + epoch), so nothing is missed or seen twice.
//
// A FeedSocket is an EventTarget. Events (CustomEvent, payload in `detail`):
//   "state"   {state, delay?, code?, message?}: "connecting" (first attempt), "live",
//             "reconnecting", "offline", "stopped" (a fatal close code, or stop())
//   "welcome" {frame, first}: the first frame of every socket. frame.recovered false on a
//             later socket means events may have been missed: the page reloads its posts.
//   "event"   frame: every feed.* event, each seq once and in order
//
// The protocol is docs/protocol.md, "The feed socket".

import { backoffDelay, SUBPROTOCOL } from "./connection.js";

export const FEED_FATAL_CLOSES = new Map([
  [4401, "Your access link is invalid or has expired. Ask for a new link."],
  [4400, "This link does not name a feed."],
  [4404, "This community does not exist."],
]);

const RATE_LIMITED = 1008;
const SERVER_RESTART = 1012;

/** The socket URL for a feed ({community} or {following: true}), resuming after `since`. */
export function feedSocketUrl(location, token, feed, since, epoch) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams({ token });
  if (feed.community) query.set("community", feed.community);
  else query.set("following", "1");
  if (since !== null) query.set("since", String(since));
  if (since !== null && epoch !== null) query.set("epoch", epoch);
  return `${scheme}//${location.host}/feed/ws?${query}`;
}

export class FeedSocket extends EventTarget {
  #token;
  #feed;
  #options;
  #ws = null;
  #welcomed = false;
  #welcomes = 0;
  #state = "idle";
  #attempt = 0;
  #timers = { retry: null, welcome: null, heartbeat: null };
  #awaitingPong = false;
  #pingSentAt = 0;
  #stopped = false;
  #listeners = [];

  /** The newest feed seq this page has seen (or is past), and its database's epoch. */
  lastSeq = null;
  epoch = null;

  constructor(token, feed, options = {}) {
    super();
    this.#token = token;
    this.#feed = feed;
    this.#options = {
      base: 500, // first backoff step, ms
      cap: 30000, // longest wait between attempts, ms
      welcomeTimeout: 15000,
      heartbeat: 25000, // ping period while live; a ping unanswered for this long: dead
      location: globalThis.location,
      ...options,
    };
  }

  get state() {
    return this.#state;
  }

  /** Open the socket; events after `since` (the first page's cursor) follow its welcome. */
  start(since) {
    this.lastSeq = since ?? null;
    this.#listen(globalThis, "offline", () => this.#wentOffline());
    this.#listen(globalThis, "online", () => this.retryNow());
    this.#listen(document, "visibilitychange", () => {
      if (!document.hidden) this.retryNow();
    });
    this.#open();
  }

  /** Skip the rest of the backoff wait ("Retry now", back online, tab shown again). */
  retryNow() {
    if (this.#stopped || this.#state === "live" || this.#state === "stopped") return;
    if (this.#ws !== null && !this.#welcomed) return; // an attempt is under way
    this.#attempt = 0;
    this.#open();
  }

  stop() {
    this.#stopped = true;
    this.#clearTimers();
    for (const [target, type, fn] of this.#listeners) target.removeEventListener(type, fn);
    this.#listeners = [];
    this.#drop(1000, "bye");
    this.#setState("stopped", {});
  }

  // Internals ----------------------------------------------------------------------------

  #listen(target, type, fn) {
    target.addEventListener(type, fn);
    this.#listeners.push([target, type, fn]);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setState(state, detail = {}) {
    this.#state = state;
    this.#emit("state", { state, ...detail });
  }

  #open() {
    this.#clearTimers();
    this.#drop(1000, "replaced");
    const url = feedSocketUrl(this.#options.location, this.#token, this.#feed, this.lastSeq, this.epoch);
    let ws;
    try {
      ws = new WebSocket(url, [SUBPROTOCOL]);
    } catch (err) {
      this.#setState("stopped", { message: `Cannot open the feed socket: ${err.message}` });
      return;
    }
    this.#ws = ws;
    this.#welcomed = false;
    this.#setState(this.#welcomes === 0 && this.#attempt === 0 ? "connecting" : "reconnecting", {});
    ws.onmessage = (event) => this.#onMessage(ws, event);
    ws.onclose = (event) => this.#onClose(ws, event.code, event.reason);
    this.#timers.welcome = setTimeout(() => {
      if (ws === this.#ws && !this.#welcomed) this.#lost();
    }, this.#options.welcomeTimeout);
  }

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
      if (frame.type === "welcome") this.#onWelcome(frame);
      return;
    }
    if (!frame.type.startsWith("feed.") || typeof frame.seq !== "number") return;
    if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // seen already
    this.lastSeq = frame.seq;
    this.#emit("event", frame);
  }

  #onWelcome(frame) {
    this.#welcomed = true;
    clearTimeout(this.#timers.welcome);
    this.#attempt = 0;
    this.epoch = frame.epoch;
    // Not recovered: the socket starts at the feed's cursor, with live events only.
    if (!frame.recovered) this.lastSeq = frame.cursor;
    this.#setState("live", {});
    this.#startHeartbeat();
    this.#emit("welcome", { frame, first: this.#welcomes++ === 0 });
  }

  #onClose(ws, code, reason) {
    if (ws !== this.#ws) return;
    this.#ws = null;
    this.#clearTimers();
    if (this.#stopped) return;
    const fatal = FEED_FATAL_CLOSES.get(code);
    if (fatal !== undefined) {
      this.#setState("stopped", { code, message: fatal, reason });
      return;
    }
    this.#scheduleRetry(code);
  }

  #lost() {
    this.#drop(4000, "no answer");
    this.#clearTimers();
    this.#scheduleRetry(1006);
  }

  #scheduleRetry(code) {
    if (navigator.onLine === false) {
      this.#setState("offline", { code });
      this.#timers.retry = setTimeout(() => this.#open(), this.#options.cap);
      return;
    }
    let attempt = this.#attempt++;
    if (code === SERVER_RESTART) attempt = 0; // another server is up already
    if (code === RATE_LIMITED) attempt = Math.max(attempt, 4); // slow down
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

  #drop(code, reason) {
    const ws = this.#ws;
    this.#ws = null;
    this.#welcomed = false;
    if (ws === null) return;
    ws.onmessage = null;
    ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  #startHeartbeat() {
    this.#awaitingPong = false;
    const period = this.#options.heartbeat;
    this.#timers.heartbeat = setInterval(() => {
      const ws = this.#ws;
      if (ws === null || ws.readyState !== WebSocket.OPEN) return;
      // Measured from our own ping: a background tab's timers may run once a minute.
      if (this.#awaitingPong && Date.now() - this.#pingSentAt > period) {
        this.#lost();
        return;
      }
      ws.send(JSON.stringify({ type: "ping", id: "heartbeat" }));
      this.#awaitingPong = true;
      this.#pingSentAt = Date.now();
    }, period);
  }

  #clearTimers() {
    clearTimeout(this.#timers.retry);
    clearTimeout(this.#timers.welcome);
    clearInterval(this.#timers.heartbeat);
    this.#timers = { retry: null, welcome: null, heartbeat: null };
  }
}
