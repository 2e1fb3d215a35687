// The room page: wires the socket, the outbox, the chat log, presence and the composer.
//
// The page takes ?room=ID&token=T from its URL; without them it shows a form to paste them.

import { ChatView } from "./chat.js";
import { checklistFeature } from "./checklistpanel.js";
import { RoomConnection } from "./connection.js";
import { byId as $ } from "./dom.js";
import { notesFeature } from "./notes.js";
import { Outbox, outboxKey, tokenClaims } from "./outbox.js";
import { PresenceView } from "./presence.js";
import { setIndicator, showConnectionState } from "./reconnecting.js";

const MAX_BODY = 4000; // characters (code points), as the server counts them
const IN_FLIGHT = 10; // outbox entries sent and not yet acked, at most (server rate limit)
const RETRY_SEND_MS = 2000; // after an "unavailable" or "rate_limited" error
const TYPING_REFRESH_MS = 3000; // "still typing" is repeated this often while typing
const TYPING_IDLE_MS = 4000; // no keystroke for this long: stopped typing

// Room features -------------------------------------------------------------------------
// Panels plug in here: each feature is an object
// {name, mount(ctx), onWelcome(frame, ctx), onFrame(frame, ctx), onState(state, ctx)}, all
// optional. mount runs once, before the socket opens; onWelcome runs for every new socket
// (resync state when frame.recovered is false); onFrame sees every frame after the welcome,
// events already deduplicated by seq (acks and errors included); onState sees every change
// of the connection's state ("live", "reconnecting", "offline", ...).
//
// ctx: {roomId, token, me, panels, send(frame), submit(frame), pendingOps(), opsDurable(),
// live()}. `panels` is the container (#panels): a feature appends its section and unhides
// it. `send` is fire and forget (false when not live). `submit` is for durable operations
// (checklist.*): the frame is kept in a localStorage outbox until acked, sent on the same
// path as chat messages and resent with the same id after a reconnect or a reload; it
// returns the frame's id. `pendingOps()` lists those not acked yet (after a reload too).
// Chat and presence are built in below.
const FEATURES = [checklistFeature, notesFeature];

function main() {
  const params = new URLSearchParams(location.search);
  const roomId = params.get("room")?.trim();
  const token = params.get("token")?.trim();
  if (!roomId || !token) {
    showJoinForm(roomId ?? "");
    return;
  }
  openRoom(roomId, token);
}

function showJoinForm(roomId) {
  $("join").hidden = false;
  $("room").hidden = true;
  setIndicator("idle", "Not connected");
  if (roomId) $("join-room").value = roomId;
  ($("join-room").value ? $("join-token") : $("join-room")).focus();
}

function openRoom(roomId, token) {
  $("join").hidden = true;
  $("room").hidden = false;
  // The feed page takes the same token (it lists the communities to choose from).
  $("feed-link").href = `feed.html?${new URLSearchParams({ token })}`;
  $("feed-link").hidden = false;

  const claims = tokenClaims(token);
  const input = $("composer-input");
  const sendButton = $("send");
  const outbox = new Outbox(outboxKey(roomId, token));
  const ops = new Outbox(outboxKey(roomId, token, "ops"), undefined, { kind: "ops" });
  const chat = new ChatView({
    list: $("messages"),
    scroller: $("messages-scroll"),
    announcer: $("announcer"),
  });
  const presence = new PresenceView({
    membersList: $("members"),
    hereList: $("presence"),
    typingLine: $("typing"),
  });
  const conn = new RoomConnection(roomId, token);
  const inFlight = new Set(); // outbox ids sent on the current socket, not yet acked
  let roomTitle = "Menteo room";
  let retrySendTimer = null;
  let welcomed = false; // at least one welcome: the room is known

  // Who the token says I am, until the welcome says it for sure (ctx.me = welcome.you).
  const claimed =
    typeof claims.sub === "string" ? { user_id: claims.sub, name: claims.name || claims.sub } : null;
  if (claimed !== null) chat.setMe(claimed);
  const ctx = {
    roomId,
    token,
    me: claimed,
    panels: $("panels"),
    send: (frame) => conn.send(frame),
    submit: (frame) => {
      const entry = ops.addOp(frame); // stored before it is sent, like a chat message
      flush();
      return entry.id;
    },
    pendingOps: () => ops.list().map((e) => e.op),
    opsDurable: () => ops.durable,
    live: () => conn.live,
  };
  /** Run a feature's hook; a panel that throws is reported, and chat goes on. */
  function each(hook, ...args) {
    for (const feature of FEATURES) {
      try {
        feature[hook]?.(...args, ctx);
      } catch (err) {
        reportError(err);
      }
    }
  }
  each("mount");

  // Outbox -------------------------------------------------------------------------------
  const pendingStatus = () => (conn.live ? "sending" : "queued");
  for (const entry of outbox.list()) chat.showPending(entry, pendingStatus());
  updateOutboxNote();

  function updateOutboxNote() {
    const note = $("outbox-note");
    const n = outbox.size;
    const where = outbox.durable ? "" : " (kept in this tab only: storage is unavailable)";
    note.textContent = n === 0 ? "" : `${n} message${n === 1 ? "" : "s"} waiting to be sent${where}.`;
  }

  /**
   * Send what the outboxes hold (chat messages and checklist operations, merged by the time
   * they were written, each outbox in its own order), a few at a time; acks make room for
   * more.
   */
  function flush() {
    if (!conn.live) return;
    const messages = outbox.list();
    const operations = ops.list();
    let m = 0;
    let o = 0;
    while (m < messages.length || o < operations.length) {
      if (inFlight.size >= IN_FLIGHT) break;
      const takeOp =
        m >= messages.length ||
        (o < operations.length && operations[o].created < messages[m].created);
      const entry = takeOp ? operations[o++] : messages[m++];
      if (inFlight.has(entry.id)) continue;
      const frame = takeOp ? entry.op : { type: "chat.send", id: entry.id, body: entry.body };
      if (!conn.send(frame)) break;
      inFlight.add(entry.id);
      if (!takeOp) chat.showPending(entry, "sending");
    }
  }

  function scheduleFlush() {
    clearTimeout(retrySendTimer);
    retrySendTimer = setTimeout(flush, RETRY_SEND_MS);
  }

  function delivered(id) {
    inFlight.delete(id);
    if (outbox.remove(id)) updateOutboxNote();
  }

  outbox.addEventListener("change", () => {
    // Another tab of the same user added or delivered messages.
    const ids = new Set(outbox.list().map((e) => e.id));
    for (const entry of outbox.list()) chat.showPending(entry, pendingStatus());
    for (const id of chat.pendingIds()) {
      if (!ids.has(id) && chat.pendingStatus(id) !== "failed") chat.setPendingStatus(id, "sent");
    }
    updateOutboxNote();
    flush();
  });
  ops.addEventListener("change", () => flush()); // another tab of this user added some

  /** A chat.message from the room (history or live). */
  function acceptMessage(frame, live) {
    if (chat.isMine(frame) && frame.id) delivered(frame.id);
    chat.add(frame, { live });
    if (live) presence.typing(frame.author?.user_id, false);
  }

  function onAck({ id, seq }) {
    if (ops.has(id)) {
      inFlight.delete(id);
      ops.remove(id);
      flush();
      return;
    }
    if (!inFlight.has(id) && !outbox.has(id)) return;
    delivered(id);
    if (!chat.has(seq)) chat.setPendingStatus(id, "sent"); // the message itself follows
    flush();
  }

  function onError({ id, code, message }) {
    if (id && (inFlight.has(id) || outbox.has(id) || ops.has(id))) {
      inFlight.delete(id);
      if (code === "unavailable" || code === "rate_limited") {
        // Not stored: the same id is sent again in a moment.
        scheduleFlush();
        return;
      }
      // Refused for good (invalid, conflict, not_found, forbidden): sending it again cannot
      // help. A refused checklist operation is shown by its panel (it sees this frame too).
      if (ops.remove(id)) {
        flush();
        return;
      }
      outbox.remove(id);
      chat.setPendingStatus(id, "failed", message);
      updateOutboxNote();
      return;
    }
    if (code === "rate_limited") {
      // The server drops a frame over the rate limit without saying which (id null): send
      // again, in a moment, whatever is not acked. Repeats are safe (same id, same ack).
      inFlight.clear();
      scheduleFlush();
      return;
    }
    console.warn("room error", code, message);
  }

  // Socket -------------------------------------------------------------------------------
  conn.addEventListener("state", ({ detail }) => {
    const { state } = detail;
    $("room").dataset.connection = state; // presence is dimmed while it may be out of date
    showConnectionState(detail, "Offline: messages are kept and sent when you are back online.");
    if (state === "stopped") showFatal(detail.message ?? "Disconnected from the room.");
    if (state !== "live") {
      inFlight.clear();
      for (const id of chat.pendingIds()) {
        if (outbox.has(id)) chat.setPendingStatus(id, "queued");
      }
    }
    each("onState", state);
  });

  conn.addEventListener("welcome", ({ detail: { frame, epochChanged } }) => {
    // Not recovered on a reconnect (a new epoch, or a since the server could not honour):
    // the history in this frame replaces what is shown (docs/protocol.md, "Resuming").
    if (welcomed && (epochChanged || !frame.recovered)) chat.reset();
    welcomed = true;
    ctx.me = frame.you;
    chat.setMe(frame.you);
    roomTitle = frame.room.title || "Menteo room";
    $("room-title").textContent = roomTitle;
    updateTitle();
    presence.setRoom(frame.room, frame.you);
    presence.setOnline(frame.presence ?? []);
    for (const message of frame.history ?? []) acceptMessage(message, false);
    if (!frame.recovered) chat.scrollToEnd();
    input.disabled = false;
    sendButton.disabled = false;
    inFlight.clear();
    flush();
    each("onWelcome", frame);
  });

  conn.addEventListener("frame", ({ detail: frame }) => {
    switch (frame.type) {
      case "chat.message":
        acceptMessage(frame, true);
        break;
      case "ack":
        onAck(frame);
        break;
      case "error":
        onError(frame);
        break;
      case "presence.join":
        presence.join(frame);
        break;
      case "presence.leave":
        presence.leave(frame.user_id);
        break;
      case "presence.sync":
        presence.sync(frame.presence);
        break;
      case "presence.typing":
        presence.typing(frame.user_id, frame.active === true);
        break;
      default:
        break;
    }
    each("onFrame", frame);
  });

  $("retry").addEventListener("click", () => conn.retryNow());

  function showFatal(message) {
    const banner = $("fatal");
    const other = document.createElement("a");
    other.href = "./";
    other.textContent = "Open another room";
    banner.replaceChildren(document.createTextNode(`${message} `), other);
    banner.hidden = false;
    // Refused before anything was shown: there is no room to show. Refused later (an
    // expired token): what was said stays readable.
    if (!welcomed) $("room").hidden = true;
    input.disabled = true;
    sendButton.disabled = true;
    stopTyping();
  }

  // Unread count in the tab title ---------------------------------------------------------
  function updateTitle() {
    const n = chat.unread;
    document.title = n > 0 ? `(${n}) ${roomTitle} · Menteo` : `${roomTitle} · Menteo`;
  }
  chat.addEventListener("unread", updateTitle);
  document.addEventListener("visibilitychange", () => chat.setHidden(document.hidden));
  chat.setHidden(document.hidden);

  // Composer -----------------------------------------------------------------------------
  let typingActive = false;
  let typingSentAt = 0;
  let typingIdle = null;

  function sendTyping(active) {
    typingActive = active;
    typingSentAt = Date.now();
    conn.send({ type: "typing", active });
  }

  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingActive) sendTyping(false);
  }

  input.addEventListener("input", () => {
    setComposerError("");
    if (input.value.trim() === "") {
      stopTyping();
      return;
    }
    if (!typingActive || Date.now() - typingSentAt > TYPING_REFRESH_MS) sendTyping(true);
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  });

  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a new line; never while an input method is composing.
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
      return;
    }
    event.preventDefault();
    submit();
  });

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  function setComposerError(text) {
    $("composer-error").textContent = text;
    input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  function submit() {
    if (input.disabled) return;
    const body = input.value;
    if (body.trim() === "") return;
    const length = [...body].length;
    if (length > MAX_BODY) {
      setComposerError(`Too long: ${length} characters, at most ${MAX_BODY}.`);
      return;
    }
    const entry = outbox.add(body); // stored before it is sent: a crash loses nothing
    chat.showPending(entry, pendingStatus());
    updateOutboxNote();
    input.value = "";
    stopTyping();
    flush();
    input.focus();
  }

  conn.start();
  input.focus();
}

main();
