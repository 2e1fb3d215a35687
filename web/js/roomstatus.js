// The room socket's state on the page: the indicator in the top bar (indicator.js), the
// "Retry now" button, and the banner when the room is gone for good.
//
// A server that is down or restarting is never blamed on the link: the page says
// "Reconnecting…" until it is back. A 4401 close says the link has expired only when the
// token's own expiry has passed (or the server says so); otherwise it says what was refused.

import { tokenClaims } from "../sdk/token.js";
import { byId } from "./dom.js";
import { showConnectionState } from "./indicator.js";

/** What a person is told when the room refuses the socket for good (detail of "stopped"). */
export function stoppedMessage({ code, message, reason }, token, now = Date.now()) {
  // No close reason: not a close (a renewal refused by the token URL): its message says why.
  if (code !== 4401 || reason === undefined) return message ?? "Disconnected from the room.";
  const why = String(reason).replace(/^unauthorized:\s*/, "");
  if (/revoked/i.test(why)) return "Your access to this room was revoked. Ask for a new link to this room.";
  const { exp } = tokenClaims(token);
  if ((typeof exp === "number" && exp * 1000 <= now) || /expired/i.test(why)) {
    return "Your access link has expired. Ask for a new link to this room.";
  }
  return `The server did not accept this access link${why ? ` (${why})` : ""}. Ask for a new link to this room.`;
}

const OFFLINE = "Offline: messages are kept and sent when you are back online.";

export class RoomStatus {
  #welcomed; // () => true once the room has been shown
  #composer;
  #tokens; // the page's TokenSource: the token the refusal was about

  constructor(room, { welcomed, composer, tokens }) {
    this.#welcomed = welcomed;
    this.#composer = composer;
    this.#tokens = tokens;
    byId("retry").addEventListener("click", () => room.retryNow());
  }

  /** The connection's state changed: detail {state, delay, message}. */
  onState(detail) {
    byId("room").dataset.connection = detail.state; // presence is dimmed while it may be out of date
    showConnectionState(detail, OFFLINE);
    if (detail.state === "stopped") this.#showFatal(stoppedMessage(detail, this.#tokens?.token));
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
