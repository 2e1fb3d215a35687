// What the SDK's tests share: the server they run against (tests/test_js_sdk.py starts it and
// passes MENTEO_SDK_URL, MENTEO_SDK_SECRET and MENTEO_SDK_CONTROL), tokens signed like the
// platform's, REST set-up calls, and waits that name what they wait for.
import { createHmac } from "node:crypto";

export const URL_ = process.env.MENTEO_SDK_URL;
const SECRET = process.env.MENTEO_SDK_SECRET;
const CONTROL = process.env.MENTEO_SDK_CONTROL;
export const TIMEOUT_MS = 15_000;

/** The reason to skip when no server was given (a plain `node --test` without the harness). */
export const NO_SERVER = URL_ && SECRET ? false : "no server: run tests/test_js_sdk.py (or set MENTEO_SDK_URL and MENTEO_SDK_SECRET)";

const b64 = (/** @type {string | Buffer} */ data) => Buffer.from(data).toString("base64url");

/**
 * An HS256 token as the platform signs them.
 * @param {string} sub
 * @param {{name?: string, ttl?: number, role?: string, secret?: string}} [options]
 */
export function token(sub, { name, ttl = 3600, role, secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub, name: name ?? sub[0].toUpperCase() + sub.slice(1), iat: now, exp: now + ttl };
  if (role) claims.role = role;
  const head = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64(JSON.stringify(claims));
  const sig = createHmac("sha256", String(secret)).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

export const service = () => token("backend", { name: "Backend", role: "service" });

/**
 * A REST call with a token; the JSON answer (throws on an error status).
 * @param {string} method
 * @param {string} path
 * @param {any} [body]
 * @param {string} [bearer]
 */
export async function rest(method, path, body, bearer = service()) {
  const headers = { Authorization: `Bearer ${bearer}`, Accept: "application/json" };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(new URL(path, URL_), init);
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A room with Ana (mentor) and Ben (mentee). */
export async function newRoom(title = "SDK room") {
  return rest("POST", "/api/rooms", {
    title,
    members: [
      { user_id: "ana", name: "Ana", role: "mentor" },
      { user_id: "ben", name: "Ben", role: "mentee" },
    ],
  });
}

/**
 * The server's process, driven by the harness: "kill" (SIGKILL), "start" (and ready),
 * "restart" (SIGTERM, then start).
 * @param {"kill" | "start" | "restart"} action
 */
export async function control(action) {
  if (!CONTROL) throw new Error("no MENTEO_SDK_CONTROL: the harness did not offer restarts");
  const resp = await fetch(`${CONTROL}/${action}`, { method: "POST" });
  if (!resp.ok) throw new Error(`control ${action}: ${resp.status} ${await resp.text()}`);
}

/**
 * Resolve when `check()` is true, re-checked on every event of `types` from `emitter`.
 * @param {string} what said when it times out
 * @param {import("../src/events.js").Emitter} emitter
 * @param {string[]} types
 * @param {() => boolean} check
 * @param {number} [timeout]
 */
export function until(what, emitter, types, check, timeout = TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const offs = [];
    const timer = setTimeout(() => {
      for (const off of offs) off();
      reject(new Error(`timed out after ${timeout} ms waiting for ${what}`));
    }, timeout);
    const test = () => {
      if (!check()) return;
      clearTimeout(timer);
      for (const off of offs) off();
      resolve();
    };
    for (const type of types) offs.push(emitter.on(type, test));
    test();
  });
}

/**
 * The next event `type` whose detail passes `match`, or a timeout naming it.
 * @param {string} what
 * @param {import("../src/events.js").Emitter} emitter
 * @param {string} type
 * @param {(detail: any) => boolean} [match]
 * @param {number} [timeout]
 */
export function next(what, emitter, type, match = () => true, timeout = TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${timeout} ms waiting for ${what}`));
    }, timeout);
    const off = emitter.on(type, (detail) => {
      if (!match(detail)) return;
      clearTimeout(timer);
      off();
      resolve(detail);
    });
  });
}

/**
 * A WebSocket class that records what its sockets send and may drop frames they receive:
 * `opened` counts sockets, `sent` holds every frame sent (parsed), and `dropIncoming(frame)`
 * decides which received frames the client never sees (a lost ack, for instance).
 */
export function recordingWebSocket() {
  const record = {
    opened: 0,
    /** @type {any[]} */
    sent: [],
    /** @type {(frame: any) => boolean} */
    dropIncoming: () => false,
    /** @type {string[]} */
    urls: [],
    /** @type {string[][]} the subprotocols each socket offered (its token among them) */
    protocols: [],
  };
  class Recording extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      record.opened += 1;
      record.urls.push(String(url));
      record.protocols.push([protocols ?? []].flat().map(String));
    }

    send(data) {
      if (typeof data === "string") record.sent.push(JSON.parse(data));
      super.send(data);
    }

    set onmessage(fn) {
      super.onmessage = fn === null ? null : (event) => {
        let frame = null;
        try {
          frame = typeof event.data === "string" ? JSON.parse(event.data) : null;
        } catch {
          // binary
        }
        if (frame !== null && record.dropIncoming(frame)) return;
        fn(event);
      };
    }

    get onmessage() {
      return super.onmessage;
    }
  }
  return { WebSocket: Recording, record };
}
