// The room page: the SDK's RoomClient (clients/js, served at /sdk/: the socket, resume, the
// durable outboxes, presence) shown by the page's own modules: the chat log, presence, the
// composer and the room features (checklist, notes).
//
// The page takes ?room=ID&token=T from its URL; without them it shows a form to paste them.
// With &token_url=URL (and with or without a token) it fetches its tokens from URL and renews
// them before they expire (token.js).
//
// Beside the room: the list of my rooms (rooms.js, the inbox socket) as a sidebar on wide
// screens, and on a phone the room's views as tabs (roomtabs.js); the tab's title counts what
// is unread here (while the tab is hidden) and in my other rooms.

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
import { RoomListView, countedTitle, showRoomList } from "./rooms.js";
import { RoomStatus } from "./roomstatus.js";
import { RoomTabs } from "./roomtabs.js";
import { PageTokens } from "./token.js";

// The longest wait between reconnect attempts: a person looking at the page should not wait
// long once the server is back (the SDK's default, 30 s, suits a background client).
const RECONNECT_CAP_MS = 5000;

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
  $("rooms-link").href = `rooms.html?${new URLSearchParams(tokens.linkParams)}`;

  const room = new RoomClient({ roomId, tokens, cap: RECONNECT_CAP_MS });
  const view = new ChatView({
    list: $("messages"),
    scroller: $("messages-scroll"),
    announcer: $("announcer"),
  });
  const presence = new PresenceView(room.presence, {
    membersList: $("members"),
    hereList: $("presence"),
    typingLine: $("typing"),
  });
  const me = claimedUser(token);
  if (me !== null) view.setMe(me);
  const features = new RoomFeatures(FEATURES, { roomId, tokens, me, room });
  features.run("mount");
  const tabs = new RoomTabs(roomId);
  tabs.linkPanels();

  const chat = new ChatPanel(view, room, $("outbox-note"));
  chat.showQueued();
  const title = new TabTitle(view);
  const composer = new Composer(room);
  const status = new RoomStatus(room, { welcomed: () => chat.welcomed, composer, tokens });
  listen(room, { chat, composer, status, features, presence, tabs, title });
  room.start();
  showRoomList(
    new RoomListView({
      list: $("room-list"),
      status: $("room-list-status"),
      linkParams: tokens.linkParams,
      current: roomId,
    }),
    { tokens, current: roomId, onChange: ({ others }) => title.setOthers(others) },
  );
  composer.focus();
}

/**
 * The tab's title: the room's, after the number of messages unread here (those that came in
 * while the tab was hidden, chat.js) and in my other rooms (the inbox). It runs after the
 * chat's own title update (roomchat.js), whose count is this room's alone.
 */
class TabTitle {
  #view;
  #others = 0;

  constructor(view) {
    this.#view = view;
    view.addEventListener("unread", () => this.sync());
  }

  setOthers(count) {
    this.#others = count;
    this.sync();
  }

  sync() {
    const base = `${$("room-title").textContent || "Menteo room"} · Menteo`;
    document.title = countedTitle(this.#view.unread + this.#others, base);
  }
}

/** The room's events, to every part of the page in turn. */
function listen(room, { chat, composer, status, features, presence, tabs, title }) {
  room.on("state", (detail) => {
    status.onState(detail);
    presence.setLive(detail.state === "live");
    features.run("onState", detail.state);
  });
  room.on("welcome", ({ frame, epochChanged }) => {
    features.ctx.me = frame.you;
    chat.onWelcome(frame, epochChanged);
    chat.showHistory(frame);
    title.sync();
    composer.enable();
    features.run("onWelcome", frame);
  });
  room.on("frame", (frame) => {
    chat.onFrame(frame);
    if (frame.type === "chat.message") tabs.messageArrived();
    features.run("onFrame", frame);
  });
}

main();
