// The stock Yjs client: y-websocket's WebsocketProvider syncs a Y.Doc with our notes socket.
// usage: node sync.mjs WS_BASE ROOM_ID TOKEN INSERT EXPECT
// Inserts INSERT at the start of the Y.Text "notes", waits until the text contains EXPECT
// (typed by another client), prints the final text as JSON and exits 0; exits 1 on timeout.
import WebSocket from "ws";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";

const [base, roomId, token, insert, expect] = process.argv.slice(2);
const doc = new Y.Doc();
const text = doc.getText("notes");
const provider = new WebsocketProvider(`${base}/rooms/${roomId}`, "notes", doc, {
  params: { token },
  WebSocketPolyfill: WebSocket,
  disableBc: true,
});
provider.awareness.setLocalStateField("user", { name: "JS client", color: "#36c" });

const timer = setTimeout(() => {
  console.error(`timeout; text is ${JSON.stringify(text.toString())}`);
  process.exit(1);
}, 15000);

function done() {
  if (!text.toString().includes(expect)) return;
  clearTimeout(timer);
  console.log(JSON.stringify({ text: text.toString() }));
  provider.destroy();
  process.exit(0);
}

provider.on("sync", (synced) => {
  if (!synced) return;
  if (!text.toString().includes(insert)) text.insert(0, insert);
  text.observe(done);
  done();
});
