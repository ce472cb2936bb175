// Feeds ServerMetrics from fastify's request lifecycle: latency per endpoint, HTTP bytes per
// served repository (from the socket's counters, so nothing touches the body streams), transfers
// in flight, 503s and put outcomes. Installed on the root instance before the P2P plugin, so its
// hooks wrap every route.
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { resolveRoute } from '../protocol/http/params.js'
import type { ServerMetrics } from './metrics.js'

interface Marks {
  read: number
  written: number
}

interface Seen {
  endpoint: string
  repo: string | undefined
}

const seen = new WeakMap<FastifyRequest, Seen>()

function classify(req: FastifyRequest): Seen {
  const raw = req.raw.url ?? '/'
  const q = raw.indexOf('?')
  const route = resolveRoute(req.method, q < 0 ? raw : raw.slice(0, q), req.headers.accept)
  if (route.kind !== 'ok') return { endpoint: route.kind === 'bad-version' ? 'bad-version' : 'other', repo: undefined }
  return { endpoint: route.endpoint, repo: route.serverUuid }
}

export function installMetricsHooks(app: FastifyInstance, m: ServerMetrics): void {
  // Per socket: the byte counts already attributed to earlier requests of a kept-alive connection.
  const marks = new WeakMap<Socket, Marks>()

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const s = classify(req)
    seen.set(req, s)
    const direction = s.endpoint === 'put' ? 'in' : s.endpoint === 'key' ? 'out' : undefined
    if (direction) {
      m.transfersInFlight.inc({ direction })
      reply.raw.once('close', () => m.transfersInFlight.dec({ direction }))
    }
  })

  app.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    const s = seen.get(req) ?? classify(req)
    const status = reply.statusCode
    m.requestDuration.observe({ endpoint: s.endpoint, status: String(status) }, reply.elapsedTime / 1000)
    if (status === 503) m.overloaded.inc()
    const sock = req.raw.socket as Socket | null
    if (sock) {
      const mark = marks.get(sock) ?? { read: 0, written: 0 }
      const read = sock.bytesRead
      const written = sock.bytesWritten
      // Only repositories that exist get a label: a client cannot grow the label set at will.
      const repo = s.repo !== undefined && status !== 404 ? s.repo : 'none'
      m.bytesIn.inc({ repo }, Math.max(0, read - mark.read))
      m.bytesOut.inc({ repo }, Math.max(0, written - mark.written))
      marks.set(sock, { read, written })
    }
  })
}
