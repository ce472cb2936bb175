// Holds back the most recent chunk until the next one arrives, so that at the end the
// final chunk can still be altered once an asynchronous verdict is known.
import { Transform, type TransformCallback } from 'node:stream'

/**
 * Passes bytes through; at the end awaits `verdict` and, when it is false, cuts the
 * last byte of the final chunk. Used where the only way left to tell a receiver that
 * the bytes it got are bad is a count that falls short of what was announced.
 */
export function truncateLastByteUnless(verdict: Promise<boolean>): Transform {
  let held: Buffer | undefined
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      const prev = held
      held = chunk
      cb(null, prev)
    },
    flush(cb: TransformCallback) {
      verdict.then(
        (ok) => {
          if (held && held.length > 0) cb(null, ok ? held : held.subarray(0, held.length - 1))
          else cb()
        },
        (err: Error) => cb(err),
      )
    },
  })
}
