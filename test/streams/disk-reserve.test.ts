import assert from 'node:assert/strict'
import { statfs } from 'node:fs/promises'
import { test } from 'node:test'
import fc from 'fast-check'
import { DiskFullError } from '../../src/errors.js'
import { DiskReserve, needMoreDiskSpace } from '../../src/streams/disk-reserve.js'
import { readSize, roughSize } from '../../src/annex/data-units.js'
import { tempDir } from '../helpers/annex.js'

test('data sizes parse as git-annex reads annex.diskreserve', () => {
  const cases: Array<[string, number | undefined]> = [
    ['100 megabytes', 100_000_000],
    ['1GB', 1_000_000_000],
    ['1 GiB', 1024 ** 3],
    ['512', 512],
    ['0.5tb', 500_000_000_000],
    ['10 kilobytes', 10_000],
    ['2MiB', 2 * 1024 ** 2],
    ['nonsense', undefined],
    ['', undefined],
  ]
  for (const [text, bytes] of cases) assert.equal(readSize(text), bytes, text)
})

test('the refusal message is git-annex\'s', () => {
  assert.equal(roughSize(1_230_000), '1.23 MB')
  assert.equal(roughSize(7), '7 B')
  assert.match(needMoreDiskSpace(1_500_000), /^not enough free space, need 1\.5 MB more/)
})

test('reservations of in-flight transfers count against the free space until released', async (t) => {
  const dir = await tempDir(t)
  let free = 1000
  const reserve = new DiskReserve(dir, 100, { freeBytes: async () => free })
  const a = await reserve.reserve(500)
  await assert.rejects(reserve.reserve(401), DiskFullError) // 500 + 401 + 100 > 1000
  const b = await reserve.reserve(400)
  // Bytes written leave the ledger and show up as used disk instead.
  a.consumed(300)
  free -= 300
  await assert.rejects(reserve.reserve(1), DiskFullError)
  a.release()
  b.release()
  b.release() // idempotent
  const c = await reserve.reserve(600)
  assert.equal(c.remaining, 600)
  // Ledgers are per filesystem and per process: leave nothing booked for the next test.
  c.release()
})

test('concurrent reservations never together exceed what is free', async (t) => {
  const dir = await tempDir(t)
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 20 }), async (sizes) => {
      const reserve = new DiskReserve(dir, 50, { freeBytes: async () => 1000 })
      const results = await Promise.allSettled(sizes.map((n) => reserve.reserve(n)))
      const granted = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
      assert.ok(granted.reduce((s, r) => s + r.remaining, 0) + 50 <= 1000)
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof DiskFullError)
      for (const r of granted) r.release()
    }),
  )
})

test('with the real filesystem: a reserve larger than the free space refuses at once', async (t) => {
  const dir = await tempDir(t)
  const s = await statfs(dir)
  const free = Number(s.bavail) * Number(s.bsize)
  // A margin no other process's deletions can close while this runs.
  await assert.rejects(new DiskReserve(dir, free + 2 ** 40).reserve(1), DiskFullError)
  ;(await new DiskReserve(dir, 0).reserve(1)).release()
})

test('a refused reservation first asks reclaimers on the filesystem to give space back', async (t) => {
  const dir = await tempDir(t)
  let held = 600
  const reserve = new DiskReserve(dir, 100, { freeBytes: async () => 1000 - held })
  const asked: number[] = []
  const remove = await reserve.addReclaimer(async (need) => {
    asked.push(need)
    const give = Math.min(held, need + 10)
    held -= give
    return give
  })
  // 400 + 100 > 1000 - 600: 100 short, the reclaimer gives 110.
  const r = await reserve.reserve(400)
  assert.deepEqual(asked, [100])
  assert.equal(held, 490)
  r.release()
  // No reclaimers asked when there is room, and a removed one is never asked again.
  ;(await reserve.reserve(10)).release()
  assert.deepEqual(asked, [100])
  remove()
  await assert.rejects(reserve.reserve(900), DiskFullError)
  assert.deepEqual(asked, [100])
  // tryReserve reports the shortfall as a value.
  assert.deepEqual(await reserve.tryReserve(900), { need: 900 + 100 - 510 })
})
