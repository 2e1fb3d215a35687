// @y/websocket-server (the y-websocket reference server, on yjs 13), in memory, one
// document per URL path: the notes reference of bench/notes_compare.py.
//
//     node bench/reference/yws_server.mjs --port 8768
//
// The package's own bin reads HOST/PORT from the environment; this is the same server
// (`setupWSConnection` from its utils) with the address on the command line and nothing
// persisted (no YPERSISTENCE), so it is measured as the stock relay.
import http from 'node:http'
import { WebSocketServer } from 'ws'
import { setupWSConnection } from '@y/websocket-server/utils'

function arg (name, fallback) {
  const i = process.argv.indexOf(name)
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback
}

const host = arg('--host', '127.0.0.1')
const port = Number(arg('--port', '8768'))
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' })
  res.end('okay')
})
wss.on('connection', setupWSConnection)
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request))
})
server.listen({ host, port, backlog: 2048 }, () => {
  process.stderr.write(`@y/websocket-server on ${host}:${port}\n`)
})
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0))
