// What a special remote's storage offers the generic SpecialRemote (special-remote.ts):
// named objects, written so that nothing is visible before the caller says so. S3 buckets
// and directory special remotes implement it; chunking, verification, the chunk log and
// the Remote contract live above it, once.
import type { Readable } from 'node:stream'
import type { Key } from '../../keys/key.js'

export interface ObjectRead {
  /** The whole object's size. */
  readonly size: number
  /** Its bytes from the requested start to the end. */
  readonly body: Readable
}

export interface ObjectStore {
  /** For messages: `S3 bucket b at http://…`, `directory /srv/x`. */
  readonly description: string
  /** Whether the object exists. Fails when the store cannot be reached. */
  has(key: Key, signal: AbortSignal): Promise<boolean>
  /** The object from byte `start` on (start may equal the size); undefined when it does not exist. */
  read(key: Key, start: number, signal: AbortSignal): Promise<ObjectRead | undefined>
  /**
   * Writes `body` as object `key`. `length` is the byte count when known. Nothing is visible
   * until `commit` resolves true; then the object is made visible and the call resolves true.
   * When `commit` resolves false, the body fails or anything else goes wrong, whatever was
   * written is discarded (no object, no partial upload) and the call resolves false (commit
   * false) or rejects.
   */
  write(key: Key, body: Readable, length: number | undefined, commit: Promise<boolean>, signal: AbortSignal): Promise<boolean>
  /** Deletes the object; an absent object is no error. */
  delete(key: Key, signal: AbortSignal): Promise<void>
  /** Releases connections and handles. */
  close(): Promise<void>
}
