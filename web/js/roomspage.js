// The room list as a page of its own (rooms.html): what a phone opens to choose a room, and
// what the room page's "Rooms" tab links to. Takes ?token=T or ?token_url=URL like the room
// page (token.js); the unread total is in the tab's title.

import { tokenClaims } from "../sdk/token.js";
import { byId as $ } from "./dom.js";
import { setIndicator, showConnectionState } from "./indicator.js";
import { RoomListView, countedTitle, showRoomList } from "./rooms.js";
import { PageTokens } from "./token.js";

const TITLE = "Your rooms · Menteo";

async function main() {
  const params = new URLSearchParams(location.search);
  if (!params.get("token")?.trim() && !params.get("token_url")?.trim()) {
    fail("This link has no access token. Open the link from your invitation.");
    return;
  }
  let tokens;
  try {
    setIndicator("connecting", "Connecting…");
    tokens = await PageTokens.fromQuery(params);
  } catch (err) {
    fail(err.message);
    return;
  }
  $("feed-link").href = `feed.html?${new URLSearchParams(tokens.linkParams)}`;
  $("feed-link").hidden = false;
  const view = new RoomListView({
    list: $("room-list"),
    status: $("room-list-status"),
    linkParams: tokens.linkParams,
  });
  const inbox = showRoomList(view, {
    tokens,
    onChange: ({ unread }) => {
      document.title = countedTitle(unread, TITLE);
    },
  });
  $("retry").addEventListener("click", () => inbox.retryNow());
  inbox.on("state", (detail) => {
    showConnectionState(detail, "Offline: the list is updated when you are back online.");
    $("rooms").dataset.connection = detail.state;
    if (detail.state === "stopped" && detail.message) fail(refusal(detail, tokens.token));
  });
}

/** "Expired" only when the token's own expiry has passed (or the server says so). */
function refusal({ code, reason, message }, token) {
  if (code !== 4401 || reason === undefined) return message;
  const { exp } = tokenClaims(token);
  if ((typeof exp === "number" && exp * 1000 <= Date.now()) || /expired/i.test(reason)) {
    return "Your access link has expired. Ask for a new link.";
  }
  return message;
}

function fail(message) {
  setIndicator("stopped", "Disconnected");
  $("fatal").textContent = message;
  $("fatal").hidden = false;
}

main();
