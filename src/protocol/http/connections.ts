// The HTTP server's connections: how many may be open, and how long one may sit idle.
// Waiting costs Node nothing but the connection itself, so what bounds a slow client is
// a connection count and an idle time, not a worker slot (issue #14).
//
// Idle means no byte moved either way for `idleMs`. Then whoever the connection waits
// for decides: a client that sends no request, stops sending a body the server is
// reading, or stops reading a response is disconnected; a request waiting on the server
// (a queue, a node, a disk) is not the client's fault and keeps its connection.
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'

/** Who an idle request waits for. */
export type Waiting = 'client' | 'server'

export interface ConnectionLimits {
  /** Connections beyond this many get 503 + Retry-After on their first request, then close. */
  readonly maxConnections: number
  /** Milliseconds without a byte either way before a connection waiting on its client is closed. */
  readonly idleMs: number
  /** Told of each connection closed for idleness (what it was doing: a request line, or none). */
  readonly onIdleClose?: (info: { readonly remote: string | undefined; readonly request: string | undefined }) => void
}

/** An over-limit connection gets this long to send the request it is refused on. */
const OVER_LIMIT_IDLE_MS = 5_000

const waitingOn = new WeakMap<IncomingMessage, () => Waiting>()
const overLimit = new WeakSet<Socket>()

/**
 * Declares who `req` waits for while it is being served (until its response closes).
 * Without a declaration, a request whose response the client does not take is waiting
 * on the client; anything else waits on the server.
 */
export function declareWaiting(req: IncomingMessage, who: () => Waiting): void {
  waitingOn.set(req, who)
}

/** Whether `req` came on a connection beyond the limit: answer it 503 and close. */
export function overConnectionLimit(req: IncomingMessage): boolean {
  return overLimit.has(req.socket)
}

function waitingFor(req: IncomingMessage, res: ServerResponse): Waiting {
  if (res.headersSent && res.writableNeedDrain) return 'client'
  return waitingOn.get(req)?.() ?? 'server'
}

/**
 * Applies the limits to `server` (an http or https server fastify created with
 * `connectionTimeout: idleMs`). Beyond twice the limit, connections are closed at once:
 * even the 503 has a cost.
 */
export function limitConnections(server: Server, limits: ConnectionLimits): void {
  const serving = new Map<Socket, { req: IncomingMessage; res: ServerResponse }>()
  let open = 0
  server.maxConnections = 2 * limits.maxConnections
  // Over TLS, the connection the requests come on is the one 'secureConnection' gives;
  // handshakes are bounded by the TLS server's handshakeTimeout and by maxConnections.
  const event = server instanceof TlsServer ? 'secureConnection' : 'connection'
  server.on(event, (socket: Socket) => {
    open++
    socket.once('close', () => {
      open--
      serving.delete(socket)
    })
    if (open > limits.maxConnections) {
      overLimit.add(socket)
      socket.setTimeout(Math.min(limits.idleMs, OVER_LIMIT_IDLE_MS))
    }
  })
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    serving.set(req.socket, { req, res })
    res.once('close', () => {
      if (serving.get(req.socket)?.res === res) serving.delete(req.socket)
    })
  })
  // With a 'timeout' listener Node leaves the decision to us (http server socketOnTimeout).
  server.on('timeout', (socket: Socket) => {
    const current = serving.get(socket)
    if (current && waitingFor(current.req, current.res) === 'server') {
      socket.setTimeout(limits.idleMs)
      return
    }
    limits.onIdleClose?.({ remote: socket.remoteAddress, request: current ? `${current.req.method} ${current.req.url}` : undefined })
    socket.destroy()
  })
}
