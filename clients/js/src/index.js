// @menteo/realtime-client: the JavaScript client of Menteo realtime (docs/protocol.md).
// Everything but the shared notes, which need yjs and y-websocket: import those from
// "@menteo/realtime-client/notes".

export { ApiError, apiRequest } from "./api.js";
export { Emitter } from "./events.js";
export { FEED_FATAL_CLOSES, FeedSocket, FeedStream, feedApi, feedQuery } from "./feed.js";
export { INBOX_FATAL_CLOSES, InboxClient } from "./inbox.js";
export { MemoryStorage, Outbox, newClientId, outboxKey } from "./outbox.js";
export { Presence } from "./presence.js";
export { ReconnectingSocket, backoffDelay, isRefusal } from "./reconnecting.js";
export { ROOM_FATAL_CLOSES, RoomClient, RoomConnection } from "./room.js";
export { OutboxSender } from "./sender.js";
export { TokenError, TokenSource, tokenClaims, withToken } from "./token.js";
export { NOTES_SUBPROTOCOL, SUBPROTOCOL, httpBase, socketTarget, tokenProtocol } from "./transport.js";
