// The feed's DOM: one <li class="post"> per post, with its reactions and comments.
//
// Everything a member wrote (post and comment bodies, names, thread titles) is set with
// textContent: a body holding HTML or script shows as text and runs nothing.

import { formatTime } from "./chat.js";
import { el } from "./dom.js";
import { LIMITS, limitCounter } from "./feedlimits.js";
import { newClientId } from "../sdk/outbox.js";

// Words, not emoji: emoji fonts are missing on many systems.
export const REACTIONS = [
  ["like", "Like"],
  ["celebrate", "Celebrate"],
  ["insightful", "Insightful"],
  ["support", "Support"],
];


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

/**
 * A post's header: author ("(you)" when it is me), thread and time, with Follow buttons for
 * the author and the thread where they are someone else's.
 */
function postHeader(post, me, follows) {
  const meta = el("header", "post-meta");
  const by = el("span", "author", nameOf(post.author));
  by.id = `post-${post.id}-by`;
  meta.append(by);
  const mine = me && post.author?.user_id === me.user_id;
  if (mine) meta.append(el("span", "you", "(you)"));
  else if (follows && post.author?.user_id) {
    meta.append(follows.button("users", post.author.user_id, nameOf(post.author)));
  }
  meta.append(el("span", "thread", post.thread_title ?? ""));
  if (!mine && follows && post.thread_id) {
    meta.append(follows.button("threads", post.thread_id, `the thread ${post.thread_title ?? ""}`));
  }
  meta.append(timeElement(post.created_at));
  return meta;
}

/**
 * A "Delete" button that asks first: it turns into a question with "Delete" and "Keep"
 * (focus on Keep, so a stray Enter deletes nothing); `remove()` -> Promise does the deleting.
 */
export function deleteControl(question, what, remove) {
  const box = el("div", "delete-control");
  const start = el("button", "link-button delete", "Delete");
  start.type = "button";
  start.append(el("span", "visually-hidden", ` ${what}`));
  const ask = el("div", "confirm");
  ask.setAttribute("role", "group");
  ask.setAttribute("aria-label", question);
  ask.hidden = true;
  const yes = el("button", "danger", `Delete ${what}`);
  yes.type = "button";
  const no = el("button", "link-button", "Keep it");
  no.type = "button";
  const error = el("p", "error");
  error.setAttribute("aria-live", "assertive");
  ask.append(el("span", "confirm-question", question), yes, no);
  box.append(start, ask, error);
  start.addEventListener("click", () => {
    start.hidden = true;
    ask.hidden = false;
    error.textContent = "";
    no.focus();
  });
  no.addEventListener("click", () => {
    ask.hidden = true;
    start.hidden = false;
    start.focus();
  });
  let busy = false;
  yes.addEventListener("click", async () => {
    // Not `disabled`: that would drop the focus to the page before the list can move it on.
    if (busy) return;
    busy = true;
    yes.setAttribute("aria-disabled", "true");
    try {
      await remove();
    } catch (err) {
      error.textContent = err.message;
      ask.hidden = true;
      start.hidden = false;
      start.focus();
    } finally {
      busy = false;
      yes.removeAttribute("aria-disabled");
    }
  });
  return box;
}

function milestoneBadge(m) {
  const badge = el("p", "milestone");
  badge.append(el("span", "milestone-mark", "Milestone"), document.createTextNode(` ${m.title}`));
  if (m.verified_by) badge.append(el("span", "verified", ` · verified by ${m.verified_by}`));
  return badge;
}

/**
 * One post's element and its parts. `actions`: {react(kind, on), toggleComments(),
 * moreComments(), comment(body, idempotencyKey) -> Promise, deletePost() -> Promise,
 * deleteComment(id) -> Promise}, called from the post's controls; `follows` (feedfollow.js)
 * makes the Follow buttons.
 */
export class PostView {
  constructor(post, me, actions, follows = null) {
    const id = post.id;
    this.item = el("li", "post");
    this.item.dataset.postId = id;
    this.item.dataset.cursor = String(post.cursor);
    this.item.tabIndex = -1; // focus lands here when new posts are revealed
    const article = el("article");
    article.setAttribute("aria-labelledby", `post-${id}-by`);
    this.me = me;
    this.actions = actions;
    article.append(postHeader(post, me, follows));
    if (post.milestone) article.append(milestoneBadge(post.milestone));
    article.append(el("p", "post-body", post.body ?? ""));
    article.append(this.#reactionBar(id, actions), this.reactionError);
    if (me && post.author?.user_id === me.user_id) {
      article.append(
        deleteControl("Delete this post and its comments?", "post", () => actions.deletePost()),
      );
    }
    article.append(this.#commentSection(post, actions));
    this.item.append(article);
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
    form.noValidate = true;
    const label = el("label", "visually-hidden", "Write a comment");
    label.htmlFor = `comment-input-${id}`;
    const input = el("textarea");
    input.id = `comment-input-${id}`;
    input.name = "body";
    input.rows = 1;
    // No maxLength: a paste is never cut; the counter shows the limit before sending.
    input.placeholder = "Write a comment";
    input.autocomplete = "off";
    const send = el("button", null, "Comment");
    send.type = "submit";
    const counter = el("p", "counter");
    counter.id = `comment-counter-${id}`;
    const error = el("p", "error");
    error.id = `comment-error-${id}`;
    error.setAttribute("aria-live", "assertive");
    input.setAttribute("aria-describedby", `${counter.id} ${error.id}`);
    form.append(label, input, send, counter, error);
    const check = limitCounter(input, counter, LIMITS.comment, "comment");
    // One Idempotency-Key per draft: sending it again after a lost answer stores it once.
    let draftKey = null;
    input.addEventListener("input", () => {
      draftKey = null;
      error.textContent = "";
    });
    const submit = async () => {
      if (send.disabled) return;
      const problem = check.problem();
      if (problem) {
        error.textContent = problem;
        input.focus();
        return;
      }
      const body = input.value;
      send.disabled = true;
      error.textContent = "";
      draftKey ??= newClientId();
      try {
        await actions.comment(body, draftKey);
        input.value = "";
        draftKey = null;
        check.update();
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
    this.commentError = error;
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
    if (this.me && comment.author?.user_id === this.me.user_id) {
      item.append(
        deleteControl("Delete this comment?", "comment", () => this.actions.deleteComment(comment.id)),
      );
    }
    this.commentList.append(item);
  }

  /** Take a comment out of the list (it was deleted); keyboard focus stays near. */
  removeComment(id) {
    const item = this.commentList.querySelector(`[data-comment-id="${CSS.escape(id)}"]`);
    if (!item) return;
    if (item.contains(document.activeElement)) {
      const next = item.nextElementSibling ?? item.previousElementSibling;
      (next?.querySelector("button") ?? this.commentInput).focus();
    }
    item.remove();
  }

  setMoreComments(more) {
    this.more.hidden = !more;
  }
}
