/**
 * The claims of a token, unverified: to tell apart the outboxes of different people who use
 * the same browser and to name the user before the welcome. The server verifies tokens;
 * a client never trusts these for anything else.
 * @param {string | null | undefined} token
 * @returns {Record<string, any>}
 */
export function tokenClaims(token: string | null | undefined): Record<string, any>;
/**
 * A timer that does not keep a Node process alive on its own (no-op in browsers).
 * @param {any} timer
 */
export function unref(timer: any): void;
/**
 * `call(token)` with a fresh token; when the server answers 401 (err.status) and the token
 * can be renewed, once more with a new one.
 * @template T
 * @param {TokenSource} tokens
 * @param {(token: string) => Promise<T>} call
 * @returns {Promise<T>}
 */
export function withToken<T>(tokens: TokenSource, call: (token: string) => Promise<T>): Promise<T>;
/** Why a token could not be had; `status` 0 (not reached), 429 or 5xx are transient. */
export class TokenError extends Error {
    /**
     * @param {string} message
     * @param {number} [status] what the token's issuer answered (0: not reached)
     */
    constructor(message: string, status?: number);
    status: number;
    /** Worth trying again later. */
    get transient(): boolean;
}
/** @typedef {() => (string | null | undefined | Promise<string | null | undefined>)} GetToken */
export class TokenSource extends Emitter {
    /**
     * A TokenSource from what a client's options hold: one given as `tokens`, else a new one
     * on `token` and `getToken`.
     * @param {{tokens?: TokenSource | null, token?: string | null, getToken?: GetToken | null}} options
     * @returns {TokenSource}
     */
    static from({ tokens, token, getToken }: {
        tokens?: TokenSource | null;
        token?: string | null;
        getToken?: GetToken | null;
    }): TokenSource;
    /**
     * @param {{token?: string | null, getToken?: GetToken | null}} [options]
     */
    constructor({ token, getToken }?: {
        token?: string | null;
        getToken?: GetToken | null;
    });
    /** Renew no more (the timer stops; the current token stays). */
    close(): void;
    /** The current token, or null before the first one. */
    get token(): string | null;
    /** Whether this source can get new tokens (it has a `getToken`). */
    get renewable(): boolean;
    /** To be renewed before a socket opens with it: none yet, refused, or about to expire. */
    get stale(): boolean;
    /**
     * The server refused `token` (a 4401 close): the next `fresh()` gets another.
     * @param {string | null} token
     */
    invalidate(token: string | null): void;
    /**
     * A token to open a socket or call the API with, renewed first when stale.
     * @returns {Promise<string | null>}
     */
    fresh(): Promise<string | null>;
    /**
     * Get a new token now; one request at a time, whoever asks. Rejects with a TokenError.
     * @returns {Promise<string>}
     */
    refresh(): Promise<string>;
    #private;
}
export type GetToken = () => (string | null | undefined | Promise<string | null | undefined>);
import { Emitter } from "./events.js";
