/**
 * @typedef {import("./outbox.js").Outbox} Outbox
 * @typedef {import("./outbox.js").ChatEntry} ChatEntry
 * @typedef {import("./outbox.js").OpEntry} OpEntry
 */
export class OutboxSender {
    /**
     * @param {{conn: {live: boolean, send: (frame: object) => boolean}, messages: Outbox, ops: Outbox,
     *   emit: (type: string, detail: any) => void}} parts
     */
    constructor({ conn, messages, ops, emit }: {
        conn: {
            live: boolean;
            send: (frame: object) => boolean;
        };
        messages: Outbox;
        ops: Outbox;
        emit: (type: string, detail: any) => void;
    });
    /** How a pending message is shown now: "sending" while live, else "queued". */
    pendingStatus(): "sending" | "queued";
    /**
     * Keep a chat message to send (stored before it is sent: a crash loses nothing), and send
     * it once stored.
     * @param {string} body
     * @param {{replyTo?: number | null}} [options]
     * @returns {ChatEntry}
     */
    queueMessage(body: string, options?: {
        replyTo?: number | null;
    }): ChatEntry;
    /**
     * Keep an operation to send, and send it once stored; its id.
     * @param {{type: string, id?: string, [key: string]: any}} frame
     * @returns {string}
     */
    submitOp(frame: {
        type: string;
        id?: string;
        [key: string]: any;
    }): string;
    /**
     * Whether `id` is one of mine waiting in an outbox.
     * @param {string} id
     */
    has(id: string): boolean;
    /**
     * Send what the outboxes hold (messages and operations, merged by the time they were
     * written, each outbox in its own order), a few at a time; acks make room for more.
     */
    flush(): void;
    /**
     * A message of mine is stored (its ack, or the message seen in the room, whichever comes
     * first): it leaves the outbox, and is told "sent" once.
     * @param {string} id
     * @param {number} [seq]
     */
    delivered(id: string, seq?: number): void;
    /** A new socket is live: everything not acked is sent (again). */
    onWelcome(): void;
    /** @param {string} state the connection's */
    onState(state: string): void;
    /** @param {any} frame an ack or an error (others are ignored) */
    onFrame(frame: any): void;
    /** Stop the retry timer (the client stopped). */
    close(): void;
    #private;
}
export type Outbox = import("./outbox.js").Outbox;
export type ChatEntry = import("./outbox.js").ChatEntry;
export type OpEntry = import("./outbox.js").OpEntry;
