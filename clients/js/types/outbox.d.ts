/**
 * A client id for chat.send and operations: unique, at most 64 characters (the server's
 * limit).
 * @returns {string}
 */
export function newClientId(): string;
/**
 * The storage key of a user's outbox in a room: kind "chat" (messages) or "ops". The user
 * is `userId` when given, else the token's `sub`.
 * @param {string} roomId
 * @param {string | null} token
 * @param {"chat" | "ops"} [kind]
 * @param {string | null} [userId]
 * @returns {string}
 */
export function outboxKey(roomId: string, token: string | null, kind?: "chat" | "ops", userId?: string | null): string;
/**
 * A Storage kept in memory (Node, or a browser that refuses localStorage). Two outboxes on
 * the same MemoryStorage see each other's entries, as two tabs do on localStorage.
 * @implements {StorageLike}
 */
export class MemoryStorage implements StorageLike {
    /** @param {string} key */
    getItem(key: string): string | null;
    /**
     * @param {string} key
     * @param {string} value
     */
    setItem(key: string, value: string): void;
    /** @param {string} key */
    removeItem(key: string): void;
    #private;
}
export class Outbox extends Emitter {
    /**
     * @param {string} key the storage key (outboxKey)
     * @param {{storage?: StorageLike | null, locks?: LockManagerLike | null, kind?: "chat" | "ops"}} [options]
     *   storage: default localStorage, else memory; locks: default navigator.locks
     */
    constructor(key: string, { storage, locks, kind }?: {
        storage?: StorageLike | null;
        locks?: LockManagerLike | null;
        kind?: "chat" | "ops";
    });
    /** False when the storage refused us (private mode, quota): the outbox is memory-only. */
    durable: boolean;
    /** The storage key. */
    get key(): string;
    /**
     * Pending entries, oldest first.
     * @returns {Entry[]}
     */
    list(): Entry[];
    get size(): number;
    /** @param {string} id */
    has(id: string): boolean;
    /**
     * Keep a chat message to send.
     * @param {string} body
     * @param {{replyTo?: number | null}} [options]
     * @returns {ChatEntry}
     */
    add(body: string, { replyTo }?: {
        replyTo?: number | null;
    }): ChatEntry;
    /**
     * Keep a client frame to send (an operation); it gets a fresh id if it has none.
     * @param {{type: string, id?: string, [key: string]: any}} frame
     * @returns {OpEntry}
     */
    addOp(frame: {
        type: string;
        id?: string;
        [key: string]: any;
    }): OpEntry;
    /**
     * Forget an entry (acknowledged, or refused for good); whether it was here.
     * @param {string} id
     * @returns {boolean}
     */
    remove(id: string): boolean;
    /** Resolves once every change made so far is stored. */
    settled(): Promise<void>;
    /** Stop following other tabs' changes. */
    close(): void;
    #private;
}
export type ChatEntry = {
    id: string;
    body: string;
    created: string;
    reply_to?: number;
};
export type OpEntry = {
    id: string;
    op: {
        type: string;
        id: string;
        [key: string]: any;
    };
    created: string;
};
export type Entry = ChatEntry | OpEntry;
export type StorageLike = Pick<Storage, "getItem" | "setItem" | "removeItem">;
/**
 * The part of the Web Locks API the outbox uses (navigator.locks).
 */
export type LockManagerLike = {
    request: (name: string, callback: () => any) => Promise<any>;
};
import { Emitter } from "./events.js";
