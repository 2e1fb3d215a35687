/**
 * An EventTarget with `on` and `emit`. `on(type, fn)` calls `fn(detail)` for each event of
 * `type` and returns the function that stops it; `addEventListener` works as usual.
 */
export class Emitter extends EventTarget {
    /**
     * Call `fn(detail)` for every event `type`; returns a function that removes the handler.
     * @param {string} type
     * @param {(detail: any) => void} fn
     * @returns {() => void}
     */
    on(type: string, fn: (detail: any) => void): () => void;
    /**
     * The next event `type`'s detail (a promise).
     * @param {string} type
     * @returns {Promise<any>}
     */
    once(type: string): Promise<any>;
    /**
     * Dispatch `type` with `detail`; a handler that throws is reported and the others still run.
     * @param {string} type
     * @param {any} [detail]
     */
    emit(type: string, detail?: any): void;
}
