// A socket that stays connected: backoff with jitter, keep-alive pings, the connection's state
// and the page's indicator of it. The room socket (connection.js) and the feed socket
// (feedsocket.js) extend ReconnectingSocket with what is their own: the URL (and so what a
// resume sends), what a welcome means, and which later frames they pass on.
//
// With a renewable TokenSource (token.js) as `options.tokens`, the socket keeps its token
// fresh: on auth.expiring it has the source renew it and sends it as auth.refresh (so does a
// renewal made for another reason), it renews a stale token before it reopens, and a 4401
// close is one more reason to renew and reconnect (a second one in a row is final). Without
// it, a 4401 is final as it always was.
//
// A ReconnectingSocket is an EventTarget. Events (CustomEvent, payload in `detail`):
//   "state"   {state, delay?, code?, message?}   state is one of
//             "connecting" (first attempt), "live", "reconnecting", "offline",
//             "stopped" (for good: a fatal close code, or stop() was called)
//   "welcome" what welcomed() returns: the first frame of every socket
// and whatever the subclass emits for the later frames.

export const SUBPROTOCOL = "menteo.v1.json";

/**
 * A token as an offered subprotocol (docs/protocol.md, "Authentication"): the server reads
 * it there and never selects it, so the token stays out of the URL and out of proxy logs.
 */
export function tokenProtocol(token) {
  return `menteo.token.${token}`;
}

const RATE_LIMITED = 1008;
const SERVER_RESTART = 1012;
const UNAUTHORIZED = 4401;

/**
 * Milliseconds to wait before reconnect attempt number `attempt` (0 first): exponential,
 * capped, with "equal jitter" (between half and all of the step) so that the clients of a
 * restarted server do not all come back at the same instant.
 */
export function backoffDelay(attempt, { base = 500, cap = 30000, random = Math.random } = {}) {
  const step = Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.round(step / 2 + (random() * step) / 2);
}

export class ReconnectingSocket extends EventTarget {
  #name;
  #fatalCloses;
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
  #renewing = false; // waiting for a fresh token before the next socket opens
  #socketToken = null; // the token the current socket runs on (its URL, or auth.refresh)
  #refusedOnce = false; // a 4401 and no welcome since: another one is final
  #refreshes = 0;

  /** The newest event seq this page has seen, and the epoch it belongs to (for resume). */
  lastSeq = null;
  epoch = null;

  /**
   * `name` says which socket in messages ("room socket"); `fatalCloses` maps the close codes
   * after which reconnecting cannot help to what the page says.
   */
  constructor(name, fatalCloses, options = {}) {
    super();
    this.#name = name;
    this.#fatalCloses = fatalCloses;
    this.#options = {
      base: 500, // first backoff step, ms
      cap: 30000, // longest wait between attempts, ms
      welcomeTimeout: 15000, // a socket without a welcome by then is given up
      heartbeat: 25000, // ping period while live; a ping unanswered for this long: dead
      location: globalThis.location,
      tokens: null, // a TokenSource (token.js): renewed when it can be
      ...options,
    };
  }

  /** The page's TokenSource, if it was given one. */
  get tokens() {
    return this.#options.tokens;
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
    if (this.tokens !== null) this.#listen(this.tokens, "token", () => this.#sendToken());
    this.#open();
  }

  /** Send a frame now; false when the socket is not live (the caller keeps it). */
  send(frame) {
    if (!this.live || this.#ws === null || this.#ws.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(frame));
    return true;
  }

  /** Skip the rest of the backoff wait ("Retry now", back online, tab shown again). */
  retryNow() {
    if (this.#stopped || this.#state === "live" || this.#state === "stopped") return;
    if (this.#renewing || (this.#ws !== null && !this.#welcomed)) return; // under way
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

  // What a subclass defines ----------------------------------------------------------------

  /** The URL of the next socket, resuming after lastSeq/epoch by the server's rules. */
  url(location) {
    throw new Error(`${this.#name}: no url(location)`);
  }

  /** The subprotocols to offer: the codec, and the token (tokenProtocol) where there is one. */
  protocols() {
    return [SUBPROTOCOL];
  }

  /**
   * A welcome (the first frame of a socket; `first` for the first socket): take its epoch
   * and where events resume. Returns the "welcome" event's detail.
   */
  welcomed(frame, first) {
    return { frame, first };
  }

  /** A later frame (an object with a string type): pass on what the page wants (emit). */
  received(frame) {}

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // Internals ------------------------------------------------------------------------------

  #listen(target, type, fn) {
    target.addEventListener(type, fn);
    this.#listeners.push([target, type, fn]);
  }

  #setState(state, detail = {}) {
    this.#state = state;
    this.emit("state", { state, ...detail });
  }

  #open({ renewed = false } = {}) {
    this.#clearTimers();
    this.#drop(1000, "replaced");
    const tokens = this.tokens;
    if (tokens?.renewable && tokens.stale && !renewed) {
      this.#renewThenOpen(tokens);
      return;
    }
    let ws;
    try {
      this.#socketToken = tokens?.token ?? null;
      ws = new WebSocket(this.url(this.#options.location), this.protocols());
    } catch (err) {
      // A malformed URL; retrying the same one cannot help.
      this.#setState("stopped", { message: `Cannot open the ${this.#name}: ${err.message}` });
      return;
    }
    this.#ws = ws;
    this.#welcomed = false;
    this.#setState(this.#opening(), {});
    ws.onmessage = (event) => this.#onMessage(ws, event);
    ws.onclose = (event) => this.#onClose(ws, event.code, event.reason);
    this.#timers.welcome = setTimeout(() => {
      if (ws === this.#ws && !this.#welcomed) this.#lost();
    }, this.#options.welcomeTimeout);
  }

  /** "connecting" only for the very first try; after any failure it is a reconnect. */
  #opening() {
    return this.#welcomes === 0 && this.#attempt === 0 ? "connecting" : "reconnecting";
  }

  /** Fetch a fresh token (token.js), then open; a refusal by the token URL is final. */
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
    const token = this.tokens?.token;
    if (!token || token === this.#socketToken || !this.live) return;
    const id = `auth-refresh-${++this.#refreshes}`;
    if (this.send({ type: "auth.refresh", id, token })) this.#socketToken = token;
  }

  /** auth.expiring: a newer token than the socket's goes at once; else one is fetched. */
  #onExpiring() {
    const tokens = this.tokens;
    if (!tokens?.renewable) return; // the page has no way to renew: at expiry, 4401
    if (tokens.token !== this.#socketToken) this.#sendToken();
    else tokens.refresh().catch((err) => console.warn(`${this.#name}: ${err.message}`));
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
    if (frame.type === "auth.expiring") this.#onExpiring();
    if (frame.type === "error" && String(frame.id).startsWith("auth-refresh-")) {
      // The renewed token was refused; the socket's token stays in force until its expiry,
      // whose 4401 close has the token renewed once more.
      console.warn(`${this.#name}: auth.refresh refused (${frame.code}): ${frame.message}`);
      return;
    }
    this.received(frame);
  }

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

  #onClose(ws, code, reason) {
    if (ws !== this.#ws) return; // a socket we already gave up on
    this.#ws = null;
    this.#clearTimers();
    if (this.#stopped) return;
    if (code === UNAUTHORIZED && this.tokens?.renewable && !this.#refusedOnce) {
      // Expired or refused: renew the token and come back (once; a new token refused too is
      // final). The next #open fetches it.
      this.#refusedOnce = true;
      this.tokens.invalidate(this.#socketToken);
      this.#attempt = 0;
      this.#scheduleRetry(code);
      return;
    }
    const fatal = this.#fatalCloses.get(code);
    if (fatal !== undefined) {
      this.#setState("stopped", { code, message: fatal, reason });
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

  #scheduleRetry(code) {
    if (navigator.onLine === false) {
      // Wait for the online event; still probe now and then, in case onLine is wrong.
      this.#setState("offline", { code });
      this.#timers.retry = setTimeout(() => this.#open(), this.#options.cap);
      return;
    }
    let attempt = this.#attempt++;
    if (code === SERVER_RESTART) attempt = 0; // another server is up already: come back soon
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

  /** Close the current socket, if any, and stop listening to it. */
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
      if (ws === null) return;
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
    this.#timers = { retry: null, welcome: null, heartbeat: null };
  }
}

// The connection indicator (#connection, #connection-text, #retry) -------------------------

export function setIndicator(state, text, { retry = false } = {}) {
  document.getElementById("connection").dataset.state = state;
  document.getElementById("connection-text").textContent = text;
  document.getElementById("retry").hidden = !retry;
}

/**
 * The indicator for a socket's "state" event; `offline` is what the page says while the
 * device is offline (what becomes of the reader's work meanwhile).
 */
export function showConnectionState({ state, delay }, offline) {
  if (state === "live") {
    setIndicator("live", "Live");
  } else if (state === "connecting") {
    setIndicator("connecting", "Connecting…");
  } else if (state === "reconnecting") {
    const wait = delay ? ` Next try in ${Math.max(1, Math.round(delay / 1000))} s.` : "";
    setIndicator("reconnecting", `Reconnecting…${wait}`, { retry: delay !== undefined });
  } else if (state === "offline") {
    setIndicator("offline", offline, { retry: true });
  } else if (state === "stopped") {
    setIndicator("stopped", "Disconnected");
  }
}
