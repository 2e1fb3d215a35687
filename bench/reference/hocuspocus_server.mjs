// @hocuspocus/server 3, in memory (no extensions, no persistence): the notes reference of
// bench/notes_compare.py.
//
//     node bench/reference/hocuspocus_server.mjs --port 8769
//
// Hocuspocus multiplexes documents over one socket: every message starts with the
// document's name (a var-string), and a client first sends an auth message (type 2) for the
// document; without an onAuthenticate hook every token is accepted.
import { Server } from '@hocuspocus/server'

function arg (name, fallback) {
  const i = process.argv.indexOf(name)
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback
}

const host = arg('--host', '127.0.0.1')
const port = Number(arg('--port', '8769'))
const server = new Server({ address: host, port, quiet: true })
await server.listen()
process.stderr.write(`@hocuspocus/server on ${host}:${port}\n`)
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    await server.destroy()
    process.exit(0)
  })
}
