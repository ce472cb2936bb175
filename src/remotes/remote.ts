// The one contract every store implements: local repositories, upstream p2phttp
// repositories, git-annex-shell peers, S3 and clusters (composites of Remotes), and the
// one lifecycle they all share (RemoteBase), written once here in the spirit of undici's
// lib/dispatcher/dispatcher-base.js: close() refuses new work at once and then drains
// what is in flight; destroy() aborts what is in flight; both are idempotent.
import { finished, type Readable } from 'node:stream'
import { AbortedError, ClosedError } from '../errors.js'
import type { Key } from '../keys/key.js'
import { linkedSignal, type LinkedSignal } from '../streams/linked-signal.js'
import type { Vouched } from '../streams/verify.js'

// Defined with the other UUID rules in annex/uuid.ts; the Remote contract speaks in them.
export { asUuid, type Uuid } from '../annex/uuid.js'
import type { Uuid } from '../annex/uuid.js'

export type Capability =
  | 'retrieve-from-offset' // retrieve(key, offset>0) reads only the tail
  | 'resume-store' // storedOffset() can be > 0 and store() continues from it
  | 'lock' // lock() holds content against removal
  | 'remove-before' // removeBefore() with a deadline on the remote's monotonic clock
  | 'timestamp' // timestamp() answers the remote's monotonic clock

export const ALL_CAPABILITIES: readonly Capability[] = [
  'retrieve-from-offset',
  'resume-store',
  'lock',
  'remove-before',
  'timestamp',
]

export interface Logger {
  info(obj: object | string, msg?: string): void
  warn(obj: object | string, msg?: string): void
  error(obj: object | string, msg?: string): void
  debug(obj: object | string, msg?: string): void
}

/** Per-operation context: one AbortSignal fires when the client goes away or the server closes. */
export interface Op {
  readonly signal: AbortSignal
  readonly log: Logger
  /** The requesting client's UUID, for logs only. */
  readonly client?: string
  /** Informational file name from the client. */
  readonly associatedFile?: string
  /**
   * Retrieve only: the caller reads a part of the content (an HTTP Range) and needs no
   * verdict on the whole object, so work done only for that verdict (the chunk cache
   * reading a prefix again to hash it) is skipped; `valid` may then be only the remote's
   * own check.
   */
  readonly readsPart?: boolean
}

export interface Retrieved {
  /** Bytes that `body` will deliver: size - offset, or 0 when the key is absent. */
  readonly length: number
  readonly body: Readable
  /**
   * Resolves true when the bytes sent were the object's content unchanged,
   * false when the content changed while being read (the receiver must discard).
   */
  readonly valid: Promise<boolean>
}

export interface Stored {
  readonly stored: boolean
  /** Other repositories that now hold the content (clusters). */
  readonly plusUuids: readonly Uuid[]
}

export interface Removed {
  readonly removed: boolean
  readonly plusUuids: readonly Uuid[]
}

export interface Lock {
  /** Releases the lock; idempotent. */
  release(): Promise<void>
}

/** What a store has of a key before an upload: either all of it, or a resumable prefix. */
export type StoreStart =
  | { readonly kind: 'present'; readonly plusUuids: readonly Uuid[] }
  | { readonly kind: 'offset'; readonly offset: number }

/** What store() takes besides the common context. */
export interface StoreOp extends Op {
  /** Resolves false when the sender says the bytes changed while it sent them: do not commit. */
  readonly senderValid?: Promise<boolean>
  /**
   * The body is a branch of a verifiedTee (a cluster upload verified once at the gateway):
   * a Remote in this process may pass it to createVerifier (`upstream`) instead of hashing
   * the bytes again. One that does not simply verifies them itself.
   */
  readonly vouched?: Vouched
}

export interface Remote {
  readonly uuid: Uuid
  readonly capabilities: ReadonlySet<Capability>
  checkPresent(key: Key, op: Op): Promise<boolean>
  /**
   * Content from `offset`; an absent key yields length 0 and valid=false. The caller reads
   * `body` to its end or destroys it: until then the retrieve is in flight (close() waits).
   */
  retrieve(key: Key, offset: number, op: Op): Promise<Retrieved>
  /** Present already, or how many bytes of a previous upload are kept (0 unless 'resume-store'). */
  startStore(key: Key, op: Op): Promise<StoreStart>
  /**
   * Stores the bytes of the key from `offset` on; commits only after the whole content
   * verified (hash and length). `valid=false` from the sender means: do not commit.
   * On any failure nothing is visible; a resumable prefix may be kept ('resume-store').
   *
   * `body` belongs to store() from the call on, whatever happens: by the time the promise
   * settles it has been read to its end, is being drained (a refusal before reading —
   * closed, transfer in progress, bad offset, disk reserve — or content already present:
   * the sender can finish and hear the answer), or has been destroyed (a failure while
   * reading). The caller never touches it again.
   */
  store(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored>
  /** Marks a key as stored when its content arrived out of band (v4 data-present). */
  storePresent(key: Key, op: Op): Promise<Stored>
  remove(key: Key, op: Op): Promise<Removed>
  /** Removes only if the remote's monotonic clock is still before `deadline`. */
  removeBefore(key: Key, deadline: number, op: Op): Promise<Removed>
  /** Seconds on the remote's monotonic clock. */
  timestamp(op: Op): Promise<number>
  /** Locks present content against removal; undefined when absent or unlockable. */
  lock(key: Key, op: Op): Promise<Lock | undefined>
  /** True once close() or destroy() was called: new work is refused with ClosedError. */
  readonly closed: boolean
  /**
   * Refuses new work at once (ClosedError), lets work in flight finish (stores commit,
   * retrieve bodies are read to their end), then ends held locks (in-process holds go;
   * retention on disk stays until it expires) and releases resources. Idempotent.
   */
  close(): Promise<void>
  /**
   * Refuses new work and aborts work in flight now: stores commit nothing (a prefix may be
   * kept for resume), retrieve bodies are destroyed; then releases as close() does.
   * Idempotent, and allowed during or after close() (it cuts the drain short).
   */
  destroy(err?: Error): Promise<void>
}

/** Lets `body` run to its end unread, so its sender can finish; its errors are nobody's now. */
export function drain(body: Readable): void {
  if (body.destroyed || body.readableEnded) return
  body.on('error', () => {})
  body.resume()
}

/**
 * The lifecycle every Remote shares, written once: each public method checks that the
 * remote is open, gives the implementation an Op whose signal also fires on destroy(),
 * and counts the work as in flight until it settles (a retrieve: until its body is done
 * with). Implementations write the do* methods and doClose(); they never see a closed
 * remote's calls and need no signal of their own for shutting down.
 */
export abstract class RemoteBase implements Remote {
  abstract readonly uuid: Uuid
  abstract readonly capabilities: ReadonlySet<Capability>
  #state: 'open' | 'closed' | 'destroyed' = 'open'
  readonly #work = new Set<LinkedSignal>()
  readonly #idle: Array<() => void> = []
  #closing: Promise<void> | undefined
  #destroying: Promise<void> | undefined
  #released: Promise<void> | undefined

  protected abstract doCheckPresent(key: Key, op: Op): Promise<boolean>
  protected abstract doRetrieve(key: Key, offset: number, op: Op): Promise<Retrieved>
  protected abstract doStartStore(key: Key, op: Op): Promise<StoreStart>
  /** May leave `body` unread on a refusal: the base drains it. */
  protected abstract doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored>
  protected abstract doStorePresent(key: Key, op: Op): Promise<Stored>
  protected abstract doRemove(key: Key, op: Op): Promise<Removed>
  protected abstract doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed>
  protected abstract doTimestamp(op: Op): Promise<number>
  protected abstract doLock(key: Key, op: Op): Promise<Lock | undefined>
  /** Releases resources; runs once, when nothing is in flight any more. */
  protected abstract doClose(): Promise<void>
  /** Like doClose, after destroy(); by default the same. */
  protected doDestroy(_err: Error | undefined): Promise<void> {
    return this.doClose()
  }

  get closed(): boolean {
    return this.#state !== 'open'
  }

  /** What a refusal says about this remote, e.g. "repository /srv/a". */
  protected describe(): string {
    return `remote ${this.uuid}`
  }

  checkPresent(key: Key, op: Op): Promise<boolean> {
    return this.#run(op, (o) => this.doCheckPresent(key, o))
  }
  startStore(key: Key, op: Op): Promise<StoreStart> {
    return this.#run(op, (o) => this.doStartStore(key, o))
  }
  storePresent(key: Key, op: Op): Promise<Stored> {
    return this.#run(op, (o) => this.doStorePresent(key, o))
  }
  remove(key: Key, op: Op): Promise<Removed> {
    return this.#run(op, (o) => this.doRemove(key, o))
  }
  removeBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    return this.#run(op, (o) => this.doRemoveBefore(key, deadline, o))
  }
  timestamp(op: Op): Promise<number> {
    return this.#run(op, (o) => this.doTimestamp(o))
  }
  lock(key: Key, op: Op): Promise<Lock | undefined> {
    return this.#run(op, (o) => this.doLock(key, o))
  }

  store(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    let work: { op: StoreOp; end: () => void }
    try {
      work = this.#begin(op)
    } catch (e) {
      drain(body)
      return Promise.reject(e)
    }
    let result: Promise<Stored>
    try {
      result = this.doStore(key, body, offset, work.op)
    } catch (e) {
      result = Promise.reject(e)
    }
    return result.finally(() => {
      drain(body)
      work.end()
    })
  }

  async retrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    const work = this.#begin(op)
    let r: Retrieved
    try {
      r = await this.doRetrieve(key, offset, work.op)
    } catch (e) {
      work.end()
      throw e
    }
    // In flight until the body is done with; an abort (the caller's, or destroy()) cuts it.
    const { body } = r
    const signal = work.op.signal
    const onAbort = () => body.destroy(new AbortedError('retrieve aborted', { cause: signal.reason }))
    let ended = false
    const end = () => {
      if (ended) return
      ended = true
      signal.removeEventListener('abort', onAbort)
      cleanup()
      work.end()
    }
    const cleanup = finished(body, () => end())
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    // An empty body nobody reads never ends; its verdict is all there is to wait for.
    if (r.length === 0) r.valid.then(end, end)
    return r
  }

  close(): Promise<void> {
    if (this.#state === 'open') this.#state = 'closed'
    return (this.#closing ??= this.#drained().then(() => this.#release(undefined)))
  }

  destroy(err?: Error): Promise<void> {
    this.#state = 'destroyed'
    this.#destroying ??= (async () => {
      const reason = new AbortedError(`${this.describe()} was destroyed`, err ? { cause: err } : undefined)
      for (const w of this.#work) w.abort(reason)
      await this.#drained()
      await this.#release(err)
    })()
    return this.#destroying
  }

  #release(err: Error | undefined): Promise<void> {
    return (this.#released ??= this.#state === 'destroyed' ? this.doDestroy(err) : this.doClose())
  }

  #drained(): Promise<void> {
    if (this.#work.size === 0) return Promise.resolve()
    return new Promise<void>((resolve) => this.#idle.push(resolve))
  }

  #begin<O extends Op>(op: O): { op: O; end: () => void } {
    if (this.#state !== 'open') throw new ClosedError(`${this.describe()} is closed`)
    const link = linkedSignal(op.signal)
    this.#work.add(link)
    let done = false
    return {
      op: { ...op, signal: link.signal },
      end: () => {
        if (done) return
        done = true
        link.dispose()
        this.#work.delete(link)
        // After a turn of the event loop: the callers of the last calls hear their
        // outcome before close() or destroy() resolves.
        if (this.#work.size === 0 && this.#idle.length > 0) {
          setImmediate(() => {
            if (this.#work.size === 0) for (const wake of this.#idle.splice(0)) wake()
          })
        }
      },
    }
  }

  async #run<T>(op: Op, fn: (op: Op) => Promise<T>): Promise<T> {
    const work = this.#begin(op)
    try {
      return await fn(work.op)
    } finally {
      work.end()
    }
  }
}
