// The connection indicator in the top bar (#connection, #connection-text, #retry), for the
// room and feed pages.

export function setIndicator(state, text, { retry = false } = {}) {
  document.getElementById("connection").dataset.state = state;
  document.getElementById("connection-text").textContent = text;
  document.getElementById("retry").hidden = !retry;
}

/**
 * The indicator for a socket's "state" event (the SDK's); `offline` is what the page says
 * while the device is offline (what becomes of the reader's work meanwhile).
 */
export function showConnectionState({ state, delay }, offline) {
  if (state === "live") {
    setIndicator("live", "Live");
  } else if (state === "connecting") {
    setIndicator("connecting", "Connecting…");
  } else if (state === "reconnecting") {
    const wait = delay ? ` Next try in ${Math.max(1, Math.round(delay / 1000))} s.` : "";
    setIndicator("reconnecting", `Reconnecting…${wait}`, { retry: delay !== undefined });
  } else if (state === "offline") {
    setIndicator("offline", offline, { retry: true });
  } else if (state === "stopped") {
    setIndicator("stopped", "Disconnected");
  }
}
