// The P2P-over-HTTP API (spec §2) as one encapsulated fastify plugin. Routing is done
// by the pure resolveRoute() so that wrong methods, versions and Accept headers get
// the reference's answers (400 "bad version"; 404 for unknown paths).
import { randomUUID } from 'node:crypto'
import { Readable, pipeline } from 'node:stream'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { AbortedError, BadRequestError, HashMismatchError, LengthMismatchError, LockedError, NotSupportedError } from '../../errors.js'
import { type Key, serializeKey } from '../../keys/key.js'
import type { Lock, Logger, Op, Remote } from '../../remotes/remote.js'
import { exactLength } from '../../streams/exact-length.js'
import { truncateLastByteUnless } from '../../streams/hold-last.js'
import type { WorkerPool } from '../../gateway/worker-pool.js'
import { toHttp } from '../error-map.js'
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
  /** `bypass`: gateways already on the request's path, which a cluster must not route back through (spec §3.3). */
  lookup(uuid: string, bypass: readonly string[]): Promise<Remote | undefined>
}

export interface P2pHttpOptions {
  readonly repos: RepoLookup
  readonly authorize: Authorize
  readonly workers: WorkerPool
  /** Held locks beyond this many are refused ({"locked":false}), like --lockedfiles. */
  readonly maxLocks: number
  /** Seconds a lock lives without a keeplocked request (spec §2.6: 600). */
  readonly lockExpirySeconds: number
  /** Fires when the server is shutting down: every in-flight operation is aborted. */
  readonly closing: AbortSignal
}

const JSON_TYPE = 'application/json;charset=utf-8'
const KEEPLOCKED_LINE_LIMIT = 64 * 1024

interface HeldLock {
  readonly lock: Lock
  timer: NodeJS.Timeout | undefined
}

/** An AbortSignal that fires when the client goes away before the response finished. */
function clientGone(req: FastifyRequest, reply: FastifyReply, closing: AbortSignal): AbortSignal {
  const ac = new AbortController()
  const onClose = () => {
    if (!reply.raw.writableFinished) ac.abort(new AbortedError('client disconnected'))
  }
  reply.raw.once('close', onClose)
  req.raw.once('aborted', onClose)
  return AbortSignal.any([ac.signal, closing])
}

export const p2pHttp: FastifyPluginAsync<P2pHttpOptions> = async (app: FastifyInstance, opts) => {
  const locks = new Map<string, HeldLock>()

  app.removeAllContentTypeParsers()
  // Bodies stay raw streams: put content and keeplocked lines are consumed by the routes.
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload))

  // Error answers carry their text with no Content-Type, as the reference's do.
  app.addHook('onSend', async (_req, reply, payload) => {
    if (reply.statusCode >= 400) reply.removeHeader('content-type')
    return payload
  })

  app.addHook('onClose', async () => {
    await Promise.all([...locks.values()].map((h) => releaseHeld(h)))
    locks.clear()
  })

  async function releaseHeld(h: HeldLock): Promise<void> {
    if (h.timer) clearTimeout(h.timer)
    h.timer = undefined
    await h.lock.release().catch(() => {})
  }

  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toHttp(err)
    if (status >= 500) req.log.error({ err }, 'request failed')
    else req.log.info({ status, msg: body }, 'request refused')
    if (reply.sent || reply.raw.headersSent) {
      reply.raw.destroy()
      return
    }
    return sendError(reply, status, body)
  })

  app.setNotFoundHandler((_req, reply) => sendError(reply, 404, ''))

  app.route({
    method: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'],
    url: '/*',
    handler: async (req, reply) => {
      const rawUrl = req.raw.url ?? '/'
      const q = rawUrl.indexOf('?')
      const route = resolveRoute(req.method, q < 0 ? rawUrl : rawUrl.slice(0, q), req.headers.accept)
      if (route.kind === 'not-found') return sendError(reply, 404, '')
      if (route.kind === 'bad-version') return sendError(reply, 400, 'bad version')
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
      const remote = await opts.repos.lookup(route.serverUuid, params.bypass ?? [])
      if (!remote) return refuse(404, '')
      if (!decision.ok) return refuse(decision.status, decision.body, decision.headers)

      const signal = clientGone(req, reply, opts.closing)
      const op: Op = {
        signal,
        log: req.log as unknown as Logger,
        ...(params.clientUuid !== undefined ? { client: params.clientUuid } : {}),
        ...(params.associatedFile !== undefined ? { associatedFile: params.associatedFile } : {}),
      }
      const json = (obj: Record<string, unknown>) => reply.code(200).type(JSON_TYPE).send(jsonBody(obj))
      const plus = (obj: Record<string, unknown>, uuids: readonly string[]) => (v >= 2 ? { ...obj, plusuuids: uuids } : obj)

      switch (route.endpoint) {
        case 'lockcontent':
          return json(await lockContent(remote, params.key!, op))
        case 'keeplocked':
          return json(await keepLocked(params.lockId!, body, signal))
        default:
          break
      }

      return opts.workers.run(signal, async () => {
        switch (route.endpoint) {
          case 'key': {
            const r = await remote.retrieve(params.key!, params.offset ?? 0, op)
            reply.header('content-type', 'application/octet-stream').header('x-git-annex-data-length', String(r.length))
            if (req.method === 'HEAD') {
              r.body.destroy()
              return reply.code(200).send()
            }
            // v0 cannot signal invalid content; v1+ by a count short of the header (spec §2.4).
            const out = v === 0 ? r.body : pipeline(r.body, truncateLastByteUnless(r.valid), () => {})
            return reply.code(200).send(out)
          }
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
          case 'put': {
            const stored = await put(remote, params, body, v, op)
            return json(plus({ stored: stored.stored }, stored.plusUuids))
          }
          default:
            throw new BadRequestError('bad version')
        }
      })
    },
  })

  async function put(remote: Remote, p: Params, body: Readable | undefined, v: Version, op: Op) {
    const key = p.key!
    const len = p.dataLength!
    const source = body ?? Readable.from([])
    if (p.dataPresent && v >= 4) {
      source.resume()
      return remote.storePresent(key, op)
    }
    const start = await remote.startStore(key, op)
    if (start.kind === 'present') {
      source.resume()
      return { stored: true, plusUuids: start.plusUuids }
    }
    const exact = exactLength(len)
    const limited = pipeline(source, exact, () => {})
    try {
      // A body shorter than announced is the HTTP form of DATA + INVALID (spec §2.5).
      return await remote.store(key, limited, p.offset ?? 0, { ...op, senderValid: exact.complete })
    } catch (err) {
      // Content that fails to verify, or an incomplete body, is a refused store, not a server error.
      if (err instanceof HashMismatchError || err instanceof LengthMismatchError || err instanceof AbortedError) {
        op.log.info({ key: p.keyText, err: (err as Error).message }, 'put not stored')
        source.resume()
        return { stored: false, plusUuids: [] }
      }
      throw err
    }
  }

  async function lockContent(remote: Remote, key: Key, op: Op): Promise<Record<string, unknown>> {
    if (locks.size >= opts.maxLocks) return { locked: false }
    let lock: Lock | undefined
    try {
      lock = await remote.lock(key, op)
    } catch (err) {
      // A cluster (spec §3.4) or a store without locks answers like absent content.
      if (err instanceof NotSupportedError) return { locked: false }
      throw err
    }
    if (!lock) return { locked: false }
    const lockId = randomUUID()
    const held: HeldLock = { lock, timer: undefined }
    held.timer = setTimeout(() => {
      locks.delete(lockId)
      void releaseHeld(held)
    }, opts.lockExpirySeconds * 1000)
    held.timer.unref()
    locks.set(lockId, held)
    return { locked: true, lockid: lockId }
  }

  /**
   * Holds the lock while the client's request body stays open; releases on
   * {"unlock":true}, end of body, a broken connection or unparseable input.
   */
  async function keepLocked(lockId: string, body: Readable | undefined, signal: AbortSignal): Promise<Record<string, unknown>> {
    const held = locks.get(lockId)
    if (held?.timer) {
      clearTimeout(held.timer)
      held.timer = undefined
    }
    const release = async () => {
      if (held && locks.get(lockId) === held) {
        locks.delete(lockId)
        await releaseHeld(held)
      }
    }
    // Server shutdown or a vanished client ends the hold like the end of the body does.
    const stop = () => body?.destroy()
    signal.addEventListener('abort', stop, { once: true })
    try {
      if (body) {
        let line = ''
        for await (const chunk of body as AsyncIterable<Buffer>) {
          line += chunk.toString('utf8')
          let nl: number
          while ((nl = line.indexOf('\n')) >= 0) {
            const msg = line.slice(0, nl).trim()
            line = line.slice(nl + 1)
            if (msg === '') continue
            if (!isUnlockFalse(msg)) await release()
          }
          if (line.length > KEEPLOCKED_LINE_LIMIT) await release()
        }
        if (line.trim() !== '' && !isUnlockFalse(line.trim())) await release()
      }
    } catch {
      // A broken connection ends the lock like the end of the stream does.
    } finally {
      signal.removeEventListener('abort', stop)
      await release()
    }
    return { locked: false }
  }
}

function sendError(reply: FastifyReply, status: number, text: string) {
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
