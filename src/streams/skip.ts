// Drops the first n bytes: a fanout target that already holds a prefix of the content
// (resumed upload) receives only what it lacks.
import { Transform, type TransformCallback } from 'node:stream'

export function skip(n: number): Transform {
  let left = n
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (left === 0) return cb(null, chunk)
      if (chunk.length <= left) {
        left -= chunk.length
        return cb()
      }
      const rest = chunk.subarray(left)
      left = 0
      cb(null, rest)
    },
  })
}
