// The one contract every store implements: local repositories, upstream p2phttp
// repositories, git-annex-shell peers, S3 and clusters (composites of Remotes).
import type { Readable } from 'node:stream'
import type { Key } from '../keys/key.js'

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

export interface Remote {
  readonly uuid: Uuid
  readonly capabilities: ReadonlySet<Capability>
  checkPresent(key: Key, op: Op): Promise<boolean>
  /** Content from `offset`; an absent key yields length 0 and valid=false. */
  retrieve(key: Key, offset: number, op: Op): Promise<Retrieved>
  /** Present already, or how many bytes of a previous upload are kept (0 unless 'resume-store'). */
  startStore(key: Key, op: Op): Promise<StoreStart>
  /**
   * Stores the bytes of the key from `offset` on; commits only after the whole content
   * verified (hash and length). `valid=false` from the sender means: do not commit.
   * On any failure nothing is visible; a resumable prefix may be kept ('resume-store').
   */
  store(key: Key, body: Readable, offset: number, op: Op & { readonly senderValid?: Promise<boolean> }): Promise<Stored>
  /** Marks a key as stored when its content arrived out of band (v4 data-present). */
  storePresent(key: Key, op: Op): Promise<Stored>
  remove(key: Key, op: Op): Promise<Removed>
  /** Removes only if the remote's monotonic clock is still before `deadline`. */
  removeBefore(key: Key, deadline: number, op: Op): Promise<Removed>
  /** Seconds on the remote's monotonic clock. */
  timestamp(op: Op): Promise<number>
  /** Locks present content against removal; undefined when absent or unlockable. */
  lock(key: Key, op: Op): Promise<Lock | undefined>
  /** Finish in-flight work, then release resources. */
  close(): Promise<void>
}
