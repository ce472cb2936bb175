// The chunk file format: what is written reads back, and any damage is refused.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { decodeChunk, encodeChunk } from '../../src/streams/chunk-cache-format.js'

const header = fc.record({
  key: fc.string({ minLength: 1, maxLength: 200 }),
  index: fc.nat({ max: 1_000_000 }),
  offset: fc.nat(),
  hash: fc.record({
    algo: fc.constantFrom('SHA256', 'BLAKE2B512', 'SKEIN256'),
    impl: fc.constantFrom('wasm' as const, 'ts' as const),
    state: fc.uint8Array({ maxLength: 400 }),
  }),
})

test('a chunk reads back as written', () => {
  fc.assert(
    fc.property(header, fc.uint8Array({ maxLength: 4096 }), (h, data) => {
      const d = decodeChunk(encodeChunk(h, data), { key: h.key, index: h.index })
      assert.ok(d.ok, d.ok ? '' : d.why)
      assert.deepEqual(new Uint8Array(d.data), data)
      assert.deepEqual(d.header, { ...h, length: data.length, hash: { ...h.hash, state: new Uint8Array(h.hash.state) } })
    }),
  )
})

test('any flipped bit, truncation or extension is refused', () => {
  fc.assert(
    fc.property(header, fc.uint8Array({ maxLength: 2048 }), fc.nat(), fc.integer({ min: 0, max: 7 }), (h, data, at, bit) => {
      const file = encodeChunk(h, data)
      const bad = Buffer.from(file)
      bad[at % bad.length]! ^= 1 << bit
      assert.equal(decodeChunk(bad, { key: h.key, index: h.index }).ok, false)
      assert.equal(decodeChunk(file.subarray(0, file.length - 1 - (at % file.length)), { key: h.key, index: h.index }).ok, false)
      assert.equal(decodeChunk(Buffer.concat([Buffer.from([at & 0xff]), file]), { key: h.key, index: h.index }).ok, false)
    }),
  )
})

test('a sound chunk of another key or position is refused', () => {
  const file = encodeChunk({ key: 'SHA256E-s3--abc', index: 2, offset: 6, hash: { algo: 'SHA256', impl: 'wasm', state: new Uint8Array([1, 2]) } }, Buffer.from('xyz'))
  assert.equal(decodeChunk(file, { key: 'SHA256E-s3--abc', index: 2 }).ok, true)
  assert.equal(decodeChunk(file, { key: 'SHA256E-s3--abd', index: 2 }).ok, false)
  assert.equal(decodeChunk(file, { key: 'SHA256E-s3--abc', index: 3 }).ok, false)
})
