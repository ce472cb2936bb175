// The Range parser and the conditionals of the key endpoint, against RFC 9110 §13-§14:
// examples from the RFC and properties over generated headers and lengths.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { MAX_PARTS, answerRange, coalesce, contentRange, multipartFraming, parseRangeHeader, rangeLength, unsatisfiedRange } from '../../src/protocol/http/range.js'
import { etagFor, ifRangeHolds, notModified } from '../../src/protocol/http/etag.js'
import { parseKey } from '../../src/keys/key.js'

const partial = (h: string, len: number) => {
  const a = answerRange(h, len)
  assert.equal(a.kind, 'partial', `${h} on ${len} bytes: ${JSON.stringify(a)}`)
  return (a as { ranges: readonly { start: number; end: number }[] }).ranges
}

test('RFC 9110 §14.1.2 examples on a 10000-byte representation', () => {
  assert.deepEqual(partial('bytes=0-499', 10000), [{ start: 0, end: 499 }])
  assert.deepEqual(partial('bytes=500-999', 10000), [{ start: 500, end: 999 }])
  assert.deepEqual(partial('bytes=-500', 10000), [{ start: 9500, end: 9999 }])
  assert.deepEqual(partial('bytes=9500-', 10000), [{ start: 9500, end: 9999 }])
  assert.deepEqual(partial('bytes=0-0,-1', 10000), [{ start: 0, end: 0 }, { start: 9999, end: 9999 }])
  // Overlapping and touching ranges are coalesced, then sent in ascending order.
  assert.deepEqual(partial('bytes=500-600,601-999', 10000), [{ start: 500, end: 999 }])
  assert.deepEqual(partial('bytes=500-700,601-999', 10000), [{ start: 500, end: 999 }])
  // Disjoint ranges keep the order they were asked in.
  assert.deepEqual(partial('bytes=5000-5009, 0-9', 10000), [{ start: 5000, end: 5009 }, { start: 0, end: 9 }])
})

test('unit, whitespace, clamping and unsatisfiable ranges', () => {
  assert.deepEqual(partial('BYTES=1-2', 10), [{ start: 1, end: 2 }])
  assert.deepEqual(partial('bytes= 1-2 ,\t3-3 , ', 10), [{ start: 1, end: 3 }])
  assert.deepEqual(partial('bytes=5-99999999999999999999999', 10), [{ start: 5, end: 9 }])
  assert.deepEqual(partial('bytes=-99999999999999999999999', 10), [{ start: 0, end: 9 }])
  assert.deepEqual(partial('bytes=10-,2-3', 10), [{ start: 2, end: 3 }], 'an unsatisfiable spec among satisfiable ones is dropped')
  for (const h of ['bytes=10-', 'bytes=10-20', 'bytes=-0', 'bytes=99999999999999999999-', 'bytes=10-,-0']) assert.equal(answerRange(h, 10).kind, 'unsatisfiable', h)
  // Ignored (answered with the whole representation): not a byte range set we understand.
  for (const h of ['items=0-1', 'bytes', 'bytes=', 'bytes=,', 'bytes=a-b', 'bytes=5-4', 'bytes=1-2-3', 'bytes=--1', 'bytes=+1-2', 'bytes =0-1', 'bytes=0x1-2', 'bytes=1 -2'])
    assert.equal(answerRange(h, 10).kind, 'full', h)
  assert.equal(answerRange(undefined, 10).kind, 'full')
  assert.equal(answerRange('bytes=0-1', 0).kind, 'full', 'a zero-length representation has nothing to range over')
  assert.equal(answerRange(`bytes=${Array.from({ length: MAX_PARTS + 1 }, (_, i) => `${i * 10}-${i * 10 + 1}`).join(',')}`, 10_000).kind, 'full', 'too many parts')
  assert.equal(contentRange({ start: 0, end: 499 }, 1234), 'bytes 0-499/1234')
  assert.equal(unsatisfiedRange(1234), 'bytes */1234')
})

const specArb = fc.oneof(
  fc.record({ a: fc.nat(2000), b: fc.option(fc.nat(2000), { nil: undefined }) }).map(({ a, b }) => (b === undefined ? { text: `${a}-`, a, b } : { text: `${Math.min(a, b)}-${Math.max(a, b)}`, a: Math.min(a, b), b: Math.max(a, b) })),
  fc.nat(2000).map((n) => ({ text: `-${n}`, suffix: n })),
)

/** The bytes a spec selects, by the RFC's words, as a set of positions. */
function model(spec: { a?: number; b?: number | undefined; suffix?: number }, len: number): number[] {
  if (spec.suffix !== undefined) return Array.from({ length: Math.min(spec.suffix, len) }, (_, i) => len - Math.min(spec.suffix!, len) + i)
  const out: number[] = []
  for (let i = spec.a!; i <= Math.min(spec.b ?? len - 1, len - 1); i++) out.push(i)
  return out
}

test('property: the parts cover exactly the positions the specs select, without overlap, within the representation', () => {
  fc.assert(
    fc.property(fc.array(specArb, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 2500 }), (specs, len) => {
      const a = answerRange(`bytes=${specs.map((s) => s.text).join(',')}`, len)
      const wanted = new Set(specs.flatMap((s) => model(s, len)))
      if (wanted.size === 0) return assert.equal(a.kind, 'unsatisfiable')
      assert.equal(a.kind, 'partial')
      const ranges = (a as { ranges: readonly { start: number; end: number }[] }).ranges
      const got: number[] = []
      for (const r of ranges) {
        assert.ok(r.start >= 0 && r.start <= r.end && r.end < len)
        for (let i = r.start; i <= r.end; i++) got.push(i)
      }
      assert.equal(new Set(got).size, got.length, 'no byte is sent twice')
      assert.deepEqual(new Set(got), wanted)
      // No two parts touch: they would have been one.
      const sorted = [...ranges].sort((x, y) => x.start - y.start)
      for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i]!.start > sorted[i - 1]!.end + 1)
    }),
    { numRuns: 2000 },
  )
})

test('property: coalesce keeps the request order of disjoint ranges and merges everything else', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(500), fc.nat(50)).map(([s, n]) => ({ start: s, end: s + n })), { minLength: 1, maxLength: 8 }), (rs) => {
      const c = coalesce(rs)
      const sorted = [...rs].sort((x, y) => x.start - y.start)
      const disjoint = sorted.every((r, i) => i === 0 || r.start > sorted[i - 1]!.end + 1)
      if (disjoint) assert.deepEqual(c, rs)
      else for (let i = 1; i < c.length; i++) assert.ok(c[i]!.start > c[i - 1]!.end + 1)
    }),
  )
})

test('property: anything that is not a bytes range set is ignored, never an error', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), fc.nat(100), (h, len) => {
      const a = answerRange(h, len)
      if (parseRangeHeader(h) === undefined) assert.equal(a.kind, 'full')
    }),
    { numRuns: 3000 },
  )
})

test('multipart framing: the announced total is the bytes sent', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(1000), fc.nat(100)), { minLength: 2, maxLength: 5 }), (ps) => {
      const ranges = ps.map(([s, n]) => ({ start: s, end: s + n }))
      const f = multipartFraming(ranges, 2000, 'b0undary', 'application/octet-stream')
      const body = f.heads.map((h, i) => h + 'x'.repeat(rangeLength(ranges[i]!))).join('') + f.tail
      assert.equal(Buffer.byteLength(body), f.total)
      assert.ok(f.heads[0]!.startsWith('--b0undary\r\n') && f.tail === '\r\n--b0undary--\r\n')
    }),
  )
})

test('ETag: strong for hash keys, weak for WORM/URL keys, [base64] for keys an entity tag cannot carry', () => {
  const sha = parseKey('SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt')
  assert.equal(etagFor(sha), '"SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt"')
  assert.equal(etagFor(parseKey('WORM-s3-m1700000000--foo')), 'W/"WORM-s3-m1700000000--foo"')
  const spaced = etagFor(parseKey('WORM-s3-m1--a "b" c'))
  assert.match(spaced, /^W\/"\[[A-Za-z0-9_=-]+\]"$/)
  const e = etagFor(sha)
  assert.equal(notModified(e, e), true)
  assert.equal(notModified(`"x", W/${e}`, e), true, 'If-None-Match compares weakly')
  assert.equal(notModified('*', e), true)
  assert.equal(notModified('"x"', e), false)
  assert.equal(notModified(undefined, e), false)
  assert.equal(notModified(e, undefined), false)
  assert.equal(ifRangeHolds(undefined, e), true)
  assert.equal(ifRangeHolds(e, e), true)
  assert.equal(ifRangeHolds('"other"', e), false)
  assert.equal(ifRangeHolds('Wed, 21 Oct 2015 07:28:00 GMT', e), false, 'no Last-Modified: a date never matches')
  const weak = etagFor(parseKey('WORM-s3-m1700000000--foo'))
  assert.equal(ifRangeHolds(weak, weak), false, 'If-Range needs a strong match')
})
