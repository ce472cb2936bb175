// The undici client for the P2P-over-HTTP API (spec §2): one Pool per origin with
// keep-alive and a connection cap, one typed method per endpoint, every call under an
// AbortSignal. Like git-annex's client (spec §2.11) each call tries versions 4→0 (only
// those the endpoint has), moving on after a 404 or the reference's `400 bad version`.
// HTTP failures become domain errors here; nothing above this file sees a status code.
import { PassThrough, Readable, Transform, pipeline } from 'node:stream'
import { Pool, errors as undiciErrors } from 'undici'
import type { Dispatcher } from 'undici'
import {
  AbortedError,
  BadRequestError,
  ConfigError,
  NoVersionError,
  PermissionDeniedError,
  ProtocolViolationError,
  ProxyError,
  RemoteUnavailableError,
} from '../../errors.js'
import { serializeKey, type Key } from '../../keys/key.js'
import { ERROR_CODE_HEADER, fromHttp } from '../error-map.js'
import { DATA_LENGTH_HEADER, ENDPOINTS, decodeWrapped, encodeWrapped, type Endpoint, type Version } from './params.js'

export interface Credentials {
  readonly user: string
  readonly password: string
}

/** How long a GET's response may take to end after its last announced byte before its connection is dropped. */
const GET_LINGER_MS = 5000
/** A GET whose body sends nothing for this long has stalled (default of getStallMs). */
const GET_STALL_MS = 15_000
/** Ranged GETs tried after stalls, per retrieve. */
const GET_RESUMES = 3

export interface HttpClientOptions {
  /** Sent as `clientuuid` on every request (spec §2.11). */
  readonly clientUuid: string
  /** `bypass` UUIDs sent on every request. */
  readonly bypass?: readonly string[]
  /** Basic auth, sent once the server has answered 401 (or always with `preemptiveAuth`). */
  readonly credentials?: Credentials
  readonly preemptiveAuth?: boolean
  /** Most connections to the origin at once (default 16). A held lock keeps one busy. */
  readonly connections?: number
  /** Idle keep-alive sockets are closed after this many ms (default 30 s). */
  readonly keepAliveTimeout?: number
  /** Connect timeout in ms (default 10 s). */
  readonly connectTimeout?: number
  /** Highest protocol version to try (default 4). */
  readonly maxVersion?: Version
  /** A GET body that sends nothing for this many ms is resumed with a ranged GET (default 15 s). */
  readonly getStallMs?: number
  /** CA certificates (PEM) HTTPS trusts instead of Node's bundle, e.g. the system's store. */
  readonly ca?: readonly string[]
}

export interface CallOptions {
  readonly signal: AbortSignal
}

export interface PlusUuids {
  readonly plusUuids: readonly string[]
}

export type PutOffset = { readonly kind: 'offset'; readonly offset: number } | ({ readonly kind: 'alreadyhave' } & PlusUuids)

export interface GetResult {
  /** X-git-annex-data-length: the bytes the server promised. */
  readonly length: number
  readonly body: Readable
  /** Resolves true when exactly `length` bytes arrived, false when fewer (or the body failed). */
  readonly complete: Promise<boolean>
  readonly version: Version
}

export interface PutOptions extends CallOptions {
  readonly offset?: number
  /** X-git-annex-data-length: how many bytes the body will deliver. */
  readonly length: number
  readonly associatedFile?: string
  /** v4 data-present: the body is empty and the content arrived out of band. */
  readonly dataPresent?: boolean
}

export interface KeepLocked {
  /** Sends `{"unlock":true}`, ends the stream and waits for the server's answer; idempotent. */
  release(): Promise<void>
  /** Settles when the keeplocked request ends: undefined when it ended normally, else why not. */
  readonly ended: Promise<Error | undefined>
}

type Query = Array<[string, string]>

const JSON_ACCEPT = 'application/json;charset=utf-8, application/json'

/** Parses `annex+http(s)://host[:port]/path` (spec §2.1) into the origin and the base path. */
export function parseAnnexUrl(annexUrl: string): { origin: string; basePath: string } {
  const m = /^annex\+(https?):\/\//i.exec(annexUrl)
  const plain = m ? annexUrl.slice('annex+'.length) : annexUrl
  let u: URL
  try {
    u = new URL(plain)
  } catch {
    throw new ConfigError(`not an annex+http URL: ${annexUrl}`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`not an annex+http URL: ${annexUrl}`)
  if (m && u.port === '') u.port = '9417'
  const origin = `${u.protocol}//${u.host}`
  const path = u.pathname
  const basePath = path === '/git-annex' || path === '/git-annex/' || path === '/' || path === '' ? '' : path.replace(/\/+$/, '')
  return { origin, basePath }
}

export class P2PHttpClient {
  readonly origin: string
  readonly basePath: string
  private readonly pool: Pool
  private readonly opts: HttpClientOptions
  private sendAuth: boolean
  /** The highest version that answered; calls start there (git-annex starts at 4 every time). */
  private learned: Version

  /** `baseUrl`: `http(s)://host:port[/basepath]` or an `annex+http(s)://` URL. */
  constructor(baseUrl: string, opts: HttpClientOptions) {
    const { origin, basePath } = parseAnnexUrl(baseUrl)
    if (opts.connections !== undefined && !(Number.isInteger(opts.connections) && opts.connections >= 1)) {
      throw new ConfigError(`connections must be a positive integer, not ${opts.connections}`)
    }
    if (opts.clientUuid === '') throw new ConfigError('clientUuid must not be empty')
    this.origin = origin
    this.basePath = basePath
    this.opts = opts
    this.sendAuth = opts.preemptiveAuth === true && opts.credentials !== undefined
    this.learned = opts.maxVersion ?? 4
    this.pool = new Pool(origin, {
      connections: opts.connections ?? 16,
      keepAliveTimeout: opts.keepAliveTimeout ?? 30_000,
      connectTimeout: opts.connectTimeout ?? 10_000,
      pipelining: 1,
      ...(opts.ca ? { connect: { ca: [...opts.ca] } } : {}),
    })
  }

  /** The version calls currently start from. */
  get version(): Version {
    return this.learned
  }

  async close(): Promise<void> {
    await this.pool.close()
  }

  async destroy(): Promise<void> {
    await this.pool.destroy()
  }

  // ---- endpoints (spec §2.3) ----

  async checkPresent(server: string, key: Key, o: CallOptions): Promise<boolean> {
    const r = await this.json(server, 'checkpresent', [['key', wrapKey(key)]], o)
    return bool(r.body, 'present')
  }

  async remove(server: string, key: Key, o: CallOptions): Promise<{ removed: boolean } & PlusUuids> {
    const r = await this.json(server, 'remove', [['key', wrapKey(key)]], o)
    return { removed: bool(r.body, 'removed'), plusUuids: plus(r.body, r.version >= 2) }
  }

  async removeBefore(server: string, key: Key, timestamp: number, o: CallOptions): Promise<{ removed: boolean } & PlusUuids> {
    const r = await this.json(server, 'remove-before', [['key', wrapKey(key)], ['timestamp', String(timestamp)]], o)
    return { removed: bool(r.body, 'removed'), plusUuids: plus(r.body, true) }
  }

  async getTimestamp(server: string, o: CallOptions): Promise<number> {
    const r = await this.json(server, 'gettimestamp', [], o)
    return natural(r.body, 'timestamp')
  }

  /** v1+; a server with only v0 answers as if nothing were kept (git-annex skips putoffset at v0). */
  async putOffset(server: string, key: Key, o: CallOptions): Promise<PutOffset> {
    let r: { body: Record<string, unknown>; version: Version }
    try {
      r = await this.json(server, 'putoffset', [['key', wrapKey(key)]], o)
    } catch (e) {
      if (e instanceof NoVersionError) return { kind: 'offset', offset: 0 }
      throw e
    }
    if (r.body.alreadyhave === true) return { kind: 'alreadyhave', plusUuids: plus(r.body, r.version >= 2) }
    return { kind: 'offset', offset: natural(r.body, 'offset') }
  }

  /**
   * Streams `body` as the put body with backpressure (never buffered whole). A streamed
   * body cannot be sent twice, so put tries only the version calls currently start from;
   * call putOffset first to learn it, as git-annex does.
   */
  async put(server: string, key: Key, body: Readable, o: PutOptions): Promise<{ stored: boolean } & PlusUuids> {
    const q: Query = [['key', wrapKey(key)]]
    if (o.associatedFile !== undefined) q.push(['associatedfile', encodeWrapped(o.associatedFile)])
    if (o.offset !== undefined && o.offset > 0) q.push(['offset', String(o.offset)])
    if (o.dataPresent) q.push(['data-present', 'true'])
    const version = this.versionsFor('put')[0]!
    const res = await this.send(server, version, 'put', q, o.signal, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/octet-stream', [DATA_LENGTH_HEADER]: String(o.length), accept: JSON_ACCEPT },
      headersTimeout: 0,
    })
    const r = await this.answer(res, version, 'put')
    if (r === 'try-lower') throw new NoVersionError(`put: the server refused version ${version}`)
    return { stored: bool(r, 'stored'), plusUuids: plus(r, version >= 2) }
  }

  /**
   * GET `vN/key/<key>`: the body streams; its byte count is checked against the header. A
   * response that stalls mid-body (no bytes for `getStallMs`) is resumed where it stopped
   * with a ranged GET, up to GET_RESUMES times: the reference server now and then stops
   * short of the end and never finishes (spec §9.19; reproduced with curl).
   */
  async get(server: string, key: Key, o: CallOptions & { offset?: number; associatedFile?: string }): Promise<GetResult> {
    const start = o.offset ?? 0
    const first = await this.withVersions('key', o.signal, (version) => this.openGet(server, version, key, start, o))
    const { length, version } = first
    const self = this
    let got = 0
    let stopped = false
    let res = first.res
    // Bytes of the body, across resumed requests.
    async function* bytes(): AsyncGenerator<Buffer> {
      for (let resumes = 0; ; ) {
        try {
          for await (const chunk of res.body as AsyncIterable<Buffer>) {
            got += chunk.length
            yield chunk
          }
          return
        } catch (err) {
          if (!(err instanceof undiciErrors.BodyTimeoutError) || stopped || o.signal.aborted || got >= length || resumes++ >= GET_RESUMES) throw err
          res.body.destroy()
          const again = await self.openGet(server, version, key, start + got, o)
          if (again === 'try-lower' || again.length !== length - got || stopped) {
            if (again !== 'try-lower') again.res.body.destroy()
            throw err
          }
          res = again.res
        }
      }
    }
    const source = Readable.from(bytes(), { objectMode: false })
    let delivered = false
    let linger: NodeJS.Timeout | undefined
    let settle!: (ok: boolean) => void
    const complete = new Promise<boolean>((r) => (settle = r))
    let seen = 0
    const counted = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        if (delivered || seen + chunk.length > length) {
          cb(new ProtocolViolationError(`GET of ${serializeKey(key)} sent more than the ${length} bytes it announced`))
          return
        }
        seen += chunk.length
        this.push(chunk)
        if (seen === length) {
          // Every announced byte is here, so the server has said "valid" (it drops the last
          // byte to say otherwise, spec §2.4): the consumer gets its end now, without waiting
          // for the server to end the response.
          delivered = true
          settle(true)
          this.push(null)
          // A server that does not end it would keep the connection from the pool: it gets a moment, then is let go.
          // (The response itself: the generator reading it cannot be stopped while it awaits.)
          linger = setTimeout(() => res.body.destroy(), GET_LINGER_MS).unref()
        }
        cb()
      },
      flush(cb) {
        clearTimeout(linger)
        settle(seen === length)
        cb()
      },
      // pipeline destroys this stage with the source's error: consumers see domain errors,
      // except once they have had every byte, when there is nothing left to fail.
      // (A consumer done with every byte destroys this stage before the server ends its
      // response: the linger goes on, so the connection is reused or let go, not held.)
      destroy(err, cb) {
        if (!delivered) {
          // Given up on (an abort, a failover elsewhere): the response goes too, and is not resumed.
          stopped = true
          clearTimeout(linger)
          res.body.destroy()
        }
        settle(false)
        cb(err && !delivered ? toProxyError(err, o.signal) : null)
      },
    })
    pipeline(source, counted, () => settle(false))
    return { length, body: counted, complete, version }
  }

  /** One GET request from `offset`: its response and announced length, or 'try-lower'. */
  private async openGet(
    server: string,
    version: Version,
    key: Key,
    offset: number,
    o: CallOptions & { associatedFile?: string },
  ): Promise<{ res: Dispatcher.ResponseData; length: number; version: Version } | 'try-lower'> {
    const q: Query = []
    if (o.associatedFile !== undefined) q.push(['associatedfile', encodeWrapped(o.associatedFile)])
    if (offset > 0) q.push(['offset', String(offset)])
    const res = await this.send(server, version, `key/${encodeURIComponent(wrapKey(key))}`, q, o.signal, {
      method: 'GET',
      headers: { accept: 'application/octet-stream' },
      bodyTimeout: this.opts.getStallMs ?? GET_STALL_MS,
    })
    if (res.statusCode !== 200) {
      const r = await this.answer(res, version, 'key')
      if (r === 'try-lower') return r
      throw new ProtocolViolationError(`GET answered ${res.statusCode} with a JSON body`)
    }
    const raw = res.headers[DATA_LENGTH_HEADER]
    const text = Array.isArray(raw) ? raw[0] : raw
    if (text === undefined || !/^[0-9]+$/.test(text)) {
      res.body.destroy()
      throw new ProtocolViolationError(`GET of ${serializeKey(key)} has no valid X-git-annex-data-length header`)
    }
    return { res, length: Number(text), version }
  }

  async lockContent(server: string, key: Key, o: CallOptions): Promise<{ locked: boolean; lockId?: string }> {
    const r = await this.json(server, 'lockcontent', [['key', wrapKey(key)]], o)
    const locked = bool(r.body, 'locked')
    const id = r.body.lockid
    if (locked && typeof id !== 'string') throw new ProtocolViolationError('lockcontent answered locked without a lockid')
    return locked ? { locked, lockId: id as string } : { locked }
  }

  /**
   * Opens keeplocked?lockid=… and keeps its body open: `{"unlock":false}` at once, then
   * `{"unlock":true}` on release() (spec §2.6). The lock ends if `signal` aborts.
   */
  keepLocked(server: string, lockId: string, o: CallOptions): KeepLocked {
    const body = new PassThrough()
    body.write('{"unlock":false}\n')
    const version = this.versionsFor('keeplocked')[0]!
    const q: Query = [['lockid', encodeWrapped(lockId)]]
    const ended = this.send(server, version, 'keeplocked', q, o.signal, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json;charset=utf-8',
        accept: JSON_ACCEPT,
        // git-annex also sends `Keep-Alive: timeout=1200`; undici refuses that header and
        // keeps the connection open anyway (no timeouts on this request).
        connection: 'keep-alive',
      },
      headersTimeout: 0,
      bodyTimeout: 0,
    }).then(async (res) => {
      await res.body.dump()
    })
    const settled = ended.then(
      () => undefined,
      (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
    )
    let released: Promise<void> | undefined
    return {
      ended: settled,
      release: () => {
        released ??= (async () => {
          if (!body.writableEnded) body.end('{"unlock":true}\n')
          await settled.then((e) => {
            if (e && !(e instanceof AbortedError)) throw e
          })
        })()
        return released
      },
    }
  }

  // ---- plumbing ----

  private versionsFor(endpoint: Endpoint): Version[] {
    return ENDPOINTS[endpoint].versions.filter((v) => v <= this.learned).sort((a, b) => b - a)
  }

  private async withVersions<T>(endpoint: Endpoint, signal: AbortSignal, call: (v: Version) => Promise<T | 'try-lower'>): Promise<T> {
    const versions = this.versionsFor(endpoint)
    for (const v of versions) {
      const r = await call(v)
      if (r !== 'try-lower') {
        if (v !== versions[0]) this.learned = v
        return r
      }
      if (signal.aborted) throw new AbortedError('aborted')
    }
    throw new NoVersionError(`${endpoint}: the server refused versions ${versions.join(', ') || '(none left)'}`)
  }

  private async json(server: string, endpoint: Endpoint, q: Query, o: CallOptions): Promise<{ body: Record<string, unknown>; version: Version }> {
    return this.withVersions(endpoint, o.signal, async (version) => {
      const res = await this.send(server, version, endpoint, q, o.signal, {
        method: 'POST',
        headers: { accept: JSON_ACCEPT, 'content-length': '0' },
      })
      const body = await this.answer(res, version, endpoint)
      return body === 'try-lower' ? body : { body, version }
    })
  }

  /** One request, with a single retry carrying credentials after a 401 (spec §2.11). */
  private async send(
    server: string,
    version: Version,
    path: string,
    q: Query,
    signal: AbortSignal,
    req: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: Readable; headersTimeout?: number; bodyTimeout?: number },
  ): Promise<Dispatcher.ResponseData> {
    const query = new URLSearchParams([['clientuuid', encodeWrapped(this.opts.clientUuid)], ...(this.opts.bypass ?? []).map((b): [string, string] => ['bypass', encodeWrapped(b)]), ...q])
    const url = `${this.basePath}/git-annex/${encodeURIComponent(encodeWrapped(server))}/v${version}/${path}?${query}`
    const attempt = async (auth: boolean) => {
      const headers = { ...req.headers }
      if (auth && this.opts.credentials) {
        const { user, password } = this.opts.credentials
        headers.authorization = `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`
      }
      try {
        return await this.pool.request({
          path: url,
          method: req.method,
          headers,
          signal,
          ...(req.body !== undefined ? { body: req.body } : {}),
          ...(req.headersTimeout !== undefined ? { headersTimeout: req.headersTimeout } : {}),
          ...(req.bodyTimeout !== undefined ? { bodyTimeout: req.bodyTimeout } : {}),
        })
      } catch (e) {
        throw toProxyError(e, signal, req.body)
      }
    }
    const res = await attempt(this.sendAuth)
    if (res.statusCode !== 401 || this.sendAuth || !this.opts.credentials) return res
    // A streamed body has been (partly) consumed: it cannot be sent again.
    if (req.body !== undefined) return res
    await res.body.dump()
    this.sendAuth = true
    return attempt(true)
  }

  /** The JSON of a 200, 'try-lower' for 404 / 400 bad version, else a domain error. */
  private async answer(res: Dispatcher.ResponseData, version: Version, endpoint: string): Promise<Record<string, unknown> | 'try-lower'> {
    const status = res.statusCode
    let text: string
    try {
      text = await res.body.text()
    } catch (e) {
      throw toProxyError(e, undefined)
    }
    if (status === 200) {
      try {
        const v: unknown = JSON.parse(text)
        if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
      } catch {
        // fall through
      }
      throw new ProtocolViolationError(`${endpoint} (v${version}): not a JSON object: ${text.slice(0, 200)}`)
    }
    if (status === 404) return 'try-lower'
    if (status === 400 && text.trim() === 'bad version') return 'try-lower'
    const why = `${endpoint} (v${version}): HTTP ${status}`
    if (status === 401 || status === 403) throw new PermissionDeniedError(`${why}${text ? `: ${text.trim().slice(0, 500)}` : ''}`, status)
    const code = res.headers[ERROR_CODE_HEADER]
    throw fromHttp(status, text, Array.isArray(code) ? code[0] : code, why)
  }
}

function wrapKey(key: Key): string {
  return encodeWrapped(serializeKey(key))
}

function bool(body: Record<string, unknown>, field: string): boolean {
  const v = body[field]
  if (typeof v !== 'boolean') throw new ProtocolViolationError(`expected a boolean "${field}" in ${JSON.stringify(body)}`)
  return v
}

function natural(body: Record<string, unknown>, field: string): number {
  const v = body[field]
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ProtocolViolationError(`expected a natural "${field}" in ${JSON.stringify(body)}`)
  return v
}

/** plusuuids: required at v2+ (spec §2.3), `[…]`-wrapped entries decoded. */
function plus(body: Record<string, unknown>, required: boolean): string[] {
  const v = body.plusuuids
  if (v === undefined && !required) return []
  if (!Array.isArray(v) || !v.every((u) => typeof u === 'string')) throw new ProtocolViolationError(`expected "plusuuids" in ${JSON.stringify(body)}`)
  return (v as string[]).map((u) => {
    const d = decodeWrapped(u)
    if (d === undefined) throw new ProtocolViolationError(`undecodable UUID ${JSON.stringify(u)} in "plusuuids"`)
    return d
  })
}

/** Connection failures are RemoteUnavailable; an abort of our signal is Aborted; body errors keep their type. */
export function toProxyError(e: unknown, signal: AbortSignal | undefined, body?: Readable): ProxyError {
  if (e instanceof ProxyError) return e
  if (signal?.aborted) return new AbortedError('aborted', { cause: e })
  const err = e as { code?: string; message?: string }
  if (body && (body.errored || body.destroyed) && body.errored instanceof ProxyError) return body.errored
  if (err?.code === 'UND_ERR_ABORTED' || (e instanceof Error && e.name === 'AbortError')) return new AbortedError('aborted', { cause: e })
  if (e instanceof undiciErrors.RequestContentLengthMismatchError) return new BadRequestError(err.message ?? 'body length mismatch', { cause: e })
  return new RemoteUnavailableError(`upstream: ${err?.message ?? String(e)}`, { cause: e })
}
