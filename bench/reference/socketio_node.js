// Node's socket.io 4 doing the same room broadcast as raw_broadcast.py and socketio_server.py.
//
//     node bench/reference/socketio_node.js --port 8767
//
// Installed from bench/reference/package.json (`make bench-reference`, or bench/suite.py
// runs `npm ci` here when node_modules is missing). The client connects to
// /socket.io/?EIO=4&transport=websocket and sends the namespace CONNECT packet with
// {room, user} as its auth payload. Events mirror our protocol's frames: `welcome` (to the
// joiner, with the room's last 50 messages), `presence.join` / `presence.leave` (to the
// others), `chat.send {id, body}` -> `chat.message` to the whole room (one
// `io.to(room).emit`) then `ack {id, seq}` to the sender, `typing {active}` ->
// `presence.typing` to the others. WebSocket transport only, no permessage-deflate: what the
// load generator speaks, and the same as the Python servers measured beside it.
'use strict'

const http = require('node:http')
const { Server } = require('socket.io')

const HISTORY = 50

function arg (name, fallback) {
  const i = process.argv.indexOf(name)
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback
}

const host = arg('--host', '127.0.0.1')
const port = Number(arg('--port', '8767'))

const httpServer = http.createServer((_req, res) => {
  res.writeHead(404)
  res.end()
})
const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  maxHttpBufferSize: 1e6
})

const seqs = new Map() // room -> last seq
const history = new Map() // room -> last HISTORY messages
const online = new Map() // room -> Map(user -> sockets)

io.on('connection', (socket) => {
  const auth = socket.handshake.auth || {}
  const room = String(auth.room ?? 'lobby')
  const user = String(auth.user ?? 'anonymous')
  let here = online.get(room)
  if (here === undefined) online.set(room, (here = new Map()))
  here.set(user, (here.get(user) || 0) + 1)
  socket.join(room)
  socket.emit('welcome', {
    room: { id: room, title: room },
    you: { user_id: user, name: user, role: 'mentee' },
    seq: seqs.get(room) || 0,
    epoch: 'socketio-node',
    recovered: false,
    history: history.get(room) || [],
    presence: [...here.keys()].sort().map((u) => ({ user_id: u, name: u }))
  })
  socket.to(room).emit('presence.join', { user_id: user, name: user })

  socket.on('chat.send', (data) => {
    const seq = (seqs.get(room) || 0) + 1
    seqs.set(room, seq)
    const msg = {
      seq,
      id: data && data.id,
      author: { user_id: user, name: user },
      body: data && data.body,
      ts: new Date().toISOString()
    }
    let kept = history.get(room)
    if (kept === undefined) history.set(room, (kept = []))
    kept.push(msg)
    if (kept.length > HISTORY) kept.shift()
    io.to(room).emit('chat.message', msg)
    socket.emit('ack', { id: msg.id, seq })
  })

  socket.on('typing', (data) => {
    socket.to(room).emit('presence.typing', { user_id: user, active: Boolean(data && data.active) })
  })

  socket.on('disconnect', () => {
    const count = (here.get(user) || 1) - 1
    if (count > 0) {
      here.set(user, count)
    } else {
      here.delete(user)
      io.to(room).emit('presence.leave', { user_id: user })
    }
  })
})

httpServer.listen({ host, port, backlog: 2048 }, () => {
  process.stderr.write(`socket.io ${require('socket.io/package.json').version} on ${host}:${port}\n`)
})
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    io.close()
    process.exit(0)
  })
}
