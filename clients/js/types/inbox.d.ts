/** Close codes after which reconnecting cannot help, and what a person is told. */
export const INBOX_FATAL_CLOSES: Map<number, string>;
export class InboxClient extends ReconnectingSocket {
    /** @param {import("./reconnecting.js").SocketOptions} [options] */
    constructor(options?: import("./reconnecting.js").SocketOptions);
    /** @type {{user_id: string, name: string} | null} who the last welcome said I am */
    you: {
        user_id: string;
        name: string;
    } | null;
    /** Open the socket (and keep it open until stop()); returns this. */
    start(): this;
    where(): {
        path: string;
        query: {};
    };
    /** Every room's summary, newest activity first. */
    get rooms(): any[];
    /**
     * One room's summary, or undefined.
     * @param {string} roomId
     */
    room(roomId: string): any;
    /** The unread messages of every room together (each room's count stops at 999). */
    get unread(): number;
    /**
     * @param {any} frame
     * @param {boolean} first
     */
    welcomed(frame: any, first: boolean): {
        frame: any;
        first: boolean;
    };
    #private;
}
import { ReconnectingSocket } from "./reconnecting.js";
