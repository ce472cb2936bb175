// Builds the HTTP server from a ServeConfig: the registry of served repositories,
// the p2phttp plugin, TLS when configured, and an orderly close.
import { setMaxListeners } from 'node:events'
import { readFileSync } from 'node:fs'
import cors from '@fastify/cors'
import Fastify, { type FastifyInstance, LogController } from 'fastify'
import type { ServeConfig } from './config/config.js'
import { Registry } from './gateway/registry.js'
import { WorkerPools } from './gateway/worker-pool.js'
import { type Authorize, p2pHttp, sendError } from './protocol/http/plugin.js'
import { Gateway } from './gateway/gateway.js'
import { openPlainRepo } from './gateway/plain-repo.js'
import type { Logger } from './remotes/remote.js'
import { authorizerFor } from './protocol/http/authorizer.js'
import type { ServerMetrics } from './metrics/metrics.js'
import { installMetricsHooks } from './metrics/http-hooks.js'
import { limitConnections, overConnectionLimit } from './protocol/http/connections.js'
import { type Coordinator, LocalCoordinator } from './placement/coordinator.js'
import { CacheSpace } from './streams/chunk-cache.js'
import { indirectRoutes } from './protocol/http/indirect-routes.js'
import { ERROR_CODE_HEADER } from './protocol/error-map.js'
import { DATA_LENGTH_HEADER } from './protocol/http/params.js'

/** Request headers beyond this many bytes are refused (431) before any routing. */
const MAX_HEADER_BYTES = 16 * 1024
/** Headers beyond this many are not kept (a git-annex client sends about ten). */
const MAX_HEADERS = 100

export interface Server {
  readonly app: FastifyInstance
  readonly registry: Registry
  /** Present with --metrics or --metrics-port. */
  readonly metrics: ServerMetrics | undefined
  /** Stops accepting, lets in-flight requests finish for `graceMs`, then aborts them. */
  close(graceMs?: number): Promise<void>
}

export async function buildServer(cfg: ServeConfig, opts: { env?: NodeJS.ProcessEnv; authorize?: Authorize; logStream?: NodeJS.WritableStream } = {}): Promise<Server> {
  const idleMs = cfg.clientTimeoutSeconds * 1000
  // Node's own bounds on what a request may make the server hold before it is routed.
  const http = {
    maxHeaderSize: MAX_HEADER_BYTES,
    // How often headersTimeout is checked (Node's default, 30 s, would blur a short one).
    connectionsCheckingInterval: Math.min(30_000, Math.max(1_000, idleMs / 2)),
  }
  const https = cfg.certfile
    ? {
        https: {
          ...http,
          handshakeTimeout: Math.min(120_000, idleMs),
          cert: readFileSync(cfg.certfile, 'utf8') + (cfg.chainfile ? `\n${readFileSync(cfg.chainfile, 'utf8')}` : ''),
          key: readFileSync(cfg.privatekeyfile!, 'utf8'),
        },
      }
    : { http }
  const app = Fastify({
    logger: { level: cfg.logLevel, ...(opts.logStream ? { stream: opts.logStream } : {}) },
    // The p2phttp plugin logs one line per request (with the reason of a refusal) instead.
    logController: new LogController({ disableRequestLogging: true }),
    // A transfer may take as long as it needs while bytes move; a connection on which
    // nothing moves for --client-timeout is judged by limitConnections (its client's fault
    // or the server's).
    requestTimeout: 0,
    connectionTimeout: idleMs,
    // Shorter than the idle bound, so clients are told (Keep-Alive: timeout=…) when an
    // unused connection goes away instead of finding out by a failed request.
    keepAliveTimeout: Math.min(72_000, idleMs),
    forceCloseConnections: 'idle',
    // While draining (SIGTERM, or after a hand-over) a request that arrives on a kept-alive
    // connection is served, not refused with 503: it was sent before the client could know,
    // and a refusal is a failed transfer. Its answer closes the connection (below).
    return503OnClosing: false,
    exposeHeadRoutes: false,
    ...https,
  }) as unknown as FastifyInstance
  app.server.headersTimeout = idleMs
  app.server.maxHeadersCount = MAX_HEADERS
  limitConnections(app.server, {
    maxConnections: cfg.maxConnections,
    idleMs,
    onIdleClose: (info) => app.log.info({ ...info, idleSeconds: cfg.clientTimeoutSeconds }, 'idle client disconnected'),
  })
  if (cfg.corsOrigins.length > 0) {
    // First of the hooks, so every answer carries the headers, refusals included (a page
    // must be able to read a 401, 503 or 507), and preflights are answered before routing
    // and authentication (browsers send no credentials with them).
    await app.register(cors, {
      origin: [...cfg.corsOrigins],
      credentials: true,
      methods: ['GET', 'HEAD', 'POST'],
      // What a page must be able to read beyond the CORS-safelisted headers.
      exposedHeaders: [DATA_LENGTH_HEADER, 'content-length', 'content-range', 'accept-ranges', 'etag', 'retry-after', 'www-authenticate', ERROR_CODE_HEADER],
      maxAge: 600,
      strictPreflight: true,
    })
  }
  let draining = false
  app.addHook('onRequest', async (_req, reply) => {
    if (draining) reply.header('connection', 'close')
  })
  // A connection beyond --max-connections gets its answer, whatever it asks, and is closed.
  app.addHook('onRequest', async (req, reply) => {
    if (!overConnectionLimit(req.raw)) return
    reply.header('connection', 'close')
    return sendError(reply, 503, 'too many connections')
  })
  const log = app.log as unknown as Logger
  // One placement ledger for every repository served (nodes may be shared between them): in
  // this process, or in Redis for a fleet. Redis down at start: reads are served meanwhile.
  // The Redis client is loaded only with --redis: its ~500 module files cost a second of start on a busy machine.
  let coordinator: Coordinator
  if (cfg.redis === undefined) coordinator = new LocalCoordinator()
  else {
    const { RedisCoordinator } = await import('./placement/redis-coordinator.js')
    const redis = new RedisCoordinator({ url: cfg.redis, leaseMs: cfg.redisLeaseSeconds * 1000, log })
    void redis.connect().catch((err: unknown) => log.warn({ err }, 'redis unavailable at start'))
    coordinator = redis
  }
  // prom-client is loaded only when metrics are asked for.
  const metrics = cfg.metrics || cfg.metricsPort !== undefined ? new (await import('./metrics/metrics.js')).ServerMetrics() : undefined
  if (metrics) {
    installMetricsHooks(app, metrics)
    if (cfg.metrics) app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.text()))
  }
  const cache = { space: new CacheSpace(cfg.cacheSize), chunkBytes: cfg.cacheChunk }
  const locationLogSettle = cfg.locationLogCommit === 'answer' ? 'commit' : 'journal'
  const registry = new Registry({
    repos: cfg.repos,
    directories: cfg.directories,
    // A repository without proxying settings needs no gateway machinery (no branch reader, no watcher, no process).
    open: (dir, { gateway }) =>
      gateway
        ? Gateway.open(dir, { hasher: cfg.hasher, log, locationLogSettle, fanoutHighWaterMark: cfg.fanoutHighWaterMark, fanoutStallMs: cfg.fanoutStallSeconds * 1000, coordinator, jobs: cfg.jobs, proxyConnections: cfg.proxyConnections, s3PartsInFlight: cfg.s3PartsInFlight, cache, ...(metrics ? { events: metrics } : {}) }).then((g) => {
            g.warmS3Remotes()
            return g
          })
        : openPlainRepo(dir, { hasher: cfg.hasher, log, logSettle: locationLogSettle }),
    log,
    maxOpen: cfg.maxOpenRepos,
    rescanMs: cfg.rescanIntervalSeconds * 1000,
    idleMs: cfg.repoIdleSeconds * 1000,
    roomWaitMs: cfg.maxQueueWaitSeconds * 1000,
    stateDir: cfg.stateDir,
  })
  await registry.start()
  const closing = new AbortController()
  // Each request in flight holds one listener on `closing` until its response closes
  // (plugin.ts, indirect-routes.ts), and requests in flight are bounded by
  // --max-connections (one at a time per connection; connections beyond are answered 503
  // before any route runs). Node's default of 10 would warn of a leak at -J8 client load;
  // twice the bound leaves room for a response closing while its connection's next
  // request starts, and still warns if listeners were ever left behind.
  setMaxListeners(2 * cfg.maxConnections, closing.signal)
  const workers = new WorkerPools({ concurrency: cfg.jobs, maxQueue: cfg.maxQueue, maxWaitMs: cfg.maxQueueWaitSeconds * 1000 })
  metrics?.observe({ queueDepth: () => workers.queued, workersBusy: () => workers.inFlight })
  await app.register(p2pHttp, {
    repos: registry,
    authorize: opts.authorize ?? authorizerFor(cfg, opts.env ?? process.env),
    workers,
    ...(metrics ? { metrics } : {}),
    maxLocks: cfg.lockedfiles,
    lockExpirySeconds: cfg.lockExpirySeconds,
    closing: closing.signal,
    optionsElsewhere: cfg.corsOrigins.length > 0,
  })
  if (cfg.indirectUpload) {
    // Beside the p2phttp plugin, in its own context: its routes are more specific than the
    // plugin's catch-all, and nothing of the P2P API changes.
    await app.register(indirectRoutes, { repos: registry, authorize: opts.authorize ?? authorizerFor(cfg, opts.env ?? process.env), uploads: cfg.indirectUpload, closing: closing.signal })
  }
  app.addHook('onClose', async () => {
    await registry.close()
    await coordinator.close()
  })
  let closed: Promise<void> | undefined
  return {
    app,
    registry,
    metrics,
    close(graceMs = cfg.shutdownGraceSeconds * 1000) {
      closed ??= (async () => {
        draining = true
        const timer = setTimeout(() => closing.abort(new Error('server shutting down')), graceMs)
        try {
          await app.close()
        } finally {
          clearTimeout(timer)
          closing.abort(new Error('server shut down'))
        }
      })()
      return closed
    },
  }
}
