/** Close codes after which reconnecting cannot help, and what a person is told. */
export const ROOM_FATAL_CLOSES: Map<number, string>;
/**
 * The room socket alone: events "state", "welcome" {frame, epochChanged, first} and "frame"
 * (every later frame; events already seen by seq are dropped, so nothing is seen twice).
 */
export class RoomConnection extends ReconnectingSocket {
    /**
     * `options.handoff` (true): move to the next socket when the server process stops
     * (`reconnect`), instead of reconnecting after its 1012.
     * @param {string} roomId
     * @param {import("./reconnecting.js").SocketOptions & {handoff?: boolean}} [options]
     */
    constructor(roomId: string, options?: import("./reconnecting.js").SocketOptions & {
        handoff?: boolean;
    });
    get roomId(): string;
    where(): {
        path: string;
        query: Record<string, string | number | null>;
    };
    /**
     * @param {any} frame
     * @param {boolean} first
     */
    welcomed(frame: any, first: boolean): {
        frame: any;
        first: boolean;
        epochChanged: boolean;
    };
    #private;
}
/**
 * @typedef {import("./reconnecting.js").SocketOptions & {
 *   roomId: string,
 *   storage?: import("./outbox.js").StorageLike | null,
 *   locks?: import("./outbox.js").LockManagerLike | null,
 *   fetch?: typeof fetch,
 *   userId?: string | null,
 *   handoff?: boolean,
 * }} RoomOptions
 * handoff (true): when the server process stops, move to the next socket before the old one
 * closes (`reconnect`, docs/protocol.md) instead of reconnecting after its 1012;
 * storage: where the outboxes live (default localStorage, else memory); locks: the Web
 * Locks the outboxes take across tabs (default navigator.locks; null: none); userId: whose
 * outboxes these are (default: the first token's `sub`; give it when there is no token
 * before getToken() runs, so that two people on one browser never share an outbox)
 */
export class RoomClient extends Emitter {
    /** @param {RoomOptions} options */
    constructor(options: RoomOptions);
    get roomId(): string;
    /** The room socket (a RoomConnection). */
    get connection(): RoomConnection;
    /** The TokenSource the room's socket and REST calls use. */
    get tokens(): import("./token.js").TokenSource;
    /** Members, who is here, who is typing (presence.js). */
    get presence(): Presence;
    get state(): string;
    get live(): boolean;
    /** Hand-offs taken: moved to the next socket before the old one closed. */
    get moves(): number;
    /** The last welcome frame (null before the first). */
    get welcome(): any;
    /** Who I am in this room ({user_id, name, role}), from the last welcome. */
    get you(): import("./presence.js").Person | null;
    /** The room as it is now ({id, title, created_at, members, archived}); null before a welcome. */
    get room(): any;
    /** True while the room is archived: chat and checklist writes are refused (`archived`). */
    get archived(): boolean;
    /**
     * Every member's read marker (user id -> seq: everything up to it is read), as the
     * welcome's `read` and the `read.marker` frames since tell it. Markers only move forward.
     * @returns {ReadonlyMap<string, number>}
     */
    get readMarkers(): ReadonlyMap<string, number>;
    /** The highest seq seen, and the epoch it belongs to (what a resume sends). */
    get lastSeq(): number | null;
    get epoch(): string | null;
    /** The chat messages and operations not acknowledged yet. */
    pending(): {
        messages: import("./outbox.js").Entry[];
        ops: import("./outbox.js").Entry[];
    };
    /** False when the outboxes could not be stored (they are kept in memory only). */
    get durable(): boolean;
    /** The outbox of chat messages and the one of operations (outbox.js). */
    get outboxes(): {
        messages: Outbox;
        ops: Outbox;
    };
    /** Open the socket (and keep it open until stop()). */
    start(): this;
    /** Close for good; the outboxes keep what was not acknowledged. */
    stop(): void;
    /** Skip the backoff wait and reconnect now. */
    retryNow(): void;
    /**
     * Send a frame now, if live (presence, typing, ping: nothing durable); false otherwise.
     * @param {object} frame
     */
    send(frame: object): boolean;
    /**
     * Send a durable operation (any acked client frame with an `id`): kept in the outbox until
     * acked, resent with the same id after a reconnect or a reload. Returns its id.
     * @param {{type: string, id?: string, [key: string]: any}} frame
     * @returns {string}
     */
    submit(frame: {
        type: string;
        id?: string;
        [key: string]: any;
    }): string;
    /**
     * A chat message (chat.send), through the outbox; the entry {id, body, created}.
     * @param {string} body
     * @param {{replyTo?: number | null}} [options] replyTo: the seq of the message answered
     */
    sendMessage(body: string, options?: {
        replyTo?: number | null;
    }): import("./outbox.js").ChatEntry;
    /**
     * Edit my message `target` (its seq): chat.edit, through the outbox; its id.
     * @param {number} target
     * @param {string} body
     */
    editMessage(target: number, body: string): string;
    /**
     * Delete my message `target` (its seq): chat.delete, through the outbox; its id.
     * @param {number} target
     */
    deleteMessage(target: number): string;
    /**
     * Everything up to `seq` is read (`read`): sent now when live, else on the next socket;
     * only ever forward.
     * @param {number} seq
     */
    markRead(seq: number): void;
    /**
     * Tell the room I am typing (or stopped): `presence.typing` for the others.
     * @param {boolean} active
     */
    setTyping(active: boolean): void;
    /**
     * A keystroke in the message box: "typing" at once, again every 3 s while it goes on, and
     * "stopped" after 4 s without one (or when the message is sent).
     */
    keystroke(): void;
    /** The message box was emptied: stopped typing. */
    stopTyping(): void;
    /** Checklist operations (docs/protocol.md, "Checklist operations"); each returns its id. */
    checklist: {
        /**
         * @param {{title: string, description?: string, after?: string | null, position?: number | string | null, itemId?: string}} step
         * after: the item it follows (null: first); position: an index; neither: at the end
         */
        add: ({ title, description, after, position, itemId }: {
            title: string;
            description?: string;
            after?: string | null;
            position?: number | string | null;
            itemId?: string;
        }) => string;
        /** @param {string} itemId @param {boolean} done */
        toggle: (itemId: string, done: boolean) => string;
        /** @param {string} itemId @param {string} title */
        rename: (itemId: string, title: string) => string;
        /** @param {string} itemId @param {string | null} after */
        move: (itemId: string, after: string | null) => string;
        /** @param {string} itemId */
        remove: (itemId: string) => string;
        /**
         * @param {string} itemId
         * @param {{verified?: boolean, title?: string}} [options] title: the words the mentor saw
         */
        verify: (itemId: string, { verified, title }?: {
            verified?: boolean;
            title?: string;
        }) => string;
    };
    /**
     * A REST call with this room's token (renewed and tried again once after a 401).
     * @param {string} method
     * @param {string} path
     * @param {any} [body]
     * @param {Record<string, string>} [headers]
     */
    api(method: string, path: string, body?: any, headers?: Record<string, string>): Promise<any>;
    /**
     * A page of older messages: `{messages, has_more}`, oldest first, seq < `before`.
     * @param {{before?: number, limit?: number}} [page]
     */
    history({ before, limit }?: {
        before?: number;
        limit?: number;
    }): Promise<any>;
    /**
     * Search this room's chat messages (`GET /api/rooms/{id}/search`): `{results, has_more}`,
     * the newest `limit` matches (seq < `before`, if given), best match first; each result
     * `{seq, id, author, body, ts, snippet}` with the matched words between « and ». For the
     * next page pass the smallest `seq` of this one as `before`.
     * @param {string} q 1..200 characters with at least one word (letters or digits)
     * @param {{before?: number, limit?: number}} [page]
     */
    search(q: string, { before, limit }?: {
        before?: number;
        limit?: number;
    }): Promise<any>;
    #private;
}
/**
 * handoff (true): when the server process stops, move to the next socket before the old one
 * closes (`reconnect`, docs/protocol.md) instead of reconnecting after its 1012;
 * storage: where the outboxes live (default localStorage, else memory); locks: the Web
 * Locks the outboxes take across tabs (default navigator.locks; null: none); userId: whose
 * outboxes these are (default: the first token's `sub`; give it when there is no token
 * before getToken() runs, so that two people on one browser never share an outbox)
 */
export type RoomOptions = import("./reconnecting.js").SocketOptions & {
    roomId: string;
    storage?: import("./outbox.js").StorageLike | null;
    locks?: import("./outbox.js").LockManagerLike | null;
    fetch?: typeof fetch;
    userId?: string | null;
    handoff?: boolean;
};
import { ReconnectingSocket } from "./reconnecting.js";
import { Emitter } from "./events.js";
import { Presence } from "./presence.js";
import { Outbox } from "./outbox.js";
