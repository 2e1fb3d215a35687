// What the reader follows (communities, threads, people) and the Follow buttons that change
// it. One target may have a button in many places (every post of a thread, of a person):
// they all show the same state, found by their data-follow key.

import { el } from "./dom.js";

export const KINDS = ["communities", "threads", "users"];

const keyOf = (kind, id) => `${kind}:${id}`;

export class Follows {
  /** `api(method, path)` makes a REST call; `onError(message)` shows a refusal. */
  constructor(api, onError) {
    this.api = api;
    this.onError = onError;
    this.sets = Object.fromEntries(KINDS.map((k) => [k, new Set()]));
    this.changed = new EventTarget(); // "change": the sets changed
    this.loaded = false;
  }

  async load() {
    const data = await this.api("GET", "/api/follows");
    for (const kind of KINDS) this.sets[kind] = new Set(data[kind] ?? []);
    this.loaded = true;
    this.#refresh();
  }

  has(kind, id) {
    return this.sets[kind].has(id);
  }

  /** Following anything at all. */
  get any() {
    return KINDS.some((k) => this.sets[k].size > 0);
  }

  /** Whether the Following feed lists this post. */
  matches(post) {
    return (
      this.has("communities", post.community_id) ||
      this.has("threads", post.thread_id) ||
      this.has("users", post.author?.user_id)
    );
  }

  /**
   * A toggle button for one target. `label` names it for a screen reader ("Ben", "the thread
   * Learning Rust"); the visible text is "Follow" or "Following", then `shown` if given
   * (and the label only for a screen reader otherwise).
   */
  button(kind, id, label, className = "follow", shown = null) {
    const button = el("button", className);
    button.type = "button";
    button.dataset.follow = keyOf(kind, id);
    button.append(el("span", "follow-state"));
    if (shown) button.append(` ${shown}`);
    else button.append(el("span", "visually-hidden", ` ${label}`));
    button.addEventListener("click", () => this.set(kind, id, !this.has(kind, id)));
    this.#show(button, this.has(kind, id));
    return button;
  }

  async set(kind, id, on) {
    const before = this.has(kind, id);
    this.#apply(kind, id, on);
    this.#busy(kind, id, true); // shown at once, confirmed when the server answers
    try {
      const path = `/api/follows/${kind}/${encodeURIComponent(id)}`;
      await this.api(on ? "PUT" : "DELETE", path);
    } catch (err) {
      this.#apply(kind, id, before);
      this.onError(err.message);
    } finally {
      this.#busy(kind, id, false);
    }
  }

  #buttons(kind, id) {
    return document.querySelectorAll(`[data-follow="${CSS.escape(keyOf(kind, id))}"]`);
  }

  #busy(kind, id, busy) {
    for (const button of this.#buttons(kind, id)) {
      if (busy) button.setAttribute("aria-busy", "true");
      else button.removeAttribute("aria-busy");
    }
  }

  #apply(kind, id, on) {
    if (on) this.sets[kind].add(id);
    else this.sets[kind].delete(id);
    for (const button of this.#buttons(kind, id)) this.#show(button, on);
    this.changed.dispatchEvent(new Event("change"));
  }

  #refresh() {
    for (const button of document.querySelectorAll("[data-follow]")) {
      const [kind, ...rest] = button.dataset.follow.split(":");
      this.#show(button, this.has(kind, rest.join(":")));
    }
    this.changed.dispatchEvent(new Event("change"));
  }

  #show(button, on) {
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.querySelector(".follow-state").textContent = on ? "Following" : "Follow";
  }
}
