// The room page: the SDK's RoomClient (clients/js, served at /sdk/: the socket, resume, the
// durable outboxes, presence) shown by the page's own modules: the chat log, presence, the
// composer and the room features (checklist, notes).
//
// The page takes ?room=ID&token=T from its URL; without them it shows a form to paste them.
// With &token_url=URL (and with or without a token) it fetches its tokens from URL and renews
// them before they expire (token.js).

import { RoomClient } from "../sdk/room.js";
import { tokenClaims } from "../sdk/token.js";
import { ChatView } from "./chat.js";
import { checklistFeature } from "./checklistpanel.js";
import { Composer } from "./composer.js";
import { byId as $ } from "./dom.js";
import { setIndicator } from "./indicator.js";
import { notesFeature } from "./notes.js";
import { PresenceView } from "./presence.js";
import { ChatPanel } from "./roomchat.js";
import { RoomFeatures } from "./roomfeatures.js";
import { RoomStatus } from "./roomstatus.js";
import { PageTokens } from "./token.js";

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
    tokens = await PageTokens.fromQuery(params);
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
  // The feed page takes the same token, or token URL, and opens the room's community.
  $("feed-link").href = `feed.html?${new URLSearchParams({ room: roomId, ...tokens.linkParams })}`;
  $("feed-link").hidden = false;

  const room = new RoomClient({ roomId, tokens });
  const view = new ChatView({
    list: $("messages"),
    scroller: $("messages-scroll"),
    announcer: $("announcer"),
  });
  new PresenceView(room.presence, {
    membersList: $("members"),
    hereList: $("presence"),
    typingLine: $("typing"),
  });
  const me = claimedUser(token);
  if (me !== null) view.setMe(me);
  const features = new RoomFeatures(FEATURES, { roomId, tokens, me, room });
  features.run("mount");

  const chat = new ChatPanel(view, room, $("outbox-note"));
  chat.showQueued();
  const composer = new Composer(room);
  const status = new RoomStatus(room, { welcomed: () => chat.welcomed, composer });
  listen(room, { chat, composer, status, features });
  room.start();
  composer.focus();
}

/** The room's events, to every part of the page in turn. */
function listen(room, { chat, composer, status, features }) {
  room.on("state", (detail) => {
    status.onState(detail);
    features.run("onState", detail.state);
  });
  room.on("welcome", ({ frame, epochChanged }) => {
    features.ctx.me = frame.you;
    chat.onWelcome(frame, epochChanged);
    chat.showHistory(frame);
    composer.enable();
    features.run("onWelcome", frame);
  });
  room.on("frame", (frame) => {
    chat.onFrame(frame);
    features.run("onFrame", frame);
  });
}

main();
