// Enforces an announced byte count on a stream (spec §2.5).
//
// Too few bytes is an interrupted transfer: the stream ends normally so that every
// byte that did arrive reaches the sink (a resumable store keeps it as a prefix), and
// `complete` resolves false so that nothing is committed. Erroring instead would race
// the sink and drop its buffered tail.
//
// Too many bytes means the sender is wrong: the excess is discarded and the stream
// fails only once the input has ended, so an HTTP request body is fully read and the
// client still gets an answer. Past `maxExcess` it fails at once.
import { Transform, type TransformCallback } from 'node:stream'
import { LengthMismatchError } from '../errors.js'

export interface ExactLength extends Transform {
  /** Resolves true when exactly the announced bytes arrived, false when fewer did. */
  readonly complete: Promise<boolean>
}

export function exactLength(expected: number, opts: { maxExcess?: number } = {}): ExactLength {
  const maxExcess = opts.maxExcess ?? 1024 * 1024
  let seen = 0
  let resolveComplete!: (ok: boolean) => void
  const complete = new Promise<boolean>((r) => (resolveComplete = r))
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      const before = seen
      seen += chunk.length
      if (seen <= expected) return cb(null, chunk)
      if (seen - expected > maxExcess) return cb(tooLong(expected))
      cb(null, before < expected ? chunk.subarray(0, expected - before) : undefined)
    },
    flush(cb: TransformCallback) {
      if (seen > expected) {
        resolveComplete(false)
        return cb(tooLong(expected))
      }
      resolveComplete(seen === expected)
      cb()
    },
    destroy(err, cb) {
      resolveComplete(false)
      cb(err)
    },
  }) as Transform & { complete: Promise<boolean> }
  t.complete = complete
  return t
}

function tooLong(expected: number): LengthMismatchError {
  return new LengthMismatchError(`body is longer than the announced ${expected} bytes`)
}
