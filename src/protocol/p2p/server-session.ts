// Serves the P2P protocol (spec §1) to one client over a byte stream pair, as
// `git-annex-shell p2pstdio` does (P2P/Protocol.hs serverHandler, Command/P2PStdIO.hs):
// the greeting, version negotiation, BYPASS, every request of v0–v4 with the -PLUS replies
// of v2+, and the read-only / append-only server modes. Every operation goes to one Remote
// (the repository itself, a proxied remote or a cluster: what the gateway resolves for the
// served UUID), the same Remote the HTTP side uses; this file only speaks the wire.
//
// Requests are served one at a time, in order, as the reference does. A DATA payload is
// always read to its end here, whatever the store made of it, so the stream stays framed and
// a refused upload leaves the session usable. Conditions the reference ends the session on
// (an unframeable stream, CONNECT, NOTIFYCHANGE) reject `serve()` with a SessionEndedError
// whose message is what a person should see.
import { once } from 'node:events'
import { PassThrough, type Readable, type Writable } from 'node:stream'
import {
  AbortedError,
  AppendOnlyError,
  HashMismatchError,
  LengthMismatchError,
  LockedError,
  NotSupportedError,
  ProxyError,
  ReadOnlyError,
  SessionEndedError,
  UnknownRepoError,
} from '../../errors.js'
import type { Key } from '../../keys/key.js'
import { serializeKey } from '../../keys/key.js'
import type { Logger, Op, Remote, Removed, Stored } from '../../remotes/remote.js'
import { toP2p } from '../error-map.js'
import { encodeLine, parse } from './codec.js'
import { FrameReader } from './framer.js'
import { MAX_PROTOCOL_VERSION, type Message } from './messages.js'

/** What the server allows (P2P/Protocol.hs ServerMode; GIT_ANNEX_SHELL_READONLY / _APPENDONLY). */
export type ServerMode = 'read-write' | 'append-only' | 'read-only'

/** The reference's texts (P2P/Protocol.hs sendReadOnlyError / sendAppendOnlyError). */
export const READ_ONLY_TEXT = 'this repository is read-only; write access denied'
export const APPEND_ONLY_TEXT = 'this repository is append-only; removal denied'

export interface ServedRepo {
  /** The UUID the greeting names: the repository's, a proxied remote's or a cluster's. */
  readonly uuid: string
  /**
   * The Remote answering for `uuid`, given the gateways the client asked to bypass (spec §3.3).
   * Asked once, at the first request: a BYPASS after that is ignored, as by the reference.
   */
  resolve(bypass: readonly string[]): Promise<Remote | undefined>
}

export interface ServeOptions {
  readonly mode: ServerMode
  readonly log: Logger
  /** The client's UUID (git-annex-shell's CLIENTUUID argument), for logs. */
  readonly client?: string
  /** Ends the session: in-flight operations are aborted (uploads keep their prefix for resume). */
  readonly signal?: AbortSignal
}

export interface ServerIo {
  readonly input: AsyncIterable<Buffer | string>
  readonly output: Writable
}

/** Serves until the client closes the connection or sends ERROR. */
export async function serve(io: ServerIo, served: ServedRepo, opts: ServeOptions): Promise<void> {
  const s = new ServerSession(io, served, opts)
  try {
    await s.run()
  } finally {
    s.dispose()
  }
}

type Outcome = { readonly ok: boolean; readonly plusUuids: readonly string[] }

class ServerSession {
  private readonly reader: FrameReader
  private readonly output: Writable
  private readonly ac = new AbortController()
  private version = 0
  private bypass: readonly string[] = []
  private remote: Promise<Remote | undefined> | undefined
  private outputError: Error | undefined
  private readonly onOutputError = (e: Error) => {
    this.outputError ??= new SessionEndedError(`writing to the client failed: ${e.message}`, { cause: e })
    this.ac.abort(this.outputError)
  }
  private readonly onOuterAbort = () => this.ac.abort(new AbortedError('session closed'))

  constructor(
    io: ServerIo,
    private readonly served: ServedRepo,
    private readonly opts: ServeOptions,
  ) {
    this.reader = new FrameReader(io.input)
    this.output = io.output
    this.output.on('error', this.onOutputError)
    opts.signal?.addEventListener('abort', this.onOuterAbort, { once: true })
    if (opts.signal?.aborted) this.onOuterAbort()
  }

  dispose(): void {
    this.output.off('error', this.onOutputError)
    this.opts.signal?.removeEventListener('abort', this.onOuterAbort)
    this.ac.abort(new AbortedError('session ended'))
  }

  private get log(): Logger {
    return this.opts.log
  }

  private op(af?: string): Op {
    return {
      signal: this.ac.signal,
      log: this.log,
      ...(this.opts.client !== undefined ? { client: this.opts.client } : {}),
      ...(af !== undefined ? { associatedFile: af } : {}),
    }
  }

  private send(m: Message): void {
    if (this.outputError) throw this.outputError
    this.log.debug(`P2P > ${lineOf(m)}`)
    this.output.write(encodeLine(m))
  }

  private error(text: string): void {
    this.send({ type: 'ERROR', text })
  }

  /** The next line, parsed; `null` for an unparseable one, undefined at the end of input. */
  private async next(): Promise<Message | null | undefined> {
    if (this.ac.signal.aborted) throw this.ended()
    let line: string | undefined
    try {
      line = await this.reader.readLine()
    } catch (e) {
      throw new SessionEndedError((e as Error).message, { cause: e })
    }
    if (line === undefined) return undefined
    const m = parse(line)
    this.log.debug(`P2P < ${m ? lineOf(m) : JSON.stringify(line.slice(0, 200))}`)
    return m ?? null
  }

  private ended(): Error {
    const r: unknown = this.ac.signal.reason
    return r instanceof Error ? r : new AbortedError('session closed')
  }

  async run(): Promise<void> {
    this.send({ type: 'AUTH-SUCCESS', uuid: this.served.uuid })
    for (;;) {
      const m = await this.next()
      if (m === undefined) return
      if (m === null) {
        this.error('unknown command')
        continue
      }
      // The client gave up; its state is unknown, so the server ends (P2P/Protocol.hs serverLoop).
      if (m.type === 'ERROR') return
      await this.handle(m)
    }
  }

  private target(): Promise<Remote | undefined> {
    this.remote ??= this.served.resolve(this.bypass)
    return this.remote
  }

  private async withRemote(f: (r: Remote) => Promise<void>, onError: (e: unknown) => void): Promise<void> {
    let r: Remote | undefined
    try {
      r = await this.target()
      if (!r) throw new UnknownRepoError(`repository ${this.served.uuid} cannot be reached from here without passing a gateway already on the path`)
    } catch (e) {
      onError(e)
      return
    }
    try {
      await f(r)
    } catch (e) {
      if (e instanceof SessionEndedError || this.outputError) throw e
      onError(e)
    }
  }

  /** A failed request answered in its SUCCESS/FAILURE slot: FAILURE, or ERROR where the map says so. */
  private failed(e: unknown): void {
    this.report(e)
    const w = toP2p(e)
    if (w.reply === 'FAILURE') this.send({ type: 'FAILURE' })
    else this.error(w.text)
  }

  /** A failed request whose only possible failure answer is ERROR (GET, PUT before PUT-FROM, GETTIMESTAMP). */
  private errored(e: unknown): void {
    this.report(e)
    this.error(toP2p(e).text)
  }

  private report(e: unknown): void {
    if (e instanceof ProxyError) this.log.info(`request refused: ${e.message}`)
    else this.log.error({ err: e }, 'request failed')
  }

  private async handle(m: Message): Promise<void> {
    switch (m.type) {
      case 'VERSION':
        this.version = Math.min(m.version, MAX_PROTOCOL_VERSION)
        this.send({ type: 'VERSION', version: this.version })
        return
      case 'BYPASS':
        if (!this.remote) this.bypass = m.uuids
        return
      case 'CHECKPRESENT':
        return this.withRemote(async (r) => this.outcome({ ok: await r.checkPresent(m.key, this.op()), plusUuids: [] }), (e) => this.failed(e))
      case 'LOCKCONTENT':
        return this.lockContent(m.key)
      case 'REMOVE':
      case 'REMOVE-BEFORE':
        return this.remove(m.key, m.type === 'REMOVE-BEFORE' ? m.timestamp : undefined)
      case 'GETTIMESTAMP':
        return this.withRemote(async (r) => this.send({ type: 'TIMESTAMP', timestamp: await r.timestamp(this.op()) }), (e) => this.errored(e))
      case 'GET':
        return this.get(m.key, m.offset, m.af)
      case 'PUT':
        return this.put(m.key, m.af)
      case 'CONNECT':
        // git-annex-shell's stdio connection has no git repository to relay to (P2P/IO.hs).
        throw new SessionEndedError('relaying to git not supported on this connection')
      case 'NOTIFYCHANGE':
        throw new SessionEndedError('change notification not available')
      default:
        this.error('unexpected command')
    }
  }

  /** SUCCESS/FAILURE, or their -PLUS forms when there are other repositories to name (v2+). */
  private outcome(o: Outcome): void {
    if (this.version >= 2 && o.plusUuids.length > 0) this.send({ type: o.ok ? 'SUCCESS-PLUS' : 'FAILURE-PLUS', uuids: o.plusUuids })
    else this.send({ type: o.ok ? 'SUCCESS' : 'FAILURE' })
  }

  private async lockContent(key: Key): Promise<void> {
    let lock: Awaited<ReturnType<Remote['lock']>>
    try {
      await this.withRemote(
        async (r) => {
          try {
            lock = await r.lock(key, this.op())
          } catch (e) {
            // A cluster cannot lock (spec §3.4): clients then lock single nodes.
            if (!(e instanceof NotSupportedError)) throw e
          }
          this.send({ type: lock ? 'SUCCESS' : 'FAILURE' })
        },
        (e) => this.failed(e),
      )
      if (!lock) return
      // Exactly one message follows a granted lock; anything but UNLOCKCONTENT releases it too.
      const m = await this.next()
      if (m !== undefined && m?.type !== 'UNLOCKCONTENT') this.error('expected UNLOCKCONTENT')
    } finally {
      await lock?.release().catch((e: unknown) => this.log.warn({ err: e }, 'releasing a content lock failed'))
    }
  }

  private async remove(key: Key, before: number | undefined): Promise<void> {
    if (this.opts.mode === 'read-only') return this.failed(new ReadOnlyError(READ_ONLY_TEXT))
    if (this.opts.mode === 'append-only') return this.failed(new AppendOnlyError(APPEND_ONLY_TEXT))
    await this.withRemote(
      async (r) => {
        let removed: Removed
        try {
          removed = before === undefined ? await r.remove(key, this.op()) : await r.removeBefore(key, before, this.op())
        } catch (e) {
          // The reference ends the session on locked content (spec §9.7); a refusal is what clients can use.
          if (!(e instanceof LockedError)) throw e
          this.log.info(`remove refused: ${e.message}`)
          removed = { removed: false, plusUuids: [] }
        }
        this.outcome({ ok: removed.removed, plusUuids: removed.plusUuids })
      },
      (e) => this.failed(e),
    )
  }

  private async get(key: Key, offset: number, af: string | undefined): Promise<void> {
    let started = false
    await this.withRemote(
      async (r) => {
        const got = await r.retrieve(key, offset, this.op(af))
        started = true
        this.send({ type: 'DATA', length: got.length })
        await this.sendBytes(got.body, got.length)
        const valid = await got.valid.catch(() => false)
        if (this.version >= 1) this.send({ type: valid ? 'VALID' : 'INVALID' })
      },
      (e) => this.errored(e),
    )
    // The announced bytes were sent (else the session has ended): the client now says what it made
    // of them, SUCCESS or FAILURE, or at v2+ their -PLUS forms (P2P/Protocol.hs checkSuccessPlus).
    if (!started) return
    const m = await this.next()
    if (m === undefined) return
    const expected = this.version >= 2 ? ['SUCCESS', 'FAILURE', 'SUCCESS-PLUS', 'FAILURE-PLUS', 'ERROR'] : ['SUCCESS', 'FAILURE', 'ERROR']
    if (m === null || !expected.includes(m.type)) {
      this.error(this.version >= 2 ? 'expected SUCCESS or SUCCESS-PLUS or FAILURE or FAILURE-PLUS' : 'expected SUCCESS or FAILURE')
    }
  }

  /** Writes exactly `length` bytes of `body`; anything else leaves the stream unframeable and ends the session. */
  private async sendBytes(body: Readable, length: number): Promise<void> {
    let sent = 0
    try {
      // Read to the body's own end: its `valid` is decided there. Bytes beyond the
      // announced length (a remote that sends more) are dropped.
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (this.outputError) throw this.outputError
        const part = sent + chunk.length > length ? chunk.subarray(0, length - sent) : chunk
        sent += part.length
        if (part.length > 0 && !this.output.write(part)) await drained(this.output, this.ac.signal)
      }
    } catch (e) {
      body.destroy()
      throw new SessionEndedError(`sending content failed after ${sent} of ${length} bytes: ${(e as Error).message}`, { cause: e })
    }
    if (sent < length) throw new SessionEndedError(`the content ended after ${sent} of the ${length} bytes announced`)
  }

  private async put(key: Key, af: string | undefined): Promise<void> {
    if (this.opts.mode === 'read-only') return this.errored(new ReadOnlyError(READ_ONLY_TEXT))
    let remote: Remote | undefined
    let offset = 0
    await this.withRemote(
      async (r) => {
        const start = await r.startStore(key, this.op(af))
        if (start.kind === 'present') {
          if (this.version >= 2 && start.plusUuids.length > 0) this.send({ type: 'ALREADY-HAVE-PLUS', uuids: start.plusUuids })
          else this.send({ type: 'ALREADY-HAVE' })
          return
        }
        remote = r
        offset = start.offset
        this.send({ type: 'PUT-FROM', offset })
      },
      (e) => this.errored(e),
    )
    if (!remote) return
    const m = await this.next()
    if (m === undefined) return
    if (m?.type === 'DATA') {
      const o = await this.receive(remote, key, offset, m.length, af)
      if (o) this.outcome(o)
      return
    }
    if (m?.type === 'DATA-PRESENT' && this.version >= 4) {
      let o: Outcome
      try {
        const s = await remote.storePresent(key, this.op(af))
        o = { ok: s.stored, plusUuids: s.plusUuids }
      } catch (e) {
        if (this.outputError) throw e
        return this.failed(e)
      }
      return this.outcome(o)
    }
    // The client gave up on this upload (P2P/Protocol.hs receiveContent): no answer.
    if (m?.type === 'ERROR') return
    this.error('expected DATA')
  }

  /**
   * Hands the DATA payload to the store while reading all of it here. Bytes the store stops
   * taking are read and dropped; a connection that breaks mid-payload ends the body normally
   * (every byte that arrived reaches the store, which keeps them for resume) and reports the
   * sender's copy as not valid, then ends the session.
   */
  private async receive(remote: Remote, key: Key, offset: number, length: number, af: string | undefined): Promise<Outcome | undefined> {
    const payload = this.reader.payload(length)
    const body = new PassThrough({ highWaterMark: 1 << 20 })
    let broken: Error | undefined
    const pump = (async () => {
      try {
        for await (const chunk of payload as AsyncIterable<Buffer>) {
          if (body.destroyed || body.writableEnded) continue
          if (!body.write(chunk)) await drainedOrClosed(body)
        }
      } catch (e) {
        broken = new SessionEndedError(`the client went away during an upload: ${(e as Error).message}`, { cause: e })
      } finally {
        if (!body.destroyed) body.end()
      }
    })()
    // v1+: VALID or INVALID follows the bytes; v0 cannot say, and the store verifies anyway.
    const validity = pump.then(async () => {
      if (broken) return false
      if (this.version < 1) return true
      const m = await this.next()
      if (m?.type === 'VALID') return true
      if (m?.type === 'INVALID') return false
      if (m === undefined) throw new SessionEndedError('the client went away before saying whether its content was valid')
      this.error('expected VALID or INVALID')
      return false
    })
    // Settles only through `validity`; the session's own read of it reports the failure.
    const senderValid = validity.catch(() => false)
    let stored: Stored | undefined
    let failure: unknown
    try {
      stored = await remote.store(key, body, offset, { ...this.op(af), senderValid })
    } catch (e) {
      failure = e
    }
    // The store may have stopped reading (refused, or failed part-way): the rest is dropped.
    if (!body.writableFinished) body.destroy()
    await pump
    if (broken) {
      // As the reference: the store's verdict, though nobody is left to read it.
      if (!this.outputError) this.output.write(encodeLine({ type: 'FAILURE' }))
      throw broken
    }
    await validity
    if (stored) return { ok: stored.stored, plusUuids: stored.plusUuids }
    if (failure instanceof HashMismatchError || failure instanceof LengthMismatchError || failure instanceof AbortedError) {
      // Content that did not verify, or that its sender disowned: a refused store, not a server error.
      this.log.info(`${serializeKey(key)} not stored: ${(failure as Error).message}`)
      return { ok: false, plusUuids: [] }
    }
    if (this.outputError) throw this.outputError
    this.report(failure)
    const w = toP2p(failure)
    if (w.reply === 'FAILURE') return { ok: false, plusUuids: [] }
    this.error(w.text)
    return undefined
  }
}

function lineOf(m: Message): string {
  return encodeLine(m).slice(0, -1)
}

/** Resolves on 'drain'; rejects when the stream closes first or `signal` aborts. */
async function drained(w: Writable, signal: AbortSignal): Promise<void> {
  const ac = new AbortController()
  const onAbort = () => ac.abort()
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    await Promise.race([
      once(w, 'drain', { signal: ac.signal }),
      once(w, 'close', { signal: ac.signal }).then(() => {
        throw new SessionEndedError('the connection to the client closed')
      }),
    ])
  } catch (e) {
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new AbortedError('session closed')
    throw e
  } finally {
    signal.removeEventListener('abort', onAbort)
    ac.abort()
  }
}

/** Resolves on 'drain' or 'close', whichever comes first. */
async function drainedOrClosed(w: Writable): Promise<void> {
  if (w.destroyed) return
  const ac = new AbortController()
  try {
    await Promise.race([once(w, 'drain', { signal: ac.signal }), once(w, 'close', { signal: ac.signal })])
  } catch {
    // 'error' before drain or close: the store failed; the payload is dropped from here on.
  } finally {
    ac.abort()
  }
}
