// The room socket's state on the page: the indicator in the top bar (indicator.js), the
// "Retry now" button, and the banner when the room is gone for good.

import { byId } from "./dom.js";
import { showConnectionState } from "./indicator.js";

const OFFLINE = "Offline: messages are kept and sent when you are back online.";

export class RoomStatus {
  #welcomed; // () => true once the room has been shown
  #composer;

  constructor(room, { welcomed, composer }) {
    this.#welcomed = welcomed;
    this.#composer = composer;
    byId("retry").addEventListener("click", () => room.retryNow());
  }

  /** The connection's state changed: detail {state, delay, message}. */
  onState(detail) {
    byId("room").dataset.connection = detail.state; // presence is dimmed while it may be out of date
    showConnectionState(detail, OFFLINE);
    if (detail.state === "stopped") this.#showFatal(detail.message ?? "Disconnected from the room.");
  }

  #showFatal(message) {
    const banner = byId("fatal");
    const other = document.createElement("a");
    other.href = "./";
    other.textContent = "Open another room";
    banner.replaceChildren(document.createTextNode(`${message} `), other);
    banner.hidden = false;
    // Refused before anything was shown: there is no room to show. Refused later (an
    // expired token): what was said stays readable.
    if (!this.#welcomed()) byId("room").hidden = true;
    this.#composer.disable();
  }
}
