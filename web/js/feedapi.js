// REST calls of the feed page (docs/protocol.md, "REST API"), with the page's token.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** Worth trying again later (no connection, server busy or restarting). */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/** JSON in and out; throws ApiError with a sentence a person can read. */
export async function api(token, method, path, body, extraHeaders = {}) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json", ...extraHeaders };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
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

/** The feed's query: {community} or {following}. */
export function feedQuery(feed, extra = {}) {
  const query = new URLSearchParams();
  if (feed.community) query.set("community", feed.community);
  else query.set("following", "1");
  for (const [k, v] of Object.entries(extra)) {
    if (v !== null && v !== undefined) query.set(k, String(v));
  }
  return query.toString();
}
