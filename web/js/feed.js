// The feed page: a community's growth threads (or what the reader follows), live.
//
// URL: feed.html?token=T&community=ID (or &following=1, or &room=ID: the community where
// that room's members keep their growth threads); with &token_url=URL (with or without a
// token) the page fetches its tokens from URL and renews them (token.js). The reader writes
// posts in their own threads, starts threads, follows communities, threads and people, and
// deletes their own posts and comments (feedcompose.js, feedfollow.js, feedview.js). The first
// page of posts comes from REST; the feed socket then resumes after that page's cursor, so nothing between the two
// is missed. New posts never move what the reader is looking at: they wait under a
// "N new posts" bar at the top until it is clicked. Older posts load as the end of the
// list comes into view (or with the "Load older posts" button).

import { ApiError, apiRequest } from "../sdk/api.js";
import { FeedSocket, feedQuery } from "../sdk/feed.js";
import { backoffDelay } from "../sdk/reconnecting.js";
import { tokenClaims } from "../sdk/token.js";
import { byId as $, el } from "./dom.js";
import { Composer } from "./feedcompose.js";
import { Follows } from "./feedfollow.js";
import { PostView } from "./feedview.js";
import { setIndicator, showConnectionState } from "./indicator.js";
import { PageTokens, TokenError, withToken } from "./token.js";

const PAGE = 20; // posts per REST page
const COMMENTS_PAGE = 50;
const NEAR_END = "800px 0px"; // start loading older posts this far before the end shows

async function main() {
  const params = new URLSearchParams(location.search);
  const access = params.get("token")?.trim() || params.get("token_url")?.trim();
  let community = params.get("community")?.trim() || null;
  const following = params.get("following") === "1";
  const room = params.get("room")?.trim() || null;
  if (!access) {
    showJoinForm(community);
    return;
  }
  let tokens;
  try {
    setIndicator("connecting", "Loading the feed…");
    tokens = await PageTokens.fromQuery(params);
    if (!community && !following && room) {
      community = await communityOfRoom(tokens, room);
      if (community) {
        // A reload (or a shared link) opens the same community without asking again.
        params.delete("room");
        params.set("community", community);
        history.replaceState(null, "", `?${params}`);
      }
    }
  } catch (err) {
    setIndicator("stopped", "Disconnected"); // a token_url of another site, or one that said no
    $("fatal").textContent = err.message;
    $("fatal").hidden = false;
    return;
  }
  const feed = community ? { community } : following ? { following: true } : null;
  new FeedPage(tokens, feed).start();
}

/**
 * The community a room's "Community feed" link means: the only one there is, else the one
 * where the room's members keep their growth threads (the newest thread wins); null if none.
 */
async function communityOfRoom(tokens, roomId) {
  const call = (path) => withToken(tokens, (token) => apiRequest({}, token, "GET", path));
  const [{ communities }, room] = await Promise.all([
    call("/api/communities"),
    call(`/api/rooms/${encodeURIComponent(roomId)}`).catch(() => ({ members: [] })),
  ]);
  if (communities.length === 1) return communities[0].id;
  const newest = await Promise.all(
    (room.members ?? []).slice(0, 10).map(async (member) => {
      const query = new URLSearchParams({ owner: member.user_id, limit: "1" });
      return (await call(`/api/threads?${query}`).catch(() => ({ threads: [] }))).threads[0];
    }),
  );
  const found = newest.filter(Boolean).sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  return found[0]?.community_id ?? null;
}

function showJoinForm(community) {
  $("join").hidden = false;
  setIndicator("idle", "Not connected");
  if (community) $("join-community").value = community;
  $("join-token").focus();
}

/** A deletion answered 404 found it gone already (deleted in another tab): done, not an error. */
function gone(err) {
  if (err.status === 404) return null;
  throw err;
}

function feedLink(tokens, target) {
  return `feed.html?${new URLSearchParams({ ...target, ...tokens.linkParams })}`;
}

class FeedPage {
  constructor(tokens, feed) {
    this.tokens = tokens;
    this.feed = feed;
    const claims = tokenClaims(tokens.token);
    this.me = typeof claims.sub === "string" ? { user_id: claims.sub, name: claims.name } : null;
    this.name = feed?.community ? "Community feed" : "Following";
    this.entries = new Map(); // post id -> {post, view, asOf, reactionSeq, counted, ...}
    this.pending = []; // entries of new posts not shown yet, oldest first
    this.nextBefore = null;
    this.hasMore = false;
    this.loadingOlder = false;
    this.generation = 0; // bumped by a reload: answers to older requests are dropped
    this.buffer = null; // events held while the first page reloads
    this.wake = null; // ends the wait before the next attempt to load the first page
    this.list = $("feed-list");
    this.follows = new Follows(
      (method, path) => this.api(method, path),
      (message) => {
        $("follow-error").textContent = message;
      },
    );
    this.follows.changed.addEventListener("change", () => this.updateEnd());
    this.names = new Map(); // community id -> name
  }

  async start() {
    this.nav = this.showNav();
    if (this.feed === null) {
      $("choose").hidden = false;
      setIndicator("idle", "Choose a feed");
      return;
    }
    $("feed").hidden = false;
    this.follows.load().catch((err) => {
      $("follow-error").textContent = `What you follow could not be loaded: ${err.message}`;
    });
    this.nav.then(() => this.startAuthoring());
    $("new-posts").addEventListener("click", () => this.reveal());
    $("load-older").addEventListener("click", () => this.loadOlder());
    $("retry").addEventListener("click", () => {
      this.wake?.();
      this.conn?.retryNow();
    });
    this.observer = new IntersectionObserver(
      (records) => {
        if (records.some((r) => r.isIntersecting)) this.loadOlder();
      },
      { rootMargin: NEAR_END },
    );
    this.updateTitle();
    const page = await this.loadFirstPage();
    if (page === null) return;
    this.render(page);
    this.connect(page.cursor);
  }

  // Writing and following ------------------------------------------------------------------

  /** The community's Follow button, and the composer (posts, and threads on a community). */
  startAuthoring() {
    const community = this.feed.community ?? null;
    if (community) {
      const name = this.names.get(community) ?? "this community";
      const actions = $("feed-actions");
      actions.replaceChildren(
        this.follows.button("communities", community, "", "follow follow-community", `the community ${name}`),
      );
      actions.hidden = false;
    }
    if (this.me === null) return; // a token without a user (a service's) writes nothing here
    this.composer = new Composer({
      api: (...args) => this.api(...args),
      community,
      names: this.names,
      onPosted: (post) => this.showOwnPost(post),
      announce: (text) => {
        $("announcer").textContent = text;
      },
    });
    this.composer.start();
  }

  /** My new post shows at once, above anything waiting, when this feed lists it. */
  showOwnPost(post) {
    const here = this.feed.community
      ? post.community_id === this.feed.community
      : this.follows.matches(post);
    if (!here) {
      $("announcer").textContent = "Posted. It shows in its community's feed.";
      return;
    }
    if (!this.entries.has(post.id)) this.pending.push(this.entry(post, post.cursor));
    this.reveal({ quiet: true });
    $("announcer").textContent = "Your post is published.";
  }

  async deletePost(entry) {
    await this.api("DELETE", `/api/posts/${encodeURIComponent(entry.post.id)}`).catch(gone);
    this.remove(entry.post.id);
    $("announcer").textContent = "Post deleted.";
  }

  async deleteComment(entry, commentId) {
    const path = `/api/posts/${encodeURIComponent(entry.post.id)}/comments/${encodeURIComponent(commentId)}`;
    const done = await this.api("DELETE", path).catch(gone);
    this.acceptCommentDelete(entry, commentId, done?.cursor ?? 0);
    $("announcer").textContent = "Comment deleted.";
  }

  // The socket ---------------------------------------------------------------------------

  connect(cursor) {
    const conn = new FeedSocket(this.feed, { tokens: this.tokens });
    this.conn = conn;
    conn.addEventListener("state", ({ detail }) => this.showState(detail));
    conn.addEventListener("welcome", ({ detail: { frame, first } }) => {
      // A later socket that could not resume (another database, or a cursor the server
      // cannot honour) may have missed events: read the feed again.
      if (!first && !frame.recovered) this.reload();
    });
    conn.addEventListener("event", ({ detail: frame }) => {
      if (this.buffer !== null) this.buffer.push(frame);
      else this.apply(frame);
    });
    conn.start(cursor);
  }

  /** The connection indicator for the socket's state. */
  showState(detail) {
    const { state } = detail;
    $("feed").dataset.connection = state;
    showConnectionState(detail, "Offline: the feed catches up when you are back online.");
    if (state === "stopped") this.fatal(detail.message ?? "Disconnected from the feed.");
  }

  /** One feed event, in seq order, each once. */
  apply(frame) {
    switch (frame.type) {
      case "feed.post":
        if (frame.post && !this.entries.has(frame.post.id)) {
          const entry = this.entry(frame.post, frame.seq);
          this.pending.push(entry);
          // An empty feed has nothing to move: the first post shows at once.
          if (this.list.childElementCount === 0 && this.pending.length === 1) {
            this.reveal({ quiet: true });
          } else {
            this.updatePending();
          }
        }
        break;
      case "feed.comment": {
        const entry = this.entries.get(frame.post_id);
        // A comment deleted since keeps only its id: nothing to show.
        if (entry && frame.comment && !frame.comment.deleted) {
          this.acceptComment(entry, frame.comment, frame.seq);
        }
        break;
      }
      case "feed.comment.delete": {
        const entry = this.entries.get(frame.post_id);
        if (entry) this.acceptCommentDelete(entry, frame.comment_id, frame.seq);
        break;
      }
      case "feed.reaction": {
        const entry = this.entries.get(frame.post_id);
        // Absolute counts: a newer event replaces; what the page was read at already counts.
        if (entry && frame.seq > entry.reactionSeq) {
          entry.reactionSeq = frame.seq;
          entry.post.reactions = frame.counts;
          entry.view.setReactions(frame.counts);
        }
        break;
      }
      case "feed.delete":
        this.remove(frame.post_id);
        break;
      default:
        break;
    }
  }

  // Posts --------------------------------------------------------------------------------

  /** A post's state; `asOf` is the feed seq its counts reflect. */
  entry(post, asOf) {
    const entry = {
      post,
      asOf,
      reactionSeq: asOf,
      counted: new Set(), // comments counted after asOf (a live event and our own answer)
      uncounted: new Set(), // comments deleted after asOf, taken off the count once
      commentsLoaded: false,
      // Comments accepted while the first page of comments was on its way (a reply to the
      // page's own POST, or a live event): that page may have been read before them.
      early: new Map(),
      commentsAfter: null,
      commentsMore: false,
      view: null,
    };
    entry.view = new PostView(post, this.me, {
      react: (kind, on) => this.react(entry, kind, on),
      toggleComments: () => this.toggleComments(entry),
      moreComments: () => this.loadComments(entry),
      comment: (body, key) => this.comment(entry, body, key),
      deletePost: () => this.deletePost(entry),
      deleteComment: (id) => this.deleteComment(entry, id),
    }, this.follows);
    this.entries.set(post.id, entry);
    return entry;
  }

  /**
   * Show the waiting new posts at the top, newest first. Asked for (the bar): move there and
   * focus the newest. `quiet` (an empty feed's first post): show it, move nothing.
   */
  reveal({ quiet = false } = {}) {
    const waiting = this.pending;
    if (waiting.length === 0) return;
    this.pending = [];
    for (const entry of waiting) this.list.prepend(entry.view.item);
    this.updatePending();
    this.updateEnd();
    if (quiet) return;
    window.scrollTo({ top: 0 });
    this.list.firstElementChild?.focus({ preventScroll: true });
    $("announcer").textContent = `Showing ${waiting.length} new post${waiting.length === 1 ? "" : "s"}.`;
  }

  remove(postId) {
    const entry = this.entries.get(postId);
    if (!entry) return;
    this.entries.delete(postId);
    const waiting = this.pending.indexOf(entry);
    if (waiting >= 0) {
      this.pending.splice(waiting, 1);
      this.updatePending();
      return;
    }
    const item = entry.view.item;
    if (item.contains(document.activeElement)) {
      // Keep keyboard users in the list, not at the top of the page.
      (item.nextElementSibling ?? item.previousElementSibling ?? $("feed-heading")).focus();
    }
    item.remove();
    this.updateEnd();
  }

  updatePending() {
    const n = this.pending.length;
    const bar = $("new-posts");
    bar.hidden = n === 0;
    const text = n === 1 ? "1 new post" : `${n} new posts`;
    $("new-posts-text").textContent = text;
    if (n > 0) $("announcer").textContent = text;
    this.updateTitle();
    this.updateEnd();
  }

  updateTitle() {
    const n = this.pending.length;
    document.title = `${n > 0 ? `(${n}) ` : ""}${this.name} · Menteo`;
  }

  updateEnd() {
    const empty = this.list.childElementCount === 0;
    const none = empty && !this.hasMore && this.pending.length === 0;
    // The Following tab, empty because nothing is followed, says what to follow and where.
    const nothingFollowed = !!this.feed?.following && this.follows.loaded && !this.follows.any;
    $("following-empty").hidden = !(none && nothingFollowed);
    $("feed-empty").hidden = !(none && !nothingFollowed);
    $("feed-empty").textContent = this.feed?.following
      ? "No posts yet from what you follow."
      : "No posts in this feed yet.";
    $("load-older").hidden = !this.hasMore;
    $("feed-end").hidden = this.hasMore || empty;
  }

  // Pages ----------------------------------------------------------------------------------

  async fetchPage(before) {
    const query = feedQuery(this.feed, { limit: PAGE, before });
    return this.api("GET", `/api/feed?${query}`);
  }

  /** The newest page, tried again with backoff while the server cannot be reached. */
  async loadFirstPage() {
    for (let attempt = 0; ; attempt++) {
      try {
        setIndicator(attempt === 0 ? "connecting" : "reconnecting", "Loading the feed…");
        return await this.fetchPage(null);
      } catch (err) {
        if (!(err instanceof ApiError || err instanceof TokenError) || !err.transient) {
          setIndicator("stopped", "Disconnected");
          this.fatal(err.message);
          return null;
        }
        const delay = err.retryAfter ? err.retryAfter * 1000 : backoffDelay(attempt + 1); // a failed load: never at once
        const wait = Math.max(1, Math.round(delay / 1000));
        setIndicator("reconnecting", `Cannot load the feed. Next try in ${wait} s.`, { retry: true });
        await new Promise((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, delay);
        });
        this.wake = null;
      }
    }
  }

  /** Replace what is shown with `page` (the newest posts). */
  render(page) {
    this.entries.clear();
    this.pending = [];
    this.list.replaceChildren();
    for (const post of page.posts) this.list.append(this.entry(post, page.cursor).view.item);
    this.nextBefore = page.next_before;
    this.hasMore = page.has_more;
    this.updatePending();
    this.updateEnd();
    this.observer.observe($("feed-more"));
  }

  /** Read the feed again (after a socket that could not resume), applying held events. */
  async reload() {
    if (this.buffer !== null) return;
    this.buffer = [];
    const generation = ++this.generation;
    const page = await this.loadFirstPage(); // never throws: null when refused for good
    const held = this.buffer;
    this.buffer = null;
    if (page === null || generation !== this.generation) return;
    // Posts that arrived after the page stay waiting under the bar.
    const keep = this.pending.filter((e) => e.post.cursor > page.cursor);
    this.render(page);
    for (const entry of keep) {
      if (!this.entries.has(entry.post.id)) {
        this.entries.set(entry.post.id, entry);
        this.pending.push(entry);
      }
    }
    for (const frame of held) if (frame.seq > page.cursor) this.apply(frame);
    this.updatePending();
    // Loading the page used the indicator: show the socket's state again.
    if (this.conn.state !== "stopped") this.showState({ state: this.conn.state });
  }

  async loadOlder() {
    if (this.loadingOlder || !this.hasMore || this.buffer !== null) return;
    this.loadingOlder = true;
    const generation = this.generation;
    const button = $("load-older");
    button.disabled = true;
    button.textContent = "Loading older posts…";
    let failed = false;
    try {
      const page = await this.fetchPage(this.nextBefore);
      if (generation !== this.generation) return;
      for (const post of page.posts) {
        if (!this.entries.has(post.id)) this.list.append(this.entry(post, page.cursor).view.item);
      }
      this.nextBefore = page.next_before;
      this.hasMore = page.has_more;
      $("feed-more-error").textContent = "";
    } catch (err) {
      failed = true;
      $("feed-more-error").textContent = err.message;
    } finally {
      this.loadingOlder = false;
      button.disabled = false;
      button.textContent = "Load older posts";
      this.updateEnd();
    }
    if (!failed && this.hasMore) {
      // Observing again reports at once whether the end is still near (a short page).
      const sentinel = $("feed-more");
      this.observer.unobserve(sentinel);
      this.observer.observe(sentinel);
    }
  }

  // Reactions and comments ---------------------------------------------------------------

  async react(entry, kind, on) {
    const view = entry.view;
    view.setMine(kind, on); // the counts follow in the live feed.reaction event
    view.reactionError.textContent = "";
    try {
      const path = `/api/posts/${encodeURIComponent(entry.post.id)}/reactions/${kind}`;
      await this.api(on ? "PUT" : "DELETE", path);
    } catch (err) {
      view.setMine(kind, !on);
      view.reactionError.textContent = err.message;
    }
  }

  acceptComment(entry, comment, seq) {
    if (seq <= entry.asOf || entry.counted.has(comment.id)) return; // counted already
    entry.counted.add(comment.id);
    entry.post.comments = (entry.post.comments ?? 0) + 1;
    entry.view.setCommentCount(entry.post.comments);
    // Shown when every earlier comment is; otherwise "Show more comments" brings it.
    if (entry.commentsLoaded && !entry.commentsMore) entry.view.addComment(comment);
    else if (!entry.commentsLoaded) entry.early.set(comment.id, comment);
  }

  acceptCommentDelete(entry, commentId, seq) {
    entry.early.delete(commentId);
    entry.view.removeComment(commentId);
    // Counted in the page already (seq <= asOf), or taken off once before.
    if (seq <= entry.asOf || entry.uncounted.has(commentId)) return;
    entry.uncounted.add(commentId);
    entry.post.comments = Math.max(0, (entry.post.comments ?? 0) - 1);
    entry.view.setCommentCount(entry.post.comments);
  }

  toggleComments(entry) {
    const open = !entry.view.expanded;
    entry.view.setExpanded(open);
    if (open && !entry.commentsLoaded) this.loadComments(entry);
    if (open) entry.view.commentInput.focus();
  }

  async loadComments(entry) {
    if (entry.loadingComments) return;
    entry.loadingComments = true;
    const query = new URLSearchParams({ limit: String(COMMENTS_PAGE) });
    if (entry.commentsAfter !== null) query.set("after", String(entry.commentsAfter));
    try {
      const path = `/api/posts/${encodeURIComponent(entry.post.id)}?${query}`;
      const data = await this.api("GET", path);
      for (const comment of data.comments) entry.view.addComment(comment);
      // What arrived while this page was read, shown after it (the view skips any it holds);
      // with more pages to come, only the reader's own, as a comment posted later would be.
      for (const comment of entry.early.values()) {
        if (!data.has_more || comment.author?.user_id === this.me?.user_id) entry.view.addComment(comment);
      }
      entry.early.clear();
      if (data.comments.length > 0) entry.commentsAfter = data.comments.at(-1).cursor;
      entry.commentsLoaded = true;
      entry.commentsMore = data.has_more;
      entry.view.setMoreComments(data.has_more);
    } catch (err) {
      if (err.status === 404) this.remove(entry.post.id);
      else entry.view.form.querySelector(".error").textContent = err.message;
    } finally {
      entry.loadingComments = false;
    }
  }

  /** `key` is the draft's Idempotency-Key: sending the same draft again stores it once. */
  async comment(entry, body, key) {
    const path = `/api/posts/${encodeURIComponent(entry.post.id)}/comments`;
    const comment = await this.api("POST", path, { body }, { "Idempotency-Key": key });
    this.acceptComment(entry, comment, comment.cursor);
    if (entry.commentsLoaded && entry.commentsMore) entry.view.addComment(comment);
  }

  // Around the feed ----------------------------------------------------------------------

  /** A REST call with the page's token (renewed and tried again once after a 401). */
  api(method, path, body, headers) {
    return withToken(this.tokens, (token) => apiRequest({}, token, method, path, body, headers));
  }

  /** Links to the reader's feeds and rooms (the room page takes the same token or URL). */
  async showNav() {
    const [communities, rooms] = await Promise.allSettled([
      this.api("GET", "/api/communities"),
      this.api("GET", "/api/rooms"),
    ]);
    const feeds = $("feeds");
    const targets = [{ label: "Following", target: { following: "1" }, current: !!this.feed?.following }];
    for (const c of communities.value?.communities ?? []) {
      this.names.set(c.id, c.name);
      const current = this.feed?.community === c.id;
      if (current) this.name = c.name;
      targets.push({ label: c.name, target: { community: c.id }, current });
    }
    feeds.replaceChildren(
      ...targets.map(({ label, target, current }) => {
        const item = el("li");
        const link = el("a", null, label);
        link.href = feedLink(this.tokens, target);
        if (current) link.setAttribute("aria-current", "page");
        item.append(link);
        return item;
      }),
    );
    const roomList = $("rooms");
    roomList.replaceChildren(
      ...(rooms.value?.rooms ?? []).map((room) => {
        const item = el("li");
        const link = el("a", null, room.title);
        link.href = `./?${new URLSearchParams({ room: room.id, ...this.tokens.linkParams })}`;
        item.append(link);
        return item;
      }),
    );
    $("rooms-nav").hidden = roomList.childElementCount === 0;
    $("choose-list").replaceChildren(...[...feeds.children].map((li) => li.cloneNode(true)));
    $("following-communities").replaceChildren(
      ...[...feeds.children].slice(1).map((li) => li.cloneNode(true)),
    );
    $("feed-title").textContent = this.feed === null ? "Menteo feeds" : this.name;
    this.updateTitle();
  }

  fatal(message) {
    const banner = $("fatal");
    banner.textContent = message;
    banner.hidden = false;
  }
}

main();
