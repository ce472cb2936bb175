// Indirect uploads over HTTP (--indirect-upload; README "Indirect uploads"): beside the
// P2P-over-HTTP API, not part of it. A write-permitted client asks for a presigned PUT
// for a key bound for an S3 special remote the gateway proxies, sends the bytes to S3
// itself, then reports it; the gateway verifies before it records anything
// (src/remotes/s3/indirect-upload.ts).
//
//   POST /git-annex/<remote uuid>/annex-proxy/indirect/put?key=K&clientuuid=U[&expires=S]
//     → {"alreadyhave":true}  or  {"url":…,"method":"PUT","headers":{…},"expires":…,"ticket":…}
//   POST /git-annex/<remote uuid>/annex-proxy/indirect/done?key=K&clientuuid=U&ticket=T
//     → {"stored":true}  or  {"stored":false,"reason":…}
//
// Parameters are encoded as p2phttp's (`[base64]` keys allowed); credentials and their
// permissions are p2phttp's, and both calls need write access.
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { AbortedError, BadRequestError, ProxyError } from '../../errors.js'
import type { IndirectTarget } from '../../gateway/gateway.js'
import type { LookupContext } from '../../gateway/registry.js'
import type { IndirectUploadOptions } from '../../remotes/s3/indirect-upload.js'
import type { Logger } from '../../remotes/remote.js'
import { serializeKey } from '../../keys/key.js'
import { toHttp } from '../error-map.js'
import { type AuthRequest, type Action, type Decision } from './auth.js'
import { Query, clientUuidParam, keyParam } from './params.js'

export interface IndirectRoutesOptions {
  /** `ctx.until`: with --directory, the repository stays open while this response is. */
  readonly repos: { indirect(uuid: string, opts: IndirectUploadOptions, ctx?: LookupContext): Promise<IndirectTarget | undefined> }
  readonly authorize: (req: AuthRequest, action: Action) => Decision
  readonly uploads: Omit<IndirectUploadOptions, 'log' | 'secret'>
  /** Fires when the server is shutting down. */
  readonly closing: AbortSignal
}

const JSON_TYPE = 'application/json;charset=utf-8'
const UUID = /^[0-9a-fA-F-]{36}$/

/** One signal for the request: the client went away, or the server is closing. Listeners go with the response. */
function requestSignal(reply: FastifyReply, closing: AbortSignal): AbortSignal {
  const ac = new AbortController()
  const onClosing = () => ac.abort(new AbortedError('server shutting down'))
  const onClose = () => {
    closing.removeEventListener('abort', onClosing)
    if (!reply.raw.writableFinished) ac.abort(new AbortedError('client disconnected'))
  }
  closing.addEventListener('abort', onClosing, { once: true })
  reply.raw.once('close', onClose)
  if (closing.aborted) onClosing()
  return ac.signal
}

export const indirectRoutes: FastifyPluginAsync<IndirectRoutesOptions> = async (app: FastifyInstance, opts) => {
  // Neither call has a body worth parsing; whatever is sent is drained.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_req, payload, done) => {
    payload.resume()
    done(null, undefined)
  })

  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toHttp(err)
    if (!(err instanceof ProxyError)) req.log.error({ err }, 'indirect upload request failed unexpectedly')
    else req.log.info({ status, reason: body }, 'indirect upload request refused')
    return reply.code(status).type('text/plain; charset=utf-8').send(body)
  })

  async function target(req: FastifyRequest, reply: FastifyReply): Promise<{ t: IndirectTarget; q: Query } | undefined> {
    const uuid = (req.params as { uuid: string }).uuid
    const q = Query.fromUrl(req.raw.url ?? '/')
    if (!UUID.test(uuid)) throw new BadRequestError('bad repository UUID')
    keyParam(q)
    clientUuidParam(q, { required: true })
    const decision = opts.authorize({ authorization: req.headers.authorization, secure: req.protocol === 'https' }, 'write')
    if (!decision.ok) {
      for (const [h, v] of Object.entries(decision.headers)) reply.header(h, v)
      await reply.code(decision.status).type('text/plain; charset=utf-8').send(decision.body)
      return undefined
    }
    const t = await opts.repos.indirect(uuid, opts.uploads, { authorized: true, until: reply.raw })
    if (!t) {
      await reply.code(404).send('')
      return undefined
    }
    return { t, q }
  }

  app.post('/git-annex/:uuid/annex-proxy/indirect/put', async (req, reply) => {
    const got = await target(req, reply)
    if (!got) return reply
    const { t, q } = got
    const key = keyParam(q)
    const signal = requestSignal(reply, opts.closing)
    const op = { signal, log: req.log as unknown as Logger }
    if (await t.remote.checkPresent(key, op)) return reply.code(200).type(JSON_TYPE).send(JSON.stringify({ alreadyhave: true }))
    const raw = q.first('expires')
    if (raw !== undefined && !/^[1-9][0-9]{0,6}$/.test(raw)) throw new BadRequestError('expires must be a whole number of seconds')
    const p = await t.uploads.presign(key, raw === undefined ? {} : { expiresIn: Number(raw) })
    req.log.info({ key: serializeKey(key), expires: p.expires }, 'indirect upload URL issued')
    return reply.code(200).type(JSON_TYPE).send(JSON.stringify(p))
  })

  app.post('/git-annex/:uuid/annex-proxy/indirect/done', async (req, reply) => {
    const got = await target(req, reply)
    if (!got) return reply
    const { t, q } = got
    const key = keyParam(q)
    const ticket = q.first('ticket')
    if (!ticket) throw new BadRequestError('missing ticket')
    const signal = requestSignal(reply, opts.closing)
    const r = await t.uploads.confirm(key, ticket, signal)
    if (r.stored) await t.recordPresent(key)
    req.log.info({ key: serializeKey(key), stored: r.stored, ...(r.stored ? {} : { reason: r.reason }) }, 'indirect upload reported')
    return reply.code(200).type(JSON_TYPE).send(JSON.stringify(r))
  })
}
