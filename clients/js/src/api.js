// REST calls (docs/protocol.md, "REST API"): JSON in and out, with a bearer token.

import { httpBase } from "./transport.js";

/** A refused or failed REST call: `status` 0 when the server was not reached. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code the error body's code ("not_found", "rate_limited"…)
   * @param {string} message a sentence a person can read
   * @param {number | null} [retryAfter] seconds, from Retry-After
   */
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** Worth trying again later (no connection, server busy or restarting). */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/**
 * One REST call. `path` is the server's ("/api/rooms"), resolved against `base`; throws
 * ApiError.
 * @param {{url?: string | URL | null, fetch?: typeof fetch}} where the server's base URL
 * @param {string} token
 * @param {string} method
 * @param {string} path
 * @param {any} [body] sent as JSON when given
 * @param {Record<string, string>} [extraHeaders]
 * @returns {Promise<any>}
 */
export async function apiRequest(where, token, method, path, body, extraHeaders = {}) {
  /** @type {Record<string, string>} */
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json", ...extraHeaders };
  /** @type {RequestInit} */
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const url = new URL(path.replace(/^\//, ""), httpBase(where.url));
  let resp;
  try {
    resp = await (where.fetch ?? globalThis.fetch)(url, init);
  } catch {
    throw new ApiError(0, "network", "No connection to the server. Try again in a moment.");
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // not JSON: the status says enough
  }
  if (resp.ok) return data;
  const code = data?.error?.code ?? "error";
  const wait = Number(resp.headers.get("Retry-After"));
  let message = data?.error?.message ?? `The server answered ${resp.status}.`;
  if (resp.status === 429 && wait > 0) message = `Too many at once: try again in ${wait} s.`;
  if (resp.status === 401) message = "Your access link is invalid or has expired.";
  throw new ApiError(resp.status, code, message, wait > 0 ? wait : null);
}
