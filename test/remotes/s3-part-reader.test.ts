// PartReader (s3-store.ts): a byte stream cut into parts of exactly the part size, the last
// shorter, without copying, each part's SHA-256 taken as its pieces arrive (the SigV4
// payload hash over plain http).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import fc from 'fast-check'
import { PartReader, type Part } from '../../src/remotes/s3/s3-store.js'

async function readAll(pieces: Buffer[], size: number, hash: boolean): Promise<{ parts: Part[]; doneAtLast: boolean }> {
  const r = new PartReader(Readable.from(pieces, { objectMode: false }), size, hash)
  const parts: Part[] = []
  let doneAtLast = false
  for (;;) {
    const p = await r.next()
    if (!p) break
    parts.push(p)
    doneAtLast = r.done
  }
  r.close()
  return { parts, doneAtLast }
}

test('parts are the stream cut at every part size, each with the SHA-256 of its own bytes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { maxLength: 30 }), fc.integer({ min: 1, max: 200 }), async (arrays, size) => {
      const pieces = arrays.map((a) => Buffer.from(a))
      const all = Buffer.concat(pieces)
      const { parts, doneAtLast } = await readAll(pieces, size, true)
      assert.equal(parts.length, Math.ceil(all.length / size))
      let off = 0
      for (const p of parts) {
        const bytes = Buffer.concat(p.pieces as Buffer[])
        assert.equal(p.length, bytes.length)
        assert.equal(p.length, Math.min(size, all.length - off))
        assert.deepEqual(bytes, all.subarray(off, off + p.length))
        assert.equal(p.sha256, createHash('sha256').update(bytes).digest('hex'))
        off += p.length
      }
      assert.equal(off, all.length)
      // The last part is known to be the last when it is returned (one PutObject, not a one-part upload).
      if (parts.length > 0) assert.equal(doneAtLast, true)
    }),
    { numRuns: 300 },
  )
})

test('a piece larger than several parts is cut into views of it, not copied', async () => {
  const big = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251))
  const { parts } = await readAll([big], 300, false)
  assert.deepEqual(parts.map((p) => p.length), [300, 300, 300, 100])
  for (const p of parts) {
    assert.equal(p.sha256, undefined)
    for (const piece of p.pieces) assert.equal(piece.buffer, big.buffer)
  }
})
