// Pass-through verification: bytes flow on unchanged while being counted and hashed;
// flush() fails on a length or digest mismatch, so a sink that commits in its own
// final() after the verifier has flushed can never commit bad bytes (style §2.4).
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { HashMismatchError, LengthMismatchError } from '../errors.js'
import { createHasher, digestMatches, expectedDigest, hashAlgorithm, type Hasher, type HasherKind } from '../keys/backend.js'
import { contentLength, serializeKey, type Key } from '../keys/key.js'

export type { HasherKind }

export interface VerifyOptions {
  /** Which digest implementation to use; 'auto' (the default) picks the fastest measured. */
  hasher?: HasherKind
  /** Bytes 0..n of the content already held (resumed upload); hashed before the stream. */
  prefix?: Readable
  /** Buffering of the Transform's two sides; Node's default when absent. */
  highWaterMark?: number
}

/**
 * A Transform that passes `key`'s content through untouched and fails, in flush(), unless
 * it had exactly the key's size (when the key has one) and its digest (hash backends).
 * Too many bytes fail as soon as they arrive. Keys with no digest (WORM, URL, external…)
 * are checked for length only; chunk keys too, against their chunk's length.
 */
export async function createVerifier(key: Key, opts: VerifyOptions = {}): Promise<Transform> {
  const expected = expectedDigest(key)
  const length = contentLength(key)
  const hasher: Hasher | undefined = expected === undefined ? undefined : await createHasher(hashAlgorithm(key.backend)!, opts.hasher)
  let count = 0
  const tooLong = () => new LengthMismatchError(`received more than the ${length} bytes of ${serializeKey(key)}`)

  if (opts.prefix) {
    for await (const chunk of opts.prefix as AsyncIterable<unknown>) {
      if (!(chunk instanceof Uint8Array)) throw new TypeError('verifier prefix must yield bytes, not decoded strings')
      count += chunk.length
      if (length !== undefined && count > length) throw tooLong()
      hasher?.update(chunk)
    }
  }

  return new Transform({
    ...(opts.highWaterMark === undefined ? {} : { highWaterMark: opts.highWaterMark }),
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      count += chunk.length
      if (length !== undefined && count > length) return cb(tooLong())
      try {
        hasher?.update(chunk)
      } catch (e) {
        return cb(e as Error)
      }
      // The same Buffer goes downstream: hashing reads it, nothing copies it.
      cb(null, chunk)
    },
    flush(cb: TransformCallback) {
      if (length !== undefined && count !== length) {
        return cb(new LengthMismatchError(`received ${count} of the ${length} bytes of ${serializeKey(key)}`))
      }
      if (hasher && !digestMatches(expected!, hasher.digest())) {
        return cb(new HashMismatchError(`content does not match the checksum of ${serializeKey(key)}`))
      }
      cb()
    },
  })
}
