// boundedLines: the same lines however the input is cut into chunks, and no reading
// past a line longer than the limit.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { boundedLines, type LineEvent } from '../../src/protocol/http/line-reader.js'

async function collect(chunks: Buffer[], limit: number): Promise<{ events: LineEvent[]; pulled: number }> {
  let pulled = 0
  async function* source() {
    for (const c of chunks) {
      pulled++
      yield c
    }
  }
  const events: LineEvent[] = []
  for await (const ev of boundedLines(source(), limit)) events.push(ev)
  return { events, pulled }
}

/** What the reader should produce: lines up to the first one longer than `limit`. */
function expected(text: string, limit: number): LineEvent[] {
  const parts = text.split('\n')
  const last = parts.pop()!
  const out: LineEvent[] = []
  for (const p of parts) {
    if (Buffer.byteLength(p) > limit) return [...out, { kind: 'too-long' }]
    out.push({ kind: 'line', text: p })
  }
  if (Buffer.byteLength(last) > limit) return [...out, { kind: 'too-long' }]
  if (last !== '') out.push({ kind: 'line', text: last })
  return out
}

const cuts = (total: number) => fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, total - 1) }), { maxLength: 12 }).map((a) => a.filter((n) => n < total).sort((x, y) => x - y))

function split(buf: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = []
  let from = 0
  for (const c of at) {
    out.push(buf.subarray(from, c))
    from = c
  }
  out.push(buf.subarray(from))
  return out.filter((b) => b.length > 0)
}

test('lines come out the same however the bytes are chunked', async () => {
  const text = fc.array(fc.oneof(fc.constantFrom('\n', '{"unlock":false}', '{"unlock":true}', 'é', 'x'.repeat(30)), fc.string({ maxLength: 8 })), { maxLength: 30 }).map((a) => a.join(''))
  await fc.assert(
    fc.asyncProperty(
      text.chain((t) => fc.tuple(fc.constant(t), cuts(Buffer.byteLength(t)), fc.integer({ min: 1, max: 80 }))),
      async ([t, at, limit]) => {
        const { events } = await collect(split(Buffer.from(t), at), limit)
        assert.deepEqual(events, expected(t, limit))
      },
    ),
    { numRuns: 500 },
  )
})

test('a line past the limit stops the reading at the chunk that crossed it', async () => {
  const chunk = Buffer.alloc(1000, 'x')
  const chunks = Array.from({ length: 1000 }, () => chunk)
  const { events, pulled } = await collect(chunks, 64 * 1024)
  assert.deepEqual(events, [{ kind: 'too-long' }])
  assert.equal(pulled, 66, 'read 66 KB of the 1 MB offered, not more')
})
