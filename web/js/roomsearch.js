// Search this room's history (GET /api/rooms/{id}/search, the SDK's room.search): a search
// box above the log, the results newest first with the matched words marked, "More results"
// for older matches, and a click on a result jumps to the message (olderhistory.js loads the
// pages before it when it is not shown yet).
//
// The server's rules are checked before asking: 1..200 characters with at least one word
// (letters or digits). Results are text: the snippet's «…» become <mark> elements made here,
// never HTML from the server.

import { el } from "./dom.js";
import { formatTime } from "./chat.js";
import { authorName } from "./replies.js";

const MAX_QUERY = 200; // characters, as the server counts them
const PAGE = 20;
const WORD = /[\p{L}\p{N}]/u;

/** The snippet "a «word» in b" as text nodes and <mark>s. */
export function snippetNodes(snippet) {
  const nodes = [];
  for (const [i, part] of snippet.split(/[«»]/).entries()) {
    if (part === "") continue;
    nodes.push(i % 2 === 1 ? el("mark", null, part) : document.createTextNode(part));
  }
  return nodes;
}

/** What is wrong with a query before it is sent, or "". */
export function queryProblem(q) {
  const length = [...q].length;
  if (length > MAX_QUERY) return `Too long: ${length} characters, at most ${MAX_QUERY}.`;
  if (!WORD.test(q)) return "Type a word to search for (letters or digits).";
  return "";
}

export class RoomSearch {
  #room; // RoomClient
  #jump; // (seq) => Promise<boolean>
  #form;
  #input;
  #status;
  #results;
  #more;
  #clear;
  #query = "";
  #before = null; // the next page's `before`
  #busy = false;

  constructor({ room, jump, where }) {
    this.#room = room;
    this.#jump = jump;
    this.#form = el("form", "room-search");
    this.#form.setAttribute("role", "search");
    this.#form.setAttribute("aria-label", "Search this room");
    const label = el("label", "visually-hidden", "Search messages");
    this.#input = el("input", "room-search-input");
    this.#input.type = "search";
    this.#input.id = "room-search-input";
    this.#input.placeholder = "Search messages";
    this.#input.autocomplete = "off";
    label.htmlFor = this.#input.id;
    const go = el("button", null, "Search");
    go.type = "submit";
    this.#clear = el("button", "link-button", "Clear search");
    this.#clear.type = "button";
    this.#clear.hidden = true;
    this.#status = el("p", "room-search-status");
    this.#status.id = "room-search-status";
    this.#status.setAttribute("role", "status");
    this.#input.setAttribute("aria-describedby", this.#status.id);
    this.#results = el("ol", "room-search-results");
    this.#results.setAttribute("aria-label", "Search results");
    this.#results.hidden = true;
    this.#more = el("button", "link-button", "More results");
    this.#more.type = "button";
    this.#more.hidden = true;
    const row = el("div", "room-search-row");
    row.append(label, this.#input, go, this.#clear);
    this.#form.append(row, this.#status, this.#results, this.#more);
    where.before(this.#form);

    this.#form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#search(this.#input.value.trim(), null);
    });
    this.#more.addEventListener("click", () => this.#search(this.#query, this.#before));
    this.#clear.addEventListener("click", () => {
      this.clear();
      this.#input.focus();
    });
    this.#form.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.#results.hidden) {
        event.preventDefault();
        this.clear();
        this.#input.focus();
      }
    });
  }

  clear() {
    this.#query = "";
    this.#before = null;
    this.#input.value = "";
    this.#results.replaceChildren();
    this.#results.hidden = true;
    this.#more.hidden = true;
    this.#clear.hidden = true;
    this.#status.textContent = "";
    this.#input.setAttribute("aria-invalid", "false");
  }

  async #search(q, before) {
    if (this.#busy) return;
    const problem = q === "" ? "" : queryProblem(q);
    this.#input.setAttribute("aria-invalid", problem ? "true" : "false");
    if (q === "" || problem) {
      this.#status.textContent = problem;
      return;
    }
    this.#busy = true;
    this.#status.textContent = "Searching…";
    try {
      const page = await this.#room.search(q, before === null ? { limit: PAGE } : { before, limit: PAGE });
      if (before === null) this.#results.replaceChildren();
      this.#query = q;
      const results = page.results ?? [];
      // The page is best match first; the smallest seq is where the next one starts.
      if (results.length > 0) this.#before = Math.min(...results.map((r) => r.seq));
      for (const result of results) this.#results.append(this.#resultItem(result));
      const shown = this.#results.childElementCount;
      const count = `${shown}${page.has_more ? "+" : ""}`;
      const one = shown === 1 && !page.has_more;
      this.#status.textContent =
        shown === 0 ? `No messages match “${q}”.` : `${count} message${one ? " matches" : "s match"} “${q}”.`;
      this.#results.hidden = shown === 0;
      this.#more.hidden = !page.has_more;
      this.#clear.hidden = false;
    } catch (err) {
      this.#status.textContent = `Search failed: ${err.message}`;
    } finally {
      this.#busy = false;
    }
  }

  #resultItem(result) {
    const item = el("li", "room-search-result");
    const button = el("button", "result-button");
    button.type = "button";
    button.dataset.seq = String(result.seq);
    const meta = el("span", "result-meta");
    meta.append(el("span", "author", authorName(result)), " ");
    const time = el("time", null, formatTime(result.ts));
    time.dateTime = result.ts;
    meta.append(time);
    const text = el("span", "result-snippet");
    text.append(...snippetNodes(result.snippet ?? result.body ?? ""));
    button.append(meta, text);
    button.addEventListener("click", async () => {
      this.#status.textContent = "Finding the message…";
      const shown = await this.#jump(result.seq);
      this.#status.textContent = shown ? "" : "That message is no longer in the room.";
    });
    item.append(button);
    return item;
  }
}
