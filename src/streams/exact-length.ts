// Enforces an announced byte count on a stream. Too many bytes is a length error
// (the sender is wrong); too few is an interrupted transfer, which resumable stores
// keep as a prefix (spec §2.5: short put bodies leave the partial data for resume).
import { Transform, type TransformCallback } from 'node:stream'
import { AbortedError, LengthMismatchError } from '../errors.js'

export class ShortBodyError extends AbortedError {}

export function exactLength(expected: number): Transform {
  let seen = 0
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      seen += chunk.length
      if (seen > expected) {
        cb(new LengthMismatchError(`body is longer than the announced ${expected} bytes`))
        return
      }
      cb(null, chunk)
    },
    flush(cb: TransformCallback) {
      if (seen < expected) cb(new ShortBodyError(`body ended after ${seen} of the announced ${expected} bytes`))
      else cb()
    },
  })
}
