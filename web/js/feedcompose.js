// Writing in public: a post in one of the reader's own growth threads, and a new thread in
// the community shown. Limits are shown before sending (feedlimits.js); a draft keeps one
// Idempotency-Key until it is sent, so sending again after a lost answer stores it once.

import { byId as $, el } from "./dom.js";
import { LIMITS, limitCounter } from "./feedlimits.js";
import { newClientId } from "../sdk/outbox.js";

export class Composer {
  /**
   * `api(method, path, body?, headers?)`: a REST call. `community`: the community shown (null
   * on the Following feed, where no thread can be started). `names`: community id -> name.
   * `onPosted(post)` shows the new post; `announce(text)` tells screen readers.
   */
  constructor({ api, community, names, onPosted, announce }) {
    this.api = api;
    this.community = community;
    this.names = names;
    this.onPosted = onPosted;
    this.announce = announce;
    this.body = $("post-body");
    this.select = $("post-thread");
    this.error = $("post-error");
    this.postCheck = limitCounter(this.body, $("post-counter"), LIMITS.post, "post");
    this.title = $("thread-title");
    this.titleError = $("thread-error");
    this.titleCheck = limitCounter(this.title, $("thread-counter"), LIMITS.title, "thread title");
    this.draftKey = null;
  }

  async start() {
    $("composer").hidden = false;
    $("post-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.post();
    });
    this.body.addEventListener("input", () => {
      this.draftKey = null;
      this.error.textContent = "";
    });
    this.body.addEventListener("keydown", (event) => {
      // Ctrl+Enter (Cmd+Enter) posts; Enter alone is a new line, as a post has paragraphs.
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.isComposing) {
        event.preventDefault();
        this.post();
      }
    });
    if (this.community) {
      $("thread-form").addEventListener("submit", (event) => {
        event.preventDefault();
        this.startThread();
      });
      this.title.addEventListener("input", () => {
        this.titleError.textContent = "";
      });
    } else {
      $("thread-new").hidden = true;
      $("thread-elsewhere").hidden = false;
    }
    await this.loadThreads();
  }

  /** The reader's threads (in this community, or everywhere on the Following feed). */
  async loadThreads() {
    const query = new URLSearchParams({ owner: "me" });
    if (this.community) query.set("community", this.community);
    try {
      const data = await this.api("GET", `/api/threads?${query}`);
      this.select.replaceChildren(...data.threads.map((t) => this.#option(t)));
    } catch (err) {
      this.error.textContent = `Your threads could not be loaded: ${err.message}`;
    }
    this.#showFields();
  }

  #option(thread) {
    const where = this.community ? "" : ` (${this.names.get(thread.community_id) ?? "a community"})`;
    const option = el("option", null, `${thread.title}${where}`);
    option.value = thread.id;
    return option;
  }

  #showFields() {
    const some = this.select.options.length > 0;
    $("post-fields").hidden = !some;
    $("no-threads").hidden = some;
    if (!some && this.community) $("thread-new").open = true;
  }

  async post() {
    const problem = this.postCheck.problem();
    if (problem) {
      this.error.textContent = problem;
      this.body.focus();
      return;
    }
    const send = $("post-send");
    if (send.disabled) return;
    send.disabled = true;
    this.error.textContent = "";
    this.draftKey ??= newClientId();
    try {
      const path = `/api/threads/${encodeURIComponent(this.select.value)}/posts`;
      const post = await this.api("POST", path, { body: this.body.value }, { "Idempotency-Key": this.draftKey });
      this.body.value = "";
      this.draftKey = null;
      this.postCheck.update();
      this.onPosted(post);
    } catch (err) {
      this.error.textContent = err.message;
    } finally {
      send.disabled = false;
      this.body.focus();
    }
  }

  async startThread() {
    const problem = this.titleCheck.problem();
    if (problem) {
      this.titleError.textContent = problem;
      this.title.focus();
      return;
    }
    const send = $("thread-send");
    if (send.disabled) return;
    send.disabled = true;
    this.titleError.textContent = "";
    try {
      const thread = await this.api("POST", "/api/threads", {
        title: this.title.value,
        community_id: this.community,
      });
      this.select.prepend(this.#option(thread));
      this.select.value = thread.id;
      this.title.value = "";
      this.titleCheck.update();
      $("thread-new").open = false;
      this.#showFields();
      this.announce(`Thread “${thread.title}” started: write its first post.`);
      this.body.focus();
    } catch (err) {
      this.titleError.textContent = err.message;
      this.title.focus();
    } finally {
      send.disabled = false;
    }
  }
}
