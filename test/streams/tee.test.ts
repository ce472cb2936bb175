import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Readable, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { test } from 'node:test'
import fc from 'fast-check'
import { AllTargetsFailedError, HashMismatchError, StalledError } from '../../src/errors.js'
import { skip } from '../../src/streams/skip.js'
import { tee } from '../../src/streams/tee.js'

/** Collects a branch; resolves with its bytes, or with the error that ended it. */
function collect(r: Readable, delayMs = 0): Promise<Buffer | Error> {
  const parts: Buffer[] = []
  return pipeline(
    r,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        parts.push(chunk)
        if (delayMs > 0) setTimeout(cb, delayMs)
        else cb()
      },
    }),
  ).then(
    () => Buffer.concat(parts),
    (e: Error) => e,
  )
}

function chunksOf(data: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = []
  let at = 0
  for (let i = 0; at < data.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length] ?? 1)
    out.push(data.subarray(at, at + n))
    at += n
  }
  return out
}

test('every branch receives exactly the source bytes, for any chunking and branch count', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 20_000 }),
      fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 8 }),
      fc.integer({ min: 1, max: 5 }),
      async (bytes, sizes, n) => {
        const data = Buffer.from(bytes)
        const t = tee(n, { highWaterMark: 1024 })
        const got = t.branches.map((b) => collect(b))
        await pipeline(Readable.from(chunksOf(data, sizes)), t.input)
        for (const g of await Promise.all(got)) assert.deepEqual(g, data)
      },
    ),
    { numRuns: 60 },
  )
})

test('the slowest branch paces the source: read-ahead stays bounded', async () => {
  const hwm = 16 * 1024
  const chunk = 4096
  const total = 4 * 1024 * 1024
  let pulled = 0
  let slowGot = 0
  let maxAhead = 0
  const source = Readable.from(
    (function* () {
      for (let i = 0; i < total / chunk; i++) {
        pulled += chunk
        maxAhead = Math.max(maxAhead, pulled - slowGot)
        yield Buffer.alloc(chunk, i & 0xff)
      }
    })(),
    { highWaterMark: 1 },
  )
  const t = tee(3, { highWaterMark: hwm })
  const fast1 = collect(t.branches[0]!)
  const fast2 = collect(t.branches[1]!)
  const slow = pipeline(
    t.branches[2]!,
    new Writable({
      highWaterMark: hwm,
      write(c: Buffer, _e, cb) {
        slowGot += c.length
        setImmediate(cb)
      },
    }),
  )
  await pipeline(source, t.input)
  await Promise.all([fast1, fast2, slow])
  assert.equal(slowGot, total)
  // Source buffer + tee input + branch buffer + the slow sink's own buffer, with slack for one chunk each.
  assert.ok(maxAhead <= 6 * hwm, `read ahead of the slowest consumer by ${maxAhead} bytes`)
})

test('a failing branch is detached; the others still get everything', async () => {
  const data = randomBytes(300_000)
  const t = tee(3, { highWaterMark: 8192 })
  let seen = 0
  const failing = pipeline(
    t.branches[1]!,
    new Writable({
      write(c: Buffer, _e, cb) {
        seen += c.length
        cb(seen > 50_000 ? new Error('node died') : null)
      },
    }),
  ).then(
    () => 'ended',
    (e: Error) => e.message,
  )
  const ok = [collect(t.branches[0]!), collect(t.branches[2]!)]
  await pipeline(Readable.from(chunksOf(data, [7000])), t.input)
  assert.deepEqual(await Promise.all(ok), [data, data])
  assert.equal(await failing, 'node died')
  assert.deepEqual([...t.detached.keys()], [1])
})

test('a stalled branch is dropped after stallMs without failing the others', async () => {
  const data = randomBytes(200_000)
  const t = tee(2, { highWaterMark: 4096, stallMs: 100 })
  // Branch 1 is never read.
  const stalled = new Promise<Error>((resolve) => t.branches[1]!.once('error', resolve))
  const ok = collect(t.branches[0]!)
  await pipeline(Readable.from(chunksOf(data, [5000])), t.input)
  assert.deepEqual(await ok, data)
  assert.ok((await stalled) instanceof StalledError)
  assert.ok(t.detached.get(1) instanceof StalledError)
})

test('when every branch fails the upload fails with AllTargetsFailedError', async () => {
  const t = tee(2, { highWaterMark: 1024 })
  for (const b of t.branches) b.destroy(new Error('gone'))
  await assert.rejects(pipeline(Readable.from([Buffer.alloc(10), Buffer.alloc(10)]), t.input), AllTargetsFailedError)
})

test('an upstream verification failure ends no branch normally: every consumer sees the error', async () => {
  const data = randomBytes(100_000)
  const t = tee(3, { highWaterMark: 4096 })
  const got = t.branches.map((b) => collect(b))
  const verifier = new Transform({
    transform(c: Buffer, _e, cb) {
      cb(null, c)
    },
    flush(cb) {
      cb(new HashMismatchError('bad content'))
    },
  })
  await assert.rejects(pipeline(Readable.from(chunksOf(data, [3000])), verifier, t.input), HashMismatchError)
  for (const g of await Promise.all(got)) assert.ok(g instanceof Error, 'a branch ended normally after a verification failure')
})

test('skip(n) drops exactly the first n bytes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 5000 }), fc.nat(6000), fc.integer({ min: 1, max: 700 }), async (bytes, n, size) => {
      const data = Buffer.from(bytes)
      const out = await collect(Readable.from(chunksOf(data, [size])).pipe(skip(n)))
      assert.deepEqual(out, data.subarray(Math.min(n, data.length)))
    }),
    { numRuns: 100 },
  )
})

test('the tee holds at most (N+1) × (highWaterMark + one chunk) when no consumer reads', async () => {
  const hwm = 64 * 1024
  const chunk = 16 * 1024
  for (const n of [1, 3, 5]) {
    const t = tee(n, { highWaterMark: hwm })
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 1024; i++) yield Buffer.alloc(chunk, i & 0xff)
      })(),
      { highWaterMark: 1 },
    )
    const piped = pipeline(source, t.input).catch((e: Error) => e)
    // Nobody reads: the tee fills up and stops asking for more. Everything it does is in
    // memory, so once its input needs a drain a few turns of the event loop settle it.
    while (!t.input.writableNeedDrain) await new Promise((r) => setImmediate(r))
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
    const held = t.input.writableLength + t.branches.reduce((sum, b) => sum + b.readableLength + ((b as unknown as Partial<Writable>).writableLength ?? 0), 0)
    assert.ok(held <= (n + 1) * (hwm + chunk), `${n} branches hold ${held} bytes; the bound is ${(n + 1) * (hwm + chunk)}`)
    // And it was really full, not stopped early: every branch holds a window.
    for (const b of t.branches) assert.ok(b.readableLength >= hwm, `a branch holds ${b.readableLength}`)
    t.input.destroy(new Error('done'))
    await piped
  }
})
