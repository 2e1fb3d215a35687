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
export function apiRequest(where: {
    url?: string | URL | null;
    fetch?: typeof fetch;
}, token: string, method: string, path: string, body?: any, extraHeaders?: Record<string, string>): Promise<any>;
/** A refused or failed REST call: `status` 0 when the server was not reached. */
export class ApiError extends Error {
    /**
     * @param {number} status
     * @param {string} code the error body's code ("not_found", "rate_limited"…)
     * @param {string} message a sentence a person can read
     * @param {number | null} [retryAfter] seconds, from Retry-After
     */
    constructor(status: number, code: string, message: string, retryAfter?: number | null);
    status: number;
    code: string;
    retryAfter: number | null;
    /** Worth trying again later (no connection, server busy or restarting). */
    get transient(): boolean;
}
