// n bytes of a retrieved stream, for an answer whose length was announced up front
// (Content-Length). Two cases:
// - `verify`: the stream runs to its own end, must deliver exactly n bytes, and its last
//   chunk is held back until the retrieve's verdict: when that is false the slice fails
//   before its last byte, so the receiver sees an incomplete body, never finished content;
// - otherwise the first n bytes only (a range within the object): the rest is not read, the
//   source is destroyed once n bytes passed, and nothing is claimed about their validity.
// Either way a source that ends early is an error, never a short answer.
import type { Readable } from 'node:stream'
import { HashMismatchError, LengthMismatchError } from '../errors.js'

export async function* slice(body: Readable, n: number, valid: Promise<boolean> | undefined): AsyncGenerator<Buffer> {
  let left = n
  let held: Buffer | undefined
  if (left > 0 || valid) {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (chunk.length > left) {
        if (valid) throw new LengthMismatchError(`content is longer than the ${n} bytes announced`)
        yield chunk.subarray(0, left)
        left = 0
        break
      }
      left -= chunk.length
      if (!valid) {
        yield chunk
        if (left === 0) break
        continue
      }
      if (held) yield held
      held = chunk
    }
  } else {
    body.destroy()
  }
  if (left > 0) throw new LengthMismatchError(`content ended ${left} bytes short of the ${n} announced`)
  if (valid && !(await valid)) throw new HashMismatchError('content changed or failed verification while it was sent')
  if (held) yield held
}
