// The room socket: connect, keep alive, reconnect with backoff, resume with since/epoch.
//
// A RoomConnection is an EventTarget. Events (CustomEvent, payload in `detail`):
//   "state"   {state, delay?, code?, message?}   state is one of
//             "connecting" (first attempt), "live", "reconnecting", "offline",
//             "stopped" (for good: a fatal close code, or stop() was called)
//   "welcome" {frame, epochChanged}               the first frame of every socket
//   "frame"   frame                                every later frame; events that carry a
//             seq the page has already seen are dropped here, so nothing is seen twice
//
// The protocol (close codes, resume rules) is the server's: see realtime/rooms/socket.py.

export const SUBPROTOCOL = "menteo.v1.json";

// Close codes after which reconnecting cannot help: the page says why and stops.
export const FATAL_CLOSES = new Map([
  [4401, "Your access link is invalid or has expired. Ask for a new link to this room."],
  [4403, "You are not a member of this room."],
  [4404, "This room does not exist."],
]);

const RATE_LIMITED = 1008;
const SERVER_RESTART = 1012;

/**
 * Milliseconds to wait before reconnect attempt number `attempt` (0 first): exponential,
 * capped, with "equal jitter" (between half and all of the step) so that the clients of a
 * restarted server do not all come back at the same instant.
 */
export function backoffDelay(attempt, { base = 500, cap = 30000, random = Math.random } = {}) {
  const step = Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.round(step / 2 + (random() * step) / 2);
}

export function socketUrl(location, roomId, token, since, epoch) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams({ token });
  if (since !== null && epoch !== null) {
    query.set("since", String(since));
    query.set("epoch", epoch);
  }
  return `${scheme}//${location.host}/rooms/${encodeURIComponent(roomId)}/ws?${query}`;
}

export class RoomConnection extends EventTarget {
  #roomId;
  #token;
  #options;
  #ws = null;
  #welcomed = false;
  #state = "idle";
  #attempt = 0;
  #retryTimer = null;
  #welcomeTimer = null;
  #heartbeatTimer = null;
  #awaitingPong = false;
  #pingSentAt = 0;
  #stopped = false;
  #listeners = [];

  /** The newest event seq this page has seen, and the epoch it belongs to (for resume). */
  lastSeq = null;
  epoch = null;

  constructor(roomId, token, options = {}) {
    super();
    this.#roomId = roomId;
    this.#token = token;
    this.#options = {
      base: 500, // first backoff step, ms
      cap: 30000, // longest wait between attempts, ms
      welcomeTimeout: 15000, // a socket without a welcome by then is given up
      heartbeat: 25000, // ping period while live; a ping unanswered for this long: dead
      location: globalThis.location,
      ...options,
    };
  }

  get state() {
    return this.#state;
  }

  get live() {
    return this.#state === "live";
  }

  start() {
    this.#listen(globalThis, "offline", () => this.#wentOffline());
    this.#listen(globalThis, "online", () => this.retryNow());
    // Phones freeze background tabs: when the page is looked at again, do not make the
    // user wait out the backoff.
    this.#listen(document, "visibilitychange", () => {
      if (!document.hidden) this.retryNow();
    });
    this.#open();
  }

  /** Send a frame now; false when the socket is not live (the caller keeps it). */
  send(frame) {
    if (!this.live || this.#ws === null || this.#ws.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(frame));
    return true;
  }

  /** Skip the rest of the backoff wait (the "Retry now" button, the online event). */
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
    const url = socketUrl(this.#options.location, this.#roomId, this.#token, this.lastSeq, this.epoch);
    let ws;
    try {
      ws = new WebSocket(url, [SUBPROTOCOL]);
    } catch (err) {
      // A malformed URL; retrying the same one cannot help.
      this.#setState("stopped", { message: `Cannot open the room socket: ${err.message}` });
      return;
    }
    this.#ws = ws;
    this.#welcomed = false;
    // "connecting" only for the very first try; after any failure it is a reconnect.
    this.#setState(this.epoch === null && this.#attempt === 0 ? "connecting" : "reconnecting", {});
    ws.onmessage = (event) => this.#onMessage(ws, event);
    ws.onclose = (event) => this.#onClose(ws, event.code, event.reason);
    this.#welcomeTimer = setTimeout(() => {
      if (ws === this.#ws && !this.#welcomed) this.#lost(ws, 4000);
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
    if (typeof frame.seq === "number" && frame.type !== "ack") {
      // A stored event: every one is seen once, in seq order.
      if (this.lastSeq !== null && frame.seq <= this.lastSeq) return;
      this.lastSeq = frame.seq;
    }
    this.#emit("frame", frame);
  }

  #onWelcome(frame) {
    this.#welcomed = true;
    clearTimeout(this.#welcomeTimer);
    this.#attempt = 0;
    const epochChanged = this.epoch !== null && frame.epoch !== this.epoch;
    this.epoch = frame.epoch;
    // recovered: the events after `since` follow this frame. Otherwise the history in the
    // frame is all there is, up to frame.seq.
    if (!frame.recovered) this.lastSeq = frame.seq;
    this.#setState("live", {});
    this.#startHeartbeat();
    this.#emit("welcome", { frame, epochChanged });
  }

  #onClose(ws, code, reason) {
    if (ws !== this.#ws) return; // a socket we already gave up on
    this.#ws = null;
    this.#clearTimers();
    if (this.#stopped) return;
    const fatal = FATAL_CLOSES.get(code);
    if (fatal !== undefined) {
      this.#setState("stopped", { code, message: fatal, reason });
      return;
    }
    this.#scheduleRetry(code);
  }

  /** Give up on a socket that looks dead, and reconnect as after a drop. */
  #lost(ws, code) {
    this.#drop(code, "no answer");
    this.#clearTimers();
    this.#scheduleRetry(1006);
  }

  #scheduleRetry(code) {
    if (navigator.onLine === false) {
      // Wait for the online event; still probe now and then, in case onLine is wrong.
      this.#setState("offline", { code });
      this.#retryTimer = setTimeout(() => this.#open(), this.#options.cap);
      return;
    }
    let attempt = this.#attempt++;
    if (code === SERVER_RESTART) attempt = 0; // another server is up already: come back soon
    if (code === RATE_LIMITED) attempt = Math.max(attempt, 4); // slow down
    const delay = backoffDelay(attempt, this.#options);
    this.#setState("reconnecting", { code, delay });
    this.#retryTimer = setTimeout(() => this.#open(), delay);
  }

  #wentOffline() {
    if (this.#stopped || this.#state === "stopped") return;
    this.#clearTimers();
    this.#drop(1000, "offline");
    this.#setState("offline", {});
    this.#retryTimer = setTimeout(() => this.#open(), this.#options.cap);
  }

  /** Close the current socket, if any, and stop listening to it. */
  #drop(code, reason) {
    const ws = this.#ws;
    this.#ws = null;
    this.#welcomed = false;
    if (ws === null) return;
    ws.onmessage = null;
    ws.onclose = null;
    try {
      ws.close(code === 1000 || (code >= 4000 && code < 5000) ? code : 4000, reason);
    } catch {
      // already closing
    }
  }

  #startHeartbeat() {
    this.#awaitingPong = false;
    const period = this.#options.heartbeat;
    this.#heartbeatTimer = setInterval(() => {
      const ws = this.#ws;
      if (ws === null) return;
      // Checked against the time of our own ping, not of the last frame: timers of a
      // background tab may run only once a minute, which must not look like a dead socket.
      if (this.#awaitingPong && Date.now() - this.#pingSentAt > period) {
        this.#lost(ws, 4000);
        return;
      }
      if (this.send({ type: "ping", id: "heartbeat" })) {
        this.#awaitingPong = true;
        this.#pingSentAt = Date.now();
      }
    }, period);
  }

  #clearTimers() {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#welcomeTimer);
    clearInterval(this.#heartbeatTimer);
    this.#retryTimer = this.#welcomeTimer = this.#heartbeatTimer = null;
  }
}
