// The P2P-over-HTTP API (spec §2) as one encapsulated fastify plugin. Routing is done
// by the pure resolveRoute() so that wrong methods, versions and Accept headers get
// the reference's answers (400 "bad version"; 404 for unknown paths).
import type { IncomingMessage } from 'node:http'
import { Readable, pipeline } from 'node:stream'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { AbortedError, BadRequestError, DiskFullError, ProxyError, HashMismatchError, LengthMismatchError, LockedError, NotSupportedError } from '../../errors.js'
import { type Key, serializeKey } from '../../keys/key.js'
import type { Logger, Op, Remote } from '../../remotes/remote.js'
import { exactLength } from '../../streams/exact-length.js'
import type { WorkerPools } from '../../gateway/worker-pool.js'
import type { LookupContext } from '../../gateway/registry.js'
import type { HttpEvents } from '../../metrics/metrics.js'
import { ERROR_CODE_HEADER, toHttp } from '../error-map.js'
import { HeldLocks } from './held-locks.js'
import { serveKey } from './key-get.js'
import { boundedLines } from './line-reader.js'
import { declareWaiting } from './connections.js'
import { type Action, type AuthRequest, type Decision, ENDPOINT_ACTION } from './auth.js'
import {
  DATA_LENGTH_HEADER,
  Query,
  type Version,
  associatedFileParam,
  bypassParam,
  clientUuidParam,
  dataLengthHeader,
  dataPresentParam,
  jsonBody,
  keyParam,
  lockIdParam,
  offsetParam,
  pathKeyParam,
  resolveRoute,
  timestampParam,
} from './params.js'

export type Authorize = (req: AuthRequest, action: Action) => Decision

export interface RepoLookup {
  /**
   * `bypass`: gateways already on the request's path, which a cluster must not route back
   * through (spec §3.3). `authorized`: the request may cause a rescan for an unknown UUID;
   * `until`: the repository stays open while this response is.
   */
  lookup(uuid: string, bypass: readonly string[], ctx?: LookupContext): Promise<Remote | undefined>
}

export interface P2pHttpOptions {
  readonly repos: RepoLookup
  readonly authorize: Authorize
  /** --jobs, per served repository. */
  readonly workers: WorkerPools
  /** Held locks beyond this many are refused ({"locked":false}), like --lockedfiles. */
  readonly maxLocks: number
  /** Seconds a lock lives without a keeplocked request (spec §2.6: 600). */
  readonly lockExpirySeconds: number
  /** Fires when the server is shutting down: every in-flight operation is aborted. */
  readonly closing: AbortSignal
  /** Metrics (--metrics): locks held, put outcomes, verification failures. */
  readonly metrics?: HttpEvents
  /** OPTIONS is answered elsewhere (CORS preflights, --cors-origin), not as a P2P route. */
  readonly optionsElsewhere?: boolean
}

const JSON_TYPE = 'application/json;charset=utf-8'
const KEEPLOCKED_LINE_LIMIT = 64 * 1024
/** How long a git-annex client relies on a lock it took (P2P/Http/Client.hs clientKeepLocked: p2pDefaultLockContentRetentionDuration, 600 s). */
const CLIENT_LOCK_TRUST_MS = 600_000
/** What a 503 (overload) tells clients to wait before asking again. */
export const RETRY_AFTER_SECONDS = 2

/**
 * The request's one AbortSignal: fires when the client goes away before the response
 * finished, or when the server shuts down. One listener on the long-lived `closing`
 * signal, removed when the response closes (always): `AbortSignal.any` with a long-lived
 * input keeps an entry per call on Node 20 (nodejs/node#55351; undici lib/api/abort-signal.js).
 */
function requestSignal(reply: FastifyReply, closing: AbortSignal): AbortSignal {
  const ac = new AbortController()
  if (closing.aborted || reply.raw.closed) {
    ac.abort(closing.aborted ? closing.reason : new AbortedError('client disconnected'))
    return ac.signal
  }
  const onClosing = () => ac.abort(closing.reason)
  closing.addEventListener('abort', onClosing, { once: true })
  // 'close' follows 'finish', and also comes when the connection breaks first.
  reply.raw.once('close', () => {
    closing.removeEventListener('abort', onClosing)
    if (!reply.raw.writableFinished) ac.abort(new AbortedError('client disconnected'))
  })
  return ac.signal
}

export const p2pHttp: FastifyPluginAsync<P2pHttpOptions> = async (app: FastifyInstance, opts) => {
  const locks = new HeldLocks(opts.maxLocks, opts.lockExpirySeconds * 1000)
  opts.metrics?.observe({ locksHeld: () => locks.size })

  app.removeAllContentTypeParsers()
  // Bodies stay raw streams: put content and keeplocked lines are consumed by the routes.
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload))

  // Error answers carry their text with no Content-Type, as the reference's do.
  app.addHook('onSend', async (_req, reply, payload) => {
    if (reply.statusCode >= 400) reply.removeHeader('content-type')
    return payload
  })

  app.addHook('onClose', () => locks.releaseAll())

  // One line per request. Refusals are expected (overload, bad input, auth): they say
  // why in that line, with no stack trace; only errors the server did not expect log one.
  app.addHook('onResponse', async (req, reply) => {
    const status = reply.statusCode
    const line = {
      method: req.method,
      url: req.url,
      status,
      ms: Math.round(reply.elapsedTime),
      ...(reply.raw.writableFinished ? {} : { aborted: true }),
      ...(reasons.has(reply) ? { reason: reasons.get(reply) } : {}),
    }
    if (status >= 500) req.log.warn(line, 'request')
    else req.log.info(line, 'request')
  })

  app.setErrorHandler((err, req, reply) => {
    const { status, body, code } = toHttp(err)
    if (!(err instanceof ProxyError)) req.log.error({ err }, 'request failed unexpectedly')
    if (reply.sent || reply.raw.headersSent) {
      // Too late for a status (spec §2.4): the client sees the body cut short.
      if (err instanceof ProxyError) req.log.warn({ url: req.url, reason: body }, 'response cut short')
      reply.raw.destroy()
      return
    }
    if (code !== undefined) reply.header(ERROR_CODE_HEADER, code)
    // A request refused before its body was read (a store refused up front): the rest of
    // the body must still be taken off the connection, or the client blocks sending it
    // and only the keep-alive timeout ends the exchange.
    const unread = req.body
    if (unread instanceof Readable && !unread.readableEnded) unread.unpipe().resume()
    // git-annex's client shows a failed request as its status line only: the reason
    // phrase is where a refusal it can act on (annex.diskreserve) reaches the user.
    if (err instanceof DiskFullError) reply.raw.statusMessage = body.replace(/[^\x20-\x7e]/g, ' ').slice(0, 300)
    return sendError(reply, status, body)
  })

  app.setNotFoundHandler((_req, reply) => sendError(reply, 404, ''))

  app.route({
    method: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', ...(opts.optionsElsewhere ? [] : ['OPTIONS' as const])],
    url: '/*',
    handler: async (req, reply) => {
      const rawUrl = req.raw.url ?? '/'
      const q = rawUrl.indexOf('?')
      const route = resolveRoute(req.method, q < 0 ? rawUrl : rawUrl.slice(0, q), req.headers.accept)
      if (route.kind === 'not-found') return sendError(reply, 404, '')
      if (route.kind === 'bad-version') return sendError(reply, 400, 'bad version')
      if (route.kind === 'bad-uuid') return sendError(reply, 400, route.message)
      const query = Query.fromUrl(rawUrl)
      const v: Version = route.version ?? 0
      const body = req.body as Readable | undefined

      // Parameters are checked in the reference's order before authentication.
      const params = parseParams(route.endpoint, route.version, route.pathKey, query, req.headers[DATA_LENGTH_HEADER])

      // The reference's order (measured): an unparseable Authorization header is a 400,
      // then an unknown repository is a 404 whoever asks, and only then 401/403.
      const decision = opts.authorize({ authorization: req.headers.authorization, secure: req.protocol === 'https' }, ENDPOINT_ACTION[route.endpoint])
      const refuse = (status: number, text: string, headers: Readonly<Record<string, string>> = {}) => {
        body?.resume()
        for (const [h, val] of Object.entries(headers)) reply.header(h, val)
        return sendError(reply, status, text)
      }
      if (!decision.ok && decision.status === 400) return refuse(400, decision.body, decision.headers)
      // Only a request that would be served may cause a rescan for a UUID not known (yet).
      const remote = await opts.repos.lookup(route.serverUuid, params.bypass ?? [], { authorized: decision.ok, until: reply.raw })
      if (!remote) return refuse(404, '')
      if (!decision.ok) return refuse(decision.status, decision.body, decision.headers)

      const signal = requestSignal(reply, opts.closing)
      const op: Op = {
        signal,
        log: req.log as unknown as Logger,
        ...(params.clientUuid !== undefined ? { client: params.clientUuid } : {}),
        ...(params.associatedFile !== undefined ? { associatedFile: params.associatedFile } : {}),
      }
      const json = (obj: Record<string, unknown>) => reply.code(200).type(JSON_TYPE).send(jsonBody(obj))
      const plus = (obj: Record<string, unknown>, uuids: readonly string[]) => (v >= 2 ? { ...obj, plusuuids: uuids } : obj)

      // --jobs bounds work on repositories. What waits on a peer holds no worker: held
      // locks, and the bytes of transfers, which move at the pace of whoever is slower.
      switch (route.endpoint) {
        case 'lockcontent':
          return json(await lockContent(remote, params.key!, op))
        case 'keeplocked':
          return json(await keepLocked(params.lockId!, body, signal, req, reply))
        case 'key':
          return serveKey(
            { remote, key: params.key!, offset: params.offset ?? 0, version: route.version, head: req.method === 'HEAD', headers: req.headers, op, start: (fn) => opts.workers.run(remote.uuid, signal, fn) },
            reply,
          )
        case 'put': {
          const stored = await put(remote, params, body, v, op, req.raw)
          opts.metrics?.putAnswered(remote.uuid, stored.stored ? 'stored' : 'not_stored')
          return json(plus({ stored: stored.stored }, stored.plusUuids))
        }
        default:
          break
      }

      return opts.workers.run(remote.uuid, signal, async () => {
        switch (route.endpoint) {
          case 'checkpresent':
            return json({ present: await remote.checkPresent(params.key!, op) })
          case 'gettimestamp':
            return json({ timestamp: await remote.timestamp(op) })
          case 'remove':
          case 'remove-before': {
            try {
              const r =
                route.endpoint === 'remove'
                  ? await remote.remove(params.key!, op)
                  : await remote.removeBefore(params.key!, params.timestamp!, op)
              return json(plus({ removed: r.removed }, r.plusUuids))
            } catch (err) {
              // The reference hangs or drops the session here; a clean refusal is what clients can use.
              if (err instanceof LockedError) return json(plus({ removed: false }, []))
              throw err
            }
          }
          case 'putoffset': {
            const s = await remote.startStore(params.key!, op)
            if (s.kind === 'present') return json(v >= 2 ? { alreadyhave: true, plusuuids: s.plusUuids } : { alreadyhave: true })
            return json({ offset: s.offset })
          }
          default:
            throw new BadRequestError('bad version')
        }
      })
    },
  })

  async function put(remote: Remote, p: Params, body: Readable | undefined, v: Version, op: Op, raw: IncomingMessage) {
    const key = p.key!
    const len = p.dataLength!
    const source = body ?? Readable.from([])
    const start = await opts.workers.run(remote.uuid, op.signal, async () => {
      if (p.dataPresent && v >= 4) return { done: await remote.storePresent(key, op) }
      const s = await remote.startStore(key, op)
      return s.kind === 'present' ? { done: { stored: true, plusUuids: s.plusUuids } } : { done: undefined }
    })
    if (start.done) {
      source.resume()
      return start.done
    }
    const exact = exactLength(len)
    const limited = pipeline(source, exact, () => {})
    // Idle with room for more body: the client stopped sending. Idle and full: the store is behind.
    declareWaiting(raw, () => (raw.complete || exact.writableNeedDrain ? 'server' : 'client'))
    try {
      // A body shorter than announced is the HTTP form of DATA + INVALID (spec §2.5).
      return await remote.store(key, limited, p.offset ?? 0, { ...op, senderValid: exact.complete })
    } catch (err) {
      // Content that fails to verify, or an incomplete body, is a refused store, not a server error.
      if (err instanceof HashMismatchError || err instanceof LengthMismatchError || err instanceof AbortedError) {
        op.log.info({ key: p.keyText, err: (err as Error).message }, 'put not stored')
        if (!(err instanceof AbortedError) && !op.signal.aborted) opts.metrics?.verificationFailed(remote.uuid, err instanceof HashMismatchError ? 'hash' : 'length')
        source.resume()
        return { stored: false, plusUuids: [] }
      }
      throw err
    }
  }

  async function lockContent(remote: Remote, key: Key, op: Op): Promise<Record<string, unknown>> {
    const take = async () => {
      try {
        return await remote.lock(key, op)
      } catch (err) {
        // A cluster (spec §3.4) or a store without locks answers like absent content.
        if (err instanceof NotSupportedError) return undefined
        throw err
      }
    }
    const lockId = await locks.acquire(take, op.signal)
    return lockId === undefined ? { locked: false } : { locked: true, lockid: lockId }
  }

  /**
   * Holds the lock while the client's request body stays open; releases on
   * {"unlock":true}, end of body, a broken connection or unparseable input. A line
   * longer than KEEPLOCKED_LINE_LIMIT releases the lock and ends the reading there:
   * the connection is closed after the answer rather than drained.
   */
  async function keepLocked(lockId: string, body: Readable | undefined, signal: AbortSignal, req: FastifyRequest, reply: FastifyReply): Promise<Record<string, unknown>> {
    const kept = locks.keep(lockId)
    // A git-annex client says nothing between {"unlock":false} and the end of its drop,
    // and counts on the lock for 600 s after taking it (spec §2.6): a kept lock's
    // connection may be silent that long (or --lock-expiry, if longer). Unknown lock
    // ids get the ordinary --client-timeout.
    if (kept) req.raw.socket.setTimeout(Math.max(CLIENT_LOCK_TRUST_MS, opts.lockExpirySeconds * 1000))
    declareWaiting(req.raw, () => 'client')
    // Server shutdown or a vanished client ends the hold like the end of the body does.
    const stop = () => body?.destroy()
    signal.addEventListener('abort', stop, { once: true })
    try {
      if (body) {
        // Stopping early must not destroy the body: that would take the answer's connection with it.
        for await (const ev of boundedLines(body.iterator({ destroyOnReturn: false }), KEEPLOCKED_LINE_LIMIT)) {
          if (ev.kind === 'too-long') {
            reply.header('connection', 'close')
            break
          }
          const msg = ev.text.trim()
          if (msg !== '' && !isUnlockFalse(msg)) await kept?.release()
        }
      }
    } catch {
      // A broken connection ends the lock like the end of the stream does.
    } finally {
      signal.removeEventListener('abort', stop)
      await kept?.release()
    }
    return { locked: false }
  }
}

/** Why a request was refused, for its log line. */
const reasons = new WeakMap<FastifyReply, string>()

/** Answers a refusal: its text as the body, the reason noted for the log, Retry-After on a 503. */
export function sendError(reply: FastifyReply, status: number, text: string) {
  reasons.set(reply, text)
  if (status === 503) reply.header('retry-after', String(RETRY_AFTER_SECONDS))
  return reply.code(status).send(text)
}

function isUnlockFalse(msg: string): boolean {
  try {
    const o = JSON.parse(msg) as unknown
    return typeof o === 'object' && o !== null && (o as { unlock?: unknown }).unlock === false
  } catch {
    return false
  }
}

interface Params {
  key?: Key
  keyText?: string
  clientUuid?: string
  bypass?: string[]
  associatedFile?: string
  offset?: number
  timestamp?: number
  lockId?: string
  dataPresent?: boolean
  dataLength?: number
}

function parseParams(endpoint: string, version: Version | undefined, pathKey: string | undefined, q: Query, dataLength: string | string[] | undefined): Params {
  const p: Params = {}
  const setKey = (k: Key) => {
    p.key = k
    p.keyText = serializeKey(k)
  }
  const cu = (required: boolean) => {
    const c = clientUuidParam(q, { required })
    if (c !== undefined) p.clientUuid = c
  }
  const af = () => {
    const a = associatedFileParam(q)
    if (a !== undefined) p.associatedFile = a
  }
  const off = () => {
    const o = offsetParam(q)
    if (o !== undefined) p.offset = o
  }
  switch (endpoint) {
    case 'key':
      setKey(pathKeyParam(pathKey!))
      cu(version !== undefined)
      p.bypass = bypassParam(q)
      af()
      off()
      break
    case 'checkpresent':
    case 'remove':
    case 'putoffset':
    case 'lockcontent':
      setKey(keyParam(q))
      cu(true)
      p.bypass = bypassParam(q)
      break
    case 'remove-before':
      setKey(keyParam(q))
      cu(true)
      p.bypass = bypassParam(q)
      p.timestamp = timestampParam(q)
      break
    case 'gettimestamp':
      cu(true)
      p.bypass = bypassParam(q)
      break
    case 'put':
      p.dataLength = dataLengthHeader(dataLength)
      setKey(keyParam(q))
      cu(true)
      p.bypass = bypassParam(q)
      af()
      off()
      p.dataPresent = dataPresentParam(q)
      break
    case 'keeplocked':
      p.lockId = lockIdParam(q)
      cu(false)
      p.bypass = bypassParam(q)
      break
  }
  return p
}
