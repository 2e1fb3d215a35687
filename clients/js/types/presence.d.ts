/** @typedef {{user_id: string, name: string, role?: string}} Person */
export class Presence extends Emitter {
    /** @param {{typingTimeout?: number}} [options] */
    constructor({ typingTimeout }?: {
        typingTimeout?: number;
    });
    /** @type {Person | null} */
    me: Person | null;
    /** @type {Map<string, Person>} user_id -> member */
    members: Map<string, Person>;
    /** @type {Map<string, string>} user_id -> name: here now */
    online: Map<string, string>;
    typingTimeout: number;
    /** User ids typing now (never the reader). */
    get typing(): string[];
    /**
     * The name to show for a user.
     * @param {string} userId
     */
    nameOf(userId: string): string;
    /**
     * A new socket's welcome: the room's members, who I am and who is here (replaces all).
     * @param {any} frame
     */
    onWelcome(frame: any): void;
    /**
     * A later frame: presence.*, member.*, room.updated; a message ends its author's typing.
     * @param {any} frame
     */
    onFrame(frame: any): void;
    /** Forget every typing timer (the client stopped). */
    close(): void;
    #private;
}
export type Person = {
    user_id: string;
    name: string;
    role?: string;
};
import { Emitter } from "./events.js";
