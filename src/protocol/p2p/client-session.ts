// Drives a P2P peer (git-annex-shell p2pstdio, a gateway, our own server) as a client
// over a byte stream pair (spec §1.4, §1.5). One request at a time: each call waits for
// the previous one to finish, and a call that leaves the peer in a sub-state (a PUT
// answered PUT-FROM, a held lock, a GET whose body is still streaming) keeps the session
// until that is over. When the session breaks, every pending and later call rejects with
// the error that broke it.
import { once } from 'node:events'
import type { Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { AppendOnlyError, PeerClosedError, PeerError, ProtocolError, ProxyError, ReadOnlyError, VersionError } from '../../errors.js'
import type { Key } from '../../keys/key.js'
import { encodeLine } from './codec.js'
import { FrameReader } from './framer.js'
import { MAX_PROTOCOL_VERSION, MIN_VERSION, type Message } from './messages.js'

export interface SessionIo {
  /** Bytes from the peer. */
  readonly input: AsyncIterable<Buffer | string>
  /** Bytes to the peer; ended when the session closes. */
  readonly output: Writable
}

export interface SessionOptions {
  /** The UUID the greeting must name (spec §1.4: the client checks it, else closes). */
  readonly expectUuid?: string
  /** Highest version to offer; default 4. */
  readonly maxVersion?: number
  /** Gateways to avoid: sent as BYPASS when the negotiated version is ≥ 2 and the list is not empty. */
  readonly bypass?: readonly string[]
  /** Send `AUTH <uuid> <token>` first (tor/generic transports) instead of waiting for a greeting. */
  readonly auth?: { readonly uuid: string; readonly token: string }
}

/** Outcome of a request answered SUCCESS/FAILURE, or their -PLUS forms (v2+). */
export interface Outcome {
  readonly ok: boolean
  readonly plusUuids: readonly string[]
}

export interface Got {
  /** Bytes the peer announced (size − offset, 0 when absent). */
  readonly length: number
  readonly body: Readable
  /** After the body: VALID (true) or INVALID (false); v0 peers say nothing, taken as true. */
  readonly valid: Promise<boolean>
}

export type PutStart =
  | { readonly kind: 'already-have'; readonly plusUuids: readonly string[] }
  | {
      readonly kind: 'put-from'
      readonly offset: number
      /**
       * Sends `DATA len`, exactly `len` bytes of `body`, then (v1+) VALID or INVALID as
       * `valid` says, and reads the verdict. A body that ends short or fails leaves the
       * connection unframeable: the session is closed (the peer keeps what arrived, for resume).
       */
      sendData(body: AsyncIterable<Uint8Array>, len: number, valid: Promise<boolean>): Promise<Outcome>
      /** v4: the content arrived out of band. */
      dataPresent(): Promise<Outcome>
    }

export interface HeldLock {
  /** Sends UNLOCKCONTENT and frees the session; idempotent. */
  unlock(): Promise<void>
}

type Release = () => void

export class ClientSession {
  private readonly reader: FrameReader
  private readonly output: Writable
  private tail: Promise<void> = Promise.resolve()
  private broken: Error | undefined
  private _version = 0
  private _peerUuid = ''

  private constructor(io: SessionIo) {
    this.reader = new FrameReader(io.input)
    this.output = io.output
    // A write error (EPIPE: the peer went away) breaks the session; the read side tells why.
    this.output.on('error', (e) => this.destroy(new PeerClosedError(`writing to the peer failed: ${e.message}`, { cause: e })))
  }

  /** Reads the greeting, negotiates the version and sends BYPASS. */
  static async open(io: SessionIo, opts: SessionOptions = {}): Promise<ClientSession> {
    const s = new ClientSession(io)
    try {
      await s.start(opts)
    } catch (e) {
      s.destroy(e as Error)
      throw e
    }
    return s
  }

  get version(): number {
    return this._version
  }

  /** The UUID the peer named in AUTH-SUCCESS. */
  get peerUuid(): string {
    return this._peerUuid
  }

  /** The error that broke the session, if it is broken. */
  get error(): Error | undefined {
    return this.broken
  }

  private async start(opts: SessionOptions): Promise<void> {
    if (opts.auth) this.send({ type: 'AUTH', uuid: opts.auth.uuid, token: opts.auth.token })
    const greeting = await this.read()
    if (greeting.type === 'AUTH-FAILURE') throw new PeerError('the peer refused authentication')
    if (greeting.type !== 'AUTH-SUCCESS') throw this.unexpected(greeting, 'AUTH-SUCCESS')
    if (opts.expectUuid !== undefined && greeting.uuid !== opts.expectUuid) {
      throw new ProtocolError(`expected repository ${opts.expectUuid}, but the peer is ${greeting.uuid}`)
    }
    this._peerUuid = greeting.uuid
    const max = opts.maxVersion ?? MAX_PROTOCOL_VERSION
    this.send({ type: 'VERSION', version: max })
    const v = await this.read()
    // An old server answers ERROR: it speaks version 0 (P2P/Protocol.hs negotiateProtocolVersion).
    if (v.type === 'VERSION') this._version = Math.min(v.version, max)
    else if (v.type !== 'ERROR') throw this.unexpected(v, 'VERSION')
    if (this._version >= 2 && opts.bypass && opts.bypass.length > 0) this.send({ type: 'BYPASS', uuids: opts.bypass })
  }

  /** Breaks the session: every pending and later call rejects with `err`; output is ended. */
  destroy(err: Error = new PeerClosedError('session closed')): void {
    this.broken ??= err
    this.reader.fail(this.broken)
    if (!this.output.writableEnded) this.output.end()
  }

  /** Waits for the current request, then ends the connection. */
  async close(): Promise<void> {
    const release = await this.acquire().catch(() => undefined)
    this.destroy(new PeerClosedError('session closed'))
    release?.()
  }

  private acquire(): Promise<Release> {
    let release!: Release
    const mine = new Promise<void>((r) => (release = r))
    const prev = this.tail
    this.tail = mine
    return prev.then(() => {
      if (this.broken) {
        release()
        throw this.broken
      }
      return release
    })
  }

  /** Runs `fn` holding the session; the session is released when it settles. */
  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire()
    try {
      return await fn()
    } finally {
      release()
    }
  }

  private send(m: Message): void {
    if (this.broken) throw this.broken
    if (this._version < MIN_VERSION[m.type]) throw new VersionError(`${m.type} needs protocol version ${MIN_VERSION[m.type]}; the session speaks ${this._version}`)
    this.output.write(encodeLine(m))
  }

  private async read(): Promise<Message> {
    const m = await this.reader.readMessage().catch((e: unknown) => {
      throw this.breakWith(e)
    })
    if (!m) throw this.breakWith(new PeerClosedError('the peer closed the connection'))
    return m
  }

  private breakWith(e: unknown): Error {
    const err = e instanceof ProxyError ? e : new PeerClosedError(String(e), { cause: e })
    this.destroy(err)
    return this.broken!
  }

  private unexpected(m: Message, wanted: string): Error {
    if (m.type === 'ERROR') return new PeerError(m.text)
    return this.breakWith(new ProtocolError(`expected ${wanted} from the peer, got ${m.type}`))
  }

  /** ERROR replies keep the session; the reference's permission texts become their domain errors. */
  private static peerError(text: string): ProxyError {
    if (/read-only/.test(text)) return new ReadOnlyError(text)
    if (/append-only/.test(text)) return new AppendOnlyError(text)
    return new PeerError(text)
  }

  private async outcome(): Promise<Outcome> {
    const m = await this.read()
    switch (m.type) {
      case 'SUCCESS':
        return { ok: true, plusUuids: [] }
      case 'FAILURE':
        return { ok: false, plusUuids: [] }
      case 'SUCCESS-PLUS':
        return { ok: true, plusUuids: m.uuids }
      case 'FAILURE-PLUS':
        return { ok: false, plusUuids: m.uuids }
      case 'ERROR':
        throw ClientSession.peerError(m.text)
      default:
        throw this.unexpected(m, 'SUCCESS or FAILURE')
    }
  }

  async checkPresent(key: Key): Promise<boolean> {
    return this.exclusive(async () => {
      this.send({ type: 'CHECKPRESENT', key })
      return (await this.outcome()).ok
    })
  }

  async remove(key: Key): Promise<Outcome> {
    return this.exclusive(async () => {
      this.send({ type: 'REMOVE', key })
      return this.outcome()
    })
  }

  /** v3+: removes only while the peer's monotonic clock is before `timestamp`. */
  async removeBefore(timestamp: number, key: Key): Promise<Outcome> {
    return this.exclusive(async () => {
      this.send({ type: 'REMOVE-BEFORE', timestamp, key })
      return this.outcome()
    })
  }

  /** v3+: the peer's monotonic clock in seconds. */
  async getTimestamp(): Promise<number> {
    return this.exclusive(async () => {
      this.send({ type: 'GETTIMESTAMP' })
      const m = await this.read()
      if (m.type === 'TIMESTAMP') return m.timestamp
      if (m.type === 'ERROR') throw ClientSession.peerError(m.text)
      throw this.unexpected(m, 'TIMESTAMP')
    })
  }

  /** Locks the content until `unlock()`; undefined when the peer could not lock it (absent). */
  async lockContent(key: Key): Promise<HeldLock | undefined> {
    const release = await this.acquire()
    let held = false
    try {
      this.send({ type: 'LOCKCONTENT', key })
      const r = await this.outcome()
      if (!r.ok) return undefined
      held = true
    } finally {
      if (!held) release()
    }
    let unlocked: Promise<void> | undefined
    return {
      unlock: () =>
        (unlocked ??= (async () => {
          try {
            // No reply: the peer releases and goes on reading requests.
            if (!this.broken) this.send({ type: 'UNLOCKCONTENT' })
          } finally {
            release()
          }
        })()),
    }
  }

  /**
   * GET: the body streams from the peer as it is read; the session stays taken until the
   * body has been consumed and the client's SUCCESS/FAILURE sent. Destroying the body
   * before its end breaks the session (the stream cannot be resynchronised).
   */
  async get(key: Key, offset: number, af?: string): Promise<Got> {
    const release = await this.acquire()
    let length: number
    try {
      this.send({ type: 'GET', offset, af, key })
      const m = await this.read()
      if (m.type === 'ERROR') throw ClientSession.peerError(m.text)
      if (m.type !== 'DATA') throw this.unexpected(m, 'DATA')
      length = m.length
    } catch (e) {
      release()
      throw e
    }
    const body = this.reader.payload(length)
    const valid = (async () => {
      try {
        await finished(body)
        let ok = true
        if (this._version >= 1) {
          const v = await this.read()
          if (v.type === 'INVALID') ok = false
          else if (v.type !== 'VALID') throw this.unexpected(v, 'VALID or INVALID')
          this.send(ok ? { type: 'SUCCESS' } : { type: 'FAILURE' })
        }
        return ok
      } catch (e) {
        throw this.breakWith(e)
      } finally {
        release()
      }
    })()
    // Whoever only reads the body learns of a failure there; keep `valid` from going unhandled.
    valid.catch(() => undefined)
    return { length, body, valid }
  }

  async put(key: Key, af?: string): Promise<PutStart> {
    const release = await this.acquire()
    let offset: number
    try {
      this.send({ type: 'PUT', af, key })
      const m = await this.read()
      if (m.type === 'ALREADY-HAVE' || m.type === 'ALREADY-HAVE-PLUS') {
        release()
        return { kind: 'already-have', plusUuids: m.type === 'ALREADY-HAVE' ? [] : m.uuids }
      }
      if (m.type === 'ERROR') throw ClientSession.peerError(m.text)
      if (m.type !== 'PUT-FROM') throw this.unexpected(m, 'PUT-FROM or ALREADY-HAVE')
      offset = m.offset
    } catch (e) {
      release()
      throw e
    }
    let used = false
    const once_ = <T>(fn: () => Promise<T>): Promise<T> => {
      if (used) return Promise.reject(new Error('PUT-FROM answered already'))
      used = true
      return fn().finally(release)
    }
    return {
      kind: 'put-from',
      offset,
      sendData: (body, len, valid) => once_(() => this.sendData(body, len, valid)),
      dataPresent: () =>
        once_(async () => {
          this.send({ type: 'DATA-PRESENT' })
          return this.outcome()
        }),
    }
  }

  private async sendData(body: AsyncIterable<Uint8Array>, len: number, valid: Promise<boolean>): Promise<Outcome> {
    this.send({ type: 'DATA', length: len })
    let sent = 0
    try {
      for await (const chunk of body) {
        if (this.broken) throw this.broken
        if (sent + chunk.length > len) throw new ProtocolError(`more than the ${len} bytes announced in DATA`)
        sent += chunk.length
        if (!this.output.write(chunk)) await drained(this.output)
      }
    } catch (e) {
      // The peer cannot be told; the connection must close. Ending (not destroying) the
      // output lets every byte written so far reach it.
      throw this.breakWith(e)
    }
    if (sent < len) throw this.breakWith(new PeerClosedError(`the body ended after ${sent} of the ${len} bytes announced in DATA`))
    const ok = await valid.catch(() => false)
    if (this._version >= 1) this.send(ok ? { type: 'VALID' } : { type: 'INVALID' })
    return this.outcome()
  }
}

/** Resolves on 'drain'; rejects if the stream errors or closes first. */
async function drained(w: Writable): Promise<void> {
  const ac = new AbortController()
  try {
    await Promise.race([
      once(w, 'drain', { signal: ac.signal }),
      once(w, 'close', { signal: ac.signal }).then(() => {
        throw new PeerClosedError('the connection to the peer closed')
      }),
    ])
  } finally {
    ac.abort()
  }
}
