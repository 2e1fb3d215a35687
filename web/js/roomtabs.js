// The room page's views on a phone: Chat, Roadmap, Notes and People as tabs (the WAI-ARIA
// tabs pattern: arrow keys move between tabs, Home/End to the ends). Only the chosen view is
// shown below 48rem (app.css); on wider screens the tabs are hidden and everything is shown.
// The choice is #room's data-tab, kept for the tab's session (sessionStorage, per room): a
// reload shows the same view. A message that comes in while another view is chosen marks
// the Chat tab.

import { byId } from "./dom.js";

export class RoomTabs {
  #room = byId("room");
  #tabs = [...document.querySelectorAll('#room [role="tab"]')];

  #key;

  constructor(roomId) {
    this.#key = `menteo.tab.v1:${roomId}`;
    for (const tab of this.#tabs) {
      tab.addEventListener("click", () => this.select(tab.dataset.tab, { focus: false }));
      tab.addEventListener("keydown", (event) => this.#onKeydown(event, tab));
    }
  }

  /** Point each tab at its view, once the panels are mounted (roadmap, notes). */
  linkPanels() {
    const panels = { roadmap: "checklist-panel", notes: "notes-panel" };
    for (const tab of this.#tabs) {
      const id = panels[tab.dataset.tab];
      if (id === undefined) continue;
      const present = byId(id) !== null;
      tab.hidden = !present;
      if (present) tab.setAttribute("aria-controls", id);
    }
    let kept = null;
    try {
      kept = sessionStorage.getItem(this.#key);
    } catch {
      // storage unavailable: the chat
    }
    const shown = this.#tabs.find((t) => t.dataset.tab === kept && !t.hidden);
    if (shown) this.select(kept, { focus: false });
  }

  get current() {
    return this.#room.dataset.tab;
  }

  select(name, { focus = true } = {}) {
    this.#room.dataset.tab = name;
    try {
      sessionStorage.setItem(this.#key, name);
    } catch {
      // storage unavailable: the choice lasts until a reload
    }
    for (const tab of this.#tabs) {
      const chosen = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", String(chosen));
      tab.tabIndex = chosen ? 0 : -1;
      if (chosen && focus) tab.focus();
    }
    if (name === "chat") {
      byId("tab-chat").removeAttribute("data-unread");
      const scroller = byId("messages-scroll");
      scroller.scrollTop = scroller.scrollHeight; // back at the newest message
    }
  }

  /** A message came in: marked on the Chat tab when another view is chosen. */
  messageArrived() {
    if (this.current !== "chat") byId("tab-chat").dataset.unread = "true";
  }

  #onKeydown(event, tab) {
    const shown = this.#tabs.filter((t) => !t.hidden);
    const at = shown.indexOf(tab);
    let next = null;
    if (event.key === "ArrowRight") next = shown[(at + 1) % shown.length];
    else if (event.key === "ArrowLeft") next = shown[(at - 1 + shown.length) % shown.length];
    else if (event.key === "Home") next = shown[0];
    else if (event.key === "End") next = shown[shown.length - 1];
    if (next === null) return;
    event.preventDefault();
    this.select(next.dataset.tab);
  }
}
