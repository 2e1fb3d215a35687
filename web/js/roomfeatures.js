// Room features: the panels that plug into the room page (main.js FEATURES). Each feature is
// an object {name, mount(ctx), onWelcome(frame, ctx), onFrame(frame, ctx), onState(state,
// ctx)}, all optional. mount runs once, before the socket opens; onWelcome runs for every
// new socket (resync state when frame.recovered is false); onFrame sees every frame after the
// welcome, events already deduplicated by seq (acks and errors included); onState sees every
// change of the connection's state ("live", "reconnecting", "offline", ...).
//
// ctx: {roomId, token, tokens, me, panels, send(frame), submit(frame), pendingOps(),
// opsDurable(), live()}. `token` is the page's first token; `tokens` the TokenSource
// (token.js) that holds the current one and renews it when the page has a token URL. `panels` is the container (#panels): a feature appends its section and unhides
// it. `send` is fire and forget (false when not live). `submit` is for durable operations
// (checklist.*): the frame is kept in a localStorage outbox until acked, sent on the same
// path as chat messages and resent with the same id after a reconnect or a reload; it
// returns the frame's id. `pendingOps()` lists those not acked yet (after a reload too).
// Chat and presence are built into the page (main.js).

import { byId } from "./dom.js";

export class RoomFeatures {
  #features;
  ctx;

  /** `me`: who the token says I am, until a welcome says it for sure (ctx.me = welcome.you). */
  constructor(features, { roomId, tokens, me, conn, sender }) {
    this.#features = features;
    this.ctx = {
      roomId,
      token: tokens.token,
      tokens,
      me,
      panels: byId("panels"),
      send: (frame) => conn.send(frame),
      submit: (frame) => sender.submitOp(frame),
      pendingOps: () => sender.pendingOps(),
      opsDurable: () => sender.opsDurable,
      live: () => conn.live,
    };
  }

  /** Run a feature hook in every feature; a panel that throws is reported, and chat goes on. */
  run(hook, ...args) {
    for (const feature of this.#features) {
      try {
        feature[hook]?.(...args, this.ctx);
      } catch (err) {
        reportError(err);
      }
    }
  }
}
