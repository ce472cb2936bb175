// StdioRepo: a git-annex repository reached through `git-annex-shell p2pstdio` (spec §1.4),
// spawned locally or, with `command`, through ssh. A small pool of P2P sessions is kept:
// spawned on demand, reused when idle, at most `maxSessions` at once (held locks count).
//
// Storing streams the body as one DATA frame while it is verified here (when we have the
// whole content, i.e. offset 0). The last byte of the frame is held back until the verdict:
// on success it goes out followed by VALID; on failure the peer must refuse, but INVALID
// alone only makes it re-verify, and content that is right (a sender that reported a
// change, a body with extra bytes after the right ones) would then be committed (observed
// with 10.20250416). So the held byte goes out flipped: the peer's verification fails, it
// deletes its temp file and answers FAILURE. Bodies that end short or break off close the
// connection instead; the peer keeps what arrived, which is what resume needs.
// Limits: a key without a size cannot be stored (DATA needs its length first:
// NotSupportedError); a key with no hash (WORM, URL) that must be refused after all its
// bytes arrived can only be refused by closing the connection, so the peer keeps all but
// the last byte; a retrieve holds its session until its body is consumed or destroyed,
// and a held lock holds one until released or until close() (which waits for retrieves
// and ends the sessions of held locks).
// A resumed store (the peer holds a prefix we did not send now) cannot be vouched for here,
// so it ends with INVALID, which makes the peer verify the whole file even with
// annex.verify=false (where a fresh PUT ending VALID is committed unchecked, observed).
import { untilAborted } from './until-aborted.js'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { PassThrough, type Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  AbortedError,
  DiskFullError,
  HashMismatchError,
  LengthMismatchError,
  LockedError,
  NotSupportedError,
  ProxyError,
  RemoteUnavailableError,
  TransferInProgressError,
} from '../errors.js'
import { expectedDigest } from '../keys/backend.js'
import { serializeKey, type Key } from '../keys/key.js'
import { ClientSession, type Outcome } from '../protocol/p2p/client-session.js'
import { createVerifier } from '../streams/verify.js'
import { asUuid, RemoteBase, type Capability, type Lock, type Op, type Retrieved, type StoreOp, type StoreStart, type Stored, type Uuid, type Removed } from './remote.js'

export interface StdioRepoOptions {
  /** The peer repository's UUID: selects what git-annex-shell serves and must match its greeting. */
  readonly uuid: string
  /** Our UUID, passed as the client UUID (the peer uses it for transfer logs only). */
  readonly clientUuid: string
  /** The repository directory as the peer sees it (absolute, or `/~/…` over ssh). */
  readonly dir: string
  /**
   * The argv that starts one session, given git-annex-shell's arguments. Default: run
   * `git-annex-shell` locally. Over ssh: `(a) => ['ssh', host, shellQuote(['git-annex-shell', ...a])]`.
   */
  readonly command?: (shellArgs: readonly string[]) => readonly [string, ...string[]]
  /** Most sessions (processes) at once; default 4. */
  readonly maxSessions?: number
  /** An idle session is ended after this long (ms); default 60 000. */
  readonly idleMs?: number
  /** Most idle sessions kept open; one more coming back is ended at once. Default: maxSessions. */
  readonly maxIdle?: number
  /** Environment for the process; default process.env (GIT_ANNEX_SHELL_READONLY etc. apply). */
  readonly env?: NodeJS.ProcessEnv
  /** Gateways the peer must not route through (sent as BYPASS). */
  readonly bypass?: readonly string[]
  /** Highest protocol version to offer; default 4. */
  readonly maxVersion?: number
}

const CAPABILITIES: readonly Capability[] = ['retrieve-from-offset', 'resume-store', 'lock', 'remove-before', 'timestamp']
const STDERR_KEEP = 16 * 1024

/** One git-annex-shell process and the session on its stdio. */
class Peer {
  private stderr = ''
  readonly exited: Promise<void>
  /** Ends the session once it has been idle too long (set while in the pool). */
  idleTimer: NodeJS.Timeout | undefined

  private constructor(
    readonly child: ChildProcessWithoutNullStreams,
    public session: ClientSession | undefined,
  ) {
    // 'exit', not 'close': 'close' also waits for stdout to be read to its end, which
    // nobody does once a session has broken.
    this.exited = once(child, 'exit').then(
      () => undefined,
      () => undefined,
    )
    void (async () => {
      for await (const d of child.stderr.setEncoding('utf8') as AsyncIterable<string>) {
        this.stderr = (this.stderr + d).slice(-STDERR_KEEP)
      }
    })().catch(() => undefined)
  }

  static async spawn(o: StdioRepoOptions): Promise<Peer> {
    const shellArgs = ['p2pstdio', o.dir, o.clientUuid, '--uuid', o.uuid]
    const [cmd, ...args] = o.command ? o.command(shellArgs) : (['git-annex-shell', ...shellArgs] as const)
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: o.env ?? process.env })
    const peer = new Peer(child, undefined)
    const spawned = once(child, 'spawn').catch((e: Error) => {
      throw new RemoteUnavailableError(`cannot run ${cmd}: ${e.message}`, { cause: e })
    })
    try {
      await spawned
      peer.session = await ClientSession.open(
        { input: child.stdout, output: child.stdin },
        { expectUuid: o.uuid, maxVersion: o.maxVersion ?? 4, bypass: o.bypass ?? [] },
      )
    } catch (e) {
      await peer.end()
      throw new RemoteUnavailableError(`cannot open a p2pstdio session to ${o.dir}: ${(e as Error).message}${peer.why()}`, { cause: e })
    }
    return peer
  }

  get s(): ClientSession {
    return this.session!
  }

  get broken(): boolean {
    return !this.session || this.session.error !== undefined || this.child.exitCode !== null || this.child.signalCode !== null
  }

  /** What the process said on stderr, for error messages. */
  why(): string {
    const t = this.stderr.trim()
    return t ? ` (${t.split('\n').slice(-3).join('; ')})` : ''
  }

  /** Ends the connection gracefully (the peer sees EOF after every byte sent), waits for exit. */
  async end(): Promise<void> {
    this.session?.destroy()
    if (!this.child.stdin.writableEnded) this.child.stdin.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000)
    await this.exited
    clearTimeout(timer)
    this.child.stdout.destroy()
  }
}

interface InFlight {
  /** Bytes the peer will hold if the upload stops now. */
  sent: number
}

export class StdioRepo extends RemoteBase {
  readonly uuid: Uuid
  readonly capabilities: ReadonlySet<Capability> = new Set(CAPABILITIES)
  private readonly max: number
  private readonly idle: Peer[] = []
  private live = 0
  private readonly waiters: Array<() => void> = []
  private readonly storing = new Map<string, InFlight>()
  /** Sessions that hold a lock: not in the pool until the lock is released. */
  private readonly locking = new Set<Peer>()

  constructor(private readonly opts: StdioRepoOptions) {
    super()
    this.uuid = asUuid(opts.uuid)
    this.max = opts.maxSessions ?? 4
    if (!Number.isInteger(this.max) || this.max < 1) throw new TypeError(`maxSessions must be a positive integer, not ${this.max}`)
  }

  /** What it was opened with: another StdioRepo with these reaches the same peer. */
  get options(): StdioRepoOptions {
    return this.opts
  }

  protected override describe(): string {
    return `git-annex-shell peer ${this.opts.dir}`
  }

  // ---- pool -------------------------------------------------------------------------

  private async acquire(signal: AbortSignal): Promise<Peer> {
    for (;;) {
      if (signal.aborted) throw new AbortedError('operation aborted')
      let p: Peer | undefined
      while ((p = this.idle.pop())) {
        clearTimeout(p.idleTimer)
        if (!p.broken) return p
        this.live--
        void p.end()
      }
      if (this.live < this.max) {
        this.live++
        try {
          return await Peer.spawn(this.opts)
        } catch (e) {
          this.live--
          this.wake()
          throw e
        }
      }
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const i = this.waiters.indexOf(wake)
          if (i >= 0) this.waiters.splice(i, 1)
          reject(new AbortedError('operation aborted'))
        }
        const wake = () => {
          signal.removeEventListener('abort', onAbort)
          resolve()
        }
        signal.addEventListener('abort', onAbort, { once: true })
        this.waiters.push(wake)
      })
    }
  }

  private wake(): void {
    this.waiters.shift()?.()
  }

  /** Returns a session to the pool, or ends it when broken (waiting for the process to exit). */
  private async release(p: Peer): Promise<void> {
    if (p.broken || this.closed || this.idle.length >= (this.opts.maxIdle ?? this.max)) {
      await p.end()
      this.live--
    } else {
      this.idle.push(p)
      p.idleTimer = setTimeout(() => void this.retire(p), this.opts.idleMs ?? 60_000).unref()
    }
    this.wake()
  }

  /** Ends an idle session that nobody took in time. */
  private async retire(p: Peer): Promise<void> {
    const i = this.idle.indexOf(p)
    if (i < 0) return
    this.idle.splice(i, 1)
    await p.end()
    this.live--
    this.wake()
  }

  /** Turns a session failure into a domain error, using what the process said on stderr. */
  private async explain(p: Peer, e: unknown): Promise<Error> {
    // Our own verdicts (length, hash, abort) stay as they are; only session failures are explained.
    if (!p.broken || (e instanceof ProxyError && !(e instanceof RemoteUnavailableError))) return e as Error
    await Promise.race([p.exited, new Promise((r) => setTimeout(r, 5000).unref())])
    const why = p.why()
    if (/content is locked/.test(why)) return new LockedError(`the content is locked on ${this.opts.dir}`, { cause: e })
    if (/already in progress|transfer.*in progress/i.test(why)) return new TransferInProgressError(`a transfer of this key is in progress on ${this.opts.dir}`, { cause: e })
    if (/free space|no space left/i.test(why)) return new DiskFullError(`not enough free space on ${this.opts.dir}${why}`, { cause: e })
    if (e instanceof ProxyError) return why ? new RemoteUnavailableError(`${e.message}${why}`, { cause: e }) : e
    return new RemoteUnavailableError(`session to ${this.opts.dir} failed: ${String(e)}${why}`, { cause: e })
  }

  /**
   * Runs one request on a pooled session. An abort mid-request costs the session: there is
   * no way to cancel a request in the protocol, so the connection is closed.
   */
  private async request<T>(op: Op, fn: (s: ClientSession) => Promise<T>): Promise<T> {
    const p = await this.acquire(op.signal)
    const onAbort = () => p.s.destroy(new AbortedError('operation aborted'))
    op.signal.addEventListener('abort', onAbort, { once: true })
    try {
      return await fn(p.s)
    } catch (e) {
      const err = await this.explain(p, e)
      op.log.debug({ err, dir: this.opts.dir }, 'p2pstdio request failed')
      throw err
    } finally {
      op.signal.removeEventListener('abort', onAbort)
      await this.release(p)
    }
  }

  private needVersion(s: ClientSession, v: number, what: string): void {
    if (s.version < v) throw new NotSupportedError(`${what} needs P2P protocol version ${v}; ${this.opts.dir} speaks ${s.version}`)
  }

  // ---- Remote -----------------------------------------------------------------------

  protected doCheckPresent(key: Key, op: Op): Promise<boolean> {
    return this.request(op, (s) => s.checkPresent(key))
  }

  /** The session is held until the body is done with; an abort destroys the body (RemoteBase). */
  protected async doRetrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new LengthMismatchError(`bad offset ${offset}`)
    const p = await this.acquire(op.signal)
    let got
    try {
      got = await p.s.get(key, offset, op.associatedFile)
    } catch (e) {
      const err = await this.explain(p, e)
      await this.release(p)
      throw err
    }
    const valid = got.valid.then(
      (v) => v,
      () => false,
    )
    void valid.then(() => this.release(p))
    return { length: got.length, body: got.body, valid }
  }

  protected async doStartStore(key: Key, op: Op): Promise<StoreStart> {
    const flight = this.storing.get(serializeKey(key))
    if (flight) return { kind: 'offset', offset: flight.sent }
    return this.request(op, async (s) => {
      const start = await s.put(key)
      if (start.kind === 'already-have') return { kind: 'present', plusUuids: start.plusUuids.map(asUuid) }
      // Like p2phttp's putoffset: `DATA 0` + INVALID ends the PUT, the temp file stays.
      await start.sendData(emptyBody(), 0, Promise.resolve(false))
      return { kind: 'offset', offset: start.offset }
    })
  }

  /** Refusals before the body is read leave it to RemoteBase, which drains it. */
  protected async doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    const id = serializeKey(key)
    if (this.storing.has(id)) throw new TransferInProgressError(`a store of ${id} to ${this.opts.dir} is already in progress`)
    const flight: InFlight = { sent: offset }
    this.storing.set(id, flight)
    try {
      return await this.storeClaimed(key, id, body, offset, op, flight)
    } finally {
      // Before the caller sees the result: a store issued in its then() is not concurrent.
      this.storing.delete(id)
    }
  }

  private async storeClaimed(key: Key, id: string, body: Readable, offset: number, op: StoreOp, flight: InFlight): Promise<Stored> {
    const size = key.size
    if (size === undefined) throw new NotSupportedError(`${id} has no size: a P2P DATA frame needs the length up front`)
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > size) throw new LengthMismatchError(`offset ${offset} is outside the ${size} bytes of ${id}`)
    const p = await this.acquire(op.signal)
    try {
      const start = await p.s.put(key, op.associatedFile)
      if (start.kind === 'already-have') return { stored: true, plusUuids: start.plusUuids.map(asUuid) }
      const kept = start.offset
      if (kept < offset || kept > size) {
        await start.sendData(emptyBody(), 0, Promise.resolve(false))
        throw new LengthMismatchError(`cannot resume ${id} at ${offset}: ${this.opts.dir} keeps ${kept} bytes`)
      }
      flight.sent = kept
      // Body bytes [skip, skip + n) form the DATA frame; the ones before it the peer has.
      const skip = kept - offset
      const n = size - kept
      const last = skip + n - 1
      // Verified at the gateway already (a cluster's verifiedTee): counted here, not re-hashed,
      // and VALID only once that verdict is in. The peer verifies what it receives either way.
      const verifier = offset === 0 ? await createVerifier(key, { upstream: { vouched: op.vouched, body, offset } }) : undefined
      const out = new PassThrough()
      let verdict!: (ok: boolean) => void
      const valid = new Promise<boolean>((r) => (verdict = r))
      const sending = start.sendData(out, n, valid)
      // If the session dies while sending (the peer gave up: disk full, a concurrent
      // transfer), that is the story to tell, not the stalled body.
      let sendError: Error | undefined
      let decided = false
      sending.catch((e: Error) => {
        if (!decided) sendError = e
        out.destroy(e)
      })
      let seen = 0
      let held: number | undefined
      const signal = op.signal
      const tap = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
        for await (const chunk of source) {
          const from = seen
          seen += chunk.length
          const a = Math.max(from, skip)
          const b = Math.min(seen, last)
          if (b > a) {
            if (!out.write(chunk.subarray(a - from, b - from))) await drained(out, signal)
            flight.sent += b - a
          }
          if (n > 0 && from <= last && last < seen) held = chunk[last - from]
          if (seen > skip + n) throw new LengthMismatchError(`received more than the ${size} bytes of ${id}`)
          yield chunk
        }
        if (seen < skip + n) throw new LengthMismatchError(`received ${offset + seen} of the ${size} bytes of ${id}`)
      }
      const sink = async (source: AsyncIterable<unknown>): Promise<void> => {
        for await (const _ of source);
      }
      let failure: Error | undefined
      try {
        if (verifier) await pipeline(body, tap, verifier, sink, { signal })
        else await pipeline(body, tap, sink, { signal })
        if (op.senderValid && !(await untilAborted(op.senderValid, signal))) {
          failure = new AbortedError('the sender reported that the content changed while it was sent')
        }
      } catch (e) {
        failure = signal.aborted ? new AbortedError('store aborted', { cause: e }) : e instanceof ProxyError ? e : new AbortedError('upload interrupted', { cause: e })
      }
      const complete = seen >= skip + n
      decided = true
      if (!failure) {
        out.end(held === undefined ? undefined : Buffer.of(held))
        // VALID lets the peer skip its own check when annex.verify=false (observed: a fresh
        // PUT with VALID then commits whatever arrived), so it is only said of content
        // verified here. A resumed store, whose prefix we did not send now, says INVALID:
        // the peer verifies the whole file (10.20250416 re-hashes a resumed prefix anyway;
        // this does not depend on that).
        verdict(verifier !== undefined && skip === 0)
        const r = await sending
        if (r.ok) return { stored: true, plusUuids: r.plusUuids.map(asUuid) }
        throw new HashMismatchError(`${this.opts.dir} refused the content of ${id} (its verification failed)`)
      }
      if (complete && expectedDigest(key) !== undefined) {
        // Every byte arrived but must not be committed: make the peer's check fail.
        out.end(held === undefined ? undefined : Buffer.of(held ^ 0xff))
      } else {
        // Fewer bytes than announced: the connection closes and the peer keeps them.
        out.end()
      }
      verdict(false)
      await sending.catch(() => undefined)
      throw sendError && !signal.aborted ? sendError : failure
    } catch (e) {
      // A body never read (the peer refused before DATA) is drained by RemoteBase.
      throw await this.explain(p, e)
    } finally {
      await this.release(p)
    }
  }

  protected doStorePresent(key: Key, op: Op): Promise<Stored> {
    return this.request(op, async (s) => {
      const start = await s.put(key, op.associatedFile)
      if (start.kind === 'already-have') return { stored: true, plusUuids: start.plusUuids.map(asUuid) }
      if (s.version < 4) {
        await start.sendData(emptyBody(), 0, Promise.resolve(false))
        throw new NotSupportedError(`data-present needs P2P protocol version 4; ${this.opts.dir} speaks ${s.version}`)
      }
      return stored(await start.dataPresent())
    })
  }

  protected doRemove(key: Key, op: Op): Promise<Removed> {
    return this.request(op, async (s) => removed(await s.remove(key)))
  }

  protected doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    return this.request(op, async (s) => {
      this.needVersion(s, 3, 'REMOVE-BEFORE')
      return removed(await s.removeBefore(Math.max(0, Math.min(Math.floor(deadline), Number.MAX_SAFE_INTEGER)), key))
    })
  }

  protected doTimestamp(op: Op): Promise<number> {
    return this.request(op, (s) => {
      this.needVersion(s, 3, 'GETTIMESTAMP')
      return s.getTimestamp()
    })
  }

  protected async doLock(key: Key, op: Op): Promise<Lock | undefined> {
    const p = await this.acquire(op.signal)
    let held
    try {
      held = await p.s.lockContent(key)
    } catch (e) {
      const err = await this.explain(p, e)
      await this.release(p)
      throw err
    }
    if (!held) {
      await this.release(p)
      return undefined
    }
    let released: Promise<void> | undefined
    const h = held
    this.locking.add(p)
    return {
      release: () =>
        (released ??= (async () => {
          // Ended by close() already: the peer's lock went with its session.
          if (!this.locking.delete(p)) return
          try {
            await h.unlock()
          } finally {
            await this.release(p)
          }
        })()),
    }
  }

  /**
   * Once no call is in flight (RemoteBase): ends every session, idle ones and those
   * holding locks (git-annex-shell drops its lock when its session ends).
   */
  protected async doClose(): Promise<void> {
    const all = [...this.idle.splice(0), ...this.locking]
    this.locking.clear()
    for (const p of all) clearTimeout(p.idleTimer)
    await Promise.all(all.map((p) => p.end()))
    this.live -= all.length
    for (const w of this.waiters.splice(0)) w()
  }
}

/** POSIX shell quoting: each word in single quotes, embedded quotes as '\''. */
export function shellQuote(words: readonly string[]): string {
  return words.map((w) => `'${w.replaceAll("'", "'\\''")}'`).join(' ')
}

/**
 * `command` for a peer over ssh (spec §1.4): the remote side gets one shell-quoted string,
 * `git-annex-shell 'p2pstdio' '<dir>' '<client-uuid>' '--uuid' '<uuid>'`. `ssh` and its
 * options (port, identity, BatchMode…) come first.
 */
export function sshCommand(host: string, ssh: readonly string[] = ['ssh', '-o', 'BatchMode=yes']): (shellArgs: readonly string[]) => readonly [string, ...string[]] {
  const [cmd, ...opts] = ssh
  if (!cmd) throw new TypeError('sshCommand needs a program')
  return (shellArgs) => [cmd, ...opts, '--', host, `git-annex-shell ${shellQuote(shellArgs)}`]
}

export function openStdioRepo(opts: StdioRepoOptions): StdioRepo {
  return new StdioRepo(opts)
}

function stored(o: Outcome): Stored {
  return { stored: o.ok, plusUuids: o.plusUuids.map(asUuid) }
}

function removed(o: Outcome): Removed {
  return { removed: o.ok, plusUuids: o.plusUuids.map(asUuid) }
}

async function* emptyBody(): AsyncGenerator<Uint8Array> {}

/** Resolves on 'drain'; rejects when the stream closes or errors first, or on abort. */
async function drained(w: Writable, signal: AbortSignal): Promise<void> {
  const ac = new AbortController()
  const onAbort = () => ac.abort()
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    await Promise.race([
      once(w, 'drain', { signal: ac.signal }),
      once(w, 'close', { signal: ac.signal }).then(() => {
        throw new AbortedError('the session ended while sending')
      }),
    ])
  } catch (e) {
    if (signal.aborted) throw new AbortedError('store aborted', { cause: e })
    throw e
  } finally {
    signal.removeEventListener('abort', onAbort)
    ac.abort()
  }
}

