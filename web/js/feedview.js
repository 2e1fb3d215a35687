// The feed's DOM: one <li class="post"> per post, with its reactions and comments.
//
// Everything a member wrote (post and comment bodies, names, thread titles) is set with
// textContent: a body holding HTML or script shows as text and runs nothing.

import { formatTime } from "./chat.js";
import { el } from "./dom.js";
import { newClientId } from "../sdk/outbox.js";

// Words, not emoji: emoji fonts are missing on many systems.
export const REACTIONS = [
  ["like", "Like"],
  ["celebrate", "Celebrate"],
  ["insightful", "Insightful"],
  ["support", "Support"],
];

export const MAX_COMMENT = 2000; // characters, as the server counts them

function timeElement(ts) {
  const time = el("time", "time", formatTime(ts));
  time.dateTime = ts;
  const full = new Date(ts);
  if (!Number.isNaN(full.getTime())) time.title = full.toLocaleString();
  return time;
}

function nameOf(author) {
  return author?.name || author?.user_id || "someone";
}

/** A post's header: author ("(you)" when it is me), thread and time. */
function postHeader(post, me) {
  const meta = el("header", "post-meta");
  const by = el("span", "author", nameOf(post.author));
  by.id = `post-${post.id}-by`;
  meta.append(by);
  if (me && post.author?.user_id === me.user_id) meta.append(el("span", "you", "(you)"));
  meta.append(el("span", "thread", post.thread_title ?? ""), timeElement(post.created_at));
  return meta;
}

function milestoneBadge(m) {
  const badge = el("p", "milestone");
  badge.append(el("span", "milestone-mark", "Milestone"), document.createTextNode(` ${m.title}`));
  if (m.verified_by) badge.append(el("span", "verified", ` · verified by ${m.verified_by}`));
  return badge;
}

/**
 * One post's element and its parts. `actions`: {react(kind, on), toggleComments(),
 * moreComments(), comment(body, idempotencyKey) -> Promise}, called from the post's controls.
 */
export class PostView {
  constructor(post, me, actions) {
    const id = post.id;
    this.item = el("li", "post");
    this.item.dataset.postId = id;
    this.item.dataset.cursor = String(post.cursor);
    this.item.tabIndex = -1; // focus lands here when new posts are revealed
    const article = el("article");
    article.setAttribute("aria-labelledby", `post-${id}-by`);
    article.append(postHeader(post, me));
    if (post.milestone) article.append(milestoneBadge(post.milestone));
    article.append(el("p", "post-body", post.body ?? ""));
    article.append(this.#reactionBar(id, actions), this.reactionError);
    article.append(this.#commentSection(post, actions));
    this.item.append(article);
    this.me = me;
    this.setReactions(post.reactions, post.my_reactions ?? []);
    this.setCommentCount(post.comments ?? 0);
  }

  /** The reaction buttons and the comments toggle (and, beside them, this.reactionError). */
  #reactionBar(id, actions) {
    const bar = el("div", "reactions");
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", "Reactions");
    this.reactionButtons = new Map();
    for (const [kind, label] of REACTIONS) {
      const button = el("button", "reaction");
      button.type = "button";
      button.dataset.kind = kind;
      button.append(el("span", "kind", label), el("span", "count", "0"));
      button.addEventListener("click", () =>
        actions.react(kind, button.getAttribute("aria-pressed") !== "true"),
      );
      this.reactionButtons.set(kind, button);
      bar.append(button);
    }
    this.toggle = el("button", "comments-toggle");
    this.toggle.type = "button";
    this.toggle.setAttribute("aria-expanded", "false");
    this.toggle.setAttribute("aria-controls", `comments-${id}`);
    this.toggle.addEventListener("click", () => actions.toggleComments());
    bar.append(this.toggle);
    this.reactionError = el("p", "error");
    this.reactionError.setAttribute("aria-live", "polite");
    return bar;
  }

  /** Comments: shown on demand, loaded the first time they are shown. */
  #commentSection(post, actions) {
    this.comments = el("section", "comments");
    this.comments.id = `comments-${post.id}`;
    this.comments.hidden = true;
    this.comments.setAttribute("aria-label", `Comments on ${nameOf(post.author)}'s post`);
    this.commentList = el("ol", "comment-list");
    this.commentIds = new Set();
    this.more = el("button", "link-button more-comments", "Show more comments");
    this.more.type = "button";
    this.more.hidden = true;
    this.more.addEventListener("click", () => actions.moreComments());
    this.form = this.#commentForm(post.id, actions);
    this.comments.append(this.commentList, this.more, this.form);
    return this.comments;
  }

  #commentForm(id, actions) {
    const form = el("form", "comment-form");
    const label = el("label", "visually-hidden", "Write a comment");
    label.htmlFor = `comment-input-${id}`;
    const input = el("textarea");
    input.id = `comment-input-${id}`;
    input.name = "body";
    input.rows = 1;
    input.maxLength = MAX_COMMENT;
    input.placeholder = "Write a comment";
    input.autocomplete = "off";
    const send = el("button", null, "Comment");
    send.type = "submit";
    const error = el("p", "error");
    error.setAttribute("aria-live", "assertive");
    form.append(label, input, send, error);
    // One Idempotency-Key per draft: sending it again after a lost answer stores it once.
    let draftKey = null;
    input.addEventListener("input", () => {
      draftKey = null;
    });
    const submit = async () => {
      const body = input.value;
      if (body.trim() === "" || send.disabled) return;
      send.disabled = true;
      error.textContent = "";
      draftKey ??= newClientId();
      try {
        await actions.comment(body, draftKey);
        input.value = "";
        draftKey = null;
      } catch (err) {
        error.textContent = err.message;
      } finally {
        send.disabled = false;
        input.focus();
      }
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter is a new line; never while an input method is composing.
      if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
        return;
      }
      event.preventDefault();
      submit();
    });
    this.commentInput = input;
    return form;
  }

  /** Absolute counts (replace, never add) and which kinds are mine. */
  setReactions(counts, mine) {
    for (const [kind, button] of this.reactionButtons) {
      const n = Number(counts?.[kind] ?? 0);
      button.querySelector(".count").textContent = String(n);
      if (mine !== undefined) button.setAttribute("aria-pressed", mine.includes(kind) ? "true" : "false");
      const label = REACTIONS.find(([k]) => k === kind)[1];
      button.setAttribute("aria-label", `${label}: ${n}`);
    }
  }

  setMine(kind, on) {
    this.reactionButtons.get(kind)?.setAttribute("aria-pressed", on ? "true" : "false");
  }

  setCommentCount(n) {
    this.item.dataset.comments = String(n);
    this.toggle.textContent = n === 1 ? "1 comment" : `${n} comments`;
  }

  get expanded() {
    return !this.comments.hidden;
  }

  setExpanded(open) {
    this.comments.hidden = !open;
    this.toggle.setAttribute("aria-expanded", open ? "true" : "false");
  }

  /** Add a comment at the end of the list (once per id). */
  addComment(comment) {
    if (this.commentIds.has(comment.id)) return;
    this.commentIds.add(comment.id);
    const item = el("li", "comment");
    item.dataset.commentId = comment.id;
    const meta = el("div", "comment-meta");
    meta.append(el("span", "author", nameOf(comment.author)));
    if (this.me && comment.author?.user_id === this.me.user_id) meta.append(el("span", "you", "(you)"));
    meta.append(timeElement(comment.created_at));
    item.append(meta, el("p", "comment-body", comment.body ?? ""));
    this.commentList.append(item);
  }

  setMoreComments(more) {
    this.more.hidden = !more;
  }
}
