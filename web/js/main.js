// The room page: wires the socket, the outbox, the chat log, presence, the composer and the
// room features (checklist, notes), each in its own module.
//
// The page takes ?room=ID&token=T from its URL; without them it shows a form to paste them.
// With &token_url=URL (and with or without a token) it fetches its tokens from URL and renews
// them before they expire (token.js).

import { ChatView } from "./chat.js";
import { checklistFeature } from "./checklistpanel.js";
import { Composer } from "./composer.js";
import { RoomConnection } from "./connection.js";
import { byId as $ } from "./dom.js";
import { notesFeature } from "./notes.js";
import { Outbox, outboxKey, tokenClaims } from "./outbox.js";
import { PresenceView } from "./presence.js";
import { setIndicator } from "./reconnecting.js";
import { ChatPanel } from "./roomchat.js";
import { RoomFeatures } from "./roomfeatures.js";
import { RoomSender } from "./roomsender.js";
import { RoomStatus } from "./roomstatus.js";
import { TokenSource } from "./token.js";

// The panels that plug into the page (roomfeatures.js says what a feature is).
const FEATURES = [checklistFeature, notesFeature];

async function main() {
  const params = new URLSearchParams(location.search);
  const roomId = params.get("room")?.trim();
  const access = params.get("token")?.trim() || params.get("token_url")?.trim();
  if (!roomId || !access) {
    showJoinForm(roomId ?? "");
    return;
  }
  let tokens;
  try {
    setIndicator("connecting", "Connecting…");
    tokens = await TokenSource.fromQuery(params);
  } catch (err) {
    showRefused(err.message); // a token_url of another site, or one that said no
    return;
  }
  openRoom(roomId, tokens);
}

function showRefused(message) {
  $("room").hidden = true;
  setIndicator("stopped", "Disconnected");
  $("fatal").textContent = message;
  $("fatal").hidden = false;
}

function showJoinForm(roomId) {
  $("join").hidden = false;
  $("room").hidden = true;
  setIndicator("idle", "Not connected");
  if (roomId) $("join-room").value = roomId;
  ($("join-room").value ? $("join-token") : $("join-room")).focus();
}

/** Who the token says I am ({user_id, name}), or null. */
function claimedUser(token) {
  const claims = tokenClaims(token);
  return typeof claims.sub === "string" ? { user_id: claims.sub, name: claims.name || claims.sub } : null;
}

function openRoom(roomId, tokens) {
  const token = tokens.token; // who I am: the same person however often it is renewed
  $("join").hidden = true;
  $("room").hidden = false;
  // The feed page takes the same token, or token URL (it lists the communities to choose from).
  $("feed-link").href = `feed.html?${new URLSearchParams(tokens.linkParams)}`;
  $("feed-link").hidden = false;

  const conn = new RoomConnection(roomId, tokens);
  const view = new ChatView({
    list: $("messages"),
    scroller: $("messages-scroll"),
    announcer: $("announcer"),
  });
  const sender = new RoomSender({
    conn,
    outbox: new Outbox(outboxKey(roomId, token)),
    ops: new Outbox(outboxKey(roomId, token, "ops"), undefined, { kind: "ops" }),
    chat: view,
    note: $("outbox-note"),
  });
  const presence = new PresenceView({
    membersList: $("members"),
    hereList: $("presence"),
    typingLine: $("typing"),
  });
  const me = claimedUser(token);
  if (me !== null) view.setMe(me);
  const features = new RoomFeatures(FEATURES, { roomId, tokens, me, conn, sender });
  features.run("mount");
  sender.showQueued();

  const chat = new ChatPanel(view, sender);
  const composer = new Composer(conn, sender);
  const status = new RoomStatus(conn, { welcomed: () => chat.welcomed, composer });
  listen(conn, { chat, presence, sender, composer, status, features });
  conn.start();
  composer.focus();
}

/** The room socket's events, to every part of the page in turn. */
function listen(conn, { chat, presence, sender, composer, status, features }) {
  conn.addEventListener("state", ({ detail }) => {
    status.onState(detail);
    sender.onState(detail.state);
    features.run("onState", detail.state);
  });
  conn.addEventListener("welcome", ({ detail: { frame, epochChanged } }) => {
    features.ctx.me = frame.you;
    chat.onWelcome(frame, epochChanged);
    presence.onWelcome(frame);
    chat.showHistory(frame);
    composer.enable();
    sender.onWelcome();
    features.run("onWelcome", frame);
  });
  conn.addEventListener("frame", ({ detail: frame }) => {
    sender.onFrame(frame); // acks and errors
    chat.onFrame(frame);
    presence.onFrame(frame);
    features.run("onFrame", frame);
  });
}

main();
