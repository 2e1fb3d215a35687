// What every client of this package is: an EventTarget whose events carry their payload in
// `detail` (CustomEvent), with `on(type, fn)` for those who want the payload alone.

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
  on(type, fn) {
    /** @param {Event} event */
    const listener = (event) => fn(/** @type {CustomEvent} */ (event).detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /**
   * The next event `type`'s detail (a promise).
   * @param {string} type
   * @returns {Promise<any>}
   */
  once(type) {
    return new Promise((resolve) => {
      const off = this.on(type, (detail) => {
        off();
        resolve(detail);
      });
    });
  }

  /**
   * Dispatch `type` with `detail`; a handler that throws is reported and the others still run.
   * @param {string} type
   * @param {any} [detail]
   */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
